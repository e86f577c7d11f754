//! Handles, tombstones and namespace listings.

use reqwest::StatusCode;
use serde_json::{json, Value};
use syncropel_protocol::did_sync::{self, sign_operation, OpLog, OpType};
use syncropel_protocol::ErrorCode;

use crate::ident::{with_endpoint, Ident};
use crate::server::{assert_error, Server};
use crate::HOUR;

pub async fn handles(db: String) {
    let s = Server::start(&db).await;
    let (alice, a_g, a) = s.create_alice().await;

    // Bob's genesis claiming alice's handle.
    let mut bob = Ident::new(2, "alice");
    assert_error(
        &s.post("/directory/genesis", &bob.genesis()).await,
        ErrorCode::HandleTaken,
    );
    bob.handle = "bob".to_owned();
    let b_genesis = bob.genesis();
    let b = s.create(&b_genesis).await;

    // Bob's update adding it.
    let mut grab = bob.update(&did_sync::cid(&b_genesis));
    grab.handles = vec!["bob".to_owned(), "alice".to_owned()];
    let path = format!("/directory/update/{b}");
    let answer = s.post(&path, &sign_operation(&grab, &bob.host)).await;
    assert_error(&answer, ErrorCode::HandleTaken);

    // Alice drops it; then Bob can take it.
    let mut drop = alice.update(&a_g);
    drop.handles = vec!["alice-2".to_owned()];
    s.update(&a, &sign_operation(&drop, &alice.host)).await;
    s.update(&b, &sign_operation(&grab, &bob.host)).await;

    let (status, body) = s.get("/directory/handle/alice").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"handle": "alice", "did": format!("did:sync:{b}")})
    );
    let (_, body) = s.get("/directory/handle/alice-2").await;
    assert_eq!(body["did"], format!("did:sync:{a}"));
    assert_error(&s.get("/directory/handle/carol").await, ErrorCode::NotFound);
    assert_eq!(
        s.document(&b).await["alsoKnownAs"],
        json!(["syncropel:handle:bob", "syncropel:handle:alice"])
    );
    assert_eq!(
        s.document(&a).await["alsoKnownAs"],
        json!(["syncropel:handle:alice-2"])
    );
    s.assert_replays(&a).await;
    s.assert_replays(&b).await;
}

pub async fn recovered_handles_count_only_live_ops(db: String) {
    let s = Server::start(&db).await;
    let (alice, g, a) = s.create_alice().await;
    // The host key moves alice to another handle, then recovery undoes that op.
    let mut moved = alice.update(&g);
    moved.handles = vec!["alice-moved".to_owned()];
    s.update(&a, &sign_operation(&moved, &alice.host)).await;
    s.clock.advance(HOUR);
    let recover = with_endpoint(alice.update(&g), "https://recovered.example");
    s.update(&a, &sign_operation(&recover, &alice.user)).await;

    assert_error(
        &s.get("/directory/handle/alice-moved").await,
        ErrorCode::NotFound,
    );
    let (_, body) = s.get("/directory/handle/alice").await;
    assert_eq!(body["did"], format!("did:sync:{a}"));
    let bob = Ident::new(2, "alice-moved");
    s.create(&bob.genesis()).await;
}

pub async fn tombstone(db: String) {
    let s = Server::start(&db).await;
    let (alice, g, hash) = s.create_alice().await;
    let did = format!("did:sync:{hash}");
    let tomb = alice.tombstone(&g);
    // Tombstones go to /revoke, updates to /update.
    let answer = s.post(&format!("/directory/update/{hash}"), &tomb).await;
    assert_error(&answer, ErrorCode::ValidationError);
    let (status, body) = s.post(&format!("/directory/revoke/{hash}"), &tomb).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, again) = s.post(&format!("/directory/revoke/{hash}"), &tomb).await;
    assert_eq!(
        (status, &again["cid"]),
        (StatusCode::OK, &body["cid"]),
        "a replay"
    );
    // Anything new for a tombstoned DID: 410.
    let tomb_cid = body["cid"].as_str().unwrap().to_string();
    let late = with_endpoint(alice.update(&tomb_cid), "https://late.example");
    let answer = s
        .post(
            &format!("/directory/update/{hash}"),
            &sign_operation(&late, &alice.host),
        )
        .await;
    assert_error(&answer, ErrorCode::DidDeactivated);

    assert_error(
        &s.get(&format!("/directory/{hash}/did.json")).await,
        ErrorCode::DidDeactivated,
    );
    assert_error(
        &s.get(&format!("/directory/resolve?did={did}")).await,
        ErrorCode::DidDeactivated,
    );
    let log = s.operations(&hash).await;
    assert_eq!(log.len(), 2);
    let mut replay = OpLog::new();
    for entry in &log {
        replay.apply(&entry.op, entry.received_at).unwrap();
    }
    assert!(replay.current().unwrap().deactivated);
    // Its handle is free again.
    assert_error(&s.get("/directory/handle/alice").await, ErrorCode::NotFound);
    s.create(&Ident::new(2, "alice").genesis()).await;
}

pub async fn namespace_peers(db: String) {
    let s = Server::start(&db).await;
    let mut ids = Vec::new();
    for (seed, handle, namespaces) in [
        (1, "alice", vec!["acme"]),
        (2, "bob", vec!["acme", "other"]),
        (3, "carol", vec![]),
    ] {
        let id = Ident::new(seed, handle);
        let mut op = id.op(OpType::Genesis, None);
        op.namespaces = namespaces.into_iter().map(str::to_owned).collect();
        let genesis = sign_operation(&op, &id.host);
        let hash = s.create(&genesis).await;
        ids.push((id, genesis, hash));
    }
    let (status, body) = s.get("/directory/namespace/acme/peers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["namespace"], "acme");
    let mut peers = body["peers"].as_array().unwrap().clone();
    peers.sort_by_key(|p| p["handles"][0].as_str().unwrap().to_owned());
    assert_eq!(peers.len(), 2);
    for (peer, (id, _, hash)) in peers.iter().zip(&ids) {
        assert_eq!(peer["did"], format!("did:sync:{hash}"));
        assert_eq!(peer["endpoint"], format!("https://{}.example", id.handle));
        assert_eq!(peer["handles"], json!([id.handle]));
        assert_eq!(peer["updated_at"], "2026-05-01T12:00:00Z");
    }
    // Page by page, in DID order, with a cursor.
    let (status, first) = s.get("/directory/namespace/acme/peers?limit=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["peers"].as_array().unwrap().len(), 1);
    assert_eq!(first["has_more"], true);
    let cursor = first["next_cursor"].as_str().unwrap();
    assert_eq!(first["peers"][0]["did"], cursor);
    let (_, second) = s
        .get(&format!(
            "/directory/namespace/acme/peers?limit=1&after={cursor}"
        ))
        .await;
    assert_eq!(second["peers"].as_array().unwrap().len(), 1);
    assert!(second["peers"][0]["did"].as_str().unwrap() > cursor);
    assert_eq!(second["has_more"], false);
    assert_eq!(second["next_cursor"], Value::Null);
    assert_error(
        &s.get("/directory/namespace/acme/peers?limit=0").await,
        ErrorCode::ValidationError,
    );
    // A tombstoned DID drops out.
    let (alice, genesis, hash) = &ids[0];
    let tomb = alice.tombstone(&did_sync::cid(genesis));
    let (status, _) = s.post(&format!("/directory/revoke/{hash}"), &tomb).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = s.get("/directory/namespace/acme/peers").await;
    assert_eq!(body["peers"].as_array().unwrap().len(), 1);
    let (_, body) = s.get("/directory/namespace/nobody/peers").await;
    assert_eq!(body["peers"], json!([]));
    assert_error(
        &s.get("/directory/namespace/Not%20Valid!/peers").await,
        ErrorCode::NamespaceIdInvalid,
    );
}
