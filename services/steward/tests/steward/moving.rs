//! A hosted tenant leaves for a local home (federation-protocol.md §8.3–8.5), on real Postgres:
//! 3 threads, 2,000 records, a consent grant and a pair with a third steward C, which pulls the
//! threads. The tenant's bundle is streamed by `POST /v1/portability/export` (one at a time),
//! imported into a new local home with the same DID, and the new home fences the tenant, which
//! then answers `410 INSTANCE_MOVED`. C follows with no re-pair and keeps receiving, now from the
//! local home, with no gap and no duplicate.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use syncropel_home::Home;
use syncropel_portability::ImportOptions;
use syncropel_protocol::moved::sign_moved;
use syncropel_protocol::unix_now;
use syncropel_testkit::{know, quick_federation, with_test_database_here, Node, Options};

use crate::federation_hosted::{replica, start_local, Hosted};

const PASSPHRASE: &str = "a passphrase long enough";
const THREADS: [&str; 3] = ["th_move_a", "th_move_b", "th_move_c"];
/// How long C may take to follow the move and pull what the new home wrote.
const FOLLOW: Duration = Duration::from_secs(60);

/// Every id of `thread` at `node`, in order, paging past 1000.
async fn all_ids(node: &Node, thread: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/records?thread={thread}&limit=1000&cursor={cursor}");
        let (status, page) = node.get(&path).await;
        assert_eq!(status, 200, "{page}");
        for record in page["data"].as_array().unwrap() {
            ids.push(record["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) if page["has_more"] == true => cursor = next.to_string(),
            _ => return ids,
        }
    }
}

/// The store ceiling of the tenant the way back imports into.
const CEILING: u64 = 4 << 20;

/// A signed bundle whose one record file unpacks to more than [`CEILING`], compressed to a few
/// KiB.
fn bomb() -> Vec<u8> {
    let key = syncropel_protocol::Keypair::generate();
    let did = key.did_key();
    let mut writer = syncropel_bundle::BundleWriter::new(Vec::new()).unwrap();
    let document = syncropel_protocol::did_doc::did_web_document(
        &did,
        &[("key-1".into(), did.trim_start_matches("did:key:").into())],
        &["key-1".into()],
        None,
        &[],
    );
    writer
        .add(
            syncropel_bundle::DID_DOCUMENT,
            document.to_string().as_bytes(),
        )
        .unwrap();
    let path = format!("records/th_bomb/{}.json", "0".repeat(64));
    writer
        .add(&path, &vec![b' '; 2 * CEILING as usize])
        .unwrap();
    let manifest = syncropel_bundle::Manifest {
        source_did: did,
        ..Default::default()
    };
    let (bytes, _) = writer.finish(manifest, &key).unwrap();
    assert!(bytes.len() < 64 << 10, "{} bytes", bytes.len());
    bytes
}

/// `POST {url}/v1/portability/export` with `token`.
async fn export_from(url: &str, token: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/v1/portability/export"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn export(hosted: &Hosted, body: &Value) -> reqwest::Response {
    export_from(&hosted.url(), &hosted.token, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hosted_tenant_moves_home_and_its_peer_keeps_syncing() {
    with_test_database_here(|url| async move {
        let c = start_local(Vec::new()).await;
        let replica = replica(url.clone(), vec![c.did()], Duration::from_secs(60)).await;
        let hosted = Hosted::provision(&replica, "leaver").await;
        let ours = c.pair_with(&hosted.url()).await;
        assert_eq!(ours["peer_did"], hosted.did());

        // 2,000 records on 3 threads, a consent grant; C pulls every thread.
        for batch in 0..2 {
            let records: Vec<Value> = (0..1000)
                .map(|n| {
                    let n = batch * 1000 + n;
                    know(
                        THREADS[n % 3],
                        "did:sync:user:hana",
                        n as i64 + 1,
                        json!({"n": n}),
                    )
                })
                .collect();
            let (status, body) = replica
                .tenant_post(
                    &hosted.label,
                    &hosted.token,
                    "/v1/records/batch",
                    &json!({"records": records}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
        let grant = json!({"target_namespace": "default", "peer_did": c.did()});
        let (status, body) = replica
            .tenant_post(&hosted.label, &hosted.token, "/v1/consent/grants", &grant)
            .await;
        assert!(status == 200 || status == 201, "{status} {body}");
        for thread in THREADS {
            c.pull(thread, &hosted.did()).await;
        }
        let mut before = Vec::new();
        for thread in THREADS {
            let ids = all_ids(&c, thread).await;
            assert!(ids.len() >= 666, "{thread}: {}", ids.len());
            before.push(ids);
        }

        // One export at a time; a passphrase too short to seal the key under is refused.
        let short = export(&hosted, &json!({"passphrase": "short"})).await;
        assert_eq!(short.status(), 400);
        let held = export(&hosted, &json!({"no_identity": true})).await;
        assert_eq!(held.status(), 200);
        let second = export(&hosted, &json!({"no_identity": true})).await;
        assert_eq!(second.status(), 429, "{:?}", second.text().await);
        drop(held);

        // A snapshot of one thread (federation-protocol.md §3.6): its records only, no identity;
        // a snapshot asked with a passphrase, or of no valid threads, is refused.
        for bad in [
            json!({"threads": [THREADS[0]], "passphrase": PASSPHRASE}),
            json!({"threads": THREADS[0]}),
            json!({"threads": []}),
            json!({"threads": ["not a thread"]}),
            json!({"threads": (0..101).map(|n| format!("th_{n}")).collect::<Vec<_>>()}),
        ] {
            let refused = export(&hosted, &bad).await;
            assert_eq!(refused.status(), 400, "{bad}");
        }
        let snapshot = json!({"threads": [THREADS[0]]});
        let answer =
            syncropel_testkit::eventually("the export slot", Duration::from_secs(10), || async {
                let answer = export(&hosted, &snapshot).await;
                (answer.status() == 200).then_some(answer)
            })
            .await;
        let bytes = answer.bytes().await.unwrap();
        let verified =
            syncropel_bundle::verify(&bytes[..], &syncropel_bundle::Limits::default()).unwrap();
        assert_eq!(
            verified.manifest.threads,
            Some(vec![THREADS[0].to_string()])
        );
        assert_eq!(verified.manifest.record_count, before[0].len() as u64);
        assert!(verified.sealed_key.is_none() && !verified.manifest.identity_included);

        // The export to leave: streamed, then writes refused.
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("leaver.tar.zst");
        let leave = json!({"passphrase": PASSPHRASE, "intent": "leave"});
        let answer =
            syncropel_testkit::eventually("the export slot", Duration::from_secs(10), || async {
                let answer = export(&hosted, &leave).await;
                (answer.status() == 200).then_some(answer)
            })
            .await;
        assert_eq!(answer.headers()["content-type"], "application/zstd");
        std::fs::write(&bundle, answer.bytes().await.unwrap()).unwrap();
        let write = know(
            THREADS[0],
            "did:sync:user:hana",
            5000,
            json!({"late": true}),
        );
        let (status, body) = replica
            .tenant_post(&hosted.label, &hosted.token, "/v1/records", &write)
            .await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["code"], "INSTANCE_LEAVING");

        // The new home: a local steward's home, stopped, the bundle imported into it.
        let fresh = Node::start(Options {
            federation: quick_federation(),
            ..Options::default()
        })
        .await;
        let stopped = fresh.stop().await;
        let home = Home::new(stopped.home.path().to_path_buf());
        let summary = syncropel_home::import_offline(
            &home,
            &bundle,
            Some(PASSPHRASE.into()),
            ImportOptions::default(),
        )
        .await
        .unwrap();
        assert!(summary.identity_restored);
        assert_eq!(summary.records_failed, 0, "{summary:?}");
        assert_eq!(summary.pairs, 1);
        assert_eq!(summary.consent_grants, 1);
        assert_eq!(
            summary.credentials, 1,
            "the bearer C issued to the tenant moves too"
        );
        let a2 = Node::start(Options {
            federation: quick_federation(),
            ..Options::restart(stopped)
        })
        .await;
        assert_eq!(a2.did(), hosted.did(), "the DID moved");
        // C's cursors of the old store name no place in the new one: it starts over, once.
        let bearer = c
            .outbound_token(ours["pair_id"].as_str().unwrap())
            .await
            .unwrap();
        let held = c.pair(&hosted.did()).await["cursors"][THREADS[1]]["cursor"].clone();
        let path = format!(
            "/v1/sync/changes?thread={}&since={}",
            THREADS[1],
            held.as_str().unwrap()
        );
        let (status, body) = a2.get_as(&bearer, &c.did(), &path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some("CURSOR_EPOCH_MISMATCH")),
            "{body}"
        );
        for (thread, ids) in THREADS.iter().zip(&before) {
            assert_eq!(
                &all_ids(&a2, thread).await,
                ids,
                "{thread}: every id, in order"
            );
        }
        let (status, grants) = a2.get("/v1/consent/grants").await;
        assert_eq!(status, 200, "{grants}");
        assert_eq!(grants["data"].as_array().unwrap().len(), 1, "{grants}");

        // The fence: signed by the DID's key; the old home answers 410 with the notice.
        let key = a2.steward.tenant.identity.key.clone();
        let notice = sign_moved(&hosted.did(), a2.url(), unix_now(), &key);
        let forged = sign_moved(
            &hosted.did(),
            "https://elsewhere.example",
            unix_now(),
            &syncropel_protocol::Keypair::generate(),
        );
        let fence = |notice: Value| {
            let url = format!("{}/v1/portability/fence", hosted.url());
            async move {
                let answer = reqwest::Client::new()
                    .post(url)
                    .json(&notice)
                    .send()
                    .await
                    .unwrap();
                (
                    answer.status().as_u16(),
                    answer.json::<Value>().await.unwrap(),
                )
            }
        };
        let (status, body) = fence(forged).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("SIGNATURE_INVALID")),
            "{body}"
        );
        let (status, body) = fence(notice).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = replica
            .tenant_get(&hosted.label, &hosted.token, "/v1/records")
            .await;
        assert_eq!(status, 410, "{body}");
        assert_eq!(body["code"], "INSTANCE_MOVED");
        assert_eq!(body["moved_to"], a2.url());
        let (status, known) = replica
            .tenant_get(&hosted.label, &hosted.token, "/.well-known/syncropel")
            .await;
        assert_eq!(status, 200, "{known}");
        let forwarding = &known["federation_manifest"];
        assert_eq!(forwarding["federation"]["moved_to"], a2.url(), "{known}");
        syncropel_federation::manifest::verify(forwarding, &[]).unwrap();

        // The new home writes on; C follows and receives it all, each record once.
        let mut sent = Vec::new();
        for clock in 0..3 {
            let record = a2
                .emit(
                    THREADS[0],
                    "did:sync:user:hana",
                    10_000 + clock,
                    json!({"after": clock}),
                )
                .await;
            sent.push(record["id"].as_str().unwrap().to_string());
        }
        let expected: BTreeSet<String> = before[0].iter().cloned().chain(sent.clone()).collect();
        syncropel_testkit::eventually("C to follow the move", FOLLOW, || async {
            let held: BTreeSet<String> = all_ids(&c, THREADS[0]).await.into_iter().collect();
            expected.is_subset(&held).then_some(())
        })
        .await;
        let after = all_ids(&c, THREADS[0]).await;
        assert_eq!(after.len(), expected.len(), "no record twice, none missing");
        assert_eq!(after.into_iter().collect::<BTreeSet<_>>(), expected);
        for (thread, ids) in THREADS.iter().zip(&before).skip(1) {
            assert_eq!(&all_ids(&c, thread).await, ids, "{thread} kept as it was");
        }
        let pair = c.pair(&hosted.did()).await;
        assert_eq!(pair["peer_url"], a2.url(), "{pair}");
        assert_eq!(pair["state"], "active", "{pair}");
    })
    .await;
}

/// The way back: a local home, pulled from by C, exports to leave over HTTP and is imported into
/// a new hosted tenant (`POST /v1/portability/import`), which becomes its DID; the local home is
/// fenced and C follows to the tenant. Bundles past the replica's limit, a wrong passphrase and
/// a second bundle into a tenant that holds records are refused and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_local_home_moves_into_a_new_hosted_tenant() {
    with_test_database_here(|url| async move {
        let c = start_local(Vec::new()).await;
        let a = start_local(vec![c.did()]).await;
        c.pair_with(a.url()).await;
        let thread = "th_way_back";
        let mut before = Vec::new();
        for clock in 1..=50 {
            let record = a
                .emit(thread, "did:sync:user:lou", clock, json!({"n": clock}))
                .await;
            before.push(record["id"].as_str().unwrap().to_string());
        }
        c.pull(thread, &a.did()).await;
        assert_eq!(all_ids(&c, thread).await, before);

        let bundle = export_from(
            a.url(),
            &a.token,
            &json!({"passphrase": PASSPHRASE, "intent": "leave"}),
        )
        .await
        .bytes()
        .await
        .unwrap();

        let replica = syncropel_testkit::hosted::Replica::start(
            &url,
            syncropel_testkit::hosted::Config {
                path_prefix: Some("/t".into()),
                reachable_urls: true,
                federation: syncropel_federation::FederationConfig {
                    store_ceiling: CEILING,
                    ..quick_federation()
                },
                limits: syncropel_steward::state::Limits {
                    max_import_bytes: bundle.len() as u64 + 1024,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await;
        let token = replica.new_tenant("acct", "returner").await;
        let tenant_url = format!("{}/t/returner", replica.url);
        let import = |body: Vec<u8>, passphrase: &'static str, query: &'static str| {
            let url = format!("{tenant_url}/v1/portability/import{query}");
            let token = token.clone();
            async move {
                let answer = reqwest::Client::new()
                    .post(url)
                    .bearer_auth(token)
                    .header("content-type", "application/zstd")
                    .header("x-bundle-passphrase", passphrase)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (
                    answer.status().as_u16(),
                    answer.json::<Value>().await.unwrap(),
                )
            }
        };
        let (status, body) = import(vec![0; bundle.len() + 4096], PASSPHRASE, "").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (413, Some("PAYLOAD_TOO_LARGE")),
            "{body}"
        );
        // A bundle that unpacks past what the tenant may store (a few bytes of zstd) stops there.
        let (status, body) = import(bomb(), PASSPHRASE, "").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (413, Some("PAYLOAD_TOO_LARGE")),
            "{body}"
        );
        let (status, body) = import(bundle.to_vec(), "not the passphrase at all", "").await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("wrong passphrase"),
            "{body}"
        );
        let (status, dry) = import(bundle.to_vec(), PASSPHRASE, "?dry_run=true").await;
        assert_eq!(status, 200, "{dry}");
        assert_eq!(dry["dry_run"], true);
        let tenant = replica
            .platform()
            .tenant("returner")
            .await
            .unwrap()
            .unwrap();
        assert_ne!(
            *tenant.identity.did,
            a.did(),
            "nothing installed by the failures"
        );

        let (status, summary) = import(bundle.to_vec(), PASSPHRASE, "").await;
        assert_eq!(status, 200, "{summary}");
        assert_eq!(summary["identity_restored"], true, "{summary}");
        assert_eq!(summary["records_failed"], 0, "{summary}");
        let tenant = replica
            .platform()
            .tenant("returner")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            *tenant.identity.did,
            a.did(),
            "the tenant is the home's DID now"
        );
        let path = format!("/v1/records?thread={thread}&limit=1000");
        let (status, page) = replica.tenant_get("returner", &token, &path).await;
        assert_eq!(status, 200, "{page}");
        let held: Vec<&str> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(held, before, "every id, in order");

        // Another home's bundle into a tenant that now holds records: refused.
        let other = start_local(Vec::new()).await;
        other
            .emit("th_other", "did:sync:user:ola", 1, json!({}))
            .await;
        let foreign = export_from(
            other.url(),
            &other.token,
            &json!({"passphrase": PASSPHRASE}),
        )
        .await
        .bytes()
        .await
        .unwrap();
        let (status, body) = import(foreign.to_vec(), PASSPHRASE, "").await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("--force-overwrite"),
            "{body}"
        );

        // The fence, then C follows to the tenant.
        let notice = sign_moved(
            &a.did(),
            &tenant_url,
            unix_now(),
            &a.steward.tenant.identity.key,
        );
        let (status, body) = a.post("/v1/portability/fence", &notice).await;
        assert_eq!(status, 200, "{body}");
        let record = know(thread, "did:sync:user:lou", 100, json!({"after": true}));
        let (status, written) = replica
            .tenant_post("returner", &token, "/v1/records", &record)
            .await;
        assert_eq!(status, 201, "{written}");
        assert_eq!(written["signer"], a.did(), "signed by the moved key");
        let id = written["id"].as_str().unwrap().to_string();
        syncropel_testkit::eventually("C to follow to the tenant", FOLLOW, || async {
            all_ids(&c, thread).await.contains(&id).then_some(())
        })
        .await;
        let after = all_ids(&c, thread).await;
        assert_eq!(after.len(), before.len() + 1, "no record twice");
        assert_eq!(c.pair(&a.did()).await["peer_url"], tenant_url.as_str());
    })
    .await;
}

/// Each export reads a tenant's whole store: past its hourly allowance a tenant's next one is
/// refused (`429 RATE_LIMITED`, with the wait), whichever token asks; another tenant's are not.
#[tokio::test]
async fn exports_past_a_tenants_hourly_allowance_are_refused() {
    use syncropel_testkit::hosted::{Config, Replica};
    with_test_database_here(|db| async move {
        let replica = Replica::start(
            &db,
            Config {
                rate_limits: syncropel_steward::rate_limit::RateLimits {
                    exports_per_hour: std::num::NonZeroU32::new(2),
                    ..Default::default()
                },
                ..Config::default()
            },
        )
        .await;
        let token = replica.new_tenant("acct-1", "busy").await;
        let other = replica.new_tenant("acct-2", "calm").await;
        let export = |label: &'static str, token: String| {
            let request = replica
                .tenant_request(label, reqwest::Method::POST, "/v1/portability/export")
                .bearer_auth(token)
                .json(&json!({"no_identity": true}));
            async move {
                let answer = request.send().await.unwrap();
                let status = answer.status().as_u16();
                let body = answer.bytes().await.unwrap();
                (status, body)
            }
        };
        for _ in 0..2 {
            // The slot of the one before may not be free yet (429 for concurrency).
            let status = syncropel_testkit::eventually(
                "the export slot",
                Duration::from_secs(10),
                || async {
                    let (status, _) = export("busy", token.clone()).await;
                    (status != 429).then_some(status)
                },
            )
            .await;
            assert_eq!(status, 200);
        }
        let refused = syncropel_testkit::eventually(
            "the allowance refusal",
            Duration::from_secs(10),
            || async {
                let (status, body) = export("busy", token.clone()).await;
                let body: Value = serde_json::from_slice(&body).ok()?;
                (status == 429 && body["limit"] == "exports_per_hour").then_some(body)
            },
        )
        .await;
        assert_eq!(refused["code"], "RATE_LIMITED", "{refused}");
        assert!(
            refused["retry_after_secs"].as_u64().unwrap() > 60,
            "{refused}"
        );
        let (status, _) = export("calm", other).await;
        assert_eq!(status, 200, "another tenant's allowance is its own");
        replica.stop().await;
    })
    .await;
}
