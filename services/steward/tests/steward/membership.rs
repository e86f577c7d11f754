//! Members and invites (protocol.md §10.2, §11.11): an invite redeemed makes a member whose
//! bearer is parented to its grant; agent sub-grants only narrow; one revocation ends every
//! credential below it. Every act is a record on the member's identity thread or
//! `th_audit_invites`, written before the answer.

use serde_json::{json, Value};
use syncropel_protocol::Keypair;
use syncropel_store::StateChange;
use syncropel_testkit::{error_code, know, TestSteward, TENANT};

/// A guest's public key, hex.
fn holder() -> String {
    hex::encode(Keypair::generate().public_key())
}

async fn delete(
    steward: &TestSteward,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = steward
        .http
        .delete(format!("{}{path}", steward.url))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    steward.send(request).await
}

async fn thread(steward: &TestSteward, admin: &str, thread: &str) -> Vec<Value> {
    let (status, page) = steward
        .get(admin, &format!("/v1/records?thread={thread}&limit=1000"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().clone()
}

/// Issues a membership invite and redeems it under `label`: the redemption's answer.
async fn join(steward: &TestSteward, admin: &str, label: &str, preset: &str) -> Value {
    let (status, invite) = steward
        .post(
            admin,
            "/v1/invites",
            &json!({"membership": {"preset": preset}}),
        )
        .await;
    assert_eq!(status, 201, "{invite}");
    let id = invite["invite_id"].as_str().unwrap();
    let redeem = json!({"holder_type": "guest", "holder_pubkey": holder(), "member_label": label, "custody": "custodial"});
    let (status, joined) = steward
        .post_anonymous(&format!("/v1/invites/{id}/redeem"), &redeem)
        .await;
    assert_eq!(status, 201, "{joined}");
    joined
}

#[tokio::test]
async fn an_invite_makes_a_member_whose_credentials_die_with_its_grant() {
    let steward = TestSteward::start().await;
    let admin = steward.admin().await;

    let (status, invite) = steward
        .post(
            &admin,
            "/v1/invites",
            &json!({"membership": {"preset": "contributor", "caveats": {"max_fanout": 2}}}),
        )
        .await;
    assert_eq!(status, 201, "{invite}");
    let id = invite["invite_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("inv_"), "{invite}");
    assert_eq!(invite["uses_remaining"], 1);

    // Anyone holding the id sees what it gives; the id itself is in no record.
    let preview = steward
        .send(steward.http.get(format!("{}/v1/invites/{id}", steward.url)))
        .await;
    assert_eq!(preview.0, 200, "{preview:?}");
    assert_eq!(preview.1["status"], "open");
    assert_eq!(preview.1["membership"]["preset"], "contributor");

    let redeem = json!({"holder_type": "guest", "holder_pubkey": holder(), "member_label": "mora", "custody": "custodial"});
    let (status, joined) = steward
        .post_anonymous(&format!("/v1/invites/{id}/redeem"), &redeem)
        .await;
    assert_eq!(status, 201, "{joined}");
    let bearer = joined["bearer"].as_str().unwrap().to_string();
    let membership = &joined["membership"];
    assert_eq!(membership["member_did"], "did:sync:user:mora");
    let master = membership["master_did"].as_str().unwrap().to_string();
    assert!(master.starts_with("did:key:z"), "{joined}");
    let grant_id = membership["grant_id"].as_str().unwrap().to_string();
    assert_eq!(joined["scopes"], json!(["records:read", "records:write"]));

    let (status, again) = steward
        .post_anonymous(&format!("/v1/invites/{id}/redeem"), &redeem)
        .await;
    assert_eq!((status, error_code(&again)), (410, "INVITE_EXHAUSTED"));

    // The member writes as itself only.
    let mine = know("th_work", "did:sync:user:mora", 1, json!({"n": 1}));
    let (status, body) = steward.post(&bearer, "/v1/records", &mine).await;
    assert_eq!(status, 201, "{body}");
    let other = know("th_work", "did:sync:user:ana", 1, json!({"n": 1}));
    let (status, body) = steward.post(&bearer, "/v1/records", &other).await;
    assert_eq!((status, error_code(&body)), (403, "DID_CLAIM_DENIED"));

    // Its records: the grant (whose id it is), binding and acceptance signed by its custodial
    // key on its identity thread; issue and redemption on the invite audit.
    let identity = thread(&steward, &admin, "th_identity_mora").await;
    let kinds: Vec<&str> = identity
        .iter()
        .map(|r| r["body"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "core.identity.grant.v1",
            "core.identity.binding.v1",
            "core.identity.acceptance.v1"
        ]
    );
    assert_eq!(identity[0]["id"], grant_id.as_str());
    assert_eq!(identity[2]["actor"], master.as_str());
    let audit = thread(&steward, &admin, "th_audit_invites").await;
    let events: Vec<&str> = audit
        .iter()
        .map(|r| r["body"]["event_kind"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["issued", "redeemed"]);
    let (_, everything) = steward.get(&admin, "/v1/records?limit=1000").await;
    assert!(
        !everything.to_string().contains(&id),
        "the invite id is in no record"
    );
    assert!(!everything.to_string().contains(&bearer));

    // The roster: all rows for an admin, one's own for a member, none for anyone else.
    let (_, roster) = steward.get(&admin, "/v1/members").await;
    assert_eq!(roster["data"].as_array().unwrap().len(), 1, "{roster}");
    assert_eq!(roster["data"][0]["status"], "active");
    let (_, own) = steward.get(&bearer, "/v1/members").await;
    assert_eq!(own["data"][0]["label"], "mora", "{own}");
    let reader = steward.token(&["records:read"], &[]).await;
    let (_, none) = steward.get(&reader, "/v1/members").await;
    assert_eq!(none["data"], json!([]));

    // Agent sub-grants narrow only; the member mints them for itself.
    let widen = json!({"aud": "did:sync:agent:helper", "scopes": ["admin"]});
    let (status, body) = steward
        .post(&bearer, "/v1/members/mora/grants", &widen)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "PERMISSION_DENIED"),
        "{body}"
    );
    let wider_caveat = json!({"aud": "did:sync:agent:helper", "caveats": {"max_fanout": 5}});
    let (status, _) = steward
        .post(&bearer, "/v1/members/mora/grants", &wider_caveat)
        .await;
    assert_eq!(status, 403);
    // An agent writes as its aud: never as another principal.
    for borrowed in [
        "did:sync:user:ana".to_string(),
        steward.did(),
        master.clone(),
    ] {
        let body = json!({"aud": borrowed, "scopes": ["records:read"]});
        let (status, refused) = steward
            .post(&bearer, "/v1/members/mora/grants", &body)
            .await;
        assert_eq!(
            (status, error_code(&refused)),
            (403, "PERMISSION_DENIED"),
            "{borrowed}"
        );
    }
    let narrow = json!({"aud": "did:sync:agent:helper", "scopes": ["records:read"]});
    let (status, agent) = steward
        .post(&bearer, "/v1/members/mora/grants", &narrow)
        .await;
    assert_eq!(status, 201, "{agent}");
    assert_eq!(agent["parent_grant_id"], grant_id.as_str());
    assert_eq!(agent["caveats"]["max_fanout"], 2, "inherited");
    let agent_bearer = agent["bearer"].as_str().unwrap().to_string();
    let (status, _) = steward.get(&agent_bearer, "/v1/records?limit=1").await;
    assert_eq!(status, 200);
    let agents_write = know("th_work", "did:sync:agent:helper", 1, json!({"n": 2}));
    let (status, _) = steward
        .post(&agent_bearer, "/v1/records", &agents_write)
        .await;
    assert_eq!(status, 403, "records:read only");
    // An agent is not its member: it cannot delegate in its name.
    let (status, body) = steward
        .post(&agent_bearer, "/v1/members/mora/grants", &narrow)
        .await;
    assert_eq!((status, error_code(&body)), (403, "PERMISSION_DENIED"));
    // max_fanout 2: the second child is the last.
    let (status, second) = steward
        .post(&bearer, "/v1/members/mora/grants", &narrow)
        .await;
    assert_eq!(status, 201, "{second}");
    let (status, body) = steward
        .post(&bearer, "/v1/members/mora/grants", &narrow)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "PERMISSION_DENIED"),
        "{body}"
    );

    // One sub-grant revoked: its bearer dies, the member and the other agent live.
    let first = agent["grant_id"].as_str().unwrap();
    let (status, revoked) = delete(
        &steward,
        &bearer,
        &format!("/v1/members/mora/grants/{first}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["scope"], "local");
    let (status, body) = steward.get(&agent_bearer, "/v1/records?limit=1").await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "GRANT_REVOKED"),
        "{body}"
    );
    let second_bearer = second["bearer"].as_str().unwrap();
    let (status, _) = steward.get(second_bearer, "/v1/records?limit=1").await;
    assert_eq!(status, 200);

    // Another caller cannot revoke the member; the admin can, with a note, once.
    let writer = steward.token(&["records:write"], &[]).await;
    let (status, body) = delete(&steward, &writer, "/v1/members/mora", None).await;
    assert_eq!((status, error_code(&body)), (403, "PERMISSION_DENIED"));
    let (status, revoked) = delete(
        &steward,
        &admin,
        "/v1/members/mora",
        Some(json!({"note": "left the team"})),
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["scope"], "local");
    assert_eq!(revoked["already_revoked"], false);
    for token in [bearer.as_str(), second_bearer] {
        let (status, body) = steward.get(token, "/v1/records?limit=1").await;
        assert_eq!(
            (status, error_code(&body)),
            (401, "GRANT_REVOKED"),
            "{body}"
        );
    }
    let (status, again) = delete(&steward, &admin, "/v1/members/mora", None).await;
    assert_eq!((status, &again["already_revoked"]), (200, &json!(true)));
    let identity = thread(&steward, &admin, "th_identity_mora").await;
    let last = identity.last().unwrap();
    assert_eq!(last["body"]["kind"], "core.identity.revoke.v1");
    assert_eq!(last["body"]["note"], "left the team");
    let (_, roster) = steward.get(&admin, "/v1/members").await;
    assert_eq!(roster["data"][0]["status"], "revoked");
}

#[tokio::test]
async fn invites_refuse_what_they_must_and_count_their_uses_exactly() {
    let steward = TestSteward::start().await;
    let admin = steward.admin().await;
    let writer = steward.token(&["records:write"], &[]).await;
    let guest = |label: Option<&str>| {
        let mut body = json!({"holder_type": "guest", "holder_pubkey": holder()});
        if let Some(label) = label {
            body["member_label"] = json!(label);
            body["custody"] = json!("custodial");
        }
        body
    };

    let (status, body) = steward
        .post(&writer, "/v1/invites", &json!({"scopes": ["records:read"]}))
        .await;
    assert_eq!((status, error_code(&body)), (403, "SCOPE_FORBIDDEN"));
    for bad in [
        json!({}),
        json!({"scopes": ["root"]}),
        json!({"scopes": ["records:read"], "max_uses": 0}),
        json!({"scopes": ["records:read"], "ttl_seconds": "soon"}),
        json!({"membership": {"preset": "owner"}}),
        json!({"membership": {"label": "Not A Label"}}),
        json!({"membership": {"caveats": {"depth": 1}}}),
        json!({"membership": {}, "scopes": ["admin"]}),
    ] {
        let (status, body) = steward.post(&admin, "/v1/invites", &bad).await;
        assert_eq!(
            (status, error_code(&body)),
            (400, "VALIDATION_ERROR"),
            "{bad}"
        );
    }
    let (status, body) = steward
        .post_anonymous("/v1/invites/inv_nothing/redeem", &guest(None))
        .await;
    assert_eq!((status, error_code(&body)), (404, "INVITE_NOT_FOUND"));

    // A plain invite: three uses, five concurrent redeemers, exactly three bearers.
    let (status, invite) = steward
        .post(
            &admin,
            "/v1/invites",
            &json!({"scopes": ["records:read"], "max_uses": 3}),
        )
        .await;
    assert_eq!(status, 201, "{invite}");
    let path = format!(
        "/v1/invites/{}/redeem",
        invite["invite_id"].as_str().unwrap()
    );
    for bad in [
        json!({"holder_type": "guest", "holder_pubkey": "abc"}),
        json!({"holder_type": "robot", "holder_pubkey": holder()}),
        guest(Some("mora")),
    ] {
        let (status, body) = steward.post_anonymous(&path, &bad).await;
        assert_eq!(
            (status, error_code(&body)),
            (400, "VALIDATION_ERROR"),
            "{bad}"
        );
    }
    let bodies: Vec<Value> = (0..5).map(|_| guest(None)).collect();
    let redeems = bodies
        .iter()
        .map(|body| steward.post_anonymous(&path, body));
    let answers = futures_util::future::join_all(redeems).await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        3,
        "{answers:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 410).count(),
        2,
        "{answers:?}"
    );
    let redeemed = answers.iter().find(|(s, _)| *s == 201).unwrap();
    let bearer = redeemed.1["bearer"].as_str().unwrap();
    let (status, _) = steward.get(bearer, "/v1/records?limit=1").await;
    assert_eq!(status, 200, "a guest's bearer reads");

    // Membership invites: a label is needed, device custody is not offered, a taken label is
    // refused without a pin, a revoked invite is closed.
    let (_, invite) = steward
        .post(
            &admin,
            "/v1/invites",
            &json!({"membership": {}, "max_uses": 5}),
        )
        .await;
    let path = format!(
        "/v1/invites/{}/redeem",
        invite["invite_id"].as_str().unwrap()
    );
    let (status, _) = steward.post_anonymous(&path, &guest(None)).await;
    assert_eq!(status, 400);
    let mut device = guest(Some("kai"));
    device["custody"] = json!("device");
    let (status, body) = steward.post_anonymous(&path, &device).await;
    assert_eq!((status, error_code(&body)), (501, "NOT_IMPLEMENTED"));
    let (status, body) = steward.post_anonymous(&path, &guest(Some("adopt"))).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = steward.post_anonymous(&path, &guest(Some("kai"))).await;
    assert_eq!(status, 201);
    let (status, body) = steward.post_anonymous(&path, &guest(Some("kai"))).await;
    assert_eq!((status, error_code(&body)), (409, "MEMBER_LABEL_TAKEN"));
    let id = invite["invite_id"].as_str().unwrap();
    let (status, _) = delete(&steward, &admin, &format!("/v1/invites/{id}"), None).await;
    assert_eq!(status, 200);
    let (status, body) = steward.post_anonymous(&path, &guest(Some("lee"))).await;
    assert_eq!((status, error_code(&body)), (410, "INVITE_REVOKED"));
    let (_, preview) = steward
        .send(steward.http.get(format!("{}/v1/invites/{id}", steward.url)))
        .await;
    assert_eq!(preview["status"], "revoked");
}

#[tokio::test]
async fn a_pinned_invite_renews_a_member_and_adoption_keeps_a_bearer() {
    let steward = TestSteward::start().await;
    let admin = steward.admin().await;
    let joined = join(&steward, &admin, "mora", "reader").await;
    let old_bearer = joined["bearer"].as_str().unwrap().to_string();

    // Renewal: an invite pinned to the label gives the same principal a fresh grant; the old
    // grant closes.
    let (_, invite) = steward
        .post(
            &admin,
            "/v1/invites",
            &json!({"membership": {"preset": "contributor", "label": "mora"}}),
        )
        .await;
    let path = format!(
        "/v1/invites/{}/redeem",
        invite["invite_id"].as_str().unwrap()
    );
    let wrong = json!({"holder_type": "guest", "holder_pubkey": holder(), "member_label": "kai", "custody": "custodial"});
    let (status, _) = steward.post_anonymous(&path, &wrong).await;
    assert_eq!(status, 400, "pinned to mora");
    let renew = json!({"holder_type": "guest", "holder_pubkey": holder(), "member_label": "mora", "custody": "custodial"});
    let (status, renewed) = steward.post_anonymous(&path, &renew).await;
    assert_eq!(status, 201, "{renewed}");
    assert_eq!(renewed["membership"]["renewed"], true);
    assert_eq!(
        renewed["membership"]["master_did"],
        joined["membership"]["master_did"]
    );
    assert_ne!(
        renewed["membership"]["grant_id"],
        joined["membership"]["grant_id"]
    );
    let (status, body) = steward.get(&old_bearer, "/v1/records?limit=1").await;
    assert_eq!((status, error_code(&body)), (401, "GRANT_REVOKED"));
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("membership-renewed"));
    let new_bearer = renewed["bearer"].as_str().unwrap();
    let (status, _) = steward.get(new_bearer, "/v1/records?limit=1").await;
    assert_eq!(status, 200);

    // Adoption: the operator (no account), then an existing account whose token stays.
    let (status, owner) = steward
        .post(&admin, "/v1/members/adopt", &json!({"label": "owner"}))
        .await;
    assert_eq!(status, 201, "{owner}");
    assert_eq!(owner["master_did"], steward.did().as_str());
    assert_eq!(owner["scopes"], json!(["admin"]));
    let (status, again) = steward
        .post(&admin, "/v1/members/adopt", &json!({"label": "owner"}))
        .await;
    assert_eq!((status, &again["grant_id"]), (200, &owner["grant_id"]));

    let (status, account) = steward
        .post(
            &admin,
            "/v1/service-accounts",
            &json!({"name": "ci", "scopes": ["records:read"]}),
        )
        .await;
    assert_eq!(status, 201, "{account}");
    let sa_id = account["id"].as_str().unwrap();
    let (status, minted) = steward
        .post(
            &admin,
            &format!("/v1/service-accounts/{sa_id}/tokens"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 201, "{minted}");
    let ci = minted["token"].as_str().unwrap();
    let adopt = json!({"label": "ci", "sa_id": sa_id});
    let (status, adopted) = steward.post(&admin, "/v1/members/adopt", &adopt).await;
    assert_eq!(status, 201, "{adopted}");
    let (status, body) = steward
        .post(&admin, "/v1/members/adopt", &json!({"label": "ci"}))
        .await;
    assert_eq!((status, error_code(&body)), (409, "MEMBER_LABEL_TAKEN"));
    let (status, _) = steward.get(ci, "/v1/records?limit=1").await;
    assert_eq!(status, 200, "the adopted bearer still opens");
    // A token minted for the account later is the member's too.
    let (status, later) = steward
        .post(
            &admin,
            &format!("/v1/service-accounts/{sa_id}/tokens"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 201, "{later}");
    let later = later["token"].as_str().unwrap().to_string();
    let (_, own) = steward.get(ci, "/v1/members").await;
    assert_eq!(own["data"][0]["label"], "ci", "{own}");
    // The member itself may leave.
    let mut leave = steward
        .http
        .delete(format!("{}/v1/members/ci", steward.url))
        .bearer_auth(ci);
    leave = leave.header("content-type", "application/json");
    let (status, _) = steward.send(leave).await;
    assert_eq!(status, 403, "records:write is needed to leave");
    let (status, body) = steward.get(ci, "/v1/records?limit=1").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = delete(&steward, &admin, "/v1/members/ci", None).await;
    assert_eq!(status, 200);
    for token in [ci, later.as_str()] {
        let (status, body) = steward.get(token, "/v1/records?limit=1").await;
        assert_eq!((status, error_code(&body)), (401, "GRANT_REVOKED"));
    }
}

#[tokio::test]
async fn an_expired_grant_answers_grant_expired() {
    let steward = TestSteward::start().await;
    let admin = steward.admin().await;
    let joined = join(&steward, &admin, "mora", "reader").await;
    let bearer = joined["bearer"].as_str().unwrap();
    let grant_id = joined["membership"]["grant_id"].as_str().unwrap();
    // Age the stored grant: waiting out the shortest grant (an hour) is not a test.
    let store = steward.state.store.as_ref();
    let text = store
        .state_get(TENANT, "grant", grant_id)
        .await
        .unwrap()
        .unwrap();
    let mut grant: Value = serde_json::from_str(&text).unwrap();
    grant["expires_at"] = json!(1);
    store
        .write(
            TENANT,
            Vec::new(),
            vec![StateChange::put("grant", grant_id, grant.to_string())],
        )
        .await
        .unwrap();
    let (status, body) = steward.get(bearer, "/v1/records?limit=1").await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "GRANT_EXPIRED"),
        "{body}"
    );
    let (_, roster) = steward.get(&admin, "/v1/members").await;
    assert_eq!(
        roster["data"][0]["status"], "active",
        "the member row keeps its own expiry"
    );
    let (status, presets) = steward
        .send(
            steward
                .http
                .get(format!("{}/v1/scope_presets", steward.url)),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        presets["data"][1],
        json!({"preset": "contributor", "scopes": ["records:read", "records:write"]})
    );
}
