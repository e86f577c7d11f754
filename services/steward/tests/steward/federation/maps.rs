//! Namespace maps take effect at the puller (federation-protocol.md §6.2): a pull through a pair
//! may name one of our namespaces the pair agreed on, the source filters for it, and every record
//! the thread's job admits is stored there, whatever its body names, with its id, body and
//! signature unchanged; the job keeps the namespace across a restart. Other namespaces are
//! refused, and a pull that names none behaves as before. A push fills a thread as its pull would.

use serde_json::{json, Value};
use syncropel_client::api::StartPair;
use syncropel_federation::state as fstate;
use syncropel_protocol::NamespaceMap;
use syncropel_testkit::{error_code, Node, Options, TENANT};

use super::{approving, changes_as, config, start};

const BOB: &str = "did:sync:user:bob";

fn map(local: &str, peer: &str) -> NamespaceMap {
    NamespaceMap {
        local: local.into(),
        peer: peer.into(),
    }
}

/// A{research, inbox} paired with B{my-team, archive} by maps, and `default` by name: A, B and
/// the pair's id. A has not registered `inbox`.
async fn mapped() -> (Node, Node, String) {
    let a = start().await;
    let b = approving(None, &[a.did()]).await;
    a.register_namespace("research").await;
    for ns in ["my-team", "archive"] {
        b.register_namespace(ns).await;
    }
    let request = StartPair {
        peer_url: b.url().into(),
        namespaces: vec!["default".into()],
        maps: vec![map("research", "my-team"), map("inbox", "archive")],
        ..StartPair::default()
    };
    let started = a.client.start_pairing(&request).await.unwrap();
    assert_eq!(started.status(), 200, "{}", started.json());
    let pair_id = started.json()["pair_id"].as_str().unwrap().to_string();
    (a, b, pair_id)
}

/// `POST /v1/sync/pull` naming `namespace`, raw: for pulls that are refused.
async fn pull_into(node: &Node, thread: &str, peer: &str, namespace: &str) -> (u16, Value) {
    node.post(
        "/v1/sync/pull",
        &json!({"thread": thread, "peer": peer, "namespace": namespace}),
    )
    .await
}

/// `ours` is `theirs` as signed (same id, body, signature and signer), stored in `namespace`.
fn same_record_in(ours: &Value, theirs: &Value, namespace: &str) {
    for field in ["id", "body", "sig", "signer", "thread", "actor", "clock"] {
        assert_eq!(ours[field], theirs[field], "{field}: {ours} vs {theirs}");
    }
    assert_eq!(ours["namespace"], namespace, "{ours}");
}

#[tokio::test]
async fn a_mapped_pull_stores_the_peers_records_in_our_namespace_and_keeps_it() {
    let (a, b, pair_id) = mapped().await;
    let thread = "th_fed_mapped";
    let mut sent = Vec::new();
    for clock in 1..=2 {
        sent.push(
            b.emit(
                thread,
                BOB,
                clock,
                json!({"namespace": "my-team", "n": clock}),
            )
            .await,
        );
    }
    // B's `default` is not what the map lands in `research`: left out.
    let other = b
        .emit(thread, BOB, 3, json!({"namespace": "default", "n": 3}))
        .await;

    let pulled = a.pull_into(thread, &b.did(), "research").await;
    assert_eq!(pulled["pulled"], 2, "{pulled}");
    assert_eq!(pulled["quarantined"], 0, "{pulled}");
    for theirs in &sent {
        let ours = a.record(theirs["id"].as_str().unwrap()).await.unwrap();
        same_record_in(&ours, theirs, "research");
        assert_eq!(ours["body"]["namespace"], "my-team");
    }
    assert_eq!(a.record(other["id"].as_str().unwrap()).await, None);
    let listed = a.records(thread).await;
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|r| r["namespace"] == "research"),
        "{listed:?}"
    );
    assert!(a.quarantine(Some(&pair_id)).await.is_empty());

    // The job keeps the namespace, across a restart, and without it being named again.
    let stopped = a.stop().await;
    let a = Node::start(Options {
        federation: config(),
        ..Options::restart(stopped)
    })
    .await;
    let later = b
        .emit(thread, BOB, 4, json!({"namespace": "my-team", "n": 4}))
        .await;
    let ours = a.arrived(later["id"].as_str().unwrap()).await;
    same_record_in(&ours, &later, "research");
    let again = a.pull(thread, &b.did()).await;
    assert_eq!(again["pulled"], 0, "{again}");
    assert_eq!(again["quarantined"], 0, "{again}");
}

#[tokio::test]
async fn a_pull_names_only_a_namespace_the_pair_agreed_on_from_our_side() {
    let (a, b, _) = mapped().await;
    a.register_namespace("finance").await;
    let thread = "th_fed_mapped_refused";
    b.emit(thread, BOB, 1, json!({"namespace": "my-team"}))
        .await;
    // Registered here, but not part of the pair.
    let (status, answer) = pull_into(&a, thread, &b.did(), "finance").await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(error_code(&answer), "CONSENT_DENIED");
    // The peer's side of a map is not ours to land in.
    let (status, answer) = pull_into(&a, thread, &b.did(), "my-team").await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(error_code(&answer), "CONSENT_DENIED");
    // Agreed, but not registered here.
    let (status, answer) = pull_into(&a, thread, &b.did(), "inbox").await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(error_code(&answer), "NAMESPACE_REJECTED");
    // Only through a pair.
    let (status, answer) = a
        .post(
            "/v1/sync/pull",
            &json!({"thread": thread, "peer": "http://127.0.0.1:9", "peer_token": "t",
                    "namespace": "research"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_code(&answer), "VALIDATION_ERROR");
    // Nothing was pulled by any of them.
    assert!(a.records(thread).await.is_empty());

    // A job that stores each record in its own namespace does not switch.
    let plain = "th_fed_mapped_plain";
    let own = b.emit(plain, BOB, 1, json!({})).await;
    a.pull(plain, &b.did()).await;
    let (status, answer) = pull_into(&a, plain, &b.did(), "research").await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(error_code(&answer), "precondition_failed");
    assert_eq!(
        a.record(own["id"].as_str().unwrap()).await.unwrap()["namespace"],
        "default"
    );
}

#[tokio::test]
async fn a_pull_that_names_no_namespace_stores_records_in_their_own() {
    let (a, b, _) = mapped().await;
    let thread = "th_fed_unmapped";
    let plain = b.emit(thread, BOB, 1, json!({"n": 1})).await;
    let mapped = b
        .emit(thread, BOB, 2, json!({"namespace": "my-team", "n": 2}))
        .await;
    let pulled = a.pull(thread, &b.did()).await;
    assert_eq!(pulled["pulled"], 1, "{pulled}");
    let ours = a.record(plain["id"].as_str().unwrap()).await.unwrap();
    same_record_in(&ours, &plain, "default");
    // `my-team` lands whole only in `research`, and only when the pull names it.
    assert_eq!(a.record(mapped["id"].as_str().unwrap()).await, None);
}

#[tokio::test]
async fn a_push_is_stored_where_the_pull_of_its_thread_stores_records() {
    let (a, b, pair_id) = mapped().await;
    let thread = "th_fed_mapped_pushed";
    let sent = b
        .emit(thread, &b.did(), 1, json!({"namespace": "my-team"}))
        .await;
    let a_token = a.outbound_token(&pair_id).await.unwrap();
    let query = format!("thread={thread}&target_namespace=research");
    let (status, page) = changes_as(&b, &a_token, &a.did(), &query).await;
    assert_eq!(status, 200, "{page}");
    let items = page["records"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1, "{page}");

    // A pulls the thread into `research` (its cursor row, with no job running, so that only the
    // push brings the record).
    let row = fstate::PullCursor {
        target_namespace: Some("research".into()),
        ..fstate::PullCursor::default()
    };
    let cursor = fstate::put_cursor(&pair_id, thread, &row);
    let store = a.steward.state.store.as_ref();
    store.write(TENANT, Vec::new(), vec![cursor]).await.unwrap();
    let b_token = b.outbound_token(&pair_id).await.unwrap();
    let request = a
        .steward
        .http
        .post(format!("{}/v1/sync/records", a.url()))
        .bearer_auth(&b_token)
        .header("x-syncropel-federation", "1")
        .json(&json!({"records": items}));
    let (status, pushed) = a.steward.send(request).await;
    assert_eq!(status, 200, "{pushed}");
    assert_eq!(pushed["accepted"], 1, "{pushed}");
    let ours = a.record(sent["id"].as_str().unwrap()).await.unwrap();
    same_record_in(&ours, &sent, "research");
}
