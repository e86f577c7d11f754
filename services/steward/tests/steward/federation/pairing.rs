//! Two stewards end to end (section 1): auto-approved, operator-approved and rejected pairings.

use serde_json::json;
use syncropel_client::api::{PairReason, StartPair};
use syncropel_client::Pairing;
use syncropel_protocol::sha256_hex;
use syncropel_testkit::{error_code, Node};

use super::{approving, assert_reciprocal, start, try_pull};

#[tokio::test]
async fn auto_approved_pair_is_active_on_both_sides_with_reciprocal_tokens_and_records_flow() {
    let a = start().await;
    let b = approving(None, &[a.did()]).await;

    let view = a.pair_with(b.url()).await;
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
    assert_reciprocal(&ours, &theirs);
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
        let list = node.client.federation_pairs().await.unwrap();
        assert_eq!(list.status(), 200);
        assert_eq!(list.data.len(), 1, "{}", list.json());
    }
    // Pairing again is idempotent.
    let again = a.pair_with(b.url()).await;
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
    let by_url = a.pull(thread, b.url()).await;
    assert_eq!(by_url["pulled"], 0, "{by_url}");

    // The job's health shows on the pair.
    let ours = a.pair(&pair_id).await;
    assert_eq!(ours["sync_health"]["status"], "ok", "{ours}");
}

#[tokio::test]
async fn a_manually_approved_pair_goes_active_after_the_operator_approves() {
    let a = start().await;
    let b = start().await;

    let (status, pairing, pending) = start_pairing(&a, &b).await;
    assert_eq!(status, 202, "{pending}");
    assert!(matches!(pairing, Pairing::Pending(_)), "{pending}");
    assert_eq!(pending["status"], "pending");
    let pair_id = pending["pair_id"].as_str().unwrap().to_string();
    let ours = a.pair(&pair_id).await;
    assert_eq!(ours["state"], "establishing", "{ours}");

    // Nothing moves until B's operator decides.
    let again = a.client.continue_pairing(&pair_id).await.unwrap();
    assert_eq!(again.status(), 202, "{}", again.json());
    assert!(matches!(*again, Pairing::Pending(_)), "{}", again.json());

    let list = b.client.pending_pairs().await.unwrap();
    assert_eq!(list.status(), 200);
    let waiting = &list.data;
    assert_eq!(waiting.len(), 1, "{}", list.json());
    assert_eq!(waiting[0].pair_id, pair_id);
    assert_eq!(waiting[0].peer_did, a.did());
    assert_eq!(waiting[0].peer_url, a.url());

    let approved = b
        .client
        .approve_pair(&pair_id, &PairReason::default())
        .await
        .unwrap();
    assert_eq!(approved.status(), 200, "{}", approved.json());
    let list = b.client.pending_pairs().await.unwrap();
    assert_eq!(list.data.len(), 0, "{}", list.json());

    let polled = a.client.continue_pairing(&pair_id).await.unwrap();
    assert_eq!(polled.status(), 200, "{}", polled.json());
    let (pairing, view) = polled.into_parts();
    assert!(matches!(pairing, Pairing::Paired(_)), "{view}");
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
    let a = start().await;
    let b = start().await;
    let (status, pairing, pending) = start_pairing(&a, &b).await;
    assert_eq!(status, 202, "{pending}");
    assert!(matches!(pairing, Pairing::Pending(_)), "{pending}");
    let pair_id = pending["pair_id"].as_str().unwrap().to_string();
    let rejected = b
        .client
        .reject_pair(&pair_id, &PairReason::default())
        .await
        .unwrap();
    assert_eq!(rejected.status(), 200, "{}", rejected.json());
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
    let (status, none) = try_pull(&a, "th_x", &b.did()).await;
    assert_eq!(status, 409, "{none}");
}

/// `a` asks `b` to pair: the answer's status, how it stands, and the answer as sent.
async fn start_pairing(a: &Node, b: &Node) -> (u16, Pairing, serde_json::Value) {
    let request = StartPair {
        peer_url: b.url().into(),
        ..StartPair::default()
    };
    let started = a.client.start_pairing(&request).await.unwrap();
    let status = started.status();
    let (pairing, json) = started.into_parts();
    (status, pairing, json)
}

/// The responder's pairing policy (federation-protocol.md §2.1, §3.7): announced in its manifest
/// and enforced at init. Refusing requests is `503 PAIRING_DISABLED`; a DID method it does not
/// take is `403 PAIR_REJECTED`; an approval rule approves what it answers true for, and only that.
#[tokio::test]
async fn the_responders_pairing_policy_is_announced_and_enforced() {
    use std::sync::Arc;
    use syncropel_federation::{FederationConfig, PairingPolicy, ThreadRule};
    use syncropel_testkit::Options;

    let responder = |pairing: PairingPolicy| {
        Node::start(Options {
            federation: FederationConfig {
                pairing,
                ..super::config()
            },
            ..Options::default()
        })
    };
    let a = start().await;
    let ask = |b: &Node| {
        let request = StartPair {
            peer_url: b.url().into(),
            ..StartPair::default()
        };
        let client = a.client.clone();
        async move { client.start_pairing(&request).await }
    };
    let refusal = |answer: Result<_, syncropel_client::ClientError>| match answer {
        Err(syncropel_client::ClientError::Api { status, code, .. }) => (status, code),
        Ok(reply) => panic!(
            "not refused: {}",
            syncropel_client::Reply::<Pairing>::json(&reply)
        ),
        Err(e) => panic!("{e}"),
    };

    let closed = responder(PairingPolicy {
        refuse_requests: true,
        advertised_kinds: vec!["music.catalog.track".into()],
        ..PairingPolicy::default()
    })
    .await;
    let (_, manifest) = closed.get("/.well-known/syncropel").await;
    let manifest = &manifest["federation_manifest"];
    assert_eq!(manifest["consent_policy"]["accepts_pair_requests"], false);
    assert_eq!(manifest["consent_policy"]["default_posture"], "closed");
    assert_eq!(
        manifest["advertises"]["kinds"],
        json!(["music.catalog.track"])
    );
    assert_eq!(
        refusal(ask(&closed).await),
        (503, "PAIRING_DISABLED".into())
    );

    let no_did_key = responder(PairingPolicy {
        rejects_did_method: vec!["key".into()],
        ..PairingPolicy::default()
    })
    .await;
    let (_, manifest) = no_did_key.get("/.well-known/syncropel").await;
    assert_eq!(
        manifest["federation_manifest"]["consent_policy"]["rejects_did_method"],
        json!(["key"])
    );
    assert_eq!(
        refusal(ask(&no_did_key).await),
        (403, "PAIR_REJECTED".into())
    );

    // A rule that names A approves it at once; one that does not leaves the request pending.
    let rule = |source: &str| Some(Arc::new(ThreadRule::compile(source).unwrap()));
    let naming_a = responder(PairingPolicy {
        approve_rule: rule(&format!(
            "record.body.aitl.kind == 'pair_pending.v1' && record.body.peer_did == '{}'",
            a.did()
        )),
        ..PairingPolicy::default()
    })
    .await;
    let approved = ask(&naming_a).await.unwrap();
    assert_eq!(approved.status(), 200, "{}", approved.json());
    assert_eq!(naming_a.pair(&a.did()).await["state"], "active");
    let elsewhere = responder(PairingPolicy {
        approve_rule: rule("record.body.peer_did.startsWith('did:web:')"),
        ..PairingPolicy::default()
    })
    .await;
    let pending = ask(&elsewhere).await.unwrap();
    let shown = pending.json().to_string();
    assert!(
        matches!(pending.into_value(), Pairing::Pending(_)),
        "{shown}"
    );
}
