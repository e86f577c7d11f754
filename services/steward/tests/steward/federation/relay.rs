//! Relays (federation-protocol.md §7): a source deposits what its peer pulls; while the source is
//! down the peer pulls the same records from the relay, verified as on a direct pull, and returns
//! to the source once it answers, with no gap and nothing twice.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use syncropel_federation::relay::{OutboxRow, RelayClient};
use syncropel_federation::{FederationConfig, PeerClient, PeerClientOptions, RelayConfig};
use syncropel_protocol::relay::Queue;
use syncropel_protocol::Keypair;
use syncropel_tenant::Identity;
use syncropel_testkit::{eventually, Node, Options, Relay, RelayLimits, TENANT};

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

/// The outbox rows of a steward, as its store holds them.
async fn outbox_rows(node: &Node) -> Vec<OutboxRow> {
    syncropel_federation::relay::outbox::rows(&node.steward.state.federation, TENANT)
        .await
        .unwrap()
}

/// The queue of `thread` from `source` to `dest` over the pair `pair_id`.
fn queue(source: &Node, dest: &str, pair_id: &str, thread: &str) -> Queue {
    Queue {
        source_did: source.did(),
        dest_did: dest.to_string(),
        pair_id: pair_id.to_string(),
        generation: 1,
        thread: thread.to_string(),
        target_namespace: "default".into(),
    }
}

#[tokio::test]
async fn a_full_queue_refuses_deposits_and_the_source_delivers_everything_once_room_frees() {
    let relay = Relay::start_with(RelayLimits {
        items_per_destination: 10,
        full_retry_after_secs: 1,
        ..RelayLimits::default()
    })
    .await;
    let dest_key = Keypair::generate();
    let dest = Node::start(Options {
        federation: config(),
        keypair: Some(dest_key.clone()),
        ..Options::default()
    })
    .await;
    let source = Node::start(Options {
        federation: FederationConfig {
            auto_approve: vec![dest.did()],
            ..relaying(vec![relay.url.clone()])
        },
        ..Options::default()
    })
    .await;
    let view = dest.pair_with(source.url()).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    let thread = "th_relay_full";
    emit_many(&source, thread, 1..=1).await;
    dest.pull(thread, &source.did()).await;
    let _stopped = dest.stop().await;
    // What the destination has not pulled (the first record it may or may not find again).
    let expected = emit_many(&source, thread, 2..=30).await;

    // Ten items fit; the rest is refused whole, and the source keeps its position.
    eventually("a deposit refused as QUEUE_FULL", DEADLINE, || async {
        let rows = outbox_rows(&source).await;
        let refused = rows.iter().any(|r| {
            r.last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("QUEUE_FULL"))
        });
        refused.then_some(())
    })
    .await;
    assert!(relay.store.totals().await.unwrap().items <= 10);

    // The destination drains the queue (as its steward would, signed with its key); as room
    // frees the source deposits the rest, each record once.
    let identity = Identity::new(dest_key);
    let client = PeerClient::new(PeerClientOptions::default());
    let as_dest = RelayClient {
        client: &client,
        identity: &identity,
        base: &relay.url,
    };
    let queue_id = queue(&source, &dest_did_of(&identity), &pair_id, thread).id();
    let mut cursor = String::new();
    let mut delivered: Vec<String> = Vec::new();
    let start = std::time::Instant::now();
    while !delivered
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .is_superset(&expected)
    {
        assert!(start.elapsed() < DEADLINE * 3, "delivered {delivered:?}");
        let page = as_dest
            .changes(&queue_id, &cursor, Duration::from_secs(1))
            .await
            .unwrap();
        for envelope in page["envelopes"].as_array().unwrap() {
            for item in envelope["envelope"]["items"].as_array().unwrap() {
                delivered.push(item["id"].as_str().unwrap().to_string());
            }
        }
        cursor = page["next_cursor"].as_str().unwrap().to_string();
        if !cursor.is_empty() {
            as_dest.ack(&queue_id, &cursor).await.unwrap();
        }
    }
    let distinct: BTreeSet<&String> = delivered.iter().collect();
    assert_eq!(
        distinct.len(),
        delivered.len(),
        "nothing twice: {delivered:?}"
    );
    relay.remove().await;
}

fn dest_did_of(identity: &Identity) -> String {
    identity.did.to_string()
}

#[tokio::test]
async fn a_destination_finds_at_its_own_relay_what_was_written_while_it_was_away() {
    // The mailbox (§7.6): the relay is the destination's, named in its manifest; the source
    // names none, and deposits there for that peer.
    let relay = Relay::start().await;
    let dest = Node::start(Options {
        federation: relaying(vec![relay.url.clone()]),
        ..Options::default()
    })
    .await;
    let source = Node::start(Options {
        federation: FederationConfig {
            auto_approve: vec![dest.did()],
            ..relaying(Vec::new())
        },
        ..Options::default()
    })
    .await;
    dest.pair_with(source.url()).await;
    let thread = "th_relay_mailbox";
    let mut expected = emit_many(&source, thread, 1..=1).await;
    dest.pull(thread, &source.did()).await;
    let dest_stopped = dest.stop().await;
    expected.extend(emit_many(&source, thread, 2..=20).await);
    eventually("deposits at the destination's relay", DEADLINE, || async {
        (relay.store.totals().await.unwrap().items >= 19).then_some(())
    })
    .await;
    let _source_stopped = source.stop().await;

    let dest = Node::start(Options {
        federation: relaying(vec![relay.url.clone()]),
        ..Options::restart(dest_stopped)
    })
    .await;
    eventually("everything from the mailbox", DEADLINE * 2, || async {
        (dest.ids(thread).await == expected).then_some(())
    })
    .await;
    assert!(dest.quarantine(None).await.is_empty());
    relay.remove().await;
}
