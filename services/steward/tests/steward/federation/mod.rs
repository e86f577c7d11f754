//! Federation over HTTP between real stewards on 127.0.0.1 (federation-protocol.md §3-§6): pairing
//! and its refusals, pulls through pairs, consent between namespaces and namespace maps, star and
//! mesh convergence, hostile and absent peers, pair state surviving a restart, and the rest of the
//! pair lifecycle.

mod agreement;
mod bearers;
mod caps;
mod consent;
mod convergence;
mod doors;
mod feed;
mod handshake;
mod hostile_peer;
mod l0_acceptance;
mod lifecycle;
mod manifests;
mod maps;
mod pair_audit;
mod pairing;
mod peer_down;
mod quarantine;
mod relay;
mod renewal;
mod restart;
mod state_threads;
mod typed_actors;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use syncropel_client::api::CreateSyncPair;
use syncropel_federation::FederationConfig;
use syncropel_protocol::signed::sign_object;
use syncropel_protocol::{record_id, sha256_hex, Envelope, Keypair};
use syncropel_testkit::{Node, Options};

const DEADLINE: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Short intervals everywhere: 200 ms polls, 50 ms → 400 ms backoff, 2 s longpoll holds.
fn config() -> FederationConfig {
    syncropel_testkit::quick_federation()
}

/// A steward with short federation intervals.
async fn start() -> Node {
    Node::start(Options {
        federation: config(),
        ..Options::default()
    })
    .await
}

/// A steward that approves pair requests from `dids` without its operator.
async fn approving(key: Option<Keypair>, dids: &[String]) -> Node {
    Node::start(Options {
        federation: FederationConfig {
            auto_approve: dids.to_vec(),
            ..config()
        },
        keypair: key,
        ..Options::default()
    })
    .await
}

/// A steward A paired with a steward B that approved it at once: A, B and the pair's id.
async fn paired() -> (Node, Node, String) {
    let a = start().await;
    let b = approving(None, &[a.did()]).await;
    let view = a.pair_with(b.url()).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    (a, b, pair_id)
}

/// Each side's outbound token is the one the other side holds as inbound.
pub(crate) fn assert_reciprocal(ours: &Value, theirs: &Value) {
    for (x, y) in [(ours, theirs), (theirs, ours)] {
        let outbound = &x["tokens"]["outbound"]["token_id"];
        assert!(outbound.is_string(), "{x}");
        assert_eq!(outbound, &y["tokens"]["inbound"]["token_id"]);
    }
}

/// `POST /v1/sync/pull`, raw: for pulls that are refused.
async fn try_pull(node: &Node, thread: &str, peer: &str) -> (u16, Value) {
    node.post("/v1/sync/pull", &json!({"thread": thread, "peer": peer}))
        .await
}

/// `GET /v1/sync/changes` as a peer would call it.
async fn changes_as(node: &Node, token: &str, actor: &str, query: &str) -> (u16, Value) {
    node.get_as(token, actor, &format!("/v1/sync/changes?{query}"))
        .await
}

/// A legacy sync pair pulling `thread` from `peer_url` with `token` (`201`); its id.
async fn legacy_pair(
    node: &Node,
    peer_did: &str,
    peer_url: &str,
    thread: &str,
    token: &str,
) -> String {
    let request = CreateSyncPair {
        peer_did: peer_did.into(),
        peer_url: Some(peer_url.into()),
        thread_id: thread.into(),
        peer_token: Some(token.into()),
    };
    let created = node.client.create_sync_pair(&request).await.unwrap();
    assert_eq!(created.status(), 201, "{}", created.json());
    created.pair_id.clone()
}

/// A legacy sync pair as the steward shows it (`200`).
async fn legacy(node: &Node, id: &str) -> Value {
    let pair = node.client.sync_pair(id).await.unwrap();
    assert_eq!(pair.status(), 200, "{}", pair.json());
    pair.into_json()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Serves `app` on a port of its own on 127.0.0.1 (a fake peer); its URL.
async fn serve_fake(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// A cursor at `seq`, as a fake peer hands it out: pullers only peek at cursors, so any key
/// will do.
fn cursor_at(seq: i64) -> String {
    syncropel_protocol::sync::SyncCursor {
        epoch: "00112233aabbccdd".into(),
        seq,
    }
    .encode(b"any key")
}

/// The seven hashed fields of a record, signed by `key` as a sync item.
fn signed_item(key: &Keypair, thread: &str, actor: &str, clock: i64, body: Value) -> Value {
    signed_item_with_parents(key, thread, actor, clock, body, &[])
}

/// [`signed_item`], naming `parents`.
fn signed_item_with_parents(
    key: &Keypair,
    thread: &str,
    actor: &str,
    clock: i64,
    body: Value,
    parents: &[String],
) -> Value {
    let envelope = Envelope::from_value(json!({
        "act": "KNOW", "actor": actor, "body": body, "clock": clock,
        "thread": thread, "parents": parents, "data_type": "SCALAR"
    }))
    .unwrap();
    let canonical = envelope.canonical_json();
    let mut record: Value = serde_json::from_str(&canonical).unwrap();
    record["sig"] = json!(key.sign_hex(canonical.as_bytes()));
    if actor != key.did_key() {
        record["signer"] = json!(key.did_key());
    }
    json!({"id": record_id(&canonical), "record": record})
}

/// A signed init request from `key` to `responder`, as an initiator would send it.
fn init_request(key: &Keypair, responder: &str, peer_url: &str, issued_at_ms: i64) -> Value {
    let nonce: [u8; 32] = rand::random();
    let mut body = json!({
        "actor_did": key.did_key(), "peer_url": peer_url, "labels": [], "namespace": ["default"],
        "nonce": hex::encode(nonce), "issued_at_ms": issued_at_ms, "responder_did": responder,
        "responder_manifest_sha256": sha256_hex(b"unused"), "maps": [], "mode": "polling", "mls": null,
    })
    .as_object()
    .cloned()
    .unwrap();
    sign_object(&mut body, key);
    Value::Object(body)
}
