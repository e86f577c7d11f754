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
