//! A pair grants exactly what its approver saw: the pending view shows every namespace and map
//! asked for, approval binds those, the initiator refuses a genesis that names anything else,
//! and the changes feed serves a namespace whole only where the pair agreed it.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use syncropel_client::api::{PairReason, StartPair};
use syncropel_client::ClientError;
use syncropel_protocol::{record_id, Envelope, Keypair, NamespaceMap};

use syncropel_testkit::error_code;

use super::{approving, changes_as, paired, start};

fn map(local: &str, peer: &str) -> NamespaceMap {
    NamespaceMap {
        local: local.into(),
        peer: peer.into(),
    }
}

#[tokio::test]
async fn a_pair_grants_exactly_what_the_approver_saw() {
    let a = start().await;
    let b = start().await;
    for ns in ["finance", "inbox", "research"] {
        b.register_namespace(ns).await;
    }
    let request = StartPair {
        peer_url: b.url().into(),
        namespaces: vec!["default".into(), "finance".into()],
        maps: vec![map("inbox", "research")],
        ..StartPair::default()
    };
    let started = a.client.start_pairing(&request).await.unwrap();
    assert_eq!(started.status(), 202, "{}", started.json());
    let pair_id = started.json()["pair_id"].as_str().unwrap().to_string();

    // B's operator sees every namespace and map asked for.
    let pending = b.client.pending_pairs().await.unwrap();
    assert_eq!(pending.data.len(), 1, "{}", pending.json());
    assert_eq!(pending.data[0].namespaces, ["default", "finance"]);
    assert_eq!(pending.data[0].maps, [map("inbox", "research")]);
    assert_eq!(pending.data[0].namespace.as_deref(), Some("default"));

    let approved = b
        .client
        .approve_pair(&pair_id, &PairReason::default())
        .await
        .unwrap();
    assert_eq!(approved.status(), 200, "{}", approved.json());
    let polled = a.client.continue_pairing(&pair_id).await.unwrap();
    assert_eq!(polled.status(), 200, "{}", polled.json());
    let theirs = b.pair(&pair_id).await;
    assert_eq!(
        theirs["namespaces"],
        json!(["default", "finance"]),
        "{theirs}"
    );

    // The map lands B's `research` in A's `inbox`; B's own `inbox` is not part of the pair.
    let mapped = b
        .emit(
            "th_agreed",
            "did:sync:user:bob",
            1,
            json!({"namespace": "research", "n": 1}),
        )
        .await;
    let private = b
        .emit(
            "th_agreed",
            "did:sync:user:bob",
            2,
            json!({"namespace": "inbox", "n": 2}),
        )
        .await;
    let token = a.outbound_token(&pair_id).await.unwrap();
    let (status, page) = changes_as(
        &b,
        &token,
        &a.did(),
        "thread=th_agreed&target_namespace=inbox",
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let served: Vec<&Value> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["record"]["sig"].is_string())
        .map(|item| &item["id"])
        .collect();
    assert_eq!(served, [&mapped["id"]], "{page}");
    assert_ne!(served[0], &private["id"]);
}

/// A responder that answers init with a genesis it re-signed to name more namespaces than the
/// initiator asked for (it holds the real responder's key): a proxy in front of B.
struct Tampering {
    b_url: String,
    key: Keypair,
    own_url: String,
    http: reqwest::Client,
}

async fn tampering_proxy(State(proxy): State<Arc<Tampering>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap();
    if path == "/.well-known/syncropel" {
        // B's document, with a manifest for this proxy's URL (so init comes here).
        let mut document: Value = proxy
            .http
            .get(format!("{}{path}", proxy.b_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let did = proxy.key.did_key();
        document["federation_manifest"] = syncropel_federation::manifest::sign(
            &proxy.key,
            &did,
            &proxy.own_url,
            SystemTime::now(),
        );
        return axum::Json(document).into_response();
    }
    let forwarded = proxy
        .http
        .request(method.clone(), format!("{}{path}", proxy.b_url))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(forwarded.status().as_u16()).unwrap();
    let mut answer: Value = forwarded.json().await.unwrap_or(Value::Null);
    if method == Method::POST && answer["genesis"].is_object() {
        let mut record = answer["genesis"]["record"].clone();
        record["body"]["namespaces"] = json!(["default", "finance"]);
        let object = record.as_object_mut().unwrap();
        object.remove("sig");
        object.remove("signer");
        let envelope = Envelope::from_value(record.clone()).unwrap();
        let canonical = envelope.canonical_json();
        record["sig"] = json!(proxy.key.sign_hex(canonical.as_bytes()));
        answer["genesis"] = json!({"id": record_id(&canonical), "record": record});
    }
    (status, axum::Json(answer)).into_response()
}

#[tokio::test]
async fn the_initiator_refuses_a_genesis_naming_what_it_did_not_ask_for() {
    let a = start().await;
    let key = Keypair::generate();
    let b = approving(Some(key.clone()), &[a.did()]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let own_url = format!("http://{}", listener.local_addr().unwrap());
    let proxy = Arc::new(Tampering {
        b_url: b.url().to_string(),
        key,
        own_url: own_url.clone(),
        http: reqwest::Client::new(),
    });
    let app = axum::Router::new()
        .fallback(tampering_proxy)
        .with_state(proxy);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let request = StartPair {
        peer_url: own_url,
        ..StartPair::default()
    };
    let refused = a.client.start_pairing(&request).await.unwrap_err();
    let ClientError::Api {
        status, message, ..
    } = &refused
    else {
        panic!("{refused}");
    };
    assert_eq!(*status, 502, "{refused}");
    assert!(message.contains("other namespaces"), "{message}");
    // Nothing of the tampered genesis was kept: no active pair, no bearer of B's.
    let pairs = a.client.federation_pairs().await.unwrap();
    for pair in pairs.json()["data"].as_array().unwrap() {
        assert_ne!(pair["state"], "active", "{pair}");
        let pair_id = pair["pair_id"].as_str().unwrap();
        assert!(a.outbound_token(pair_id).await.is_none());
    }
    drop(b);
}

/// The source serves a pair only what its scope allows (federation-protocol.md §5.6), set by the
/// operator through `POST /v1/federation/pairs/{id}/config`: once the pair names threads, those
/// whole; with a thread rule, the records of other threads the rule answers `true` for; nothing
/// else, by page, by id or through a pull.
#[tokio::test]
async fn a_pair_is_served_the_threads_it_names_and_the_records_its_rule_admits() {
    let (a, b, pair_id) = paired().await;
    let allowed = b.emit("th_allowed", &b.did(), 1, json!({"n": 1})).await;
    let small = b.emit("th_other", &b.did(), 1, json!({"n": 1})).await;
    let large = b.emit("th_other", &b.did(), 2, json!({"n": 2})).await;
    let path = format!("/v1/federation/pairs/{pair_id}/config");
    let configure = |fields: Value| {
        let (b, path) = (&b, path.clone());
        async move { b.post(&path, &fields).await }
    };
    for (bad, code) in [
        (
            json!({"thread_rule": "record.body.n >"}),
            "VALIDATION_ERROR",
        ),
        (json!({"thread_rule": 7}), "VALIDATION_ERROR"),
        (json!({"mode": "sideways"}), "VALIDATION_ERROR"),
        (json!({"poll_interval_secs": 0}), "VALIDATION_ERROR"),
        (json!({"poll_interval_secs": 86_401}), "VALIDATION_ERROR"),
        (json!({"poll_interval_secs": "1m"}), "VALIDATION_ERROR"),
        (json!({"thread_allow_add": []}), "VALIDATION_ERROR"),
        (
            json!({"thread_allow_add": ["th_consent"]}),
            "THREAD_NOT_ALLOWED",
        ),
        (json!({}), "VALIDATION_ERROR"),
    ] {
        let (status, body) = configure(bad.clone()).await;
        assert_eq!(error_code(&body), code, "{bad}: {status} {body}");
    }
    let reader = b.steward.token(&["records:read"], &[]).await;
    let (status, _) = b
        .steward
        .post(&reader, &path, &json!({"thread_allow_add": "th_allowed"}))
        .await;
    assert_eq!(status, 403, "federation:manage is needed");

    let (status, view) = configure(json!({"thread_allow_add": "th_allowed"})).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["thread_allow"], json!(["th_allowed"]), "{view}");
    let token = a.outbound_token(&pair_id).await.unwrap();
    let (status, page) = changes_as(&b, &token, &a.did(), "thread=th_allowed").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["records"][0]["id"], allowed["id"], "{page}");
    let (status, refused) = changes_as(&b, &token, &a.did(), "thread=th_other").await;
    assert_eq!(
        (status, error_code(&refused)),
        (403, "THREAD_NOT_ALLOWED"),
        "{refused}"
    );
    let fetch = |ids: Value| {
        let request = b
            .steward
            .http
            .post(format!("{}/v1/sync/records", b.url()))
            .bearer_auth(&token)
            .header("x-syncropel-actor", a.did())
            .json(&json!({"ids": ids}));
        b.steward.send(request)
    };
    let ids = |page: &Value, member: &str| -> Vec<Value> {
        page[member]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["id"].clone())
            .collect()
    };
    let (status, fetched) = fetch(json!([allowed["id"], small["id"], large["id"]])).await;
    assert_eq!(status, 200, "{fetched}");
    assert_eq!(
        ids(&fetched, "records"),
        [allowed["id"].clone()],
        "{fetched}"
    );

    // A rule: other threads serve the records it admits, by page, by id and through a pull.
    let (status, view) =
        configure(json!({"thread_rule": "record.body.n > 1 && thread() == 'th_other'"})).await;
    assert_eq!(status, 200, "{view}");
    let (status, page) = changes_as(&b, &token, &a.did(), "thread=th_other").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page, "records"), [large["id"].clone()], "{page}");
    let (_, fetched) = fetch(json!([small["id"], large["id"]])).await;
    assert_eq!(ids(&fetched, "records"), [large["id"].clone()], "{fetched}");
    let (_, page) = changes_as(&b, &token, &a.did(), "thread=th_allowed").await;
    assert_eq!(
        page["records"][0]["id"], allowed["id"],
        "allowed threads stay whole"
    );
    a.pull("th_other", &b.did()).await;
    let arrived = a.ids("th_other").await;
    let expected: std::collections::BTreeSet<String> =
        [large["id"].as_str().unwrap().to_string()].into();
    assert_eq!(arrived, expected, "only what the rule admits crosses");

    // The rule dropped: the other thread is refused again.
    let (status, _) = configure(json!({"thread_rule": null})).await;
    assert_eq!(status, 200);
    let (status, refused) = changes_as(&b, &token, &a.did(), "thread=th_other").await;
    assert_eq!(
        (status, error_code(&refused)),
        (403, "THREAD_NOT_ALLOWED"),
        "{refused}"
    );
}
