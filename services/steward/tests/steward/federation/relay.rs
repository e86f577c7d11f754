//! Relays (federation-protocol.md §7): a source deposits what its peer pulls; while the source is
//! down the peer pulls the same records from the relay, verified as on a direct pull, and returns
//! to the source once it answers, with no gap and nothing twice.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use syncropel_api::OutboxRow;
use syncropel_federation::pairs;
use syncropel_federation::relay::RelayClient;
use syncropel_federation::{FederationConfig, PeerClient, PeerClientOptions, RelayConfig};
use syncropel_protocol::pair::{update_body, UpdateOp};
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
            // Small pages: a destination behind pulls several, pipelined.
            page_items: 7,
            compare_every: Duration::from_secs(1),
            ..RelayConfig::default()
        },
        ..config()
    }
}

/// A steward depositing at `relays` (none: it only pulls through relays).
async fn node(relays: Vec<String>) -> Node {
    Node::start(Options {
        federation: relaying(relays),
        ..Options::default()
    })
    .await
}

/// A stopped steward started again, depositing at `relays`.
async fn restart(stopped: syncropel_testkit::Stopped, relays: Vec<String>) -> Node {
    Node::start(Options {
        federation: relaying(relays),
        ..Options::restart(stopped)
    })
    .await
}

/// A source depositing at `relays` that approves `dest`'s pair request without its operator.
async fn source_for(dest: &Node, relays: Vec<String>) -> Node {
    Node::start(Options {
        federation: FederationConfig {
            auto_approve: vec![dest.did()],
            ..relaying(relays)
        },
        ..Options::default()
    })
    .await
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
    let dest = node(Vec::new()).await;
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
    let later = emit_many(&source, thread, 2..=40).await;
    expected.extend(later.clone());
    eventually("deposits at the relay", DEADLINE, || async {
        relay.holds(&later).await.then_some(())
    })
    .await;

    // The source goes away; the destination comes back and gets everything from the relay.
    let source_stopped = source.stop().await;
    let dest = restart(dest_stopped, Vec::new()).await;
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
    let source = source_for(&dest, vec![relay.url.clone()]).await;
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
            .changes(&queue_id, &cursor, 10_000, Duration::from_secs(1))
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
    let dest = node(vec![relay.url.clone()]).await;
    let source = source_for(&dest, Vec::new()).await;
    dest.pair_with(source.url()).await;
    let thread = "th_relay_mailbox";
    let mut expected = emit_many(&source, thread, 1..=1).await;
    dest.pull(thread, &source.did()).await;
    let dest_stopped = dest.stop().await;
    let later = emit_many(&source, thread, 2..=20).await;
    expected.extend(later.clone());
    eventually("deposits at the destination's relay", DEADLINE, || async {
        relay.holds(&later).await.then_some(())
    })
    .await;
    let _source_stopped = source.stop().await;

    let dest = restart(dest_stopped, vec![relay.url.clone()]).await;
    eventually("everything from the mailbox", DEADLINE * 2, || async {
        (dest.ids(thread).await == expected).then_some(())
    })
    .await;
    assert!(dest.quarantine(None).await.is_empty());
    relay.remove().await;
}

/// Every item queued at `relay` for the destination `identity` in `queue_id`, read without
/// acknowledging: (id, item).
async fn queued(
    relay: &Relay,
    identity: &Identity,
    queue_id: &str,
) -> Vec<(String, serde_json::Value)> {
    let client = PeerClient::new(PeerClientOptions::default());
    let as_dest = RelayClient {
        client: &client,
        identity,
        base: &relay.url,
    };
    let page = match as_dest.changes(queue_id, "", 10_000, Duration::ZERO).await {
        Ok(page) => page,
        // Deleted (purged) and not deposited to again yet.
        Err(f) if f.status() == Some(404) => return Vec::new(),
        Err(f) => panic!("{f}"),
    };
    page["envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["envelope"]["items"].as_array().unwrap().clone())
        .map(|item| (item["id"].as_str().unwrap().to_string(), item))
        .collect()
}

#[tokio::test]
async fn without_l0_a_relay_carries_stubs_and_a_revoked_grant_purges_the_queue() {
    let relay = Relay::start().await;
    let dest_key = Keypair::generate();
    let identity = Identity::new(dest_key.clone());
    let dest = Node::start(Options {
        federation: relaying(Vec::new()),
        keypair: Some(dest_key),
        ..Options::default()
    })
    .await;
    let source_config = || FederationConfig {
        auto_approve: vec![identity.did.to_string()],
        ..relaying(vec![relay.url.clone()])
    };
    let source = Node::start(Options {
        federation: source_config(),
        ..Options::default()
    })
    .await;
    for node in [&source, &dest] {
        node.register_namespace("research").await;
    }
    let view = dest.pair_with(source.url()).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    let grant = json!({"source_namespace": "research", "target_namespace": "default",
                       "hash_levels": ["L1"], "peer_did": dest.did()});
    let grant = source
        .client
        .grant_consent(&serde_json::from_value(grant).unwrap())
        .await
        .unwrap();
    assert_eq!(grant.status(), 201, "{}", grant.json());
    let grant_id = grant.json()["grant_id"].as_str().unwrap().to_string();
    let thread = "th_relay_consent";
    let actor = "did:sync:user:alice";
    source.emit(thread, actor, 1, json!({"n": 1})).await;
    dest.pull(thread, &source.did()).await;
    let dest_stopped = dest.stop().await;

    let mut research = BTreeSet::new();
    for n in 2..=4 {
        let record = source
            .emit(thread, actor, n, json!({"namespace": "research", "n": n}))
            .await;
        research.insert(record["id"].as_str().unwrap().to_string());
    }
    let plain = source.emit(thread, actor, 5, json!({"n": 5})).await;
    let plain = plain["id"].as_str().unwrap().to_string();
    let queue_id = queue(&source, &identity.did, &pair_id, thread).id();
    let items = eventually("the deposits", DEADLINE, || async {
        let items = queued(&relay, &identity, &queue_id).await;
        items.iter().any(|(id, _)| *id == plain).then_some(items)
    })
    .await;
    // The relay holds stubs of what the grant lets through without L0: no body, no signature.
    for (id, item) in &items {
        if research.contains(id) {
            assert_eq!(item["redacted"], true, "{item}");
            assert_eq!(item["record"]["body"], json!({"redacted": true}), "{item}");
            assert!(item["record"].get("sig").is_none(), "{item}");
        }
    }
    assert!(research.iter().all(|id| items.iter().any(|(i, _)| i == id)));

    // The destination, its source gone, stores them as stubs (the envelope's signature
    // vouching for them).
    let source_stopped = source.stop().await;
    let dest = restart(dest_stopped, Vec::new()).await;
    for id in &research {
        let stored = eventually("a stub through the relay", DEADLINE * 2, || async {
            dest.record(id).await
        })
        .await;
        assert_eq!(stored["body"], json!({"redacted": true}), "{stored}");
    }
    let _dest_stopped = dest.stop().await;

    // The grant is revoked: the source empties the queue and deposits again what is still
    // allowed, and nothing of `research` is queued any more.
    let source = Node::start(Options {
        federation: source_config(),
        ..Options::restart(source_stopped)
    })
    .await;
    let later = source
        .emit(thread, actor, 6, json!({"namespace": "research", "n": 6}))
        .await;
    let marker = source.emit(thread, actor, 7, json!({"n": 7})).await;
    let revoked = source.client.revoke_grant(&grant_id, None).await.unwrap();
    assert_eq!(revoked.status(), 200, "{}", revoked.json());
    let marker = marker["id"].as_str().unwrap().to_string();
    let after = eventually("the queue deposited again", DEADLINE, || async {
        let items = queued(&relay, &identity, &queue_id).await;
        let refiltered = items.iter().any(|(id, _)| *id == marker)
            && items.iter().all(|(_, item)| item.get("redacted").is_none());
        refiltered.then_some(items)
    })
    .await;
    assert!(
        after.iter().all(|(id, _)| !research.contains(id)),
        "{after:?}"
    );
    assert!(after
        .iter()
        .all(|(id, _)| Some(id.as_str()) != later["id"].as_str()));
    relay.remove().await;
}

/// A relay that keeps what the source deposits and serves the destination what the test says:
/// the genuine envelopes, or tampered ones.
#[derive(Clone, Default)]
struct Hostile {
    deposits: Arc<Mutex<Vec<serde_json::Value>>>,
    /// What the queue named here is served (other queues get nothing).
    serve: Arc<Mutex<(String, Vec<serde_json::Value>)>>,
    pulls: Arc<AtomicUsize>,
}

impl Hostile {
    async fn start(&self) -> String {
        let kept = self.clone();
        let served = self.clone();
        let app = axum::Router::new()
            .route(
                "/v1/relay/queues/{id}",
                axum::routing::put(|| async { axum::Json(json!({"object": "relay_queue"})) }),
            )
            .route(
                "/v1/relay/queues/{id}/deposit",
                axum::routing::post(move |axum::Json(envelope): axum::Json<serde_json::Value>| {
                    let kept = kept.clone();
                    async move {
                        kept.deposits.lock().unwrap().push(envelope);
                        (
                            axum::http::StatusCode::CREATED,
                            axum::Json(json!({"object": "relay_deposit", "status": {}})),
                        )
                    }
                }),
            )
            .route(
                "/v1/relay/queues/{id}/changes",
                axum::routing::get(move |axum::extract::Path(id): axum::extract::Path<String>| {
                    let served = served.clone();
                    async move {
                        let serve = served.serve.lock().unwrap().clone();
                        let n = served.pulls.fetch_add(usize::from(serve.0 == id), Ordering::SeqCst);
                        let envelopes: Vec<_> = serve
                            .1
                            .iter()
                            .filter(|_| serve.0 == id)
                            .enumerate()
                            .map(|(i, e)| json!({"envelope_id": format!("e{n}_{i}"), "envelope": e}))
                            .collect();
                        axum::Json(json!({"object": "relay_changes", "queue_id": "",
                            "envelopes": envelopes, "next_cursor": format!("c{n}"), "has_more": false}))
                    }
                }),
            )
            .route(
                "/v1/relay/queues/{id}/ack",
                axum::routing::post(|| async { axum::Json(json!({"object": "relay_ack"})) }),
            );
        super::serve_fake(app).await
    }

    /// The genuine envelopes deposited for `thread`, in order.
    fn deposited(&self, thread: &str) -> Vec<serde_json::Value> {
        let deposits = self.deposits.lock().unwrap();
        deposits
            .iter()
            .filter(|e| e["queue"]["thread"] == thread)
            .cloned()
            .collect()
    }
}

/// The ids of the items of `envelopes`.
fn item_ids(envelopes: &[serde_json::Value]) -> BTreeSet<String> {
    envelopes
        .iter()
        .flat_map(|e| e["items"].as_array().unwrap().clone())
        .map(|item| item["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn forged_altered_and_moved_envelopes_from_a_relay_store_nothing() {
    let hostile = Hostile::default();
    let relay_url = hostile.start().await;
    let dest = node(Vec::new()).await;
    let source = source_for(&dest, vec![relay_url]).await;
    dest.pair_with(source.url()).await;
    let (thread, other) = ("th_relay_hostile", "th_relay_hostile_other");
    source
        .emit(thread, "did:sync:user:alice", 1, json!({"n": 1}))
        .await;
    source
        .emit(other, "did:sync:user:alice", 1, json!({"n": 1}))
        .await;
    dest.pull(thread, &source.did()).await;
    dest.pull(other, &source.did()).await;
    let dest_stopped = dest.stop().await;
    let ids = emit_many(&source, thread, 2..=4).await;
    emit_many(&source, other, 2..=4).await;
    let (deposits, elsewhere) = eventually("the deposits", DEADLINE, || async {
        let deposits = hostile.deposited(thread);
        item_ids(&deposits).is_superset(&ids).then_some(())?;
        Some((deposits, hostile.deposited(other).pop()?))
    })
    .await;
    let genuine = deposits.last().unwrap().clone();
    let _source_stopped = source.stop().await;

    // Forged (signed by another key), altered (a body changed under the source's signature) and
    // moved (the source's envelope of another thread): each discarded whole.
    let stranger = Keypair::generate();
    let queue: Queue = serde_json::from_value(genuine["queue"].clone()).unwrap();
    let forged = syncropel_protocol::relay::sign(
        &stranger,
        &stranger.did_key(),
        &queue,
        genuine["source_epoch"].as_str().unwrap(),
        (
            genuine["first_sseq"].as_i64().unwrap(),
            genuine["last_sseq"].as_i64().unwrap(),
        ),
        genuine["items"].as_array().unwrap().clone(),
        &Default::default(),
    );
    let mut altered = genuine.clone();
    altered["items"][0]["record"]["body"]["n"] = json!(999);
    *hostile.serve.lock().unwrap() = (queue.id(), vec![forged, altered, elsewhere]);
    let dest = restart(dest_stopped, Vec::new()).await;
    let pulls = hostile.pulls.load(Ordering::SeqCst);
    eventually("pulls from the hostile relay", DEADLINE * 2, || async {
        (hostile.pulls.load(Ordering::SeqCst) >= pulls + 3).then_some(())
    })
    .await;
    assert_eq!(
        dest.ids(thread).await.len(),
        1,
        "nothing of a tampered envelope"
    );
    assert_eq!(
        dest.ids(other).await.len(),
        1,
        "nothing moved in from another queue"
    );

    // The genuine envelopes, each served twice, are stored once, as signed.
    *hostile.serve.lock().unwrap() = (queue.id(), [deposits.clone(), deposits].concat());
    eventually("the genuine records", DEADLINE * 2, || async {
        dest.ids(thread).await.is_superset(&ids).then_some(())
    })
    .await;
    assert_eq!(dest.records(thread).await.len(), ids.len() + 1);
    for record in dest.records(thread).await {
        assert_ne!(record["body"]["n"], 999, "{record}");
    }
    assert!(dest.quarantine(None).await.is_empty());
}

#[tokio::test]
async fn records_that_expire_at_the_relay_are_counted_and_deposited_again() {
    let relay = Relay::start().await;
    let dest = node(Vec::new()).await;
    let source = source_for(&dest, vec![relay.url.clone()]).await;
    let view = dest.pair_with(source.url()).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    let thread = "th_relay_ttl";
    let dest_did = dest.did();
    let mut expected = emit_many(&source, thread, 1..=1).await;
    dest.pull(thread, &source.did()).await;
    let dest_stopped = dest.stop().await;
    let lost = emit_many(&source, thread, 2..=5).await;
    expected.extend(lost.clone());
    eventually("the deposits", DEADLINE, || async {
        relay.holds(&lost).await.then_some(())
    })
    .await;

    // The relay lets them expire before the destination came (its sweep run as at a time past
    // their TTL): counted on the queue…
    let past_ttl = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + RelayLimits::default().ttl_secs
        + 1;
    assert!(relay.store.sweep_expired(past_ttl).await.unwrap() >= 4);
    let queue_id = queue(&source, &dest_did, &pair_id, thread).id();
    let status = relay.store.queue(&queue_id).await.unwrap().unwrap();
    assert!(status.expired_items >= 4, "{status:?}");

    // … and by the source, which deposits them again with its next deposit.
    expected.extend(emit_many(&source, thread, 6..=6).await);
    let row = eventually("the source depositing again", DEADLINE, || async {
        let rows = outbox_rows(&source).await;
        rows.into_iter().find(|r| r.expired_seen_through > 0)
    })
    .await;
    assert_eq!(row.expired_seen_through, status.expired_through_sseq);
    let _source_stopped = source.stop().await;
    let dest = restart(dest_stopped, Vec::new()).await;
    eventually(
        "everything, the expired records too",
        DEADLINE * 2,
        || async { (dest.ids(thread).await == expected).then_some(()) },
    )
    .await;
    relay.remove().await;
}

#[tokio::test]
async fn the_operator_sees_the_relays_and_the_outbox_and_can_kick_and_purge() {
    let relay = Relay::start().await;
    let dest = node(Vec::new()).await;
    let source = Node::start(Options {
        federation: FederationConfig {
            auto_approve: vec![dest.did()],
            // The second relay is not there: shown unreachable, its rows failing.
            ..relaying(vec![relay.url.clone(), "http://127.0.0.1:9".into()])
        },
        ..Options::default()
    })
    .await;
    dest.pair_with(source.url()).await;
    let thread = "th_relay_operator";
    emit_many(&source, thread, 1..=3).await;
    dest.pull(thread, &source.did()).await;

    let status = eventually("both outbox rows", DEADLINE, || async {
        let status = source.client.relay_status().await.unwrap();
        let deposited = status
            .outbox
            .iter()
            .any(|r| r.relay == relay.url && r.deposited_through > 0);
        (status.outbox.len() == 2 && deposited).then(|| status.into_json())
    })
    .await;
    assert_eq!(status["object"], "relay_status");
    assert_eq!(status["offline_capable"], true);
    assert_eq!(status["relays"][0]["reachable"], true, "{status}");
    assert_eq!(status["relays"][1]["reachable"], false, "{status}");
    let failing = eventually("the absent relay's error", DEADLINE, || async {
        let status = source.client.relay_status().await.unwrap();
        status
            .outbox
            .iter()
            .find(|r| r.relay != relay.url && r.last_error.is_some())
            .cloned()
    })
    .await;
    assert!(failing.attempts > 0, "{failing:?}");
    assert!(failing.last_error.unwrap().starts_with("CONNECT_REFUSED"));

    // The queues as the relays answer them, narrowed by peer and thread.
    let queues = source
        .client
        .relay_queues(Some(&dest.did()), Some(thread))
        .await
        .unwrap();
    assert_eq!(queues.data.len(), 1, "{}", queues.json());
    assert_eq!(queues.data[0]["relay"], relay.url);
    assert_eq!(queues.data[0]["queue"]["thread"], thread);
    assert_eq!(queues.unreachable.len(), 1);
    let none = source
        .client
        .relay_queues(None, Some("th_no_such_thread"))
        .await
        .unwrap();
    assert!(none.data.is_empty());

    // Kick: every row due now; purge: the peer's rows emptied and deposited again.
    let kicked = source.client.relay_kick().await.unwrap();
    assert_eq!(kicked.rows, 2);
    let purged = source.client.relay_purge(&dest.did()).await.unwrap();
    assert_eq!(purged.rows, 2);
    eventually("deposited again after the purge", DEADLINE, || async {
        let status = source.client.relay_status().await.unwrap();
        status
            .outbox
            .iter()
            .any(|r| r.relay == relay.url && r.state == "active" && r.deposited_through > 0)
            .then_some(())
    })
    .await;
    let unknown = source.client.relay_purge("did:key:z6MkNobody").await;
    assert!(unknown.is_err());

    // Reading needs `config:read`, acting `federation:manage`.
    let reader = source.steward.token(&["records:read"], &[]).await;
    let (status, body) = source.get_as(&reader, "", "/v1/federation/relay").await;
    assert_eq!(status, 403, "{body}");
    relay.remove().await;
}

#[tokio::test]
async fn a_did_web_steward_names_its_relays_in_its_document() {
    let relays = vec![
        "https://r1.example".to_string(),
        "https://r2.example".into(),
    ];
    let node = Node::start(Options {
        federation: relaying(relays.clone()),
        identity: syncropel_testkit::Identity::Web {
            path: None,
            endpoint: None,
        },
        ..Options::default()
    })
    .await;
    let document: serde_json::Value = reqwest::get(format!("{}/.well-known/did.json", node.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let named: Vec<&str> = document["service"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["type"] == "syncropel-relay")
        .map(|s| s["serviceEndpoint"].as_str().unwrap())
        .collect();
    assert_eq!(named, relays, "{document}");
    let parsed = syncropel_protocol::did_doc::parse_document(&node.did(), &document).unwrap();
    assert_eq!(parsed.relays, relays);
}

#[tokio::test]
async fn a_relay_that_withholds_records_is_bypassed_for_one_that_has_them() {
    // The source names two relays; the first takes its deposits and serves nothing.
    let withholding = Hostile::default();
    let withholding_url = withholding.start().await;
    let relay = Relay::start().await;
    let dest = node(Vec::new()).await;
    let source = source_for(&dest, vec![withholding_url, relay.url.clone()]).await;
    dest.pair_with(source.url()).await;
    let thread = "th_relay_withheld";
    let mut expected = emit_many(&source, thread, 1..=1).await;
    dest.pull(thread, &source.did()).await;
    let dest_stopped = dest.stop().await;
    let later = emit_many(&source, thread, 2..=12).await;
    expected.extend(later.clone());
    eventually("deposits at both relays", DEADLINE, || async {
        let real = relay.holds(&later).await;
        (real && !withholding.deposited(thread).is_empty()).then_some(())
    })
    .await;
    let _source_stopped = source.stop().await;
    let dest = restart(dest_stopped, Vec::new()).await;
    eventually(
        "everything, from the relay that has it",
        DEADLINE * 2,
        || async { (dest.ids(thread).await == expected).then_some(()) },
    )
    .await;
    assert!(dest.quarantine(None).await.is_empty());
    relay.remove().await;
}

#[tokio::test]
async fn relays_named_in_the_pairs_config_are_asked_first() {
    let relay = Relay::start().await;
    let dest = node(Vec::new()).await;
    let source = source_for(&dest, vec![relay.url.clone()]).await;
    let view = dest.pair_with(source.url()).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    // The destination forgets what the source's manifest said; its operator names the relay in
    // the pair's config instead.
    let (fed, tenant) = (&dest.steward.state.federation, &dest.steward.tenant);
    let forget = syncropel_store::StateChange::delete("peer_relays", &pair_id);
    dest.steward
        .state
        .store
        .write(&tenant.id, Vec::new(), vec![forget])
        .await
        .unwrap();
    let pair = pairs::find(fed, tenant, &pair_id).await.unwrap();
    let body = update_body(
        &pair.pair_id,
        pair.generation,
        UpdateOp::Config,
        None,
        json!({"relays": [relay.url]}).as_object().unwrap().clone(),
        0,
    );
    pairs::transition(fed, tenant, &pair, body, None, None, Vec::new())
        .await
        .unwrap();
    assert_eq!(dest.pair(&pair_id).await["relays"], json!([relay.url]));

    let thread = "th_relay_configured";
    let mut expected = emit_many(&source, thread, 1..=1).await;
    dest.pull(thread, &source.did()).await;
    let dest_stopped = dest.stop().await;
    let later = emit_many(&source, thread, 2..=8).await;
    expected.extend(later.clone());
    eventually("the deposits", DEADLINE, || async {
        relay.holds(&later).await.then_some(())
    })
    .await;
    let _source_stopped = source.stop().await;
    let dest = restart(dest_stopped, Vec::new()).await;
    eventually(
        "everything, from the configured relay",
        DEADLINE * 2,
        || async { (dest.ids(thread).await == expected).then_some(()) },
    )
    .await;
    relay.remove().await;
}

#[tokio::test]
async fn a_queue_the_destination_opened_itself_is_adopted_by_its_source() {
    // The source names its relay only after the destination last pulled from it, so no direct
    // pull ever noted the queue: the destination opens it at the relay, and the source finds it
    // there when it starts.
    let relay = Relay::start().await;
    let dest = node(Vec::new()).await;
    let source = source_for(&dest, Vec::new()).await;
    let view = dest.pair_with(source.url()).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    let thread = "th_relay_opened";
    let mut expected = emit_many(&source, thread, 1..=1).await;
    dest.pull(thread, &source.did()).await;
    let source_stopped = source.stop().await;

    // The destination's operator names the relay for the pair, and the URL it holds for the
    // source goes dead: it turns to the relay and opens the queue there, from its cursor.
    let (fed, tenant) = (&dest.steward.state.federation, &dest.steward.tenant);
    for fields in [
        json!({"relays": [relay.url]}),
        json!({"peer_url": "http://127.0.0.1:9"}),
    ] {
        let pair = pairs::find(fed, tenant, &pair_id).await.unwrap();
        let op = match fields.get("relays") {
            Some(_) => UpdateOp::Config,
            None => UpdateOp::UrlRefreshed,
        };
        let body = update_body(
            &pair.pair_id,
            pair.generation,
            op,
            None,
            fields.as_object().unwrap().clone(),
            0,
        );
        pairs::transition(fed, tenant, &pair, body, None, None, Vec::new())
            .await
            .unwrap();
    }
    dest.steward
        .state
        .federation
        .jobs
        .kick(&tenant.id, &pair_id);
    let source_did = dest.pair(&pair_id).await["peer_did"]
        .as_str()
        .unwrap()
        .to_string();
    let queue_id = Queue {
        source_did,
        dest_did: dest.did(),
        pair_id: pair_id.clone(),
        generation: 1,
        thread: thread.to_string(),
        target_namespace: "default".into(),
    }
    .id();
    eventually("the queue opened by the destination", DEADLINE, || async {
        relay.store.queue(&queue_id).await.unwrap()
    })
    .await;

    // The source comes back with the relay named: it adopts the queue and deposits there.
    let source = restart(source_stopped, vec![relay.url.clone()]).await;
    expected.extend(emit_many(&source, thread, 2..=6).await);
    eventually(
        "the records, through the adopted queue",
        DEADLINE * 2,
        || async { (dest.ids(thread).await == expected).then_some(()) },
    )
    .await;
    assert!(dest.quarantine(None).await.is_empty());
    relay.remove().await;
}
