//! What a peer may ask (section 8): refusals of the changes feed, legacy sync pairs, one-shot
//! pulls without a pair, missing parents, and our own threads. The feed is read raw, as a peer
//! calls it: refusals as the error envelope, pages with their status and every member.

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use syncropel_client::api::{ChangesPage, CreateGrant, CreateSyncPair, PullRequest, SyncRecords};
use syncropel_client::ListParams;
use syncropel_federation::state as fstate;
use syncropel_protocol::sync::SyncCursor;
use syncropel_testkit::{error_code, eventually, TENANT};

use super::{changes_as, legacy, ms, paired, start, try_pull, DEADLINE};

/// `page`, which must read as the contract's page of the changes feed for `thread`.
fn typed_page(page: &Value, thread: &str) -> ChangesPage {
    let typed: ChangesPage = serde_json::from_value(page.clone())
        .unwrap_or_else(|e| panic!("not a page of the changes feed: {e}: {page}"));
    assert_eq!(typed.thread, thread, "{page}");
    typed
}

/// A pull of `thread` from a URL with a token the peer gave, without a pair.
fn pull_with_token(thread: &str, peer_url: &str, token: &str) -> PullRequest {
    PullRequest {
        thread: thread.into(),
        peer: peer_url.into(),
        peer_token: Some(token.into()),
        namespace: None,
    }
}

#[tokio::test]
async fn the_changes_feed_refuses_what_a_peer_may_not_ask() {
    let (a, b, pair_id) = paired().await;
    let token = a.outbound_token(&pair_id).await.unwrap();
    let me = a.did();
    let meta = fstate::sync_meta(b.steward.state.store.as_ref(), TENANT)
        .await
        .unwrap();
    let ahead = SyncCursor {
        epoch: meta.epoch.clone(),
        seq: 1_000_000,
    }
    .encode(&meta.mac_key());
    // A cursor of an earlier life of this store (its key, another epoch), one of another store
    // (another key), and a genuine cursor with its epoch edited.
    let other_epoch = SyncCursor {
        epoch: "ffffffffffffffff".into(),
        seq: 1,
    }
    .encode(&meta.mac_key());
    let other_store = SyncCursor {
        epoch: meta.epoch.clone(),
        seq: 1,
    }
    .encode(b"some other key");
    let genuine = SyncCursor {
        epoch: meta.epoch.clone(),
        seq: 1,
    }
    .encode(&meta.mac_key());
    let (_, mac) = genuine.split_once('.').unwrap();
    let edited = format!(
        "{}.{mac}",
        URL_SAFE_NO_PAD.encode(r#"{"v":1,"e":"ffffffffffffffff","s":1}"#)
    );
    for (query, status, code) in [
        (
            "thread=th_x&since=garbage".to_string(),
            400,
            "INVALID_CURSOR",
        ),
        (format!("thread=th_x&since={ahead}"), 400, "FUTURE_CURSOR"),
        (
            format!("thread=th_x&since={other_epoch}"),
            409,
            "CURSOR_EPOCH_MISMATCH",
        ),
        (
            format!("thread=th_x&since={other_store}"),
            400,
            "INVALID_CURSOR",
        ),
        (format!("thread=th_x&since={edited}"), 400, "INVALID_CURSOR"),
        (
            "thread=th_federation_pairs".into(),
            403,
            "THREAD_NOT_ALLOWED",
        ),
        ("thread=th_consent".into(), 403, "THREAD_NOT_ALLOWED"),
        (
            "thread=th_audit_federation_pairs".into(),
            403,
            "THREAD_NOT_ALLOWED",
        ),
        (
            "thread=th_x&target_namespace=research".into(),
            403,
            "CONSENT_DENIED",
        ),
        ("thread=th_x&feed=sideways".into(), 400, "VALIDATION_ERROR"),
    ] {
        let (got, body) = changes_as(&b, &token, &me, &query).await;
        assert_eq!(got, status, "{query}: {body}");
        assert_eq!(error_code(&body), code, "{query}");
    }
    // No actor claim, or another actor's.
    let request = b
        .steward
        .http
        .get(format!("{}/v1/sync/changes?thread=th_x", b.url()))
        .bearer_auth(&token);
    let (status, body) = b.steward.send(request).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_code(&body), "DID_CLAIM_DENIED");
    let (status, body) = changes_as(&b, &token, "did:sync:user:mallory", "thread=th_x").await;
    assert_eq!(status, 403, "{body}");
    // A pair token opens nothing else.
    let (status, body) = b.steward.get(&token, "/v1/records?limit=10").await;
    assert_eq!(status, 403, "{body}");

    // An empty thread answers an empty page whose cursor is the one sent.
    let (status, page) = changes_as(&b, &token, &me, "thread=th_nothing_yet").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["records"], json!([]));
    assert_eq!(page["next_cursor"], "");
    assert_eq!(page["has_more"], false);
    typed_page(&page, "th_nothing_yet");
    // Pages follow commit order, with has_more and a cursor that never skips.
    for clock in 1..=5 {
        b.emit(
            "th_fed_pages",
            "did:sync:user:bob",
            clock,
            json!({"c": clock}),
        )
        .await;
    }
    let mut since = String::new();
    let mut seen = Vec::new();
    loop {
        let query = format!("thread=th_fed_pages&limit=2&since={since}");
        let (status, page) = changes_as(&b, &token, &me, &query).await;
        assert_eq!(status, 200, "{page}");
        typed_page(&page, "th_fed_pages");
        for item in page["records"].as_array().unwrap() {
            seen.push(item["record"]["clock"].as_i64().unwrap());
            assert!(item["record"]["sig"].is_string());
        }
        since = page["next_cursor"].as_str().unwrap().to_string();
        if page["has_more"] == false {
            break;
        }
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
    // Fetching by id: served threads only.
    let wanted = b.ids("th_fed_pages").await;
    let mut ids: Vec<Value> = wanted.iter().map(|id| json!(id)).collect();
    let pairs = b
        .client
        .list_records::<Value>(&ListParams {
            thread: Some("th_federation_pairs".into()),
            limit: Some(10),
            ..ListParams::default()
        })
        .await
        .unwrap();
    ids.push(pairs.data[0]["id"].clone());
    let request = b
        .steward
        .http
        .post(format!("{}/v1/sync/records", b.url()))
        .bearer_auth(&token)
        .header("x-syncropel-actor", &me)
        .json(&json!({"ids": ids}));
    let (status, fetched) = b.steward.send(request).await;
    assert_eq!(status, 200, "{fetched}");
    serde_json::from_value::<SyncRecords>(fetched.clone()).unwrap();
    let got: BTreeSet<String> = fetched["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, wanted);
}

#[tokio::test]
async fn a_loopback_steward_warns_of_a_legacy_pair_to_a_peer_elsewhere() {
    // The test stewards listen on 127.0.0.1.
    let a = start().await;
    let request = |peer_url: &str| CreateSyncPair {
        peer_did: "did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH".into(),
        peer_url: Some(peer_url.into()),
        thread_id: "th_loopback_warning".into(),
        peer_token: Some("spl_prod_sa_x_secret".into()),
    };
    let created = a
        .client
        .create_sync_pair(&request("http://peer.invalid"))
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.json());
    let warning = created.json()["warning"].as_str().unwrap_or_default();
    assert!(
        warning.contains("loopback") && warning.contains("--host"),
        "{}",
        created.json()
    );
    a.client.remove_sync_pair(&created.pair_id).await.unwrap();

    let local = a
        .client
        .create_sync_pair(&request("http://localhost:9"))
        .await
        .unwrap();
    assert_eq!(local.status(), 201, "{}", local.json());
    assert!(local.json().get("warning").is_none(), "{}", local.json());
    a.client.remove_sync_pair(&local.pair_id).await.unwrap();
}

#[tokio::test]
async fn a_legacy_pair_to_a_paired_peer_uses_the_pair_token() {
    let (a, b, _) = paired().await;
    let thread = "th_fed_legacy_pair";
    // No token: the pair's own bearer is used.
    let request = CreateSyncPair {
        peer_did: b.did(),
        peer_url: Some(b.url().into()),
        thread_id: thread.into(),
        peer_token: None,
    };
    let created = a.client.create_sync_pair(&request).await.unwrap();
    assert_eq!(created.status(), 201, "{}", created.json());
    let created = created.into_json();
    assert!(created.get("warning").is_none(), "{created}");
    let id = created["pair_id"].as_str().unwrap().to_string();
    let record = b.emit(thread, "did:sync:user:bob", 1, json!({})).await;
    a.arrived(record["id"].as_str().unwrap()).await;
    let pair = eventually("running", DEADLINE, || async {
        let pair = legacy(&a, &id).await;
        (pair["state"] == "running").then_some(pair)
    })
    .await;
    assert_eq!(pair["thread_id"], thread);
    // Pause, then remove: nothing more crosses.
    let paused = a.client.pause_sync_pair(&id).await.unwrap();
    assert_eq!(paused.status(), 200, "{}", paused.json());
    assert_eq!(paused.json()["state"], "paused");
    let removed = a.client.remove_sync_pair(&id).await.unwrap();
    assert_eq!(removed.status(), 200, "{}", removed.json());
    assert_eq!(removed.json()["state"], "stopped");
    let (status, _) = a.get(&format!("/v1/sync/pairs/{id}")).await;
    assert_eq!(status, 404);
    let late = b.emit(thread, "did:sync:user:bob", 2, json!({})).await;
    tokio::time::sleep(ms(500)).await;
    assert!(a.record(late["id"].as_str().unwrap()).await.is_none());

    // Added again, it runs again and catches up.
    let again = a.client.create_sync_pair(&request).await.unwrap();
    assert_eq!(again.status(), 201, "{}", again.json());
    assert_eq!(again.pair_id, id);
    a.arrived(late["id"].as_str().unwrap()).await;
    let pair = eventually("running again", DEADLINE, || async {
        let pair = legacy(&a, &id).await;
        (pair["state"] == "running").then_some(pair)
    })
    .await;
    assert_eq!(pair["thread_id"], thread);
    let list = a.client.sync_pairs().await.unwrap();
    assert_eq!(list.data.len(), 1, "{}", list.json());
}

#[tokio::test]
async fn a_one_shot_pull_without_a_pair_needs_a_peer_token_and_a_url() {
    let a = start().await;
    let b = start().await;
    let thread = "th_fed_once";
    let record = b.emit(thread, "did:sync:user:bob", 1, json!({})).await;
    let (status, refusal) = try_pull(&a, thread, &b.did()).await;
    assert_eq!(status, 404, "{refusal}");
    assert_eq!(error_code(&refusal), "unpaired_peer");
    let token = b.steward.token(&["federation:sync_pull"], &[]).await;
    let (status, refusal) = a
        .post(
            "/v1/sync/pull",
            &json!({"thread": thread, "peer": b.did(), "peer_token": token}),
        )
        .await;
    assert_eq!(status, 400, "{refusal}");
    let pulled = a
        .client
        .pull(&pull_with_token(thread, b.url(), &token))
        .await
        .unwrap();
    assert_eq!(pulled.status(), 200, "{}", pulled.json());
    assert_eq!(pulled.json()["pulled"], 1, "{}", pulled.json());
    let got = a.arrived(record["id"].as_str().unwrap()).await;
    assert_eq!(got["sig"], record["sig"]);
    // A bad token is the peer's refusal, classified.
    let (status, refusal) = a
        .post(
            "/v1/sync/pull",
            &json!({"thread": thread, "peer": b.url(), "peer_token": "spl_test_sa_nobody_x"}),
        )
        .await;
    assert_eq!(status, 502, "{refusal}");
    assert_eq!(refusal["peer_error"], "HTTP_4XX", "{refusal}");
}

/// A pulled record whose parent lives on a thread the puller does not pull gets its parent
/// fetched (`POST /v1/sync/records`), verified and stored; the parent's thread is not
/// otherwise pulled.
#[tokio::test]
async fn missing_parents_are_fetched_from_the_source() {
    let (a, b, _) = paired().await;
    let parent = b
        .emit(
            "th_fed_parent_side",
            "did:sync:user:bob",
            1,
            json!({"p": 1}),
        )
        .await;
    let parent_id = parent["id"].as_str().unwrap();
    let other = b
        .emit(
            "th_fed_parent_side",
            "did:sync:user:bob",
            2,
            json!({"p": 2}),
        )
        .await;
    let envelope = json!({"act": "DO", "actor": "did:sync:user:bob", "thread": "th_fed_child_side",
        "clock": 1, "parents": [parent_id], "body": {"c": 1}});
    b.write(&envelope).await;
    let pulled = a.pull("th_fed_child_side", &b.did()).await;
    assert_eq!(pulled["pulled"], 1, "{pulled}");
    let held = a.arrived(parent_id).await;
    assert_eq!(held["sig"], parent["sig"]);
    assert_eq!(held["signer"], parent["signer"]);
    // Only the parent: its thread was not pulled.
    assert!(a.record(other["id"].as_str().unwrap()).await.is_none());
}

/// A peer can never fill this steward's own threads: a parent on the peer's `th_consent` is
/// quarantined, not stored, so it cannot grant anything here; pulling such a thread is refused;
/// and a token of an account made for a pair that is not live is refused, not taken as legacy.
#[tokio::test]
async fn peers_cannot_write_our_own_threads_and_orphan_pair_tokens_are_refused() {
    let (a, b, _) = paired().await;
    let grant: CreateGrant = serde_json::from_value(
        json!({"source_namespace": "default", "target_namespace": "team", "hash_levels": ["L0"]}),
    )
    .unwrap();
    let granted = b.client.grant_consent(&grant).await.unwrap();
    assert_eq!(granted.status(), 201, "{}", granted.json());
    let records = b.records("th_consent").await;
    let grant_record = records[0]["id"].as_str().unwrap().to_string();
    let envelope = json!({"act": "DO", "actor": "did:sync:user:bob", "thread": "th_fed_sneaky",
        "clock": 1, "parents": [grant_record], "body": {}});
    let child = b.write(&envelope).await;
    let pulled = a.pull("th_fed_sneaky", &b.did()).await;
    assert_eq!(pulled["pulled"], 1, "{pulled}");
    a.arrived(child["id"].as_str().unwrap()).await;
    tokio::time::sleep(ms(300)).await;
    assert!(a.record(&grant_record).await.is_none());
    let grants = a.client.consent_grants(None).await.unwrap();
    assert_eq!(grants.status(), 200);
    assert_eq!(grants.json()["data"], json!([]), "{}", grants.json());

    for thread in ["th_consent", "th_federation_pairs", "th_audit_tokens"] {
        let (status, refused) = a
            .post("/v1/sync/pull", &json!({"thread": thread, "peer": b.did()}))
            .await;
        assert_eq!(status, 403, "{refused}");
        assert_eq!(refused["code"], "THREAD_NOT_ALLOWED");
    }

    // An account named as a pair's, with no pair behind it.
    let orphan = a
        .steward
        .token_named("pair did:key:z6MkOrphan", &["federation:sync_pull"], &[])
        .await;
    let (status, refused) =
        changes_as(&a, &orphan, "did:key:z6MkOrphan", "thread=th_fed_sneaky").await;
    assert_eq!(status, 401, "{refused}");
}

/// An expired pair token is refused with the upstream `401 token_expired_renew_pair`, which a
/// puller takes as `token_expired`; an expired token of any other account stays `AUTH_INVALID`.
#[tokio::test]
async fn an_expired_pair_token_says_to_renew_the_pair() {
    let node = start().await;
    let steward = &node.steward;
    let admin = &steward.admin().await;
    let mint = |scopes: Value| async move {
        let (status, sa) = steward
            .post(
                admin,
                "/v1/service-accounts",
                &json!({"name": "short", "scopes": scopes}),
            )
            .await;
        assert_eq!(status, 201, "{sa}");
        let path = format!("/v1/service-accounts/{}/tokens", sa["id"].as_str().unwrap());
        let (status, minted) = steward.post(admin, &path, &json!({"ttl_seconds": 1})).await;
        assert_eq!(status, 201, "{minted}");
        minted["token"].as_str().unwrap().to_string()
    };
    let pair_token = mint(json!(["federation:sync_pull"])).await;
    let reader = mint(json!(["records:read"])).await;
    tokio::time::sleep(ms(1100)).await;
    let (status, body) = steward
        .get(&pair_token, "/v1/sync/changes?thread=th_x")
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "token_expired_renew_pair"),
        "{body}"
    );
    let (status, body) = steward.get(&reader, "/v1/records?limit=1").await;
    assert_eq!((status, error_code(&body)), (401, "AUTH_INVALID"), "{body}");
}

/// A pair's peer pushes records (`POST /v1/sync/records {"records"}`, federation-protocol.md
/// §5.3): they pass the checks of pulled records and are stored; a replay de-duplicates; one
/// forged item refuses the whole push and stores nothing of it; only a pair's push grain, with
/// the federation header, may push, and never onto this steward's own threads.
#[tokio::test]
async fn a_peer_pushes_signed_records_all_or_nothing() {
    let (a, b, pair_id) = paired().await;
    let thread = "th_fed_pushed";
    let first = b.emit(thread, &b.did(), 1, json!({"n": 1})).await;
    let second = b.emit(thread, &b.did(), 2, json!({"n": 2})).await;
    let a_token = a.outbound_token(&pair_id).await.unwrap();
    let (_, page) = changes_as(&b, &a_token, &a.did(), &format!("thread={thread}")).await;
    let items = page["records"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2, "{page}");

    // B pushes to A with the bearer A issued it, a thread A pulls from B (its cursor row, with
    // no job running, so that only the push brings records).
    let b_token = b.outbound_token(&pair_id).await.unwrap();
    let push = |token: &str, body: Value, header: bool| {
        let mut request = a
            .steward
            .http
            .post(format!("{}/v1/sync/records", a.url()))
            .bearer_auth(token)
            .json(&body);
        if header {
            request = request.header("x-syncropel-federation", "1");
        }
        a.steward.send(request)
    };
    let (status, body) = push(&b_token, json!({"records": items}), false).await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "VALIDATION_ERROR"),
        "{body}"
    );
    let admin = a.steward.admin().await;
    let (status, body) = push(&admin, json!({"records": items}), true).await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "SCOPE_FORBIDDEN"),
        "{body}"
    );

    let (status, body) = push(&b_token, json!({"records": items}), true).await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "THREAD_NOT_ALLOWED"),
        "not pulled: {body}"
    );
    let cursor = fstate::put_cursor(&pair_id, thread, &fstate::PullCursor::default());
    let store = a.steward.state.store.as_ref();
    store.write(TENANT, Vec::new(), vec![cursor]).await.unwrap();
    let mut forged = items.clone();
    forged[1]["record"]["body"]["n"] = json!(3);
    let (status, body) = push(&b_token, json!({"records": forged}), true).await;
    assert_eq!((status, error_code(&body)), (422, "ID_MISMATCH"), "{body}");
    assert!(
        a.record(first["id"].as_str().unwrap()).await.is_none(),
        "nothing of it"
    );

    let (status, pushed) = push(&b_token, json!({"records": items}), true).await;
    assert_eq!(status, 200, "{pushed}");
    assert_eq!(
        (&pushed["accepted"], &pushed["duplicates"]),
        (&json!(2), &json!(0)),
        "{pushed}"
    );
    for record in [&first, &second] {
        assert!(a.record(record["id"].as_str().unwrap()).await.is_some());
    }
    let (_, again) = push(&b_token, json!({"records": items}), true).await;
    assert_eq!(
        (&again["accepted"], &again["duplicates"]),
        (&json!(0), &json!(2)),
        "{again}"
    );

    let mut own = items[0].clone();
    own["record"]["thread"] = json!("th_consent");
    let (status, body) = push(&b_token, json!({"records": [own]}), true).await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "THREAD_NOT_ALLOWED"),
        "{body}"
    );
}

/// `feed=continuous` (federation-protocol.md §5.1): one `record.created` event per record, its
/// id the cursor after it; a reconnect with `Last-Event-ID` resumes with no gap and no duplicate;
/// pausing the pair ends the stream with the pause's code.
/// The operator pushes a thread to a pair's peer (`POST /v1/federation/pairs/{id}/push`): an
/// on-demand peer that pulls nothing by itself holds every record after, a second push finds
/// them held, and a thread the peer does not pull is refused by the peer.
#[tokio::test]
async fn an_operator_pushes_a_thread_to_a_peer_that_pulls_on_demand() {
    let (a, b, pair_id) = paired().await;
    let thread = "th_fed_push_sent";
    a.pull(thread, &b.did()).await;
    let config = format!("/v1/federation/pairs/{pair_id}/config");
    let (status, view) = a.post(&config, &json!({"mode": "on-demand"})).await;
    assert_eq!(status, 200, "{view}");
    let mut ids = BTreeSet::new();
    for n in 1..=5 {
        let record = b
            .emit(
                thread,
                "did:sync:user:bob",
                n,
                json!({"n": n, "pad": "x".repeat(300)}),
            )
            .await;
        ids.insert(record["id"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(ms(600)).await;
    assert!(a.ids(thread).await.is_empty(), "pulled while on demand");

    let push = format!("/v1/federation/pairs/{pair_id}/push");
    let (status, sent) = b.post(&push, &json!({"thread": thread})).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["object"], "sync_push");
    assert_eq!(
        (&sent["pushed"], &sent["accepted"], &sent["duplicates"]),
        (&json!(5), &json!(5), &json!(0)),
        "{sent}"
    );
    assert_eq!(a.ids(thread).await, ids);
    let (status, again) = b.post(&push, &json!({"thread": thread})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (&again["accepted"], &again["duplicates"]),
        (&json!(0), &json!(5))
    );

    // The peer pulls nothing of this thread from us: it refuses the push.
    b.emit("th_fed_push_unpulled", "did:sync:user:bob", 1, json!({}))
        .await;
    let (status, refused) = b
        .post(&push, &json!({"thread": "th_fed_push_unpulled"}))
        .await;
    assert_eq!(status, 502, "{refused}");
    assert_eq!(refused["peer_error"], "HTTP_4XX", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("THREAD_NOT_ALLOWED"),
        "{refused}"
    );
    for bad in [
        json!({}),
        json!({"thread": 7}),
        json!({"thread": "th_x", "target_namespace": 1}),
    ] {
        let (status, body) = b.post(&push, &bad).await;
        assert_eq!(
            (status, error_code(&body)),
            (400, "VALIDATION_ERROR"),
            "{bad}"
        );
    }
    let (status, _) = b
        .post(
            "/v1/federation/pairs/fed_unknown/push",
            &json!({"thread": thread}),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_continuous_feed_streams_records_and_resumes_from_its_last_event() {
    use crate::watch::EventStream;
    let (a, b, pair_id) = paired().await;
    let thread = "th_fed_continuous";
    let token = a.outbound_token(&pair_id).await.unwrap();
    let open = |last_event_id: Option<String>| {
        let mut request = b
            .steward
            .http
            .get(format!(
                "{}/v1/sync/changes?thread={thread}&feed=continuous",
                b.url()
            ))
            .bearer_auth(&token)
            .header("x-syncropel-actor", a.did());
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(
                response.headers()["content-type"].to_str().unwrap(),
                "text/event-stream"
            );
            EventStream::new(response)
        }
    };
    let first = b.emit(thread, &b.did(), 1, json!({"n": 1})).await;
    let mut stream = open(None).await;
    let frame = stream.frame().await;
    assert_eq!(frame.event.as_deref(), Some("record.created"), "{frame:?}");
    assert_eq!(frame.json()["id"], first["id"]);
    let after_first = frame.id.clone().unwrap();
    // Live: records written after the stream opened arrive on it, in order.
    let second = b.emit(thread, &b.did(), 2, json!({"n": 2})).await;
    let third = b.emit(thread, &b.did(), 3, json!({"n": 3})).await;
    for record in [&second, &third] {
        let frame = stream.frame().await;
        assert_eq!(frame.json()["id"], record["id"], "{frame:?}");
    }
    drop(stream);

    // Resumed after the first: the second and third, once each.
    let mut resumed = open(Some(after_first)).await;
    for record in [&second, &third] {
        let frame = resumed.frame().await;
        assert_eq!(frame.json()["id"], record["id"], "{frame:?}");
    }
    // The pair paused at the source: the stream says so and ends.
    let paused = b
        .client
        .pause_pair(&pair_id, &syncropel_client::api::PairReason::default())
        .await
        .unwrap();
    assert_eq!(paused.status(), 200);
    b.emit(thread, &b.did(), 4, json!({"n": 4})).await;
    let frame = resumed.frame().await;
    assert_eq!(frame.event.as_deref(), Some("error"), "{frame:?}");
    assert_eq!(frame.json()["code"], "pair_paused", "{frame:?}");
    assert!(resumed.next().await.is_none(), "the stream ends");
}
