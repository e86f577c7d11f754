//! Handshake refusals and revocation (section 2): replayed and stale inits, impostors, revoked
//! and paused pairs.

use serde_json::{json, Value};
use syncropel_client::api::PairReason;
use syncropel_federation::state as fstate;
use syncropel_protocol::signed::sign_object;
use syncropel_protocol::Keypair;
use syncropel_testkit::{error_code, TENANT};

use super::{approving, changes_as, init_request, now_ms, paired, start, try_pull};

#[tokio::test]
async fn a_replayed_init_nonce_is_gone_after_confirm() {
    // A's side of the handshake made by hand, so the test holds the init it sent.
    let a = start().await;
    let b = approving(None, &[a.did()]).await;
    let key = &a.steward.tenant.identity.key;
    let init = init_request(key, &b.did(), a.url(), now_ms());
    let (status, approved) = b.steward.post_anonymous("/v1/federation/pair", &init).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "approved", "{approved}");
    let mut confirm = json!({
        "nonce": init["nonce"], "pair_id": approved["pair_id"],
        "issued_token": "spl_local_sa_handmade_secret", "token_expires_at": "2030-01-01T00:00:00Z",
        "genesis_id": approved["genesis"]["id"], "issued_at_ms": now_ms(),
    })
    .as_object()
    .cloned()
    .unwrap();
    sign_object(&mut confirm, key);
    let (status, confirmed) = b
        .steward
        .post_anonymous("/v1/federation/pair/confirm", &Value::Object(confirm))
        .await;
    assert_eq!(status, 200, "{confirmed}");

    // B keeps neither the init nor the confirm, which carry the nonce: only their digests.
    let rows = b
        .steward
        .state
        .store
        .state_list(TENANT, fstate::HANDSHAKE)
        .await
        .unwrap();
    let nonce = init["nonce"].as_str().unwrap();
    for (_, text) in &rows {
        assert!(!text.contains(nonce), "{text}");
    }

    let (status, refusal) = b.steward.post_anonymous("/v1/federation/pair", &init).await;
    assert_eq!(status, 410, "{refusal}");
    assert_eq!(error_code(&refusal), "NONCE_REUSED");
    // The same nonce with another body conflicts.
    let mut altered = init.clone();
    altered["labels"] = json!(["changed"]);
    let mut object = altered.as_object().cloned().unwrap();
    sign_object(&mut object, key);
    let (status, refusal) = b
        .steward
        .post_anonymous("/v1/federation/pair", &Value::Object(object))
        .await;
    assert_eq!(status, 409, "{refusal}");
    assert_eq!(error_code(&refusal), "NONCE_CONFLICT");
}

#[tokio::test]
async fn init_refusals_freshness_and_unauthenticated_initiators() {
    let b = start().await;
    let other = start().await;
    let key = Keypair::generate();
    let impostor_url = other.url();

    // issued_at_ms two minutes ago.
    let stale = init_request(&key, &b.did(), impostor_url, now_ms() - 120_000);
    let (status, refusal) = b
        .steward
        .post_anonymous("/v1/federation/pair", &stale)
        .await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(error_code(&refusal), "FRESHNESS_VIOLATION");
    // … or two minutes ahead.
    let future = init_request(&key, &b.did(), impostor_url, now_ms() + 120_000);
    let (status, refusal) = b
        .steward
        .post_anonymous("/v1/federation/pair", &future)
        .await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(error_code(&refusal), "FRESHNESS_VIOLATION");

    // A fresh, signed request whose peer_url is another steward's (its manifest names another DID).
    let claim = init_request(&key, &b.did(), impostor_url, now_ms());
    let (status, refusal) = b
        .steward
        .post_anonymous("/v1/federation/pair", &claim)
        .await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(error_code(&refusal), "UNAUTHENTICATED_INITIATOR");

    // A request signed by someone other than actor_did.
    let mut forged = init_request(&key, &b.did(), impostor_url, now_ms());
    forged["actor_did"] = json!(other.did());
    let (status, refusal) = b
        .steward
        .post_anonymous("/v1/federation/pair", &forged)
        .await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(error_code(&refusal), "UNAUTHENTICATED_INITIATOR");

    // A request addressed to another steward.
    let elsewhere = init_request(&key, &other.did(), impostor_url, now_ms());
    let (status, refusal) = b
        .steward
        .post_anonymous("/v1/federation/pair", &elsewhere)
        .await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(error_code(&refusal), "UNAUTHENTICATED_INITIATOR");

    // None of them left anything pending.
    let pending = b.client.pending_pairs().await.unwrap();
    assert_eq!(pending.data.len(), 0, "{}", pending.json());
}

#[tokio::test]
async fn revoking_a_pair_refuses_both_tokens_and_the_peer_revokes_too() {
    let (a, b, pair_id) = paired().await;
    let a_at_b = a.outbound_token(&pair_id).await.unwrap();
    let b_at_a = b.outbound_token(&pair_id).await.unwrap();
    let query = "thread=th_fed_revoke&feed=normal";

    // Both tokens work, and only with their peer's DID.
    let (status, page) = changes_as(&b, &a_at_b, &a.did(), query).await;
    assert_eq!(status, 200, "{page}");
    let (status, page) = changes_as(&a, &b_at_a, &b.did(), query).await;
    assert_eq!(status, 200, "{page}");
    let (status, refusal) = changes_as(&b, &a_at_b, &b.did(), query).await;
    assert_eq!(status, 403, "{refusal}");

    let revoked = a
        .client
        .revoke_pair(&pair_id, &PairReason::default())
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200, "{}", revoked.json());
    assert_eq!(revoked.json()["state"], "revoked");
    // The peer heard of it (notify-revoke) and revoked its side.
    let theirs = b.pair(&pair_id).await;
    assert_eq!(theirs["state"], "revoked", "{theirs}");

    let (status, refusal) = changes_as(&a, &b_at_a, &b.did(), query).await;
    assert_eq!(status, 401, "{refusal}");
    let (status, refusal) = changes_as(&b, &a_at_b, &a.did(), query).await;
    assert_eq!(status, 401, "{refusal}");
    // The outbound secrets are gone on both sides.
    assert_eq!(a.outbound_token(&pair_id).await, None);
    assert_eq!(b.outbound_token(&pair_id).await, None);
    // Pulling through a revoked pair is refused.
    let (status, refusal) = try_pull(&a, "th_fed_revoke", &b.did()).await;
    assert_eq!(status, 409, "{refusal}");
    assert_eq!(error_code(&refusal), "precondition_failed");

    // A new handshake starts generation 2.
    let again = a.pair_with(b.url()).await;
    assert_eq!(again["generation"], 2, "{again}");
    assert_eq!(b.pair(&pair_id).await["state"], "active");
}

#[tokio::test]
async fn paused_pairs_refuse_the_peer_and_resume() {
    let (a, b, pair_id) = paired().await;
    let a_at_b = a.outbound_token(&pair_id).await.unwrap();
    let paused = b
        .client
        .pause_pair(&pair_id, &PairReason::default())
        .await
        .unwrap();
    assert_eq!(paused.status(), 200, "{}", paused.json());
    assert_eq!(paused.json()["state"], "paused");
    let (status, refusal) = changes_as(&b, &a_at_b, &a.did(), "thread=th_fed_pause").await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(error_code(&refusal), "pair_paused");
    let resumed = b
        .client
        .resume_pair(&pair_id, &PairReason::default())
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200, "{}", resumed.json());
    assert_eq!(resumed.json()["state"], "active");
    let (status, page) = changes_as(&b, &a_at_b, &a.did(), "thread=th_fed_pause").await;
    assert_eq!(status, 200, "{page}");
}
