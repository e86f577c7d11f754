//! Namespaces and consent (section 3): what crosses between namespaces, in full or as stubs.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use syncropel_client::api::{CreateGrant, PairGrant};
use syncropel_client::ClientError;
use syncropel_protocol::consent::HashLevel;
use syncropel_protocol::unix_now;
use syncropel_testkit::{error_code, Node};

use super::paired;

/// Grants consent as `body` describes (`201`); the grant as answered.
pub(super) async fn grant_consent(node: &Node, body: Value) -> Value {
    let request: CreateGrant = serde_json::from_value(body).unwrap();
    let grant = node.client.grant_consent(&request).await.unwrap();
    assert_eq!(grant.status(), 201, "{}", grant.json());
    grant.into_json()
}

/// Revokes a grant (`200`).
async fn revoke_grant(node: &Node, grant_id: &str) {
    let revoked = node.client.revoke_grant(grant_id, None).await.unwrap();
    assert_eq!(revoked.status(), 200, "{}", revoked.json());
}

#[tokio::test]
async fn consent_decides_what_crosses_namespaces() {
    let (a, b, _) = paired().await;
    b.register_namespace("research").await;
    a.register_namespace("research").await;
    let thread = "th_fed_consent";
    let actor = "did:sync:user:bob";
    let research = |n: i64| json!({"namespace": "research", "n": n});

    // No grant: nothing in `research` crosses into A's `default`.
    let hidden = b.emit(thread, actor, 1, research(1)).await;
    let pulled = a.pull(thread, &b.did()).await;
    assert_eq!(pulled["pulled"], 0, "{pulled}");
    // Records of the default namespace always cross.
    let plain = b.emit(thread, actor, 2, json!({"n": 2})).await;
    a.arrived(plain["id"].as_str().unwrap()).await;

    // A grant for another peer opens nothing to this one.
    grant_consent(&b, json!({"source_namespace": "research", "target_namespace": "default",
                    "hash_levels": ["L0"], "peer_did": "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"})).await;
    // … nor one for another thread.
    grant_consent(
        &b,
        json!({"source_namespace": "research", "target_namespace": "default",
                    "hash_levels": ["L0"], "threads": ["th_some_other"]}),
    )
    .await;
    let elsewhere = b.emit(thread, actor, 20, research(20)).await;
    let marker = b.emit(thread, actor, 21, json!({"n": 21})).await;
    a.arrived(marker["id"].as_str().unwrap()).await;
    assert!(a.record(elsewhere["id"].as_str().unwrap()).await.is_none());

    // A grant with L0: full, signed records.
    let grant = grant_consent(
        &b,
        json!({"source_namespace": "research", "target_namespace": "default",
                    "hash_levels": ["L0", "L1"], "peer_did": a.did()}),
    )
    .await;
    let full_id = grant["grant_id"].as_str().unwrap().to_string();
    let full = b.emit(thread, actor, 3, research(3)).await;
    let got = a.arrived(full["id"].as_str().unwrap()).await;
    assert_eq!(got["body"], full["body"], "{got}");
    assert_eq!(got["sig"], full["sig"]);
    assert_eq!(got["signer"], b.did());
    assert_eq!(got.get("redacted"), None, "{got}");
    // What was hidden before is still behind A's cursor.
    assert!(a.record(hidden["id"].as_str().unwrap()).await.is_none());

    let listed = b.client.consent_grants(None).await.unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(listed.data.len(), 3, "{}", listed.json());

    // Replace it with a grant without L0: stubs without a signature.
    revoke_grant(&b, &full_id).await;
    let grant = grant_consent(
        &b,
        json!({"source_namespace": "research", "target_namespace": "default",
                    "hash_levels": ["L1", "L2", "L3"]}),
    )
    .await;
    let stub_grant = grant["grant_id"].as_str().unwrap().to_string();
    let secret = b.emit(thread, actor, 4, research(4)).await;
    let stub = a.arrived(secret["id"].as_str().unwrap()).await;
    assert_eq!(stub["body"], json!({"redacted": true}), "{stub}");
    assert_eq!(stub["redacted"], true, "{stub}");
    assert_eq!(
        stub.get("sig").cloned().unwrap_or(Value::Null),
        Value::Null,
        "{stub}"
    );
    assert_eq!(stub["consent_grant"], stub_grant.as_str());
    let levels = stub["hash_levels"].as_object().expect("hash_levels");
    assert!(levels.contains_key("l1") && levels.contains_key("l2") && levels.contains_key("l3"));
    assert!(!levels.contains_key("l0"), "{stub}");
    assert_eq!(stub["clock"], 4);
    assert_eq!(stub["actor"], actor);

    // Revoked: records written afterwards stay home.
    revoke_grant(&b, &stub_grant).await;
    let after = b.emit(thread, actor, 5, research(5)).await;
    let last = b.emit(thread, actor, 6, json!({"n": 6})).await;
    a.arrived(last["id"].as_str().unwrap()).await;
    assert!(a.record(after["id"].as_str().unwrap()).await.is_none());
    let ids = a.ids(thread).await;
    let expected: BTreeSet<String> = [&plain, &marker, &full, &secret, &last]
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn records_of_a_namespace_the_receiver_lacks_are_quarantined() {
    let (a, b, pair_id) = paired().await;
    b.register_namespace("research").await;
    grant_consent(&b, json!({"source_namespace": "research", "target_namespace": "default", "hash_levels": ["L0"]})).await;
    let record = b
        .emit(
            "th_fed_ns",
            "did:sync:user:bob",
            1,
            json!({"namespace": "research"}),
        )
        .await;
    let pulled = a.pull("th_fed_ns", &b.did()).await;
    assert_eq!(pulled["pulled"], 0, "{pulled}");
    assert_eq!(pulled["quarantined"], 1, "{pulled}");
    let held = a.quarantine(Some(&pair_id)).await;
    assert_eq!(
        held.get(record["id"].as_str().unwrap()).map(String::as_str),
        Some("NAMESPACE_REJECTED")
    );
    assert!(a.ids("th_fed_ns").await.is_empty());
}

#[tokio::test]
async fn a_pairs_grant_routes_bind_grants_to_its_peer_only() {
    let (a, b, _) = paired().await;
    let request = PairGrant {
        namespace: "research".into(),
        maps: vec!["team".into(), "lab".into()],
        hash_levels: None,
    };
    let granted = b.client.grant_to_pair(&a.did(), &request).await.unwrap();
    assert_eq!(granted.status(), 201, "{}", granted.json());
    let targets: Vec<&str> = granted
        .data
        .iter()
        .map(|g| g.target_namespace.as_str())
        .collect();
    assert_eq!(targets, ["team", "lab"]);
    for grant in &granted.data {
        assert_eq!(grant.source_namespace, "research");
        assert_eq!(grant.peer_did.as_deref(), Some(a.did().as_str()));
        // Pair-scoped: L1 unless the request names levels.
        assert_eq!(grant.hash_levels, [HashLevel::L1], "{}", granted.json());
    }

    // A bad target namespace: refused before anything is written.
    let bad = PairGrant {
        namespace: "research".into(),
        maps: vec!["fine".into(), "Not A Namespace".into()],
        hash_levels: Some(vec![HashLevel::L0]),
    };
    let refused = b.client.grant_to_pair(&a.did(), &bad).await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Api { status: 400, .. }),
        "{refused}"
    );
    let listed = b.client.consent_grants(None).await.unwrap();
    assert_eq!(listed.data.len(), 2, "{}", listed.json());

    // A grant not bound to the pair's peer cannot be revoked through the pair.
    let other = grant_consent(&b, json!({"target_namespace": "team"})).await;
    let other_id = other["grant_id"].as_str().unwrap();
    let refused = b
        .client
        .revoke_pair_grant(&a.did(), other_id)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, ClientError::Api { status: 404, code, .. } if code == "NOT_FOUND"),
        "{refused}"
    );
    // Nor through a pair that does not exist.
    let refused = b
        .client
        .revoke_pair_grant("fed_nobody", &granted.data[0].grant_id)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, ClientError::Api { status: 404, .. }),
        "{refused}"
    );

    let revoked = b
        .client
        .revoke_pair_grant(&a.did(), &granted.data[0].grant_id)
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200, "{}", revoked.json());
    let left: BTreeSet<String> = b
        .client
        .consent_grants(None)
        .await
        .unwrap()
        .data
        .iter()
        .map(|g| g.grant_id.clone())
        .collect();
    let expected: BTreeSet<String> =
        [granted.data[1].grant_id.clone(), other_id.to_string()].into();
    assert_eq!(left, expected);
}

/// `POST /v1/consent/grants` raw, as the admin: status and body.
async fn post_grant(node: &Node, body: Value) -> (u16, Value) {
    node.post("/v1/consent/grants", &body).await
}

#[tokio::test]
async fn a_public_grant_shares_one_thread_into_any_namespace_until_revoked_or_expired() {
    let (a, b, _) = paired().await;
    for node in [&a, &b] {
        node.register_namespace("research").await;
        node.register_namespace("lab").await;
    }
    let thread = "th_fed_public";
    let actor = "did:sync:user:bob";

    // Refused before anything is written, in the ApiError shape.
    let refusals = [
        json!({"public": true, "thread": thread, "granted_level": "L1"}),
        json!({"public": true, "thread": thread, "granted_level": "L3"}),
        json!({"public": true, "thread": thread}),
        json!({"public": true, "thread": "not a thread", "granted_level": "L2"}),
        json!({"public": true, "granted_level": "L2"}),
        json!({"public": true, "thread": thread, "granted_level": "L2", "target_namespace": "lab"}),
        json!({"public": true, "thread": thread, "granted_level": "L2", "peer_did": a.did()}),
        json!({"public": true, "thread": thread, "granted_level": "L2",
               "expires_at": "2099-01-01T00:00:00Z"}),
        json!({"public": true, "thread": thread, "granted_level": "L2",
               "expires_at": "2020-01-01T00:00:00Z"}),
        json!({"public": "yes", "thread": thread, "granted_level": "L2"}),
        json!({"public": true, "op": "accept", "thread": thread, "granted_level": "L2"}),
    ];
    for body in refusals {
        let (status, refused) = post_grant(&b, body.clone()).await;
        assert_eq!(status, 400, "{body}: {refused}");
        assert_eq!(
            error_code(&refused),
            "VALIDATION_ERROR",
            "{body}: {refused}"
        );
    }
    // A body past the steward's limit is refused unread.
    let huge = "x".repeat(2 * 1024 * 1024);
    let (status, _) = post_grant(
        &b,
        json!({"public": true, "thread": thread, "granted_level": "L2", "purpose": huge}),
    )
    .await;
    assert_eq!(status, 413);
    assert!(b.client.consent_grants(None).await.unwrap().data.is_empty());

    // An L2 public grant: a week long, any namespace on either side, anyone.
    let (status, grant) = post_grant(
        &b,
        json!({"public": true, "thread": thread, "granted_level": "L2"}),
    )
    .await;
    assert_eq!(status, 201, "{grant}");
    let grant_id = grant["grant_id"].as_str().unwrap().to_string();
    assert_eq!(grant["public"], true, "{grant}");
    assert_eq!(grant["thread"], thread);
    assert_eq!(grant["granted_level"], "L2");
    assert_eq!(grant["hash_levels"], json!(["L2"]));
    assert_eq!(grant["threads"], json!([thread]));
    assert_eq!(grant["source_namespace"], "*");
    assert_eq!(grant["target_namespace"], "*");
    assert_eq!(grant["peer_did"], Value::Null);
    assert_eq!(grant["active"], true);
    let expires =
        syncropel_protocol::unix_from_rfc3339(grant["expires_at"].as_str().unwrap()).unwrap();
    let week = 7 * 24 * 3600;
    assert!((expires - unix_now() - week).abs() < 60, "{grant}");
    let listed = b.client.consent_grants(None).await.unwrap();
    assert_eq!(listed.data.len(), 1, "{}", listed.json());
    assert!(listed.data[0].public);

    // Records of any namespace on that thread reach A as stubs carrying the L2 digest only.
    a.pull(thread, &b.did()).await;
    let research = b
        .emit(thread, actor, 1, json!({"namespace": "research", "n": 1}))
        .await;
    let lab = b
        .emit(thread, actor, 2, json!({"namespace": "lab", "n": 2}))
        .await;
    for written in [&research, &lab] {
        let stub = a.arrived(written["id"].as_str().unwrap()).await;
        assert_eq!(stub["redacted"], true, "{stub}");
        assert_eq!(stub["body"], json!({"redacted": true}), "{stub}");
        assert_eq!(stub["consent_grant"], grant_id.as_str());
        let levels = stub["hash_levels"].as_object().expect("hash_levels");
        assert_eq!(levels.keys().collect::<Vec<_>>(), ["l2"], "{stub}");
        assert_eq!(stub.get("sig").cloned().unwrap_or(Value::Null), Value::Null);
    }
    // Another thread is not opened.
    let other = b
        .emit(
            "th_fed_not_public",
            actor,
            1,
            json!({"namespace": "research"}),
        )
        .await;
    let pulled = a.pull("th_fed_not_public", &b.did()).await;
    assert_eq!(pulled["pulled"], 0, "{pulled}");
    assert!(a.record(other["id"].as_str().unwrap()).await.is_none());

    // Revoked: the next page leaves them out.
    revoke_grant(&b, &grant_id).await;
    let after = b
        .emit(thread, actor, 3, json!({"namespace": "research", "n": 3}))
        .await;
    let marker = b.emit(thread, actor, 4, json!({"n": 4})).await;
    a.arrived(marker["id"].as_str().unwrap()).await;
    assert!(a.record(after["id"].as_str().unwrap()).await.is_none());

    // An L0 public grant serves full, signed records; once expired, nothing. Its life is
    // generous so a slow pull on a loaded machine still lands before it ends.
    let soon = syncropel_protocol::rfc3339_from_unix(unix_now() + 12);
    let (status, grant) = post_grant(
        &b,
        json!({"public": true, "thread": thread, "granted_level": "L0", "expires_at": soon}),
    )
    .await;
    assert_eq!(status, 201, "{grant}");
    let full = b
        .emit(thread, actor, 5, json!({"namespace": "lab", "n": 5}))
        .await;
    let got = a.arrived(full["id"].as_str().unwrap()).await;
    assert_eq!(got["body"], full["body"], "{got}");
    assert_eq!(got["sig"], full["sig"]);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let listed = b.client.consent_grants(None).await.unwrap();
        if !listed.data[0].active {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the public grant never expired: {}",
            listed.json()
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let expired = b
        .emit(thread, actor, 6, json!({"namespace": "lab", "n": 6}))
        .await;
    let marker = b.emit(thread, actor, 7, json!({"n": 7})).await;
    a.arrived(marker["id"].as_str().unwrap()).await;
    assert!(a.record(expired["id"].as_str().unwrap()).await.is_none());
}

#[tokio::test]
async fn every_grant_acceptance_and_revoke_writes_one_consent_audit_record() {
    let (a, b, _) = paired().await;
    let grant = grant_consent(
        &b,
        json!({"source_namespace": "research", "target_namespace": "team",
               "hash_levels": ["L1"], "purpose": "audit me"}),
    )
    .await;
    let (status, public) = post_grant(
        &b,
        json!({"public": true, "thread": "th_fed_audit", "granted_level": "L2"}),
    )
    .await;
    assert_eq!(status, 201, "{public}");
    let (status, accepted) = post_grant(
        &b,
        json!({"op": "accept", "peer_did": a.did(), "source_namespace": "research",
               "target_namespace": "default"}),
    )
    .await;
    assert_eq!(status, 201, "{accepted}");
    assert_eq!(accepted["op"], "accept", "{accepted}");
    let pair_grants = b
        .client
        .grant_to_pair(
            &a.did(),
            &PairGrant {
                namespace: "research".into(),
                maps: vec![],
                hash_levels: None,
            },
        )
        .await
        .unwrap();
    let pair_grant = serde_json::to_value(&pair_grants.data[0]).unwrap();
    let made = [&grant, &public, &accepted, &pair_grant];
    for made in made {
        revoke_grant(&b, made["grant_id"].as_str().unwrap()).await;
    }

    let consent = b.records("th_consent").await;
    let audit = b.records("th_audit_consent").await;
    assert_eq!(audit.len(), 2 * made.len(), "{audit:?}");
    for made in made {
        let id = made["grant_id"].as_str().unwrap();
        let op = made["op"].as_str().unwrap();
        let of = |op: &str| -> Vec<&Value> {
            audit
                .iter()
                .filter(|r| r["body"]["grant_id"] == id && r["body"]["op"] == op)
                .collect()
        };
        let [created] = of(op)[..] else {
            panic!("{id}: one {op} audit, got {:?}", of(op));
        };
        let body = &created["body"];
        assert_eq!(body["kind"], "core.consent_state_change.v1", "{body}");
        assert!(body["at"].as_i64().unwrap() > 0, "{body}");
        assert_eq!(created["actor"], b.did(), "{created}");
        // The detail is the consent record it mirrors, exactly.
        let record = consent
            .iter()
            .find(|r| r["body"]["grant_id"] == id && r["body"]["op"] == op)
            .unwrap();
        assert_eq!(body["detail"], record["body"], "{body}");
        let [revoked] = of("revoke")[..] else {
            panic!("{id}: one revoke audit, got {:?}", of("revoke"));
        };
        assert_eq!(revoked["body"]["kind"], "core.consent_state_change.v1");
        assert_eq!(revoked["body"]["detail"], json!({"reason": "operator"}));
    }
    // A revoke of what is no longer in force writes nothing.
    let again = b
        .client
        .revoke_grant(grant["grant_id"].as_str().unwrap(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&again, ClientError::Api { status: 404, .. }),
        "{again}"
    );
    assert_eq!(b.records("th_audit_consent").await.len(), audit.len());
}
