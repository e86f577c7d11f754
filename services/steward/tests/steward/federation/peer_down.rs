//! A peer that is down, then comes up (section 6): backoff, then catching up without
//! duplicates.

use std::collections::BTreeSet;
use std::time::Instant;

use serde_json::json;
use syncropel_protocol::Keypair;
use syncropel_testkit::{eventually, Node, Options};

use super::{config, legacy, legacy_pair, ms, start, DEADLINE};

#[tokio::test]
async fn a_peer_that_is_down_backs_off_then_catches_up_without_duplicates() {
    // The peer's store holds a sync token for us; the peer is down, its port held and refusing.
    let key = Keypair::generate();
    let b = Node::start(Options {
        federation: config(),
        keypair: Some(key.clone()),
        ..Options::default()
    })
    .await;
    let token = b
        .steward
        .token_named("puller", &["federation:sync_pull"], &[])
        .await;
    let down = b.stop().await;
    let a = start().await;
    let thread = "th_fed_down";
    let id = legacy_pair(&a, &key.did_key(), &down.url(), thread, &token).await;

    // Failing, retried with a growing then capped backoff.
    let mut ceilings = Vec::new();
    let mut retries = Vec::new();
    let start = Instant::now();
    let pair = loop {
        let pair = legacy(&a, &id).await;
        if pair["state"] == "failing" {
            ceilings.push(pair["backoff_ceiling_ms"].as_u64().unwrap());
            retries.push(pair["retries"].as_u64().unwrap());
        }
        if pair["retries"].as_u64().unwrap() >= 6 {
            break pair;
        }
        assert!(start.elapsed() < DEADLINE, "no sixth retry: {pair}");
        tokio::time::sleep(ms(10)).await;
    };
    assert_eq!(pair["state"], "failing", "{pair}");
    assert_eq!(pair["last_error"]["code"], "CONNECT_REFUSED", "{pair}");
    assert!(retries.windows(2).all(|w| w[0] <= w[1]), "{retries:?}");
    assert!(ceilings.windows(2).all(|w| w[0] <= w[1]), "{ceilings:?}");
    assert!(ceilings[0] < 400, "{ceilings:?}");
    assert_eq!(*ceilings.last().unwrap(), 400, "{ceilings:?}");
    assert!(ceilings.iter().all(|c| *c <= 400), "{ceilings:?}");

    // The peer comes up on that port with records waiting.
    let b = Node::start(Options {
        federation: config(),
        ..Options::restart(down)
    })
    .await;
    let mut expected = BTreeSet::new();
    for clock in 1..=5 {
        let record = b
            .emit(thread, "did:sync:user:bob", clock, json!({"c": clock}))
            .await;
        expected.insert(record["id"].as_str().unwrap().to_string());
    }
    eventually("catching up", DEADLINE, || async {
        (a.ids(thread).await == expected).then_some(())
    })
    .await;
    let pair = eventually("running", DEADLINE, || async {
        let pair = legacy(&a, &id).await;
        (pair["state"] == "running").then_some(pair)
    })
    .await;
    assert_eq!(pair["retries"], 0, "{pair}");
    // New records follow within the longpoll; nothing is doubled.
    for clock in 6..=8 {
        let record = b
            .emit(thread, "did:sync:user:bob", clock, json!({"c": clock}))
            .await;
        expected.insert(record["id"].as_str().unwrap().to_string());
    }
    eventually("the rest", DEADLINE, || async {
        (a.ids(thread).await == expected).then_some(())
    })
    .await;
    assert_eq!(a.records(thread).await.len(), 8);
    assert!(a.quarantine(Some(&id)).await.is_empty());
}

/// A pull job far into its backoff tries again at once when the peer is heard from another way:
/// the peer pulled from us, so it is up (federation-protocol.md §5.5).
#[tokio::test]
async fn hearing_from_a_peer_ends_the_backoff_of_the_pulls_from_it() {
    use syncropel_federation::FederationConfig;
    // Full jitter over an hour: without the reset, a retry within the test's deadline is rare.
    let a = Node::start(Options {
        federation: FederationConfig {
            backoff_base: std::time::Duration::from_secs(3600),
            backoff_cap: std::time::Duration::from_secs(3600),
            ..config()
        },
        ..Options::default()
    })
    .await;
    let b = super::approving(None, &[a.did()]).await;
    let view = a.pair_with(b.url()).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    let thread = "th_fed_heard_from";
    a.pull(thread, &b.did()).await;

    let down = b.stop().await;
    eventually("the pull failing", DEADLINE, || async {
        let jobs = a.pair(&pair_id).await["sync_health"]["jobs"].clone();
        (jobs[0]["status"] == "failing").then_some(())
    })
    .await;
    let b = Node::start(Options {
        federation: config(),
        ..Options::restart(down)
    })
    .await;
    b.pull("th_fed_heard_from_back", &a.did()).await;
    let record = b
        .emit(thread, "did:sync:user:bob", 1, json!({"c": 1}))
        .await;
    a.arrived(record["id"].as_str().unwrap()).await;
}
