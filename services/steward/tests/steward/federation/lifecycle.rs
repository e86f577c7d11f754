//! The pair lifecycle (section 8): pausing either side, a peer that revoked while we were away,
//! failing and unreachable peers, and a source whose store was made anew.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use syncropel_client::api::PairReason;
use syncropel_federation::state as fstate;
use syncropel_testkit::{error_code, eventually, Node, Options, TENANT};

use super::{config, ms, paired, try_pull, DEADLINE};

#[tokio::test]
async fn pausing_either_side_stops_the_flow_until_resume() {
    let (a, b, pair_id) = paired().await;
    let thread = "th_fed_pause_flow";
    let actor = "did:sync:user:bob";
    a.pull(thread, &b.did()).await;
    let first = b.emit(thread, actor, 1, json!({"c": 1})).await;
    a.arrived(first["id"].as_str().unwrap()).await;

    let reason = PairReason::default();
    for (side, name) in [(&a, "puller"), (&b, "source")] {
        let paused = side.client.pause_pair(&pair_id, &reason).await.unwrap();
        assert_eq!(paused.status(), 200, "{}", paused.json());
        let clock = if name == "puller" { 2 } else { 3 };
        let held = b.emit(thread, actor, clock, json!({"c": clock})).await;
        tokio::time::sleep(ms(800)).await;
        assert!(
            a.record(held["id"].as_str().unwrap()).await.is_none(),
            "a record crossed a pair paused on the {name} side"
        );
        if name == "puller" {
            let (status, refusal) = try_pull(&a, thread, &b.did()).await;
            assert_eq!(status, 403, "{refusal}");
            assert_eq!(error_code(&refusal), "pair_paused");
        }
        let resumed = side.client.resume_pair(&pair_id, &reason).await.unwrap();
        assert_eq!(resumed.status(), 200, "{}", resumed.json());
        a.arrived(held["id"].as_str().unwrap()).await;
    }
    assert_eq!(a.ids(thread).await.len(), 3);
}

#[tokio::test]
async fn a_peer_that_revoked_while_we_were_away_degrades_the_pair() {
    let (a, b, pair_id) = paired().await;
    let thread = "th_fed_away";
    a.pull(thread, &b.did()).await;
    let away = a.stop().await;

    let revoked = b
        .client
        .revoke_pair(&pair_id, &PairReason::default())
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200, "{}", revoked.json());

    // Back on its address, A resumes its pull job at startup.
    let a = Node::start(Options {
        federation: config(),
        ..Options::restart(away)
    })
    .await;
    let pair = eventually("degraded", DEADLINE, || async {
        let pair = a.pair(&pair_id).await;
        (pair["state"] == "degraded" && pair["sync_health"]["status"] == "failing").then_some(pair)
    })
    .await;
    assert_eq!(pair["degraded_cause"], "auth_401", "{pair}");
    assert_eq!(pair["sync_health"]["status"], "failing", "{pair}");
    assert_eq!(
        pair["sync_health"]["last_error"]["http_status"], 401,
        "{pair}"
    );

    // Pairing again starts the generation after the revoked one, on both sides.
    let again = a.pair_with(b.url()).await;
    assert_eq!(again["generation"], 2, "{again}");
    let theirs = b.pair(&pair_id).await;
    assert_eq!(theirs["state"], "active", "{theirs}");
    assert_eq!(theirs["generation"], 2, "{theirs}");
    assert_eq!(
        again["tokens"]["outbound"]["token_id"],
        theirs["tokens"]["inbound"]["token_id"]
    );
    // The pull job of the old generation goes on with the new credential.
    let record = b.emit(thread, "did:sync:user:bob", 1, json!({})).await;
    a.pull(thread, &b.did()).await;
    a.arrived(record["id"].as_str().unwrap()).await;
}

#[tokio::test]
async fn a_failing_peer_shows_in_sync_health_and_the_pair_stays_active() {
    let (a, b, pair_id) = paired().await;
    a.pull("th_fed_health", &b.did()).await;
    b.stop().await;
    let pair = eventually("failing", DEADLINE, || async {
        let pair = a.pair(&pair_id).await;
        (pair["sync_health"]["status"] == "failing").then_some(pair)
    })
    .await;
    assert_eq!(pair["state"], "active", "{pair}");
    assert_eq!(
        pair["sync_health"]["last_error"]["code"], "CONNECT_REFUSED",
        "{pair}"
    );
}

#[tokio::test]
async fn a_source_whose_store_was_made_anew_is_pulled_again_from_the_start() {
    let (a, b, _) = paired().await;
    let thread = "th_fed_epoch";
    let actor = "did:sync:user:bob";
    let first = b.emit(thread, actor, 1, json!({"c": 1})).await;
    let pulled = a.pull(thread, &b.did()).await;
    assert_eq!(pulled["pulled"], 1, "{pulled}");
    // B's store gets a new life (as after an import): another epoch and cursor key.
    let fresh = json!({"epoch": "0123456789abcdef", "key": hex::encode([7u8; 32])}).to_string();
    b.steward
        .state
        .store
        .write(
            TENANT,
            Vec::new(),
            vec![syncropel_store::StateChange::put(
                fstate::SYNC_META,
                "cursor",
                fresh,
            )],
        )
        .await
        .unwrap();
    let second = b.emit(thread, actor, 2, json!({"c": 2})).await;
    // The held cursor is of the old life, under another key: refused (400 INVALID_CURSOR, as the
    // mac is checked first), the puller starts again (its pull job may have been first; either
    // way the pull succeeds). With the store's key kept it is 409 CURSOR_EPOCH_MISMATCH (feed.rs).
    let again = a.pull(thread, &b.did()).await;
    assert_eq!(again["quarantined"], 0, "{again}");
    a.arrived(second["id"].as_str().unwrap()).await;
    let third = b.emit(thread, actor, 3, json!({"c": 3})).await;
    a.arrived(third["id"].as_str().unwrap()).await;
    assert_eq!(a.ids(thread).await.len(), 3);
    assert!(a.record(first["id"].as_str().unwrap()).await.is_some());
}

/// A peer that has not answered for more than a day degrades the pair (`unreachable_24h`, read
/// from the cursor row's last success, so it holds across restarts); when the peer is back the
/// next successful pull recovers it.
#[tokio::test]
async fn a_peer_unreachable_for_a_day_degrades_the_pair_and_recovers() {
    let (a, b, pair_id) = paired().await;
    let thread = "th_fed_unreachable";
    a.pull(thread, &b.did()).await;
    let down = b.stop().await;
    // The last success, a day and an hour ago.
    last_pulled_ago(&a, &pair_id, thread, 25 * 3600).await;
    let pair = eventually("degraded", DEADLINE, || async {
        let pair = a.pair(&pair_id).await;
        (pair["state"] == "degraded").then_some(pair)
    })
    .await;
    assert_eq!(pair["degraded_cause"], "unreachable_24h", "{pair}");

    let b = Node::start(Options {
        federation: config(),
        ..Options::restart(down)
    })
    .await;
    let record = b.emit(thread, "did:sync:user:bob", 7, json!({})).await;
    a.arrived(record["id"].as_str().unwrap()).await;
    let pair = eventually("recovered", DEADLINE, || async {
        let pair = a.pair(&pair_id).await;
        (pair["state"] == "active").then_some(pair)
    })
    .await;
    assert_eq!(pair["degraded_cause"], Value::Null, "{pair}");
}

/// A degraded pair that has heard nothing from its peer for 90 days is revoked on this side
/// (`auto_archive_90d`, federation-protocol.md §3.4), its revoke record saying so.
#[tokio::test]
async fn a_pair_silent_for_ninety_days_is_archived() {
    let (a, b, pair_id) = paired().await;
    let thread = "th_fed_archived";
    a.pull(thread, &b.did()).await;
    let _down = b.stop().await;
    last_pulled_ago(&a, &pair_id, thread, 91 * 24 * 3600).await;
    let pair = eventually("archived", DEADLINE, || async {
        let pair = a.pair(&pair_id).await;
        (pair["state"] == "revoked").then_some(pair)
    })
    .await;
    assert_eq!(pair["state"], "revoked", "{pair}");
    let (_, records) = a
        .get("/v1/records?thread=th_federation_pairs&limit=1000")
        .await;
    let reasons: Vec<&Value> = records["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["body"]["kind"] == "syncropel.federation.pair_revoke.v1")
        .map(|r| &r["body"]["reason"])
        .collect();
    assert_eq!(reasons, [&json!("auto_archive_90d")], "{records}");
    let (_, audit) = a
        .get("/v1/records?thread=th_audit_federation_pairs&limit=1000")
        .await;
    assert!(audit.to_string().contains("auto_archive_90d"), "{audit}");
}

/// A record of the peer that has waited more than a day in quarantine for its signer degrades
/// the pair (`SIGNER_UNRESOLVED`) at the periodic check; while it waits, a successful pull does
/// not recover the pair; once it is gone, the next one does.
#[tokio::test]
async fn a_signer_unresolved_for_a_day_degrades_the_pair_until_it_resolves() {
    use syncropel_federation::renewal;
    use syncropel_store::StateChange;
    let (a, b, pair_id) = paired().await;
    let thread = "th_fed_unresolved";
    a.pull(thread, &b.did()).await;
    let (fed, tenant) = (&a.steward.state.federation, &a.steward.tenant);
    let store = a.steward.state.store.clone();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let key = format!("{pair_id}\nrecord-waiting");
    let entry = json!({"source": pair_id, "id": "record-waiting", "thread": thread,
                       "actor": "did:sync:user:someone", "code": "SIGNER_UNRESOLVED",
                       "at": now - 3600});
    let wait = |entry: Value| StateChange::put(fstate::QUARANTINE, &key, entry.to_string());
    store
        .write(TENANT, Vec::new(), vec![wait(entry.clone())])
        .await
        .unwrap();
    renewal::check(fed, tenant).await.unwrap();
    assert_eq!(
        a.pair(&pair_id).await["state"],
        "active",
        "an hour is not a day"
    );

    let mut old = entry;
    old["at"] = json!(now - 25 * 3600);
    store
        .write(TENANT, Vec::new(), vec![wait(old)])
        .await
        .unwrap();
    renewal::check(fed, tenant).await.unwrap();
    let pair = a.pair(&pair_id).await;
    assert_eq!(
        (&pair["state"], &pair["degraded_cause"]),
        (&json!("degraded"), &json!("SIGNER_UNRESOLVED")),
        "{pair}"
    );
    let record = b.emit(thread, "did:sync:user:bob", 1, json!({})).await;
    a.arrived(record["id"].as_str().unwrap()).await;
    assert_eq!(a.pair(&pair_id).await["state"], "degraded", "still waiting");

    store
        .write(
            TENANT,
            Vec::new(),
            vec![StateChange::delete(fstate::QUARANTINE, &key)],
        )
        .await
        .unwrap();
    let record = b.emit(thread, "did:sync:user:bob", 2, json!({})).await;
    a.arrived(record["id"].as_str().unwrap()).await;
    let pair = eventually("recovered", DEADLINE, || async {
        let pair = a.pair(&pair_id).await;
        (pair["state"] == "active").then_some(pair)
    })
    .await;
    assert_eq!(pair["degraded_cause"], Value::Null, "{pair}");
}

/// Makes the last successful pull of `thread` through the pair `secs` old (the cursor row the
/// lifecycle reads it from).
async fn last_pulled_ago(node: &Node, pair_id: &str, thread: &str, secs: i64) {
    use syncropel_federation::state::{pull_cursor, put_cursor};
    let store = node.steward.state.store.clone();
    let mut cursor = pull_cursor(store.as_ref(), TENANT, pair_id, thread)
        .await
        .unwrap()
        .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    cursor.last_sync_at = Some(now - secs);
    store
        .write(
            TENANT,
            Vec::new(),
            vec![put_cursor(pair_id, thread, &cursor)],
        )
        .await
        .unwrap();
}

/// `GET /v1/sync/health` and a pair's `/stats` count what the jobs pulled in the last hour and
/// how the pairs and jobs stand (federation-protocol.md §5.9).
#[tokio::test]
async fn sync_health_and_pair_stats_count_what_was_pulled() {
    let (a, b, pair_id) = paired().await;
    let thread = "th_fed_health";
    a.pull(thread, &b.did()).await;
    for n in 1..=3 {
        let record = b
            .emit(thread, "did:sync:user:bob", n, json!({"n": n}))
            .await;
        a.arrived(record["id"].as_str().unwrap()).await;
    }
    let (status, health) = eventually("counted", DEADLINE, || async {
        let (status, health) = a.get("/v1/sync/health").await;
        (health["records_pulled_last_hour"].as_u64() >= Some(3)).then_some((status, health))
    })
    .await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["object"], "sync_health");
    assert_eq!(health["pairs_total"], 1);
    assert_eq!(health["pairs_by_state"]["active"], 1, "{health}");
    assert!(health["jobs_total"].as_u64() >= Some(1), "{health}");

    let (status, stats) = a.get(&format!("/v1/sync/pairs/{pair_id}/stats")).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["pair_id"], pair_id.as_str());
    assert!(
        stats["records_pulled_last_hour"].as_u64() >= Some(3),
        "{stats}"
    );
    assert_eq!(stats["jobs"][0]["thread"], thread, "{stats}");
    let (status, _) = a.get("/v1/sync/pairs/fed_unknown/stats").await;
    assert_eq!(status, 404);
    let reader = a.steward.token(&["records:read"], &[]).await;
    let (status, _) = a.steward.get(&reader, "/v1/sync/health").await;
    assert_eq!(status, 403);
}

/// A handshake unfinished after a day (an approval or a confirm that never came) is revoked at
/// the periodic pair check (`handshake_rejected`); a younger one waits on.
#[tokio::test]
async fn a_handshake_unfinished_after_a_day_is_revoked() {
    use syncropel_federation::{own_record, renewal};
    use syncropel_protocol::pair::{init_body, pair_id, InitParams};
    use syncropel_protocol::{Keypair, PAIRS_THREAD};
    let a = Node::start(Options {
        federation: config(),
        ..Options::default()
    })
    .await;
    let (fed, tenant) = (&a.steward.state.federation, &a.steward.tenant);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut ids = Vec::new();
    for age in [25 * 3600, 3600] {
        let peer = Keypair::generate().did_key();
        let id = pair_id(&a.did(), &peer);
        let body = init_body(&InitParams {
            pair_id: &id,
            generation: 1,
            peer_did: &peer,
            peer_url: "http://127.0.0.1:9",
            nonce_sha256: &"0".repeat(64),
            peer_manifest_sha256: &"0".repeat(64),
            maps: &[],
            mode: "polling",
            created_at: now - age,
        });
        let record = own_record(tenant, PAIRS_THREAD, body, Vec::new());
        a.steward
            .state
            .store
            .write(TENANT, vec![record], Vec::new())
            .await
            .unwrap();
        ids.push(id);
    }
    // The steward's own periodic check may get there first; either way the check revokes.
    renewal::check(fed, tenant).await.unwrap();
    assert_eq!(a.pair(&ids[0]).await["state"], "revoked");
    assert_eq!(a.pair(&ids[1]).await["state"], "establishing");
    let (_, records) = a
        .get("/v1/records?thread=th_federation_pairs&limit=1000")
        .await;
    assert!(
        records.to_string().contains("handshake_rejected"),
        "{records}"
    );
}

/// An on-demand pair pulls only when asked: its job waits, `POST /v1/sync/pull` brings what is
/// new, and back in `polling` the job pulls by itself again. A pair's own poll interval shows in
/// its view.
#[tokio::test]
async fn an_on_demand_pair_pulls_only_when_asked() {
    let (a, b, pair_id) = paired().await;
    let thread = "th_fed_on_demand";
    a.pull(thread, &b.did()).await;
    let config = format!("/v1/federation/pairs/{pair_id}/config");
    let (status, view) = a.post(&config, &json!({"mode": "on-demand"})).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["mode"], "on-demand");
    eventually("the job waits", DEADLINE, || async {
        let jobs = a.pair(&pair_id).await["sync_health"]["jobs"].clone();
        (jobs[0]["feed"] == "on-demand" && jobs[0]["status"] == "idle").then_some(())
    })
    .await;

    let held = b
        .emit(thread, "did:sync:user:bob", 1, json!({"n": 1}))
        .await;
    let held = held["id"].as_str().unwrap();
    tokio::time::sleep(ms(1500)).await;
    assert!(a.record(held).await.is_none(), "pulled without being asked");
    let pulled = a.pull(thread, &b.did()).await;
    assert_eq!(pulled["pulled"], 1, "{pulled}");
    assert!(a.record(held).await.is_some());

    let (status, view) = a
        .post(
            &config,
            &json!({"mode": "polling", "poll_interval_secs": 30}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["poll_interval_secs"], 30);
    let next = b
        .emit(thread, "did:sync:user:bob", 2, json!({"n": 2}))
        .await;
    a.arrived(next["id"].as_str().unwrap()).await;
}

/// A pair's trace lists its recent pulls, newest first: what each brought, idle polls folded
/// into one event, and why the job stopped when the pair was paused (`spl fleet sync trace`).
#[tokio::test]
async fn a_pairs_trace_shows_its_recent_pulls() {
    let (a, b, pair_id) = paired().await;
    let thread = "th_fed_trace";
    a.pull(thread, &b.did()).await;
    for n in 1..=2 {
        let record = b
            .emit(thread, "did:sync:user:bob", n, json!({"n": n}))
            .await;
        a.arrived(record["id"].as_str().unwrap()).await;
    }
    let trace_path = format!("/v1/sync/pairs/{pair_id}/trace");
    let trace = eventually("pulls traced", DEADLINE, || async {
        let (status, trace) = a.get(&trace_path).await;
        assert_eq!(status, 200, "{trace}");
        let events = trace["events"].as_array().unwrap().clone();
        let pulled: u64 = events.iter().filter_map(|e| e["pulled"].as_u64()).sum();
        (pulled >= 2).then_some(trace)
    })
    .await;
    assert_eq!(trace["object"], "sync_trace");
    assert_eq!(trace["pair_id"], pair_id.as_str());
    let events = trace["events"].as_array().unwrap();
    assert!(events.len() <= 100);
    let pulled = events.iter().find(|e| e["outcome"] == "pulled").unwrap();
    assert_eq!(pulled["thread"], thread);
    assert_eq!(pulled["via"], "source");
    // Newest first; idle polls in a row are one event.
    let times: Vec<i64> = events
        .iter()
        .map(|e| e["last_at"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    for pair in events.windows(2) {
        let idle = |e: &Value| e["outcome"] == "empty";
        assert!(!(idle(&pair[0]) && idle(&pair[1])), "{trace}");
    }

    let reason = PairReason::default();
    let paused = a.client.pause_pair(&pair_id, &reason).await.unwrap();
    assert_eq!(paused.status(), 200, "{}", paused.json());
    eventually("the parked job traced", DEADLINE, || async {
        let (_, trace) = a.get(&format!("{trace_path}?limit=1")).await;
        let newest = &trace["events"][0];
        (newest["outcome"] == "parked" && newest["error"]["code"] == "pair_paused").then_some(())
    })
    .await;
    let (_, one) = a.get(&format!("{trace_path}?limit=1")).await;
    assert_eq!(one["events"].as_array().unwrap().len(), 1);

    let (status, _) = a.get("/v1/sync/pairs/fed_unknown/trace").await;
    assert_eq!(status, 404);
    let (status, body) = a.get(&format!("{trace_path}?limit=0")).await;
    assert_eq!((status, error_code(&body)), (400, "VALIDATION_ERROR"));
    let reader = a.steward.token(&["records:read"], &[]).await;
    let (status, _) = a.steward.get(&reader, &trace_path).await;
    assert_eq!(status, 403);
}
