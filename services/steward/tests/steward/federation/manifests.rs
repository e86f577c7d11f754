//! The peer's manifest (federation-protocol.md §2.1, §3.4, §5.5): pairing refuses an expired one
//! unless told `no_strict` (never one whose signature fails), takes upstream's signing form, and a
//! refresh or the periodic pair check records a manifest that changed (`manifest_changed`) and
//! degrades a pair whose peer's manifest no longer verifies (`manifest_invalid`) until it does.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{json, Value};
use syncropel_client::api::StartPair;
use syncropel_client::ClientError;
use syncropel_federation::{manifest, renewal};
use syncropel_protocol::{canonical_string, sha256_hex, Keypair};
use syncropel_testkit::Node;

use super::{approving, serve_fake, start};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A front to a steward: serves the manifest the test sets at `/.well-known/syncropel` and
/// forwards every other request (method, path and query, body, the headers a peer sends) to
/// the steward behind it.
struct Front {
    url: String,
    manifest: Arc<Mutex<Value>>,
}

struct Forward {
    behind: String,
    manifest: Arc<Mutex<Value>>,
    http: reqwest::Client,
}

impl Front {
    async fn start(behind: &str) -> Front {
        let manifest = Arc::new(Mutex::new(Value::Null));
        let forward = Arc::new(Forward {
            behind: behind.to_string(),
            manifest: manifest.clone(),
            http: reqwest::Client::new(),
        });
        let app = axum::Router::new().fallback(forward_to).with_state(forward);
        let url = serve_fake(app).await;
        Front { url, manifest }
    }

    fn serve(&self, manifest: Value) {
        *self.manifest.lock().unwrap() = manifest;
    }
}

async fn forward_to(State(forward): State<Arc<Forward>>, request: Request) -> Response {
    if request.uri().path() == "/.well-known/syncropel" {
        let manifest = forward.manifest.lock().unwrap().clone();
        return axum::Json(json!({ "federation_manifest": manifest })).into_response();
    }
    let target = match request.uri().path_and_query() {
        Some(path) => format!("{}{path}", forward.behind),
        None => forward.behind.clone(),
    };
    let mut forwarded = forward.http.request(request.method().clone(), target);
    for name in ["authorization", "x-syncropel-actor", "content-type"] {
        if let Some(value) = request.headers().get(name) {
            forwarded = forwarded.header(name, value.as_bytes());
        }
    }
    let body = axum::body::to_bytes(request.into_body(), 8 << 20)
        .await
        .unwrap();
    let answer = forwarded.body(body).send().await.unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let bytes = answer.bytes().await.unwrap();
    (status, [("content-type", "application/json")], bytes).into_response()
}

/// The manifest of `did` at `origin`, signed by `key` at `at` in covered form.
fn signed(key: &Keypair, did: &str, origin: &str, at: SystemTime) -> Value {
    manifest::sign(key, did, origin, at)
}

/// `manifest` signed again as upstream signs: everything but the `signature` member.
fn upstream_form(mut manifest: Value, key: &Keypair) -> Value {
    let mut unsigned = manifest.clone();
    unsigned.as_object_mut().unwrap().remove("signature");
    let signature = key.sign(canonical_string(&unsigned).as_bytes());
    manifest["signature"]["signature"] =
        json!(base64::engine::general_purpose::STANDARD.encode(signature));
    manifest
}

/// SHA-256 of a manifest's canonical JSON, as pairs name it.
fn digest(manifest: &Value) -> String {
    sha256_hex(canonical_string(manifest).as_bytes())
}

/// `a` asks the steward at `url` to pair, refused: its status, code and message.
async fn refused_pairing(a: &Node, url: &str, no_strict: bool) -> (u16, String, String) {
    let request = StartPair {
        peer_url: url.into(),
        no_strict,
        ..StartPair::default()
    };
    match a.client.start_pairing(&request).await {
        Err(ClientError::Api {
            status,
            code,
            message,
            ..
        }) => (status, code, message),
        other => panic!("pairing was not refused: {other:?}"),
    }
}

#[tokio::test]
async fn pairing_takes_an_expired_manifest_only_when_not_strict() {
    let a = start().await;
    let key = Keypair::generate();
    let b = approving(Some(key.clone()), &[a.did()]).await;
    let front = Front::start(b.url()).await;
    let expired = signed(&key, &b.did(), &front.url, SystemTime::now() - 8 * DAY);
    front.serve(expired.clone());

    let (status, code, message) = refused_pairing(&a, &front.url, false).await;
    assert_eq!(
        (status, code.as_str()),
        (403, "UNAUTHENTICATED_INITIATOR"),
        "{message}"
    );
    assert!(message.contains("expired"), "{message}");
    // Freshness is all that is waived: a signature that fails is refused all the same.
    let mut forged = expired.clone();
    forged["advertises"]["kinds"] = json!(["music.catalog.track"]);
    front.serve(forged);
    let (status, _, message) = refused_pairing(&a, &front.url, true).await;
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("does not verify"), "{message}");
    let pairs = a.client.federation_pairs().await.unwrap();
    assert_eq!(pairs.json()["data"], json!([]), "refused before any record");

    front.serve(expired);
    let request = StartPair {
        peer_url: front.url.clone(),
        no_strict: true,
        ..StartPair::default()
    };
    let paired = a.client.start_pairing(&request).await.unwrap();
    assert_eq!(paired.status(), 200, "{}", paired.json());
    assert_eq!(paired.json()["state"], "active", "{}", paired.json());
    assert_eq!(paired.json()["peer_did"], b.did().as_str());
}

#[tokio::test]
async fn a_manifest_signed_in_upstream_form_pairs() {
    let a = start().await;
    let key = Keypair::generate();
    let b = approving(Some(key.clone()), &[a.did()]).await;
    let front = Front::start(b.url()).await;
    let covered = signed(&key, &b.did(), &front.url, SystemTime::now());
    front.serve(upstream_form(covered, &key));
    let view = a.pair_with(&front.url).await;
    assert_eq!(view["peer_did"], b.did().as_str(), "{view}");
}

/// `spl federation refresh`: the pair as it stands after.
async fn refresh(a: &Node, pair_id: &str) -> Value {
    let refreshed = a.client.refresh_pair(pair_id).await.unwrap();
    assert_eq!(refreshed.status(), 200, "{}", refreshed.json());
    refreshed.into_json()
}

/// The records of `thread` on `node`.
async fn records_of(node: &Node, thread: &str) -> Vec<Value> {
    let (status, page) = node
        .get(&format!("/v1/records?thread={thread}&limit=1000"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().clone()
}

/// The pair updates with `op` on `node`, oldest first.
async fn updates(node: &Node, op: &str) -> Vec<Value> {
    let mut updates: Vec<Value> = records_of(node, "th_federation_pairs")
        .await
        .into_iter()
        .filter(|r| r["body"]["op"] == op)
        .collect();
    updates.sort_by_key(|r| r["clock"].as_i64());
    updates
}

/// The audit record of the pair record `id`.
async fn audit_of(node: &Node, id: &Value) -> Value {
    records_of(node, "th_audit_federation_pairs")
        .await
        .into_iter()
        .find(|r| r["body"]["cause_record"] == *id)
        .unwrap_or_else(|| panic!("no audit of {id}"))
}

fn standing(pair: &Value) -> (&Value, &Value) {
    (&pair["state"], &pair["degraded_cause"])
}

#[tokio::test]
async fn refreshes_record_a_changed_manifest_and_degrade_while_it_does_not_verify() {
    let a = start().await;
    let key = Keypair::generate();
    let b = approving(Some(key.clone()), &[a.did()]).await;
    let view = a.pair_with(b.url()).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();

    // B serves the manifest its genesis named, also a second later (when one signed anew would
    // differ: `signed_at` counts seconds): a refresh finds nothing new.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, served) = b.get("/.well-known/syncropel").await;
    let served = &served["federation_manifest"];
    assert_eq!(view["peer_manifest_sha256"], digest(served), "{view}");
    let view = refresh(&a, &pair_id).await;
    assert_eq!(view["state"], "active", "{view}");
    assert!(updates(&a, "manifest_changed").await.is_empty());

    // B, seen through a front whose manifest the test sets.
    let front = Front::start(b.url()).await;
    let now = SystemTime::now();
    let first = signed(&key, &b.did(), &front.url, now);
    front.serve(first.clone());
    let moved = a.client.set_pair_url(&pair_id, &front.url).await.unwrap();
    assert_eq!(moved.json()["peer_url"], front.url.as_str());
    let view = refresh(&a, &pair_id).await;
    assert_eq!(view["state"], "active", "{view}");
    assert_eq!(view["peer_manifest_sha256"], digest(&first), "{view}");
    let changed = updates(&a, "manifest_changed").await;
    assert_eq!(changed.len(), 1);
    assert_eq!(
        changed[0]["body"]["fields"],
        json!({"peer_manifest_sha256": digest(&first)})
    );
    let audit = audit_of(&a, &changed[0]["id"]).await;
    assert_eq!(
        (
            &audit["body"]["transition"],
            &audit["body"]["event"],
            &audit["body"]["reason"]
        ),
        (&Value::Null, &json!("update"), &json!("manifest_changed")),
        "{audit}"
    );
    refresh(&a, &pair_id).await;
    assert_eq!(
        updates(&a, "manifest_changed").await.len(),
        1,
        "the same manifest again is no change"
    );

    // Altered after signing: the pair degrades, and a successful pull does not recover it.
    let mut tampered = first.clone();
    tampered["advertises"]["namespaces"] = json!(["everything"]);
    front.serve(tampered);
    let view = refresh(&a, &pair_id).await;
    assert_eq!(
        standing(&view),
        (&json!("degraded"), &json!("manifest_invalid")),
        "{view}"
    );
    let degrade = updates(&a, "degrade").await;
    assert_eq!(degrade.len(), 1);
    let audit = audit_of(&a, &degrade[0]["id"]).await;
    assert_eq!(audit["body"]["transition"], "active->degraded", "{audit}");
    assert_eq!(audit["body"]["reason"], "manifest_invalid", "{audit}");
    let thread = "th_fed_manifest";
    let record = b.emit(thread, "did:sync:user:bob", 1, json!({})).await;
    a.pull(thread, &b.did()).await;
    a.arrived(record["id"].as_str().unwrap()).await;
    assert_eq!(
        standing(&a.pair(&pair_id).await),
        (&json!("degraded"), &json!("manifest_invalid"))
    );

    // A new manifest that verifies recovers the pair and is recorded.
    let second = signed(&key, &b.did(), &front.url, now - Duration::from_secs(60));
    front.serve(second.clone());
    let view = refresh(&a, &pair_id).await;
    assert_eq!(standing(&view), (&json!("active"), &Value::Null), "{view}");
    assert_eq!(view["peer_manifest_sha256"], digest(&second), "{view}");
    assert_eq!(updates(&a, "manifest_changed").await.len(), 2);
    let recovered = updates(&a, "recover").await;
    assert_eq!(
        recovered.last().unwrap()["body"]["fields"],
        json!({"after": "manifest_invalid"})
    );

    // The periodic pair check does the same: an expired manifest no longer verifies either.
    let (fed, tenant) = (&a.steward.state.federation, &a.steward.tenant);
    front.serve(signed(&key, &b.did(), &front.url, now - 8 * DAY));
    renewal::check(fed, tenant).await.unwrap();
    assert_eq!(
        standing(&a.pair(&pair_id).await),
        (&json!("degraded"), &json!("manifest_invalid"))
    );
    front.serve(second);
    renewal::check(fed, tenant).await.unwrap();
    assert_eq!(
        standing(&a.pair(&pair_id).await),
        (&json!("active"), &Value::Null)
    );
    assert_eq!(updates(&a, "manifest_changed").await.len(), 2);
}
