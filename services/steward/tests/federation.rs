//! Federation over HTTP between real stewards on 127.0.0.1 (FEDERATION §3-§6): pairing and its
//! refusals, pulls through pairs, consent between namespaces, star and mesh convergence, hostile
//! and absent peers, and pair state surviving a restart.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use common::{error_code, eventually, Options, TestSteward, TENANT};
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use syncropel_federation::state as fstate;
use syncropel_federation::{config, FederationConfig, PeerTimeouts};
use syncropel_protocol::pair::outbound_secret_handle;
use syncropel_protocol::signed::sign_object;
use syncropel_protocol::sync::SyncCursor;
use syncropel_protocol::{record_id, sha256_hex, Envelope, Keypair};
use syncropel_store::{RecordStore, SqliteStore};

const DEADLINE: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Short intervals everywhere: 200 ms polls, 50 ms → 400 ms backoff, 2 s longpoll holds.
fn config() -> FederationConfig {
    common::quick_federation()
}

/// A steward with an operator token.
struct Node {
    s: TestSteward,
    token: String,
}

impl Node {
    async fn start() -> Node {
        Node::with(Options {
            federation: config(),
            ..Options::default()
        })
        .await
    }

    /// A steward that approves pair requests from `dids` without its operator.
    async fn approving(key: Option<Keypair>, dids: &[String]) -> Node {
        Node::with(Options {
            federation: FederationConfig {
                auto_approve: dids.to_vec(),
                ..config()
            },
            keypair: key,
            ..Options::default()
        })
        .await
    }

    async fn with(options: Options) -> Node {
        let s = TestSteward::start_with(options).await;
        let token = s.admin().await;
        Node { s, token }
    }

    fn did(&self) -> String {
        self.s.did()
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.s.get(&self.token, path).await
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.s.post(&self.token, path, body).await
    }

    /// Writes a KNOW record and returns it as stored.
    async fn emit(&self, thread: &str, actor: &str, clock: i64, body: Value) -> Value {
        let envelope =
            json!({"act": "KNOW", "actor": actor, "thread": thread, "clock": clock, "body": body});
        let (status, record) = self.post("/v1/records", &envelope).await;
        assert_eq!(status, 201, "{record}");
        record
    }

    async fn record(&self, id: &str) -> Option<Value> {
        let (status, body) = self.get(&format!("/v1/records/{id}")).await;
        match status {
            200 => Some(body),
            404 => None,
            _ => panic!("GET record {id}: {status} {body}"),
        }
    }

    /// Waits for a record to arrive.
    async fn arrived(&self, id: &str) -> Value {
        eventually(&format!("record {id} on {}", self.s.url), DEADLINE, || {
            self.record(id)
        })
        .await
    }

    async fn records(&self, thread: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/v1/records?thread={thread}&limit=1000"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"].as_array().unwrap().clone()
    }

    async fn ids(&self, thread: &str) -> BTreeSet<String> {
        self.records(thread)
            .await
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    }

    async fn register_namespace(&self, id: &str) {
        let (status, body) = self.post("/v1/namespaces", &json!({"id": id})).await;
        assert!(status == 201 || status == 200, "{body}");
    }

    /// Pairs with `peer`, which approves at once; answers our view of the pair.
    async fn pair_with(&self, peer: &Node) -> Value {
        let (status, view) = self
            .post("/v1/federation/pairs", &json!({"peer_url": peer.s.url}))
            .await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["state"], "active", "{view}");
        view
    }

    async fn pair(&self, key: &str) -> Value {
        let (status, view) = self.get(&format!("/v1/federation/pairs/{key}")).await;
        assert_eq!(status, 200, "{view}");
        view
    }

    /// A one-shot pull of `thread` from `peer` (which also starts the pull job).
    async fn pull(&self, thread: &str, peer: &str) -> Value {
        let (status, result) = self
            .post("/v1/sync/pull", &json!({"thread": thread, "peer": peer}))
            .await;
        assert_eq!(status, 200, "{result}");
        result
    }

    async fn try_pull(&self, thread: &str, peer: &str) -> (u16, Value) {
        self.post("/v1/sync/pull", &json!({"thread": thread, "peer": peer}))
            .await
    }

    /// The bearer the peer issued to us, from our secret store.
    async fn outbound_token(&self, pair_id: &str) -> Option<String> {
        fstate::open_secret(
            self.s.state.store.as_ref(),
            TENANT,
            &self.s.tenant.identity.key,
            &outbound_secret_handle(pair_id),
        )
        .await
        .unwrap()
    }

    /// `GET /v1/sync/changes` as a peer would call it.
    async fn changes_as(&self, token: &str, actor: &str, query: &str) -> (u16, Value) {
        let request = self
            .s
            .http
            .get(format!("{}/v1/sync/changes?{query}", self.s.url))
            .bearer_auth(token)
            .header("x-syncropel-actor", actor);
        self.s.send(request).await
    }

    async fn legacy_pair(
        &self,
        peer_did: &str,
        peer_url: &str,
        thread: &str,
        token: &str,
    ) -> String {
        let (status, pair) = self
            .post(
                "/v1/sync/pairs",
                &json!({"peer_did": peer_did, "peer_url": peer_url, "thread_id": thread, "peer_token": token}),
            )
            .await;
        assert_eq!(status, 201, "{pair}");
        pair["pair_id"].as_str().unwrap().to_string()
    }

    async fn legacy(&self, id: &str) -> Value {
        let (status, pair) = self.get(&format!("/v1/sync/pairs/{id}")).await;
        assert_eq!(status, 200, "{pair}");
        pair
    }

    /// Quarantined entries (id → code) of a source.
    async fn quarantine(&self, source: &str) -> HashMap<String, String> {
        self.s
            .state
            .store
            .state_list(TENANT, fstate::QUARANTINE)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|(_, text)| {
                let entry: Value = serde_json::from_str(&text).unwrap();
                (entry["source"] == source).then(|| {
                    (
                        entry["id"].as_str().unwrap().to_string(),
                        entry["code"].as_str().unwrap().to_string(),
                    )
                })
            })
            .collect()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The seven hashed fields of a record, signed by `key` as a sync item.
fn signed_item(key: &Keypair, thread: &str, actor: &str, clock: i64, body: Value) -> Value {
    let envelope = Envelope::from_value(json!({
        "act": "KNOW", "actor": actor, "body": body, "clock": clock,
        "thread": thread, "parents": [], "data_type": "SCALAR"
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

/// Posts to a handshake route (no bearer).
async fn handshake(node: &Node, path: &str, body: &Value) -> (u16, Value) {
    let request = node.s.http.post(format!("{}{path}", node.s.url)).json(body);
    node.s.send(request).await
}

// ---------------------------------------------------------------------------------------------
// 1. Two stewards end to end

#[tokio::test]
async fn auto_approved_pair_is_active_on_both_sides_with_reciprocal_tokens_and_records_flow() {
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;

    let view = a.pair_with(&b).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    assert!(pair_id.starts_with("fed_"));
    assert_eq!(view["peer_did"], b.did());
    assert_eq!(view["role"], "initiator");
    assert_eq!(view["object"], "federation_pair");

    // B knows the same pair, by id and by A's DID, as the responder.
    let theirs = b.pair(&a.did()).await;
    assert_eq!(theirs["pair_id"], pair_id);
    assert_eq!(theirs["state"], "active", "{theirs}");
    assert_eq!(theirs["role"], "responder");
    assert_eq!(theirs["peer_did"], a.did());
    assert_eq!(theirs["generation"], view["generation"]);
    // The token each side issued is the one the other holds.
    let ours = a.pair(&pair_id).await;
    assert_eq!(ours["state"], "active");
    for (x, y) in [(&ours, &theirs), (&theirs, &ours)] {
        let outbound = &x["tokens"]["outbound"]["token_id"];
        assert!(outbound.is_string(), "{x}");
        assert_eq!(outbound, &y["tokens"]["inbound"]["token_id"]);
    }
    // The stored bearers hash to those token ids.
    let a_holds = a.outbound_token(&pair_id).await.expect("A holds B's token");
    let b_holds = b.outbound_token(&pair_id).await.expect("B holds A's token");
    assert_eq!(
        ours["tokens"]["outbound"]["token_id"],
        sha256_hex(a_holds.as_bytes())
    );
    assert_eq!(
        theirs["tokens"]["outbound"]["token_id"],
        sha256_hex(b_holds.as_bytes())
    );
    // Both list it.
    for node in [&a, &b] {
        let (status, list) = node.get("/v1/federation/pairs").await;
        assert_eq!(status, 200);
        assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    }
    // Pairing again is idempotent.
    let again = a.pair_with(&b).await;
    assert_eq!(again["pair_id"], pair_id);

    // Records flow B → A through the pair: first a one-shot pull, then the job.
    let thread = "th_fed_e2e";
    let early = b
        .emit(thread, "did:sync:user:bob", 1, json!({"n": 1}))
        .await;
    let pulled = a.pull(thread, &b.did()).await;
    assert_eq!(pulled["pulled"], 1, "{pulled}");
    let mut emitted = vec![early];
    for clock in 2..=6 {
        emitted.push(
            b.emit(thread, "did:sync:user:bob", clock, json!({"n": clock}))
                .await,
        );
    }
    for record in &emitted {
        let id = record["id"].as_str().unwrap();
        let got = a.arrived(id).await;
        assert_eq!(got["id"], record["id"]);
        assert_eq!(got["sig"], record["sig"], "{got}");
        assert_eq!(got["signer"], record["signer"]);
        assert_eq!(got["signer"], b.did());
        assert_eq!(got["body"], record["body"]);
        assert_eq!(got["actor"], "did:sync:user:bob");
    }
    // Ingest is idempotent: nothing new in a second pull, nothing doubled.
    let again = a.pull(thread, &b.did()).await;
    assert_eq!(again["pulled"], 0, "{again}");
    assert_eq!(a.ids(thread).await.len(), emitted.len());
    // The peer URL names the pair as well as the DID.
    let by_url = a.pull(thread, &b.s.url).await;
    assert_eq!(by_url["pulled"], 0, "{by_url}");

    // The job's health shows on the pair.
    let ours = a.pair(&pair_id).await;
    assert_eq!(ours["sync_health"]["status"], "ok", "{ours}");
}

#[tokio::test]
async fn a_manually_approved_pair_goes_active_after_the_operator_approves() {
    let a = Node::start().await;
    let b = Node::start().await;

    let (status, pending) = a
        .post("/v1/federation/pairs", &json!({"peer_url": b.s.url}))
        .await;
    assert_eq!(status, 202, "{pending}");
    assert_eq!(pending["status"], "pending");
    let pair_id = pending["pair_id"].as_str().unwrap().to_string();
    let ours = a.pair(&pair_id).await;
    assert_eq!(ours["state"], "establishing", "{ours}");

    // Nothing moves until B's operator decides.
    let (status, again) = a
        .post(&format!("/v1/federation/pairs/{pair_id}/poll"), &json!({}))
        .await;
    assert_eq!(status, 202, "{again}");

    let (status, list) = b.get("/v1/federation/pending").await;
    assert_eq!(status, 200);
    let waiting = list["data"].as_array().unwrap();
    assert_eq!(waiting.len(), 1, "{list}");
    assert_eq!(waiting[0]["pair_id"], pair_id);
    assert_eq!(waiting[0]["peer_did"], a.did());
    assert_eq!(waiting[0]["peer_url"], a.s.url);

    let (status, approved) = b
        .post(
            &format!("/v1/federation/pending/{pair_id}/approve"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{approved}");
    let (_, list) = b.get("/v1/federation/pending").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "{list}");

    let (status, view) = a
        .post(&format!("/v1/federation/pairs/{pair_id}/poll"), &json!({}))
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["state"], "active", "{view}");
    let theirs = b.pair(&pair_id).await;
    assert_eq!(theirs["state"], "active", "{theirs}");
    assert_eq!(
        view["tokens"]["outbound"]["token_id"],
        theirs["tokens"]["inbound"]["token_id"]
    );

    // And the pair carries records.
    let record = b
        .emit("th_fed_manual", "did:sync:user:bob", 1, json!({"x": 1}))
        .await;
    let pulled = a.pull("th_fed_manual", &b.did()).await;
    assert_eq!(pulled["pulled"], 1, "{pulled}");
    assert_eq!(
        a.arrived(record["id"].as_str().unwrap()).await["sig"],
        record["sig"]
    );
}

#[tokio::test]
async fn a_rejected_pair_request_is_refused_with_pair_rejected() {
    let a = Node::start().await;
    let b = Node::start().await;
    let (status, pending) = a
        .post("/v1/federation/pairs", &json!({"peer_url": b.s.url}))
        .await;
    assert_eq!(status, 202, "{pending}");
    let pair_id = pending["pair_id"].as_str().unwrap().to_string();
    let (status, rejected) = b
        .post(
            &format!("/v1/federation/pending/{pair_id}/reject"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{rejected}");
    let (status, refusal) = a
        .post(&format!("/v1/federation/pairs/{pair_id}/poll"), &json!({}))
        .await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(error_code(&refusal), "PAIR_REJECTED");
    // No pair on B; A's attempt is over.
    let (status, _) = b.get(&format!("/v1/federation/pairs/{pair_id}")).await;
    assert_ne!(status, 200);
    let ours = a.pair(&pair_id).await;
    assert_eq!(ours["state"], "revoked", "{ours}");
    let (status, none) = a.try_pull("th_x", &b.did()).await;
    assert_eq!(status, 409, "{none}");
}

// ---------------------------------------------------------------------------------------------
// 2. Handshake refusals and revocation

#[tokio::test]
async fn a_replayed_init_nonce_is_gone_after_confirm() {
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;
    a.pair_with(&b).await;
    // The init B confirmed, exactly as A sent it.
    let rows =
        b.s.state
            .store
            .state_list(TENANT, fstate::HANDSHAKE)
            .await
            .unwrap();
    let confirmed: Vec<Value> = rows
        .iter()
        .map(|(_, text)| serde_json::from_str::<Value>(text).unwrap())
        .filter(|row| row["role"] == "responder")
        .collect();
    assert_eq!(confirmed.len(), 1);
    assert_eq!(confirmed[0]["status"], "confirmed", "{}", confirmed[0]);
    let init = confirmed[0]["init"].clone();
    assert!(init.is_object());
    let (status, refusal) = handshake(&b, "/v1/federation/pair", &init).await;
    assert_eq!(status, 410, "{refusal}");
    assert_eq!(error_code(&refusal), "NONCE_REUSED");
    // The same nonce with another body conflicts.
    let mut altered = init.clone();
    altered["labels"] = json!(["changed"]);
    let mut object = altered.as_object().cloned().unwrap();
    sign_object(&mut object, &a.s.tenant.identity.key);
    let (status, refusal) = handshake(&b, "/v1/federation/pair", &Value::Object(object)).await;
    assert_eq!(status, 409, "{refusal}");
    assert_eq!(error_code(&refusal), "NONCE_CONFLICT");
}

#[tokio::test]
async fn init_refusals_freshness_and_unauthenticated_initiators() {
    let b = Node::start().await;
    let other = Node::start().await;
    let key = Keypair::generate();
    let impostor_url = other.s.url.clone();

    // issued_at_ms two minutes ago.
    let stale = init_request(&key, &b.did(), &impostor_url, now_ms() - 120_000);
    let (status, refusal) = handshake(&b, "/v1/federation/pair", &stale).await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(error_code(&refusal), "FRESHNESS_VIOLATION");
    // … or two minutes ahead.
    let future = init_request(&key, &b.did(), &impostor_url, now_ms() + 120_000);
    let (status, refusal) = handshake(&b, "/v1/federation/pair", &future).await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(error_code(&refusal), "FRESHNESS_VIOLATION");

    // A fresh, signed request whose peer_url is another steward's (its manifest names another DID).
    let claim = init_request(&key, &b.did(), &impostor_url, now_ms());
    let (status, refusal) = handshake(&b, "/v1/federation/pair", &claim).await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(error_code(&refusal), "UNAUTHENTICATED_INITIATOR");

    // A request signed by someone other than actor_did.
    let mut forged = init_request(&key, &b.did(), &impostor_url, now_ms());
    forged["actor_did"] = json!(other.did());
    let (status, refusal) = handshake(&b, "/v1/federation/pair", &forged).await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(error_code(&refusal), "UNAUTHENTICATED_INITIATOR");

    // A request addressed to another steward.
    let elsewhere = init_request(&key, &other.did(), &impostor_url, now_ms());
    let (status, refusal) = handshake(&b, "/v1/federation/pair", &elsewhere).await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(error_code(&refusal), "UNAUTHENTICATED_INITIATOR");

    // None of them left anything pending.
    let (_, pending) = b.get("/v1/federation/pending").await;
    assert_eq!(pending["data"].as_array().unwrap().len(), 0, "{pending}");
}

#[tokio::test]
async fn revoking_a_pair_refuses_both_tokens_and_the_peer_revokes_too() {
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;
    let view = a.pair_with(&b).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    let a_at_b = a.outbound_token(&pair_id).await.unwrap();
    let b_at_a = b.outbound_token(&pair_id).await.unwrap();
    let query = "thread=th_fed_revoke&feed=normal";

    // Both tokens work, and only with their peer's DID.
    let (status, page) = b.changes_as(&a_at_b, &a.did(), query).await;
    assert_eq!(status, 200, "{page}");
    let (status, page) = a.changes_as(&b_at_a, &b.did(), query).await;
    assert_eq!(status, 200, "{page}");
    let (status, refusal) = b.changes_as(&a_at_b, &b.did(), query).await;
    assert_eq!(status, 403, "{refusal}");

    let (status, revoked) = a
        .post(
            &format!("/v1/federation/pairs/{pair_id}/revoke"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["state"], "revoked");
    // The peer heard of it (notify-revoke) and revoked its side.
    let theirs = b.pair(&pair_id).await;
    assert_eq!(theirs["state"], "revoked", "{theirs}");

    let (status, refusal) = a.changes_as(&b_at_a, &b.did(), query).await;
    assert_eq!(status, 401, "{refusal}");
    let (status, refusal) = b.changes_as(&a_at_b, &a.did(), query).await;
    assert_eq!(status, 401, "{refusal}");
    // The outbound secrets are gone on both sides.
    assert_eq!(a.outbound_token(&pair_id).await, None);
    assert_eq!(b.outbound_token(&pair_id).await, None);
    // Pulling through a revoked pair is refused.
    let (status, refusal) = a.try_pull("th_fed_revoke", &b.did()).await;
    assert_eq!(status, 409, "{refusal}");
    assert_eq!(error_code(&refusal), "precondition_failed");

    // A new handshake starts generation 2.
    let again = a.pair_with(&b).await;
    assert_eq!(again["generation"], 2, "{again}");
    assert_eq!(b.pair(&pair_id).await["state"], "active");
}

#[tokio::test]
async fn paused_pairs_refuse_the_peer_and_resume() {
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;
    let view = a.pair_with(&b).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    let a_at_b = a.outbound_token(&pair_id).await.unwrap();
    let (status, paused) = b
        .post(&format!("/v1/federation/pairs/{pair_id}/pause"), &json!({}))
        .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["state"], "paused");
    let (status, refusal) = b.changes_as(&a_at_b, &a.did(), "thread=th_fed_pause").await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(error_code(&refusal), "pair_paused");
    let (status, resumed) = b
        .post(
            &format!("/v1/federation/pairs/{pair_id}/resume"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["state"], "active");
    let (status, page) = b.changes_as(&a_at_b, &a.did(), "thread=th_fed_pause").await;
    assert_eq!(status, 200, "{page}");
}

// ---------------------------------------------------------------------------------------------
// 3. Namespaces and consent

#[tokio::test]
async fn consent_decides_what_crosses_namespaces() {
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;
    a.pair_with(&b).await;
    b.register_namespace("research").await;
    a.register_namespace("research").await;
    let thread = "th_fed_consent";
    let actor = "did:sync:user:bob";
    let research = |n: i64| json!({"namespace": "research", "n": n});

    // No grant: nothing in `research` crosses into A's `default`.
    let hidden = b.emit(thread, actor, 1, research(1)).await;
    let pulled = a.pull(thread, &b.did()).await;
    assert_eq!(pulled["pulled"], 0, "{pulled}");
    // Records of the default namespace always cross.
    let plain = b.emit(thread, actor, 2, json!({"n": 2})).await;
    a.arrived(plain["id"].as_str().unwrap()).await;

    // A grant for another peer opens nothing to this one.
    let (status, _) = b
        .post(
            "/v1/consent/grants",
            &json!({"source_namespace": "research", "target_namespace": "default",
                    "hash_levels": ["L0"], "peer_did": "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"}),
        )
        .await;
    assert_eq!(status, 201);
    // … nor one for another thread.
    let (status, _) = b
        .post(
            "/v1/consent/grants",
            &json!({"source_namespace": "research", "target_namespace": "default",
                    "hash_levels": ["L0"], "threads": ["th_some_other"]}),
        )
        .await;
    assert_eq!(status, 201);
    let elsewhere = b.emit(thread, actor, 20, research(20)).await;
    let marker = b.emit(thread, actor, 21, json!({"n": 21})).await;
    a.arrived(marker["id"].as_str().unwrap()).await;
    assert!(a.record(elsewhere["id"].as_str().unwrap()).await.is_none());

    // A grant with L0: full, signed records.
    let (status, grant) = b
        .post(
            "/v1/consent/grants",
            &json!({"source_namespace": "research", "target_namespace": "default",
                    "hash_levels": ["L0", "L1"], "peer_did": a.did()}),
        )
        .await;
    assert_eq!(status, 201, "{grant}");
    let full_id = grant["grant_id"].as_str().unwrap().to_string();
    let full = b.emit(thread, actor, 3, research(3)).await;
    let got = a.arrived(full["id"].as_str().unwrap()).await;
    assert_eq!(got["body"], full["body"], "{got}");
    assert_eq!(got["sig"], full["sig"]);
    assert_eq!(got["signer"], b.did());
    assert_eq!(got.get("redacted"), None, "{got}");
    // What was hidden before is still behind A's cursor.
    assert!(a.record(hidden["id"].as_str().unwrap()).await.is_none());

    let (status, listed) = b.get("/v1/consent/grants").await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"].as_array().unwrap().len(), 3, "{listed}");

    // Replace it with a grant without L0: stubs without a signature.
    let (status, revoked) =
        b.s.send(
            b.s.http
                .delete(format!("{}/v1/consent/grants/{full_id}", b.s.url))
                .bearer_auth(&b.token),
        )
        .await;
    assert_eq!(status, 200, "{revoked}");
    let (status, grant) = b
        .post(
            "/v1/consent/grants",
            &json!({"source_namespace": "research", "target_namespace": "default",
                    "hash_levels": ["L1", "L2", "L3"]}),
        )
        .await;
    assert_eq!(status, 201, "{grant}");
    let stub_grant = grant["grant_id"].as_str().unwrap().to_string();
    let secret = b.emit(thread, actor, 4, research(4)).await;
    let stub = a.arrived(secret["id"].as_str().unwrap()).await;
    assert_eq!(stub["body"], json!({"redacted": true}), "{stub}");
    assert_eq!(stub["redacted"], true, "{stub}");
    assert_eq!(
        stub.get("sig").cloned().unwrap_or(Value::Null),
        Value::Null,
        "{stub}"
    );
    assert_eq!(stub["consent_grant"], stub_grant.as_str());
    let levels = stub["hash_levels"].as_object().expect("hash_levels");
    assert!(levels.contains_key("l1") && levels.contains_key("l2") && levels.contains_key("l3"));
    assert!(!levels.contains_key("l0"), "{stub}");
    assert_eq!(stub["clock"], 4);
    assert_eq!(stub["actor"], actor);

    // Revoked: records written afterwards stay home.
    let (status, _) =
        b.s.send(
            b.s.http
                .delete(format!("{}/v1/consent/grants/{stub_grant}", b.s.url))
                .bearer_auth(&b.token),
        )
        .await;
    assert_eq!(status, 200);
    let after = b.emit(thread, actor, 5, research(5)).await;
    let last = b.emit(thread, actor, 6, json!({"n": 6})).await;
    a.arrived(last["id"].as_str().unwrap()).await;
    assert!(a.record(after["id"].as_str().unwrap()).await.is_none());
    let ids = a.ids(thread).await;
    let expected: BTreeSet<String> = [&plain, &marker, &full, &secret, &last]
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn records_of_a_namespace_the_receiver_lacks_are_quarantined() {
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;
    let view = a.pair_with(&b).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    b.register_namespace("research").await;
    let (status, _) = b
        .post(
            "/v1/consent/grants",
            &json!({"source_namespace": "research", "target_namespace": "default", "hash_levels": ["L0"]}),
        )
        .await;
    assert_eq!(status, 201);
    let record = b
        .emit(
            "th_fed_ns",
            "did:sync:user:bob",
            1,
            json!({"namespace": "research"}),
        )
        .await;
    let pulled = a.pull("th_fed_ns", &b.did()).await;
    assert_eq!(pulled["pulled"], 0, "{pulled}");
    assert_eq!(pulled["quarantined"], 1, "{pulled}");
    let held = a.quarantine(&pair_id).await;
    assert_eq!(
        held.get(record["id"].as_str().unwrap()).map(String::as_str),
        Some("NAMESPACE_REJECTED")
    );
    assert!(a.ids("th_fed_ns").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 4. Star and mesh

/// Starts `n` stewards that approve each other's pair requests.
async fn fleet(n: usize) -> Vec<Node> {
    let keys: Vec<Keypair> = (0..n).map(|_| Keypair::generate()).collect();
    let dids: Vec<String> = keys.iter().map(Keypair::did_key).collect();
    let mut nodes = Vec::new();
    for key in keys {
        nodes.push(Node::approving(Some(key), &dids).await);
    }
    nodes
}

/// Every node emits `count` records on `thread` as its own actor, from clock `from`.
async fn emit_all(nodes: &[Node], thread: &str, from: i64, count: i64) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for (i, node) in nodes.iter().enumerate() {
        for clock in from..from + count {
            let actor = format!("did:sync:user:n{i}");
            let record = node
                .emit(thread, &actor, clock, json!({"from": i, "c": clock}))
                .await;
            ids.insert(record["id"].as_str().unwrap().to_string());
        }
    }
    ids
}

async fn converge(nodes: &[Node], thread: &str, expected: &BTreeSet<String>) {
    let start = Instant::now();
    for (i, node) in nodes.iter().enumerate() {
        loop {
            let ids = node.ids(thread).await;
            if &ids == expected {
                break;
            }
            assert!(
                ids.is_subset(expected),
                "node {i} holds records nobody emitted"
            );
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "node {i} holds {} of {} records",
                ids.len(),
                expected.len()
            );
            tokio::time::sleep(ms(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_star_converges_through_its_hub() {
    let nodes = fleet(5).await;
    let (hub, leaves) = nodes.split_first().unwrap();
    let thread = "th_fed_star";
    for leaf in leaves {
        leaf.pair_with(hub).await;
    }
    let mut expected = emit_all(&nodes, thread, 1, 3).await;
    for leaf in leaves {
        hub.pull(thread, &leaf.did()).await;
        leaf.pull(thread, &hub.did()).await;
    }
    expected.extend(emit_all(&nodes, thread, 4, 2).await);
    converge(&nodes, thread, &expected).await;
    // Every copy keeps its author's signature.
    for leaf in leaves {
        for record in leaf.records(thread).await {
            let from = record["body"]["from"].as_u64().unwrap() as usize;
            assert_eq!(record["signer"], nodes[from].did(), "{record}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mesh_of_five_converges() {
    let nodes = fleet(5).await;
    let thread = "th_fed_mesh";
    for i in 0..nodes.len() {
        for j in i + 1..nodes.len() {
            nodes[i].pair_with(&nodes[j]).await;
        }
    }
    let mut expected = emit_all(&nodes, thread, 1, 3).await;
    for (i, node) in nodes.iter().enumerate() {
        for (j, peer) in nodes.iter().enumerate() {
            if i != j {
                node.pull(thread, &peer.did()).await;
            }
        }
    }
    expected.extend(emit_all(&nodes, thread, 4, 2).await);
    converge(&nodes, thread, &expected).await;
}

// ---------------------------------------------------------------------------------------------
// 5. A hostile peer

/// A fake peer whose `GET /v1/sync/changes` misbehaves according to the thread asked for.
struct Fake {
    key: Keypair,
    /// The `since` of every request, per thread.
    seen: Mutex<HashMap<String, Vec<String>>>,
}

const ANY_KEY: &[u8] = b"any key: the puller only peeks at cursors";

fn cursor_at(seq: i64) -> String {
    SyncCursor {
        epoch: "00112233aabbccdd".into(),
        seq,
    }
    .encode(ANY_KEY)
}

impl Fake {
    fn item(&self, thread: &str, clock: i64) -> Value {
        signed_item(
            &self.key,
            thread,
            &self.key.did_key(),
            clock,
            json!({"c": clock}),
        )
    }

    /// A record whose signature is by another key.
    fn forged(&self, thread: &str, clock: i64) -> Value {
        let mut item = self.item(thread, clock);
        let other = Keypair::generate();
        let record = item["record"].clone();
        let canonical = Envelope::from_value(record).unwrap().canonical_json();
        item["record"]["sig"] = json!(other.sign_hex(canonical.as_bytes()));
        item
    }

    fn id(&self, thread: &str, clock: i64) -> String {
        self.item(thread, clock)["id"].as_str().unwrap().to_string()
    }

    fn seen(&self, thread: &str) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .get(thread)
            .cloned()
            .unwrap_or_default()
    }
}

fn page(thread: &str, records: Vec<Value>, next: &str) -> Response {
    json_response(
        200,
        json!({"object": "sync_changes", "thread": thread, "records": records,
               "next_cursor": next, "has_more": false})
        .to_string(),
    )
}

fn json_response(status: u16, body: impl Into<axum::body::Body>) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

async fn fake_changes(
    State(fake): State<Arc<Fake>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let thread = query.get("thread").cloned().unwrap_or_default();
    let since = query.get("since").cloned().unwrap_or_default();
    fake.seen
        .lock()
        .unwrap()
        .entry(thread.clone())
        .or_default()
        .push(since.clone());
    let t = thread.as_str();
    match t {
        "th_bad_sig" if since.is_empty() => {
            let mut tampered = fake.item(t, 3);
            tampered["record"]["body"] = json!({"c": "changed"});
            let mut unsigned = fake.item(t, 4);
            unsigned["record"].as_object_mut().unwrap().remove("sig");
            let mut stranger = signed_item(&Keypair::generate(), t, "did:sync:user:x", 5, json!({}));
            stranger["record"]["signer"] = json!("did:web:example.com");
            page(
                t,
                vec![fake.item(t, 1), fake.forged(t, 2), tampered, unsigned, stranger],
                &cursor_at(2),
            )
        }
        // The second record takes the (thread, actor, clock) of one the puller holds.
        "th_clash" if since.is_empty() => page(
            t,
            vec![fake.item(t, 1), fake.item(t, 2)],
            &cursor_at(2),
        ),
        "th_clash" => page(t, Vec::new(), &since),
        "th_loop" => json_response(
            200,
            json!({"object": "sync_changes", "thread": t, "records": [], "next_cursor": since, "has_more": true})
                .to_string(),
        ),
        "th_bad_sig" => page(t, Vec::new(), &since),
        "th_other_thread" => page(
            t,
            vec![fake.item(t, 1), fake.item("th_elsewhere", 2)],
            &cursor_at(2),
        ),
        "th_malformed" => json_response(
            200,
            format!(r#"{{"object": "sync_changes", "thread": "{t}", "records": [{}"#, fake.item(t, 1)),
        ),
        "th_not_a_page" => json_response(200, r#"{"hello": "world"}"#),
        "th_backwards" if since.is_empty() => page(t, vec![fake.item(t, 1)], &cursor_at(10)),
        "th_backwards" => page(t, vec![fake.item(t, 2)], &cursor_at(5)),
        "th_oversize" => {
            let padding = " ".repeat(9 * 1024 * 1024);
            json_response(
                200,
                format!(
                    r#"{{"object": "sync_changes", "thread": "{t}", "records": [{}], "next_cursor": "{}", "has_more": false}}{padding}"#,
                    fake.item(t, 1),
                    cursor_at(1)
                ),
            )
        }
        "th_endless" => {
            let head = format!(
                r#"{{"object": "sync_changes", "thread": "{t}", "records": [{}], "pad": ""#,
                fake.item(t, 1)
            );
            let chunk = bytes::Bytes::from(vec![b'a'; 64 * 1024]);
            let stream = futures_util::stream::once(async move { bytes::Bytes::from(head) })
                .chain(futures_util::stream::repeat(chunk))
                .map(Ok::<_, std::convert::Infallible>);
            json_response(200, axum::body::Body::from_stream(stream))
        }
        "th_slow" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            page(t, vec![fake.item(t, 1)], &cursor_at(1))
        }
        "th_server_error" => json_response(500, r#"{"object":"error","code":"INTERNAL","message":"boom","type":"api_error"}"#),
        "th_unauthorized" => json_response(401, r#"{"object":"error","code":"AUTH_INVALID","message":"who are you","type":"authentication_error"}"#),
        _ => page(t, Vec::new(), &since),
    }
    .into_response()
}

async fn start_fake() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake {
        key: Keypair::generate(),
        seen: Mutex::default(),
    });
    let app = axum::Router::new()
        .route("/v1/sync/changes", axum::routing::get(fake_changes))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fake)
}

#[tokio::test]
async fn a_hostile_peer_gets_classified_errors_and_stores_nothing_from_bad_pages() {
    let (url, fake) = start_fake().await;
    let a = Node::with(Options {
        federation: FederationConfig {
            peer_timeouts: PeerTimeouts {
                connect: Duration::from_secs(1),
                request: ms(1500),
                longpoll: ms(1500),
            },
            ..config()
        },
        ..Options::default()
    })
    .await;
    let did = fake.key.did_key();
    let cases = [
        ("th_other_thread", "PARSE_ERROR"),
        ("th_malformed", "PARSE_ERROR"),
        ("th_not_a_page", "PARSE_ERROR"),
        ("th_loop", "PARSE_ERROR"),
        ("th_backwards", "PARSE_ERROR"),
        ("th_oversize", "PARSE_ERROR"),
        ("th_endless", "PARSE_ERROR"),
        ("th_slow", "TIMEOUT"),
        ("th_server_error", "HTTP_5XX"),
        ("th_unauthorized", "HTTP_4XX"),
    ];
    let mut ids = HashMap::new();
    for (thread, _) in cases {
        ids.insert(thread, a.legacy_pair(&did, &url, thread, "x").await);
    }
    let bad_sig = a.legacy_pair(&did, &url, "th_bad_sig", "x").await;

    for (thread, code) in cases {
        let pair = eventually(
            &format!("{thread} failing with {code}"),
            DEADLINE,
            || async {
                let pair = a.legacy(&ids[thread]).await;
                (pair["state"] == "failing" && pair["last_error"]["code"] == code).then_some(pair)
            },
        )
        .await;
        assert!(pair["retries"].as_u64().unwrap() >= 1, "{pair}");
        assert!(pair["last_error"]["message"].is_string(), "{pair}");
    }
    assert_eq!(
        a.legacy(&ids["th_unauthorized"]).await["last_error"]["http_status"],
        401
    );

    // A bad signature is no protocol violation: the record is quarantined, its neighbour stored,
    // and the cursor moves past both.
    let pair = eventually("th_bad_sig past its page", DEADLINE, || async {
        let pair = a.legacy(&bad_sig).await;
        (fake.seen("th_bad_sig").iter().any(|s| *s == cursor_at(2))).then_some(pair)
    })
    .await;
    assert_eq!(pair["state"], "running", "{pair}");
    assert!(pair["last_error"].is_null(), "{pair}");
    assert_eq!(
        a.ids("th_bad_sig").await,
        BTreeSet::from([fake.id("th_bad_sig", 1)])
    );
    let held = a.quarantine(&bad_sig).await;
    let stranger_id = held
        .iter()
        .find(|(_, code)| *code == "SIGNER_UNRESOLVED")
        .map(|(id, _)| id.clone());
    let mut expected = HashMap::from([
        (fake.id("th_bad_sig", 2), "SIGNATURE_INVALID".to_string()),
        (fake.id("th_bad_sig", 3), "ID_MISMATCH".to_string()),
        (fake.id("th_bad_sig", 4), "SIGNATURE_REQUIRED".to_string()),
    ]);
    expected.insert(
        stranger_id.expect("the unresolvable signer is held"),
        "SIGNER_UNRESOLVED".into(),
    );
    assert_eq!(held, expected);

    // A record whose (thread, actor, clock) is taken here is held back; the rest goes in.
    let taken = json!({"act": "KNOW", "actor": did, "thread": "th_clash", "clock": 2, "body": {"mine": true}});
    let (status, local) = a.post("/v1/records", &taken).await;
    assert_eq!(status, 201, "{local}");
    let clash = a.legacy_pair(&did, &url, "th_clash", "x").await;
    eventually("th_clash past its page", DEADLINE, || async {
        fake.seen("th_clash")
            .iter()
            .any(|s| *s == cursor_at(2))
            .then_some(())
    })
    .await;
    assert_eq!(
        a.ids("th_clash").await,
        BTreeSet::from([
            fake.id("th_clash", 1),
            local["id"].as_str().unwrap().to_string()
        ])
    );
    assert_eq!(
        a.quarantine(&clash).await,
        HashMap::from([(fake.id("th_clash", 2), "DUPLICATE_CLOCK".to_string())])
    );

    // Nothing from a bad page was stored, and the cursor stayed where it was.
    for (thread, _) in cases {
        let stored = a.ids(thread).await;
        if thread == "th_backwards" {
            // The first page was fine; the one going backwards is not stored.
            assert_eq!(stored, BTreeSet::from([fake.id(thread, 1)]), "{thread}");
            let seen = fake.seen(thread);
            assert!(seen.len() >= 3, "{seen:?}");
            assert!(seen[1..].iter().all(|s| *s == cursor_at(10)), "{seen:?}");
        } else {
            assert!(stored.is_empty(), "{thread}: {stored:?}");
            if thread != "th_slow" {
                let seen = fake.seen(thread);
                assert!(seen.len() >= 2, "{thread}: {seen:?}");
                assert!(seen.iter().all(String::is_empty), "{thread}: {seen:?}");
            }
        }
        assert!(a.quarantine(&ids[thread]).await.is_empty(), "{thread}");
    }
    assert!(a.ids("th_elsewhere").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 6. A peer that is down, then comes up

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A store for a steward that has not started yet, with a sync token minted for a peer.
async fn prepared_store(key: &Keypair) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_file(&common::store_path(dir.path()))
        .await
        .unwrap();
    let identity = syncropel_tenant::Identity::new(key.clone());
    let sa = syncropel_tenant::create_service_account(
        &store,
        TENANT,
        &identity,
        "puller",
        vec!["federation:sync_pull".into()],
        Vec::new(),
    )
    .await
    .unwrap();
    let token = syncropel_tenant::mint(&store, TENANT, &identity, "test", &sa.id, None)
        .await
        .unwrap()
        .token;
    store.close().await;
    (dir, token)
}

#[tokio::test]
async fn a_peer_that_is_down_backs_off_then_catches_up_without_duplicates() {
    let port = free_port();
    let key = Keypair::generate();
    let (dir, token) = prepared_store(&key).await;
    let a = Node::start().await;
    let thread = "th_fed_down";
    let id = a
        .legacy_pair(
            &key.did_key(),
            &format!("http://127.0.0.1:{port}"),
            thread,
            &token,
        )
        .await;

    // Failing, retried with a growing then capped backoff.
    let mut ceilings = Vec::new();
    let mut retries = Vec::new();
    let start = Instant::now();
    let pair = loop {
        let pair = a.legacy(&id).await;
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
    let b = Node::with(Options {
        federation: config(),
        keypair: Some(key),
        addr: Some(SocketAddr::from(([127, 0, 0, 1], port))),
        dir: Some(dir),
        ..Options::default()
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
        let pair = a.legacy(&id).await;
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
    assert!(a.quarantine(&id).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 7. Restart

fn without_health(mut list: Value) -> Value {
    for pair in list["data"].as_array_mut().unwrap() {
        pair.as_object_mut().unwrap().remove("sync_health");
    }
    list
}

#[tokio::test]
async fn pair_state_is_rebuilt_from_records_after_a_restart_and_jobs_resume() {
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;
    let view = a.pair_with(&b).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    let thread = "th_fed_restart";
    let first = b
        .emit(thread, "did:sync:user:bob", 1, json!({"c": 1}))
        .await;
    a.pull(thread, &b.did()).await;
    a.arrived(first["id"].as_str().unwrap()).await;
    // Some history: a pause and a resume.
    for op in ["pause", "resume"] {
        let (status, body) = a
            .post(&format!("/v1/federation/pairs/{pair_id}/{op}"), &json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, before) = a.get("/v1/federation/pairs").await;
    let addr = a.s.addr;
    let (dir, key) = a.s.stop().await;

    let a = Node::with(Options {
        federation: config(),
        keypair: Some(key),
        addr: Some(addr),
        dir: Some(dir),
        resume_jobs: true,
        ..Options::default()
    })
    .await;
    let (status, after) = a.get("/v1/federation/pairs").await;
    assert_eq!(status, 200);
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

// ---------------------------------------------------------------------------------------------
// 8. More of the pair lifecycle

#[tokio::test]
async fn pausing_either_side_stops_the_flow_until_resume() {
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;
    let view = a.pair_with(&b).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    let thread = "th_fed_pause_flow";
    let actor = "did:sync:user:bob";
    a.pull(thread, &b.did()).await;
    let first = b.emit(thread, actor, 1, json!({"c": 1})).await;
    a.arrived(first["id"].as_str().unwrap()).await;

    for (side, name) in [(&a, "puller"), (&b, "source")] {
        let (status, paused) = side
            .post(&format!("/v1/federation/pairs/{pair_id}/pause"), &json!({}))
            .await;
        assert_eq!(status, 200, "{paused}");
        let clock = if name == "puller" { 2 } else { 3 };
        let held = b.emit(thread, actor, clock, json!({"c": clock})).await;
        tokio::time::sleep(ms(800)).await;
        assert!(
            a.record(held["id"].as_str().unwrap()).await.is_none(),
            "a record crossed a pair paused on the {name} side"
        );
        if name == "puller" {
            let (status, refusal) = a.try_pull(thread, &b.did()).await;
            assert_eq!(status, 403, "{refusal}");
            assert_eq!(error_code(&refusal), "pair_paused");
        }
        let (status, resumed) = side
            .post(
                &format!("/v1/federation/pairs/{pair_id}/resume"),
                &json!({}),
            )
            .await;
        assert_eq!(status, 200, "{resumed}");
        a.arrived(held["id"].as_str().unwrap()).await;
    }
    assert_eq!(a.ids(thread).await.len(), 3);
}

#[tokio::test]
async fn a_peer_that_revoked_while_we_were_away_degrades_the_pair() {
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;
    let view = a.pair_with(&b).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    let thread = "th_fed_away";
    a.pull(thread, &b.did()).await;
    let addr = a.s.addr;
    let (dir, key) = a.s.stop().await;

    let (status, revoked) = b
        .post(
            &format!("/v1/federation/pairs/{pair_id}/revoke"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{revoked}");

    let a = Node::with(Options {
        federation: config(),
        keypair: Some(key),
        addr: Some(addr),
        dir: Some(dir),
        resume_jobs: true,
        ..Options::default()
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
    let again = a.pair_with(&b).await;
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
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;
    let view = a.pair_with(&b).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    a.pull("th_fed_health", &b.did()).await;
    b.s.stop().await;
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
async fn renewing_pair_tokens_swaps_both_bearers_and_sync_goes_on() {
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;
    let view = a.pair_with(&b).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    let thread = "th_fed_renew";
    a.pull(thread, &b.did()).await;
    let old_a = a.outbound_token(&pair_id).await.unwrap();
    let old_b = b.outbound_token(&pair_id).await.unwrap();

    let (status, renewed) = a
        .post(
            &format!("/v1/federation/pairs/{pair_id}/refresh"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{renewed}");
    let new_a = a.outbound_token(&pair_id).await.unwrap();
    let new_b = b.outbound_token(&pair_id).await.unwrap();
    assert_ne!(new_a, old_a);
    assert_ne!(new_b, old_b);
    let query = "thread=th_fed_renew&feed=normal";
    for (node, token, actor, works) in [
        (&b, &old_a, a.did(), 401),
        (&b, &new_a, a.did(), 200),
        (&a, &old_b, b.did(), 401),
        (&a, &new_b, b.did(), 200),
    ] {
        let (status, body) = node.changes_as(token, &actor, query).await;
        assert_eq!(status, works, "{body}");
    }
    let ours = a.pair(&pair_id).await;
    let theirs = b.pair(&pair_id).await;
    for (x, y) in [(&ours, &theirs), (&theirs, &ours)] {
        assert_eq!(
            x["tokens"]["outbound"]["token_id"],
            y["tokens"]["inbound"]["token_id"]
        );
    }
    assert_eq!(
        ours["tokens"]["outbound"]["token_id"],
        sha256_hex(new_a.as_bytes())
    );
    // Pending requests still list (the renewal's bookkeeping is no handshake).
    for node in [&a, &b] {
        let (status, pending) = node.get("/v1/federation/pending").await;
        assert_eq!(status, 200, "{pending}");
    }
    let record = b.emit(thread, "did:sync:user:bob", 1, json!({})).await;
    a.arrived(record["id"].as_str().unwrap()).await;
    let pair = eventually("active again", DEADLINE, || async {
        let pair = a.pair(&pair_id).await;
        (pair["state"] == "active").then_some(pair)
    })
    .await;
    assert_eq!(pair["state"], "active");
}

const DAY: i64 = 24 * 3600;

/// The clock a steward's renewal decisions read: `steady` seconds ahead of the real one, plus
/// `once` seconds for its next reading only. It counts its readings (one per renewal check).
#[derive(Clone, Default)]
struct TestClock {
    steady: Arc<AtomicI64>,
    once: Arc<AtomicI64>,
    reads: Arc<AtomicU64>,
}

impl TestClock {
    fn clock(&self) -> config::Clock {
        let clock = self.clone();
        Arc::new(move || {
            clock.reads.fetch_add(1, Ordering::SeqCst);
            syncropel_protocol::unix_now()
                + clock.steady.load(Ordering::SeqCst)
                + clock.once.swap(0, Ordering::SeqCst)
        })
    }

    fn stand_at(&self, days: i64) {
        self.steady.store(days * DAY, Ordering::SeqCst);
    }

    /// The next renewal check (only) reads day `days`.
    fn once_at(&self, days: i64) {
        self.once.store(days * DAY, Ordering::SeqCst);
    }

    /// Waits until `n` more renewal checks have begun (so `n - 1` have run whole).
    async fn ticks(&self, n: u64) {
        let start = self.reads.load(Ordering::SeqCst);
        eventually("renewal checks", DEADLINE, || async {
            (self.reads.load(Ordering::SeqCst) >= start + n).then_some(())
        })
        .await;
    }
}

impl Node {
    /// A steward running its renewal loop every 100 ms on `clock`.
    async fn renewing(clock: &TestClock, dids: &[String]) -> Node {
        Node::with(Options {
            federation: FederationConfig {
                auto_approve: dids.to_vec(),
                clock: clock.clock(),
                renewal_interval: ms(100),
                ..config()
            },
            renewal: true,
            ..Options::default()
        })
        .await
    }

    /// The directions of the `token_renewed` records on `th_federation_pairs`, sorted.
    async fn renewals(&self) -> Vec<String> {
        let mut directions: Vec<String> = self
            .records(syncropel_protocol::PAIRS_THREAD)
            .await
            .iter()
            .filter(|r| r["body"]["op"] == "token_renewed")
            .map(|r| {
                r["body"]["fields"]["direction"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        directions.sort();
        directions
    }
}

/// The (inbound, outbound) token ids of a pair view.
fn token_ids(view: &Value) -> (Value, Value) {
    let tokens = &view["tokens"];
    (
        tokens["inbound"]["token_id"].clone(),
        tokens["outbound"]["token_id"].clone(),
    )
}

/// A paired A (initiator, pulling `thread` from B) and B, both renewing on their own clocks;
/// answers the pair id.
async fn renewing_pair(a: &Node, b: &Node, thread: &str) -> String {
    let view = a.pair_with(b).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    let first = b.emit(thread, "did:sync:user:bob", 1, json!({})).await;
    a.pull(thread, &b.did()).await;
    a.arrived(first["id"].as_str().unwrap()).await;
    pair_id
}

/// Both sides as they stand: their views and the bearers each holds for the other.
async fn pair_sides(a: &Node, b: &Node, pair_id: &str) -> [(Value, String); 2] {
    [
        (
            a.pair(pair_id).await,
            a.outbound_token(pair_id).await.unwrap(),
        ),
        (
            b.pair(pair_id).await,
            b.outbound_token(pair_id).await.unwrap(),
        ),
    ]
}

/// Nothing was renewed since `before`, and the bearers of then still work.
async fn assert_not_renewed(
    a: &Node,
    b: &Node,
    pair_id: &str,
    thread: &str,
    before: &[(Value, String); 2],
) {
    let now = pair_sides(a, b, pair_id).await;
    for ((then, old), (view, held)) in before.iter().zip(&now) {
        assert_eq!(token_ids(view), token_ids(then), "{view}");
        assert_eq!(held, old);
    }
    for node in [a, b] {
        assert_eq!(node.renewals().await, Vec::<String>::new());
    }
    let query = format!("thread={thread}&feed=normal");
    for (node, token, actor) in [(b, &before[0].1, a.did()), (a, &before[1].1, b.did())] {
        let (status, body) = node.changes_as(token, &actor, &query).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// One renewal happened since `before`: both sides show new token ids, each the other's; each
/// side wrote one `token_renewed` record per direction; the old bearers are refused and the new
/// ones work; records still flow both ways.
async fn assert_renewed_once(
    a: &Node,
    b: &Node,
    pair_id: &str,
    thread: &str,
    before: &[(Value, String); 2],
) {
    let now = eventually("both sides renewed", DEADLINE, || async {
        let now = pair_sides(a, b, pair_id).await;
        let all_new = before.iter().zip(&now).all(|((then, _), (view, _))| {
            let (old_in, old_out) = token_ids(then);
            let (new_in, new_out) = token_ids(view);
            new_in != old_in && new_out != old_out
        });
        all_new.then_some(now)
    })
    .await;
    let [(ours, new_a), (theirs, new_b)] = &now;
    for (x, y) in [(ours, theirs), (theirs, ours)] {
        assert_eq!(
            x["tokens"]["outbound"]["token_id"],
            y["tokens"]["inbound"]["token_id"]
        );
    }
    assert_eq!(
        ours["tokens"]["outbound"]["token_id"],
        sha256_hex(new_a.as_bytes())
    );
    assert_eq!(
        theirs["tokens"]["outbound"]["token_id"],
        sha256_hex(new_b.as_bytes())
    );
    for node in [a, b] {
        assert_eq!(node.renewals().await, ["inbound", "outbound"]);
    }
    let query = format!("thread={thread}&feed=normal");
    let (old_a, old_b) = (&before[0].1, &before[1].1);
    for (node, token, actor, expected) in [
        (b, old_a, a.did(), 401),
        (b, new_a, a.did(), 200),
        (a, old_b, b.did(), 401),
        (a, new_b, b.did(), 200),
    ] {
        let (status, body) = node.changes_as(token, &actor, &query).await;
        assert_eq!(status, expected, "{body}");
    }
    // A's running job goes on with the new bearer; B pulls from A with its new one.
    let record = b.emit(thread, "did:sync:user:bob", 2, json!({})).await;
    a.arrived(record["id"].as_str().unwrap()).await;
    let mine = a
        .emit("th_fed_renewed_back", "did:sync:user:alice", 1, json!({}))
        .await;
    let pulled = b.pull("th_fed_renewed_back", &a.did()).await;
    assert_eq!(pulled["pulled"], 1, "{pulled}");
    b.arrived(mine["id"].as_str().unwrap()).await;
    for node in [a, b] {
        eventually("the pair active", DEADLINE, || async {
            (node.pair(pair_id).await["state"] == "active").then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn the_initiator_renews_pair_tokens_by_itself_from_day_83() {
    let (a_clock, b_clock) = (TestClock::default(), TestClock::default());
    let a = Node::renewing(&a_clock, &[]).await;
    let b = Node::renewing(&b_clock, &[a.did()]).await;
    let thread = "th_fed_auto_renew";
    let pair_id = renewing_pair(&a, &b, thread).await;
    let before = pair_sides(&a, &b, &pair_id).await;

    // Day 82 on both sides: the tokens have eight days left; nobody renews.
    a_clock.stand_at(82);
    b_clock.stand_at(82);
    a_clock.ticks(3).await;
    b_clock.ticks(3).await;
    assert_not_renewed(&a, &b, &pair_id, thread, &before).await;

    // Day 84 on A: the initiator renews both tokens, on its own.
    a_clock.stand_at(0);
    a_clock.once_at(84);
    assert_renewed_once(&a, &b, &pair_id, thread, &before).await;
    // The new tokens are not due: nothing more is renewed.
    a_clock.ticks(3).await;
    b_clock.ticks(3).await;
    for node in [&a, &b] {
        assert_eq!(node.renewals().await, ["inbound", "outbound"]);
    }
}

#[tokio::test]
async fn the_responder_renews_from_day_85_when_the_initiator_has_not() {
    let (a_clock, b_clock) = (TestClock::default(), TestClock::default());
    let a = Node::renewing(&a_clock, &[]).await;
    let b = Node::renewing(&b_clock, &[a.did()]).await;
    let thread = "th_fed_responder_renew";
    let pair_id = renewing_pair(&a, &b, thread).await;
    let before = pair_sides(&a, &b, &pair_id).await;

    // Day 84 on B (A on real time): the responder leaves days 83-85 to the initiator.
    b_clock.stand_at(84);
    a_clock.ticks(3).await;
    b_clock.ticks(3).await;
    assert_not_renewed(&a, &b, &pair_id, thread, &before).await;

    // Day 86 on B: it renews itself.
    b_clock.stand_at(0);
    b_clock.once_at(86);
    assert_renewed_once(&a, &b, &pair_id, thread, &before).await;
}

#[tokio::test]
async fn a_source_whose_store_was_made_anew_is_pulled_again_from_the_start() {
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;
    a.pair_with(&b).await;
    let thread = "th_fed_epoch";
    let actor = "did:sync:user:bob";
    let first = b.emit(thread, actor, 1, json!({"c": 1})).await;
    let pulled = a.pull(thread, &b.did()).await;
    assert_eq!(pulled["pulled"], 1, "{pulled}");
    // B's store gets a new life (as after an import): another epoch and cursor key.
    let fresh = json!({"epoch": "0123456789abcdef", "key": hex::encode([7u8; 32])}).to_string();
    b.s.state
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
    // The held cursor is of the old life: refused as such (409), the puller starts again
    // (its pull job may have been first; either way the pull succeeds).
    let again = a.pull(thread, &b.did()).await;
    assert_eq!(again["quarantined"], 0, "{again}");
    a.arrived(second["id"].as_str().unwrap()).await;
    let third = b.emit(thread, actor, 3, json!({"c": 3})).await;
    a.arrived(third["id"].as_str().unwrap()).await;
    assert_eq!(a.ids(thread).await.len(), 3);
    assert!(a.record(first["id"].as_str().unwrap()).await.is_some());
}

#[tokio::test]
async fn the_changes_feed_refuses_what_a_peer_may_not_ask() {
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;
    let view = a.pair_with(&b).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    let token = a.outbound_token(&pair_id).await.unwrap();
    let me = a.did();
    let meta = fstate::sync_meta(b.s.state.store.as_ref(), TENANT)
        .await
        .unwrap();
    let ahead = SyncCursor {
        epoch: meta.epoch.clone(),
        seq: 1_000_000,
    }
    .encode(&meta.mac_key());
    let other_epoch = SyncCursor {
        epoch: "ffffffffffffffff".into(),
        seq: 1,
    }
    .encode(b"some other key");
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
        let (got, body) = b.changes_as(&token, &me, &query).await;
        assert_eq!(got, status, "{query}: {body}");
        assert_eq!(error_code(&body), code, "{query}");
    }
    // No actor claim, or another actor's.
    let request =
        b.s.http
            .get(format!("{}/v1/sync/changes?thread=th_x", b.s.url))
            .bearer_auth(&token);
    let (status, body) = b.s.send(request).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_code(&body), "DID_CLAIM_DENIED");
    let (status, body) = b
        .changes_as(&token, "did:sync:user:mallory", "thread=th_x")
        .await;
    assert_eq!(status, 403, "{body}");
    // A pair token opens nothing else.
    let (status, body) = b.s.get(&token, "/v1/records?limit=10").await;
    assert_eq!(status, 403, "{body}");

    // An empty thread answers an empty page whose cursor is the one sent.
    let (status, page) = b.changes_as(&token, &me, "thread=th_nothing_yet").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["records"], json!([]));
    assert_eq!(page["next_cursor"], "");
    assert_eq!(page["has_more"], false);
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
        let (status, page) = b
            .changes_as(
                &token,
                &me,
                &format!("thread=th_fed_pages&limit=2&since={since}"),
            )
            .await;
        assert_eq!(status, 200, "{page}");
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
    let (_, pairs) = b
        .get("/v1/records?thread=th_federation_pairs&limit=10")
        .await;
    ids.push(pairs["data"][0]["id"].clone());
    let request =
        b.s.http
            .post(format!("{}/v1/sync/records", b.s.url))
            .bearer_auth(&token)
            .header("x-syncropel-actor", &me)
            .json(&json!({"ids": ids}));
    let (status, fetched) = b.s.send(request).await;
    assert_eq!(status, 200, "{fetched}");
    let got: BTreeSet<String> = fetched["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, wanted);
}

#[tokio::test]
async fn a_legacy_pair_to_a_paired_peer_uses_the_pair_token() {
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;
    a.pair_with(&b).await;
    let thread = "th_fed_legacy_pair";
    let (status, created) = a
        .post(
            "/v1/sync/pairs",
            &json!({"peer_did": b.did(), "peer_url": b.s.url, "thread_id": thread}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert!(created.get("warning").is_none(), "{created}");
    let id = created["pair_id"].as_str().unwrap().to_string();
    let record = b.emit(thread, "did:sync:user:bob", 1, json!({})).await;
    a.arrived(record["id"].as_str().unwrap()).await;
    let pair = eventually("running", DEADLINE, || async {
        let pair = a.legacy(&id).await;
        (pair["state"] == "running").then_some(pair)
    })
    .await;
    assert_eq!(pair["thread_id"], thread);
    // Pause, then remove: nothing more crosses.
    let (status, paused) = a
        .post(&format!("/v1/sync/pairs/{id}/pause"), &json!({}))
        .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["state"], "paused");
    let (status, removed) =
        a.s.send(
            a.s.http
                .delete(format!("{}/v1/sync/pairs/{id}", a.s.url))
                .bearer_auth(&a.token),
        )
        .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["state"], "stopped");
    let (status, _) = a.get(&format!("/v1/sync/pairs/{id}")).await;
    assert_eq!(status, 404);
    let late = b.emit(thread, "did:sync:user:bob", 2, json!({})).await;
    tokio::time::sleep(ms(500)).await;
    assert!(a.record(late["id"].as_str().unwrap()).await.is_none());

    // Added again, it runs again and catches up.
    let (status, again) = a
        .post(
            "/v1/sync/pairs",
            &json!({"peer_did": b.did(), "peer_url": b.s.url, "thread_id": thread}),
        )
        .await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["pair_id"], id.as_str());
    a.arrived(late["id"].as_str().unwrap()).await;
    let pair = eventually("running again", DEADLINE, || async {
        let pair = a.legacy(&id).await;
        (pair["state"] == "running").then_some(pair)
    })
    .await;
    assert_eq!(pair["thread_id"], thread);
    let (_, list) = a.get("/v1/sync/pairs").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn a_one_shot_pull_without_a_pair_needs_a_peer_token_and_a_url() {
    let a = Node::start().await;
    let b = Node::start().await;
    let thread = "th_fed_once";
    let record = b.emit(thread, "did:sync:user:bob", 1, json!({})).await;
    let (status, refusal) = a.try_pull(thread, &b.did()).await;
    assert_eq!(status, 404, "{refusal}");
    assert_eq!(error_code(&refusal), "unpaired_peer");
    let token = b.s.token(&["federation:sync_pull"], &[]).await;
    let (status, refusal) = a
        .post(
            "/v1/sync/pull",
            &json!({"thread": thread, "peer": b.did(), "peer_token": token}),
        )
        .await;
    assert_eq!(status, 400, "{refusal}");
    let (status, pulled) = a
        .post(
            "/v1/sync/pull",
            &json!({"thread": thread, "peer": b.s.url, "peer_token": token}),
        )
        .await;
    assert_eq!(status, 200, "{pulled}");
    assert_eq!(pulled["pulled"], 1, "{pulled}");
    let got = a.arrived(record["id"].as_str().unwrap()).await;
    assert_eq!(got["sig"], record["sig"]);
    // A bad token is the peer's refusal, classified.
    let (status, refusal) = a
        .post(
            "/v1/sync/pull",
            &json!({"thread": thread, "peer": b.s.url, "peer_token": "spl_test_sa_nobody_x"}),
        )
        .await;
    assert_eq!(status, 502, "{refusal}");
    assert_eq!(refusal["peer_error"], "HTTP_4XX", "{refusal}");
}

/// A refresh whose answer was lost is retried with the same nonce: the bearer it presented is
/// already revoked, yet the peer answers again with the same new token (authenticated by the
/// signature over that nonce); another nonce without a valid bearer is refused.
#[tokio::test]
async fn a_refresh_retried_after_a_lost_answer_gets_the_same_token() {
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;
    let view = a.pair_with(&b).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    let bearer = a.outbound_token(&pair_id).await.unwrap();
    let refresh = |nonce: &str| {
        let mut object = json!({
            "pair_id": pair_id, "generation": 1, "nonce": nonce, "issued_at_ms": now_ms(),
            "issued_token": "spl_test_sa_x_0123456789abcdef0123456789abcdef",
        })
        .as_object()
        .cloned()
        .unwrap();
        sign_object(&mut object, &a.s.tenant.identity.key);
        Value::Object(object)
    };
    let send = |body: Value, token: Option<String>| {
        let mut request =
            b.s.http
                .post(format!("{}/v1/federation/pair/refresh", b.s.url))
                .header("x-syncropel-actor", a.did())
                .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        b.s.send(request)
    };
    let nonce = "ab".repeat(32);
    let (status, first) = send(refresh(&nonce), Some(bearer.clone())).await;
    assert_eq!(status, 200, "{first}");
    // The answer "was lost": the same nonce again, with the now revoked bearer, or none at all.
    for token in [Some(bearer.clone()), None] {
        let (status, again) = send(refresh(&nonce), token).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["issued_token"], first["issued_token"]);
    }
    // A new nonce needs the current bearer; the old one no longer renews anything.
    let (status, refused) = send(refresh(&"cd".repeat(32)), Some(bearer)).await;
    assert_eq!(status, 401, "{refused}");
    // Signed by someone else: refused whatever the nonce.
    let stranger = Keypair::generate();
    let mut forged = refresh(&nonce).as_object().cloned().unwrap();
    forged.remove("sig");
    sign_object(&mut forged, &stranger);
    let (status, refused) = send(Value::Object(forged), None).await;
    assert_eq!(status, 403, "{refused}");
}

/// A peer that has not answered for more than a day degrades the pair (`unreachable_24h`, read
/// from the cursor row's last success, so it holds across restarts); when the peer is back the
/// next successful pull recovers it.
#[tokio::test]
async fn a_peer_unreachable_for_a_day_degrades_the_pair_and_recovers() {
    use syncropel_federation::state::{pull_cursor, put_cursor};
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;
    let view = a.pair_with(&b).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    let thread = "th_fed_unreachable";
    a.pull(thread, &b.did()).await;
    let store = a.s.state.store.clone();
    let mut cursor = pull_cursor(store.as_ref(), TENANT, &pair_id, thread)
        .await
        .unwrap()
        .unwrap();
    let b_addr = b.s.addr;
    let (b_dir, b_key) = b.s.stop().await;
    // The last success, a day and an hour ago.
    cursor.last_sync_at = Some(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            - 25 * 3600,
    );
    store
        .write(
            TENANT,
            Vec::new(),
            vec![put_cursor(&pair_id, thread, &cursor)],
        )
        .await
        .unwrap();
    let pair = eventually("degraded", DEADLINE, || async {
        let pair = a.pair(&pair_id).await;
        (pair["state"] == "degraded").then_some(pair)
    })
    .await;
    assert_eq!(pair["degraded_cause"], "unreachable_24h", "{pair}");

    let b = Node::with(Options {
        federation: config(),
        keypair: Some(b_key),
        addr: Some(b_addr),
        dir: Some(b_dir),
        ..Options::default()
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

/// A pulled record whose parent lives on a thread the puller does not pull gets its parent
/// fetched (`POST /v1/sync/records`), verified and stored; the parent's thread is not
/// otherwise pulled.
#[tokio::test]
async fn missing_parents_are_fetched_from_the_source() {
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;
    a.pair_with(&b).await;
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
    let (status, child) = b.post("/v1/records", &envelope).await;
    assert_eq!(status, 201, "{child}");
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
    let a = Node::start().await;
    let b = Node::approving(None, &[a.did()]).await;
    a.pair_with(&b).await;
    let (status, grant) = b
        .post(
            "/v1/consent/grants",
            &json!({"source_namespace": "default", "target_namespace": "team", "hash_levels": ["L0"]}),
        )
        .await;
    assert_eq!(status, 201, "{grant}");
    let (status, records) = b.get("/v1/records?thread=th_consent").await;
    assert_eq!(status, 200, "{records}");
    let grant_record = records["data"][0]["id"].as_str().unwrap().to_string();
    let envelope = json!({"act": "DO", "actor": "did:sync:user:bob", "thread": "th_fed_sneaky",
        "clock": 1, "parents": [grant_record], "body": {}});
    let (status, child) = b.post("/v1/records", &envelope).await;
    assert_eq!(status, 201, "{child}");
    let pulled = a.pull("th_fed_sneaky", &b.did()).await;
    assert_eq!(pulled["pulled"], 1, "{pulled}");
    a.arrived(child["id"].as_str().unwrap()).await;
    tokio::time::sleep(ms(300)).await;
    assert!(a.record(&grant_record).await.is_none());
    let (status, grants) = a.get("/v1/consent/grants").await;
    assert_eq!(status, 200);
    assert_eq!(grants["data"], json!([]), "{grants}");

    for thread in ["th_consent", "th_federation_pairs", "th_audit_tokens"] {
        let (status, refused) = a
            .post("/v1/sync/pull", &json!({"thread": thread, "peer": b.did()}))
            .await;
        assert_eq!(status, 403, "{refused}");
        assert_eq!(refused["code"], "THREAD_NOT_ALLOWED");
    }

    // An account named as a pair's, with no pair behind it.
    let orphan =
        a.s.token_named("pair did:key:z6MkOrphan", &["federation:sync_pull"], &[])
            .await;
    let (status, refused) = a
        .changes_as(&orphan, "did:key:z6MkOrphan", "thread=th_fed_sneaky")
        .await;
    assert_eq!(status, 401, "{refused}");
}
