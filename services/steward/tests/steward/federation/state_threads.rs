//! The threads the steward's federation state is folded from (pairs, consent, sync control) are
//! written by its federation code only: a client write is refused whatever its scopes, through
//! the single and the batch route, and moves no pair, bearer or grant.

use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::{ms, paired};

fn learn(thread: &str, actor: &str, clock: i64, body: Value) -> Value {
    json!({"thread": thread, "actor": actor, "act": "LEARN", "clock": clock,
        "data_type": "SCALAR", "parents": [], "body": body})
}

#[tokio::test]
async fn forged_pair_consent_and_sync_control_records_are_refused_and_move_nothing() {
    let (a, b, pair_id) = paired().await;
    let before = a.pair(&pair_id).await;
    // Where a forged `url_refreshed` would send the pair's bearer.
    let trap = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_url = format!("http://{}", trap.local_addr().unwrap());
    let me = a.did();
    let forged = [
        learn(
            "th_federation_pairs",
            &me,
            999_999,
            json!({
            "kind": "syncropel.federation.pair_update.v1", "pair_id": pair_id, "generation": 1,
            "op": "url_refreshed", "reason": null, "fields": {"peer_url": trap_url},
            "at": "2026-01-01T00:00:00Z"}),
        ),
        learn(
            "th_federation_pairs",
            &me,
            1_000_000,
            json!({
            "kind": "syncropel.federation.pair_revoke.v1", "pair_id": pair_id, "generation": 1}),
        ),
        learn(
            "th_consent",
            &me,
            1,
            json!({
            "kind": "core.consent.v1", "op": "grant", "grant_id": "cg_forged",
            "source_namespace": "default", "target_namespace": "default", "hash_levels": ["L0"],
            "peer_did": null, "threads": "*", "purpose": null, "expires_at": null,
            "granted_by": me}),
        ),
        learn(
            "th_sync_control",
            &me,
            1,
            json!({
            "kind": "syncropel.sync.pair_state.v1", "topic": "pair_state", "pair_id": "sp_forged",
            "peer_did": b.did(), "peer_url": trap_url, "thread_id": "th_x", "state": "starting"}),
        ),
    ];
    for record in &forged {
        let (status, refused) = a.post("/v1/records", record).await;
        assert_eq!(status, 403, "{refused}");
        assert_eq!(refused["code"], "RESERVED_THREAD", "{refused}");
    }
    let (status, answer) = a
        .post("/v1/records/batch", &json!({"records": forged.to_vec()}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["created"], 0, "{answer}");
    for item in answer["data"].as_array().unwrap() {
        assert_eq!(item["status"], 403, "{item}");
        assert_eq!(item["error"]["code"], "RESERVED_THREAD", "{item}");
    }

    // Nothing stored, nothing moved.
    for thread in ["th_federation_pairs", "th_consent", "th_sync_control"] {
        let stored = a.records(thread).await;
        assert!(
            stored.iter().all(|r| r["clock"] != 999_999
                && r["body"]["grant_id"] != "cg_forged"
                && r["body"]["pair_id"] != "sp_forged"),
            "{thread}: {stored:?}"
        );
    }
    let after = a.pair(&pair_id).await;
    assert_eq!(after["peer_url"], before["peer_url"]);
    assert_eq!(after["state"], "active", "{after}");
    let grants = a.client.consent_grants(None).await.unwrap();
    assert_eq!(grants.json()["data"], json!([]), "{}", grants.json());
    let sync_pairs = a.client.sync_pairs().await.unwrap();
    assert_eq!(
        sync_pairs.json()["data"],
        json!([]),
        "{}",
        sync_pairs.json()
    );

    // The pair still pulls from its peer, and its bearer never reaches the trap.
    let written = b
        .emit("th_state_safe", "did:sync:user:bob", 1, json!({}))
        .await;
    let pulled = a.pull("th_state_safe", &b.did()).await;
    assert_eq!(pulled["pulled"], 1, "{pulled}");
    a.arrived(written["id"].as_str().unwrap()).await;
    assert!(
        tokio::time::timeout(ms(500), trap.accept()).await.is_err(),
        "a request reached the trap"
    );
}
