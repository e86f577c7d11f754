//! Credentials go only where they belong: a pair's bearer only to that pair's verified URL, and
//! consent scoped to a peer only to tokens bound to that peer's DID.

use std::time::Duration;

use serde_json::{json, Value};
use syncropel_client::api::CreateSyncPair;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::{changes_as, paired, start};

/// Accepts connections on `listener` for `window`, and answers what each sent first.
async fn heads_received(listener: TcpListener, window: Duration) -> Vec<String> {
    let mut heads = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Ok((mut socket, _))) = tokio::time::timeout_at(deadline, listener.accept()).await {
        let mut buffer = vec![0u8; 8192];
        let read = tokio::time::timeout(Duration::from_secs(1), socket.read(&mut buffer)).await;
        let n = read.ok().and_then(Result::ok).unwrap_or(0);
        heads.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
    }
    heads
}

#[tokio::test]
async fn a_legacy_pair_never_sends_a_pairs_bearer_to_another_url() {
    let (a, b, pair_id) = paired().await;
    let bearer = a.outbound_token(&pair_id).await.unwrap();
    let trap = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_url = format!("http://{}", trap.local_addr().unwrap());
    // The paired peer's DID, someone else's URL, no token of its own.
    let request = CreateSyncPair {
        peer_did: b.did(),
        peer_url: Some(trap_url),
        thread_id: "th_bearer_bait".into(),
        peer_token: None,
    };
    let created = a.client.create_sync_pair(&request).await.unwrap();
    assert_eq!(created.status(), 201, "{}", created.json());
    let heads = heads_received(trap, Duration::from_millis(1500)).await;
    for head in &heads {
        assert!(
            !head.contains(&bearer),
            "the pair's bearer reached the trap: {head}"
        );
    }
    // The same request at the pair's own URL does use the pair's bearer.
    let request = CreateSyncPair {
        peer_did: b.did(),
        peer_url: Some(b.url().to_string()),
        thread_id: "th_bearer_home".into(),
        peer_token: None,
    };
    let created = a.client.create_sync_pair(&request).await.unwrap();
    assert_eq!(created.status(), 201, "{}", created.json());
    let written = b
        .emit("th_bearer_home", "did:sync:user:bob", 1, json!({}))
        .await;
    a.arrived(written["id"].as_str().unwrap()).await;
}

#[tokio::test]
async fn consent_scoped_to_a_peer_serves_only_tokens_bound_to_it() {
    let b = start().await;
    b.register_namespace("research").await;
    let bob = "did:sync:user:bob-peer";
    let grant = json!({"source_namespace": "research", "target_namespace": "default",
        "hash_levels": ["L0"], "peer_did": bob});
    let granted = b
        .client
        .grant_consent(&serde_json::from_value(grant).unwrap())
        .await
        .unwrap();
    assert_eq!(granted.status(), 201, "{}", granted.json());
    let secret = json!({"namespace": "research", "payroll": 1});
    b.emit("th_bound", "did:sync:user:carol", 1, secret.clone())
        .await;

    let served = |page: &Value| {
        page["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|item| item["record"]["body"] == secret)
    };
    // A token bound to no DID claims Bob's: the grant is not its.
    let unbound = b
        .steward
        .token_named("older sync", &["federation:sync"], &[])
        .await;
    let (status, page) = changes_as(&b, &unbound, bob, "thread=th_bound").await;
    assert_eq!(status, 200, "{page}");
    assert!(!served(&page), "{page}");
    // A token bound to Bob's DID gets what the grant opens.
    let bound = b
        .steward
        .token_named("bob's sync", &["federation:sync"], &[bob])
        .await;
    let (status, page) = changes_as(&b, &bound, bob, "thread=th_bound").await;
    assert_eq!(status, 200, "{page}");
    assert!(served(&page), "{page}");
}
