//! Relays (federation-protocol.md §7): a source deposits what its peer pulls; while the source is
//! down the peer pulls the same records from the relay, verified as on a direct pull, and returns
//! to the source once it answers, with no gap and nothing twice.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use syncropel_federation::{FederationConfig, RelayConfig};
use syncropel_testkit::{eventually, Node, Options, Relay};

use super::{config, DEADLINE};

/// Relay waits and probes short enough for a test.
fn relaying(urls: Vec<String>) -> FederationConfig {
    FederationConfig {
        relay: RelayConfig {
            offline_capable: !urls.is_empty(),
            urls,
            probe_after: Duration::from_secs(2),
            wait: Duration::from_secs(1),
            ..RelayConfig::default()
        },
        ..config()
    }
}

async fn emit_many(
    node: &Node,
    thread: &str,
    clocks: std::ops::RangeInclusive<i64>,
) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for clock in clocks {
        let record = node
            .emit(thread, "did:sync:user:alice", clock, json!({"c": clock}))
            .await;
        ids.insert(record["id"].as_str().unwrap().to_string());
    }
    ids
}

#[tokio::test]
async fn a_peer_gets_an_offline_sources_records_through_its_relay_then_returns_to_it() {
    let relay = Relay::start().await;
    let dest = Node::start(Options {
        federation: relaying(Vec::new()),
        ..Options::default()
    })
    .await;
    let dest_did = dest.did();
    // The source approves the destination's pair request without its operator.
    let source_config = || FederationConfig {
        auto_approve: vec![dest_did.clone()],
        ..relaying(vec![relay.url.clone()])
    };
    let source = Node::start(Options {
        federation: source_config(),
        ..Options::default()
    })
    .await;
    dest.pair_with(source.url()).await;
    let thread = "th_relay_offline";
    let mut expected = emit_many(&source, thread, 1..=1).await;
    dest.pull(thread, &source.did()).await;

    // The destination stops; the source goes on writing and deposits at its relay.
    let dest_stopped = dest.stop().await;
    expected.extend(emit_many(&source, thread, 2..=40).await);
    eventually("deposits at the relay", DEADLINE, || async {
        let totals = relay.store.totals().await.unwrap();
        (totals.items >= 39).then_some(())
    })
    .await;

    // The source goes away; the destination comes back and gets everything from the relay.
    let source_stopped = source.stop().await;
    let dest = Node::start(Options {
        federation: relaying(Vec::new()),
        ..Options::restart(dest_stopped)
    })
    .await;
    eventually("everything through the relay", DEADLINE * 2, || async {
        (dest.ids(thread).await == expected).then_some(())
    })
    .await;
    assert!(dest.quarantine(None).await.is_empty());
    // What it pulled there it acknowledged: the relay holds nothing more.
    eventually("the relay emptied by acks", DEADLINE, || async {
        let totals = relay.store.totals().await.unwrap();
        (totals.items == 0).then_some(())
    })
    .await;

    // The source returns: the destination pulls from it again, and nothing arrives twice.
    let source = Node::start(Options {
        federation: source_config(),
        ..Options::restart(source_stopped)
    })
    .await;
    let later = emit_many(&source, thread, 41..=42).await;
    expected.extend(later);
    eventually("the source's new records", DEADLINE * 2, || async {
        (dest.ids(thread).await == expected).then_some(())
    })
    .await;
    assert_eq!(dest.records(thread).await.len(), expected.len());
    assert!(dest.quarantine(None).await.is_empty());
    drop(source);
    relay.remove().await;
}
