//! Operation logs: creation, updates, key rotation, recovery and refused operations.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::json;
use syncropel_protocol::did_sync::{self, did_from_genesis, sign_operation, OpType};
use syncropel_protocol::ErrorCode;

use crate::ident::{multibase, with_endpoint, Ident};
use crate::server::{assert_error, hash_of, Server};
use crate::{HOUR, T0};

pub async fn create_resolve_and_retry(db: String) {
    let s = Server::start(&db).await;
    let alice = Ident::new(1, "alice");
    let genesis = alice.genesis();
    let did = did_from_genesis(&genesis);
    let (status, body) = s.post("/directory/genesis", &genesis).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["did"], did);
    assert_eq!(body["cid"], did_sync::cid(&genesis));
    let hash = hash_of(&did);

    let key = format!("{did}#key-1");
    let expected = json!({
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/suites/ed25519-2020/v1",
        ],
        "id": did,
        "alsoKnownAs": ["syncropel:handle:alice"],
        "verificationMethod": [{
            "id": key,
            "type": "Ed25519VerificationKey2020",
            "controller": did,
            "publicKeyMultibase": multibase(&alice.record[0]),
        }],
        "authentication": [key],
        "assertionMethod": [key],
        "service": [{
            "id": format!("{did}#syncropel"),
            "type": "syncropel",
            "serviceEndpoint": "https://alice.example",
        }],
    });
    assert_eq!(s.document(&hash).await, expected);
    let (status, body) = s.get(&format!("/directory/resolve?did={did}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, expected);

    // A provisioning retry of the very same genesis is answered 200 with the same DID.
    s.clock.advance(60);
    let (status, body) = s.post("/directory/genesis", &genesis).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["did"], did);
    assert_eq!(body["received_at"], T0);
    assert_eq!(s.operations(&hash).await.len(), 1);

    let (status, body) = s.get("/directory/handle/alice").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"handle": "alice", "did": did}));
    s.assert_replays(&hash).await;
}

pub async fn update_endpoint(db: String) {
    let s = Server::start(&db).await;
    let (alice, g, hash) = s.create_alice().await;
    s.clock.advance(HOUR);
    let op = with_endpoint(alice.update(&g), "https://moved.example");
    let cid = s.update(&hash, &sign_operation(&op, &alice.host)).await;
    let doc = s.document(&hash).await;
    assert_eq!(
        doc["service"][0]["serviceEndpoint"],
        "https://moved.example"
    );
    let log = s.operations(&hash).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].cid, cid);
    assert_eq!(log[1].received_at, T0 + HOUR);
    s.assert_replays(&hash).await;
}

pub async fn rotate_signing_keys(db: String) {
    let s = Server::start(&db).await;
    let (alice, g, hash) = s.create_alice().await;
    let did = format!("did:sync:{hash}");

    let mut rotate = alice.update(&g);
    rotate.signing_keys = BTreeMap::from([("key-2".to_owned(), multibase(&alice.record[1]))]);
    let u1 = s.update(&hash, &sign_operation(&rotate, &alice.user)).await;
    let doc = s.document(&hash).await;
    let ids: Vec<&str> = doc["verificationMethod"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [format!("{did}#key-2"), format!("{did}#key-1")]);
    assert_eq!(doc["assertionMethod"], json!([format!("{did}#key-2")]));
    assert_eq!(doc["authentication"], json!([format!("{did}#key-2")]));

    let mut withdraw = rotate.clone();
    withdraw.prev = Some(u1);
    withdraw.compromised = vec!["key-1".to_owned()];
    s.update(&hash, &sign_operation(&withdraw, &alice.user))
        .await;
    let doc = s.document(&hash).await;
    let methods = doc["verificationMethod"].as_array().unwrap();
    assert_eq!(methods.len(), 1);
    assert_eq!(
        methods[0]["publicKeyMultibase"],
        multibase(&alice.record[1])
    );
    s.assert_replays(&hash).await;
}

/// Alice's DID on `s`, whose endpoint her host key moved to mallory's an hour after genesis:
/// her identity, the DID's hash, the genesis cid and the hijacking update's cid.
async fn hijacked(s: &Server) -> (Ident, String, String, String) {
    let (alice, g, hash) = s.create_alice().await;
    s.clock.advance(HOUR);
    let hijack = with_endpoint(alice.update(&g), "https://mallory.example");
    let b = s.update(&hash, &sign_operation(&hijack, &alice.host)).await;
    (alice, hash, g, b)
}

pub async fn recovery_inside_window(db: String) {
    let s = Server::start(&db).await;
    let (alice, hash, g, b) = hijacked(&s).await;

    s.clock.advance(71 * HOUR);
    let (status, body) = s
        .post(
            &format!("/directory/update/{hash}"),
            &alice.recovery_fork(&g),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["nullified"], json!([b]));

    let log = s.operations(&hash).await;
    assert_eq!(log.len(), 3);
    assert!(log[1].nullified && log[1].cid == b);
    assert!(!log[0].nullified && !log[2].nullified);
    let doc = s.document(&hash).await;
    assert_eq!(
        doc["service"][0]["serviceEndpoint"],
        "https://recovered.example"
    );
    s.assert_replays(&hash).await;
}

pub async fn recovery_outside_window(db: String) {
    let s = Server::start(&db).await;
    let (alice, hash, g, _) = hijacked(&s).await;

    s.clock.advance(72 * HOUR + 1);
    let fork = with_endpoint(alice.update(&g), "https://recovered.example");
    let answer = s
        .post(
            &format!("/directory/update/{hash}"),
            &sign_operation(&fork, &alice.user),
        )
        .await;
    assert_error(&answer, ErrorCode::PrevMismatch);
    assert_eq!(s.operations(&hash).await.len(), 2);
    let doc = s.document(&hash).await;
    assert_eq!(
        doc["service"][0]["serviceEndpoint"],
        "https://mallory.example"
    );
}

pub async fn forged_replayed_and_stale_ops(db: String) {
    let s = Server::start(&db).await;
    let (alice, g, hash) = s.create_alice().await;
    let path = format!("/directory/update/{hash}");
    let op = with_endpoint(alice.update(&g), "https://next.example");

    // Signed by a record key, which may sign records but never rotate.
    let answer = s.post(&path, &sign_operation(&op, &alice.record[0])).await;
    assert_error(&answer, ErrorCode::KeyNotAuthorized);
    // Genesis signed by a key outside its own rotation keys.
    let outsider = sign_operation(&Ident::new(2, "bob").op(OpType::Genesis, None), &alice.user);
    let answer = s.post("/directory/genesis", &outsider).await;
    assert_error(&answer, ErrorCode::KeyNotAuthorized);
    // A signature by another key under the host's key id.
    let mut bad_sig = sign_operation(&op, &alice.host);
    bad_sig["sig"]["value"] = sign_operation(&op, &alice.user)["sig"]["value"].clone();
    assert_error(&s.post(&path, &bad_sig).await, ErrorCode::SignatureInvalid);
    // A body changed after signing.
    let mut tampered = sign_operation(&op, &alice.host);
    tampered["handles"] = json!(["mallory"]);
    assert_error(&s.post(&path, &tampered).await, ErrorCode::SignatureInvalid);
    assert_eq!(s.operations(&hash).await.len(), 1);

    let signed = sign_operation(&op, &alice.host);
    let u1 = s.update(&hash, &signed).await;
    // The same op again: answered as it was taken, nothing new.
    let (status, again) = s.post(&path, &signed).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["cid"], u1.as_str(), "{again}");
    // A different op by the same key on the old head.
    let stale = with_endpoint(alice.update(&g), "https://stale.example");
    let answer = s.post(&path, &sign_operation(&stale, &alice.host)).await;
    assert_error(&answer, ErrorCode::PrevMismatch);
    // A prev that is no op of this DID.
    let unknown = with_endpoint(alice.update(&"0".repeat(64)), "https://x.example");
    let answer = s.post(&path, &sign_operation(&unknown, &alice.host)).await;
    assert_error(&answer, ErrorCode::PrevMismatch);
    let log = s.operations(&hash).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].cid, u1);
    assert_eq!(s.export_all().await.len(), 2);
}
