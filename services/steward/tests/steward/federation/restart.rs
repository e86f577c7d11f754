//! Restart (section 7): pair state is a fold of records, and pull jobs resume from their cursor
//! rows (the steward's startup resumes them).

use serde_json::{json, Value};
use syncropel_client::api::PairReason;
use syncropel_testkit::{Node, Options};

use super::{config, paired};

fn without_health(mut list: Value) -> Value {
    for pair in list["data"].as_array_mut().unwrap() {
        pair.as_object_mut().unwrap().remove("sync_health");
    }
    list
}

#[tokio::test]
async fn pair_state_is_rebuilt_from_records_after_a_restart_and_jobs_resume() {
    let (a, b, pair_id) = paired().await;
    let thread = "th_fed_restart";
    let first = b
        .emit(thread, "did:sync:user:bob", 1, json!({"c": 1}))
        .await;
    a.pull(thread, &b.did()).await;
    a.arrived(first["id"].as_str().unwrap()).await;
    // Some history: a pause and a resume.
    let reason = PairReason::default();
    let paused = a.client.pause_pair(&pair_id, &reason).await.unwrap();
    assert_eq!(paused.status(), 200, "{}", paused.json());
    let resumed = a.client.resume_pair(&pair_id, &reason).await.unwrap();
    assert_eq!(resumed.status(), 200, "{}", resumed.json());
    let before = a.client.federation_pairs().await.unwrap().into_json();
    let stopped = a.stop().await;

    let a = Node::start(Options {
        federation: config(),
        ..Options::restart(stopped)
    })
    .await;
    let after = a.client.federation_pairs().await.unwrap();
    assert_eq!(after.status(), 200);
    let after = after.into_json();
    assert_eq!(without_health(after), without_health(before));
    assert_eq!(a.pair(&pair_id).await["state"], "active");
    // The pull job came back from its cursor row: new records arrive without another pull.
    let second = b
        .emit(thread, "did:sync:user:bob", 2, json!({"c": 2}))
        .await;
    a.arrived(second["id"].as_str().unwrap()).await;
    assert_eq!(a.ids(thread).await.len(), 2);
    // And B still pulls from A.
    let mine = a
        .emit("th_fed_restart_back", "did:sync:user:alice", 1, json!({}))
        .await;
    let pulled = b.pull("th_fed_restart_back", &a.did()).await;
    assert_eq!(pulled["pulled"], 1, "{pulled}");
    b.arrived(mine["id"].as_str().unwrap()).await;
}

/// A legacy one-thread pair is rebuilt from `th_sync_control` after a restart: paused stays
/// paused, and once resumed (or kicked) its job runs again and catches up from its cursor.
#[tokio::test]
async fn legacy_pairs_survive_a_restart_and_a_kick_runs_their_job_now() {
    use syncropel_client::api::CreateSyncPair;
    use syncropel_testkit::eventually;
    let (a, b, _) = paired().await;
    let (live, held) = ("th_fed_legacy_live", "th_fed_legacy_held");
    let mut ids = Vec::new();
    for thread in [live, held] {
        let request = CreateSyncPair {
            peer_did: b.did(),
            peer_url: Some(b.url().into()),
            thread_id: thread.into(),
            peer_token: None,
        };
        let created = a.client.create_sync_pair(&request).await.unwrap();
        assert_eq!(created.status(), 201, "{}", created.json());
        ids.push(created.pair_id.clone());
    }
    let first = b.emit(live, "did:sync:user:bob", 1, json!({})).await;
    a.arrived(first["id"].as_str().unwrap()).await;
    let paused = a.client.pause_sync_pair(&ids[1]).await.unwrap();
    assert_eq!(paused.status(), 200, "{}", paused.json());
    let before = legacy_rows(&a).await;
    let stopped = a.stop().await;
    let second = b.emit(live, "did:sync:user:bob", 2, json!({})).await;
    let waiting = b.emit(held, "did:sync:user:bob", 1, json!({})).await;

    let a = Node::start(Options {
        federation: config(),
        ..Options::restart(stopped)
    })
    .await;
    let after = legacy_rows(&a).await;
    assert_eq!(after, before, "the same legacy pairs");
    a.arrived(second["id"].as_str().unwrap()).await;
    let held_pair = a.client.sync_pair(&ids[1]).await.unwrap().into_json();
    assert_eq!(held_pair["state"], "paused", "{held_pair}");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(a.record(waiting["id"].as_str().unwrap()).await.is_none());

    let resumed = a.client.resume_sync_pair(&ids[1]).await.unwrap();
    assert_eq!(resumed.status(), 200, "{}", resumed.json());
    let kicked = a.client.kick_sync_pair(&ids[1]).await.unwrap();
    assert_eq!(kicked.status(), 200, "{}", kicked.json());
    a.arrived(waiting["id"].as_str().unwrap()).await;
    let pair = eventually("running", std::time::Duration::from_secs(20), || async {
        let pair = a.client.sync_pair(&ids[1]).await.unwrap().into_json();
        (pair["state"] == "running").then_some(pair)
    })
    .await;
    assert_eq!(pair["thread_id"], held);
    let (status, _) = a.post("/v1/sync/pairs/sp_unknown/kick", &json!({})).await;
    assert_eq!(status, 404, "kicking no pair");
}

/// Each legacy pair of `node` as `[pair_id, thread_id, peer_did]`, sorted.
async fn legacy_rows(node: &Node) -> Vec<Value> {
    let list = node.client.sync_pairs().await.unwrap().into_json();
    let mut rows: Vec<Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| json!([p["pair_id"], p["thread_id"], p["peer_did"]]))
        .collect();
    rows.sort_by_key(|r| r.to_string());
    rows
}

/// A pair set to `continuous` pulls over the source's continuous feed (its job says so), and
/// survives the source restarting mid-stream: everything written before and after arrives, once.
#[tokio::test]
async fn a_continuous_pair_survives_its_source_restarting_mid_stream() {
    use syncropel_testkit::eventually;
    let (a, b, pair_id) = paired().await;
    let thread = "th_fed_continuous_restart";
    let (status, view) = a
        .post(
            &format!("/v1/federation/pairs/{pair_id}/config"),
            &json!({"mode": "continuous"}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["mode"], "continuous");
    let first = b
        .emit(thread, "did:sync:user:bob", 1, json!({"n": 1}))
        .await;
    a.pull(thread, &b.did()).await;
    a.arrived(first["id"].as_str().unwrap()).await;
    let deadline = std::time::Duration::from_secs(20);
    eventually("a continuous feed", deadline, || async {
        (feed_of(&a, &pair_id).await == "continuous").then_some(())
    })
    .await;
    let mut ids = vec![first["id"].clone()];
    for n in 2..=3 {
        let record = b
            .emit(thread, "did:sync:user:bob", n, json!({"n": n}))
            .await;
        a.arrived(record["id"].as_str().unwrap()).await;
        ids.push(record["id"].clone());
    }

    let stopped = b.stop().await;
    let b = Node::start(Options {
        federation: config(),
        ..Options::restart(stopped)
    })
    .await;
    for n in 4..=5 {
        let record = b
            .emit(thread, "did:sync:user:bob", n, json!({"n": n}))
            .await;
        a.arrived(record["id"].as_str().unwrap()).await;
        ids.push(record["id"].clone());
    }
    eventually("the feed again", deadline, || async {
        (feed_of(&a, &pair_id).await == "continuous").then_some(())
    })
    .await;
    let held: Vec<Value> = a
        .records(thread)
        .await
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(held, ids, "every record, once, in order");
}

/// How the first pull job of the pair waits for records (`longpoll` or `continuous`).
async fn feed_of(node: &Node, pair_id: &str) -> String {
    let pair = node.pair(pair_id).await;
    pair["sync_health"]["jobs"][0]["feed"]
        .as_str()
        .unwrap_or("")
        .to_string()
}
