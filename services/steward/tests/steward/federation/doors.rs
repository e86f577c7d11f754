//! The unauthenticated door of pairing (federation-protocol.md §4.2): anyone may ask, so one
//! address asks at most ten times a minute and holds three requests pending, a DID holds one,
//! a failed manifest fetch tells the asker nothing about what answered, and a stored request
//! keeps no nonce.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use syncropel_federation::state::HANDSHAKE;
use syncropel_protocol::Keypair;
use syncropel_steward::rate_limit::RateLimits;
use syncropel_testkit::{error_code, Node, Options, TENANT};

use super::{config, init_request, now_ms, start};

/// Serves, under `/<name>/`, the manifest of the key called `name`, and odd answers elsewhere.
struct Manifests {
    origin: String,
    keys: HashMap<String, Keypair>,
    /// Requests served.
    hits: AtomicUsize,
}

async fn manifest(State(site): State<Arc<Manifests>>, Path(name): Path<String>) -> Response {
    site.hits.fetch_add(1, Ordering::SeqCst);
    match name.as_str() {
        "broken" => (StatusCode::INTERNAL_SERVER_ERROR, "secret-internal-text").into_response(),
        _ => match site.keys.get(&name) {
            Some(key) => {
                let origin = format!("{}/{name}", site.origin);
                let signed = syncropel_federation::manifest::sign(
                    key,
                    &key.did_key(),
                    &origin,
                    SystemTime::now(),
                );
                axum::Json(json!({"federation_manifest": signed})).into_response()
            }
            None => StatusCode::NOT_FOUND.into_response(),
        },
    }
}

/// Starts the manifest site for `count` keys named `k0`, `k1`, …; its origin and the keys.
async fn manifest_site(count: usize) -> (String, HashMap<String, Keypair>) {
    let (origin, site) = counted_manifest_site(count).await;
    (origin, site.keys.clone())
}

/// [`manifest_site`], and the site itself (to count its requests).
async fn counted_manifest_site(count: usize) -> (String, Arc<Manifests>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let keys: HashMap<String, Keypair> = (0..count)
        .map(|i| (format!("k{i}"), Keypair::generate()))
        .collect();
    let site = Arc::new(Manifests {
        origin: origin.clone(),
        keys,
        hits: AtomicUsize::new(0),
    });
    let app = axum::Router::new()
        .route(
            "/{name}/.well-known/syncropel",
            axum::routing::get(manifest),
        )
        .with_state(site.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (origin, site)
}

async fn ask(b: &Node, request: &Value) -> (u16, Value) {
    b.steward
        .post_anonymous("/v1/federation/pair", request)
        .await
}

#[tokio::test]
async fn one_address_cannot_lock_pairing_out() {
    let b = start().await;
    let (origin, keys) = manifest_site(4).await;
    let asks =
        |name: &str| init_request(&keys[name], &b.did(), &format!("{origin}/{name}"), now_ms());

    for name in ["k0", "k1", "k2"] {
        let (status, answer) = ask(&b, &asks(name)).await;
        assert_eq!(status, 202, "{name}: {answer}");
    }
    // A fourth DID from the same address waits for one of those to be decided.
    let (status, refused) = ask(&b, &asks("k3")).await;
    assert_eq!(
        (status, error_code(&refused)),
        (429, "PAIR_RATE_LIMITED"),
        "{refused}"
    );
    // The same DID asking again replaces its request.
    let (status, answer) = ask(&b, &asks("k0")).await;
    assert_eq!(status, 202, "{answer}");
    let pending = b.client.pending_pairs().await.unwrap();
    assert_eq!(pending.data.len(), 3, "{}", pending.json());

    // No stored request holds its nonce (or the init that carries it): a database reader
    // cannot poll for the bearer of an approved request.
    let rows = b
        .steward
        .state
        .store
        .state_list(TENANT, HANDSHAKE)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    for (_, row) in &rows {
        let row: Value = serde_json::from_str(row).unwrap();
        assert!(row.get("init").is_none(), "{row}");
        assert!(row["nonce"].is_null(), "{row}");
    }

    // Ten requests a minute from one address; the eleventh waits (five were made above).
    for _ in 0..5 {
        let stale = init_request(&keys["k3"], &b.did(), &origin, now_ms() - 120_000);
        let (status, refused) = ask(&b, &stale).await;
        assert_eq!((status, error_code(&refused)), (403, "FRESHNESS_VIOLATION"));
    }
    let request = b
        .steward
        .http
        .post(format!("{}/v1/federation/pair", b.url()))
        .json(&asks("k3"))
        .send()
        .await
        .unwrap();
    assert_eq!(request.status(), 429);
    assert!(request.headers().contains_key("retry-after"));
    let refused: Value = request.json().await.unwrap();
    assert_eq!(error_code(&refused), "PAIR_RATE_LIMITED", "{refused}");
}

#[tokio::test]
async fn a_failed_manifest_fetch_tells_the_asker_nothing_of_what_answered() {
    let b = start().await;
    let (origin, _) = manifest_site(0).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let key = Keypair::generate();
    let mut messages = Vec::new();
    for url in [
        closed,
        format!("{origin}/missing"),
        format!("{origin}/broken"),
    ] {
        let request = init_request(&key, &b.did(), &url, now_ms());
        let (status, refused) = ask(&b, &request).await;
        assert_eq!(
            (status, error_code(&refused)),
            (403, "UNAUTHENTICATED_INITIATOR")
        );
        let message = refused["message"].as_str().unwrap().replace(&url, "<url>");
        assert!(!message.contains("secret-internal-text"), "{message}");
        messages.push(message);
    }
    assert!(messages.windows(2).all(|w| w[0] == w[1]), "{messages:?}");
}

/// A pair request from a public address may make the steward fetch from public addresses only,
/// even where its peers may be private (a local steward on its LAN): the caller cannot use it to
/// reach hosts of the steward's network. A caller already inside that network may.
#[tokio::test]
async fn a_caller_on_a_public_address_cannot_make_the_steward_fetch_from_its_network() {
    // Behind one proxy, so that the test can speak from any address.
    let b = Node::start(Options {
        federation: config(),
        rate_limits: RateLimits {
            trusted_proxies: 1,
            ..RateLimits::default()
        },
        ..Options::default()
    })
    .await;
    let (origin, site) = counted_manifest_site(2).await;
    let ask_from = |address: &'static str, name: &str| {
        let request = init_request(
            &site.keys[name],
            &b.did(),
            &format!("{origin}/{name}"),
            now_ms(),
        );
        let sent = b
            .steward
            .http
            .post(format!("{}/v1/federation/pair", b.url()))
            .header("x-forwarded-for", address)
            .json(&request);
        b.steward.send(sent)
    };

    let (status, refused) = ask_from("203.0.113.7", "k0").await;
    assert_eq!(
        (status, error_code(&refused)),
        (403, "UNAUTHENTICATED_INITIATOR"),
        "{refused}"
    );
    assert_eq!(site.hits.load(Ordering::SeqCst), 0, "nothing was fetched");
    assert!(b.client.pending_pairs().await.unwrap().data.is_empty());

    let (status, answer) = ask_from("192.168.1.20", "k1").await;
    assert_eq!(status, 202, "a caller on the LAN: {answer}");
    assert_eq!(site.hits.load(Ordering::SeqCst), 1);
    assert_eq!(b.client.pending_pairs().await.unwrap().data.len(), 1);
}
