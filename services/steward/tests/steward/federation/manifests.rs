//! The peer's manifest (federation-protocol.md §2.1): pairing refuses an expired one unless told
//! `no_strict` (never one whose signature fails), and takes upstream's signing form.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{json, Value};
use syncropel_client::api::StartPair;
use syncropel_client::ClientError;
use syncropel_federation::manifest;
use syncropel_protocol::{canonical_string, Keypair};
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
