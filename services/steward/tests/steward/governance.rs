//! Governance (protocol.md §13): refusals that reach a tenant are recorded on
//! `th_audit_security` before the answer goes, and the answer names the record; a flood of them
//! costs a bounded number of records, and the next record counts those left out.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use syncropel_protocol::sha256_hex;
use syncropel_testkit::hosted::{Config, Replica};
use syncropel_testkit::{error_code, know, with_test_database, TestSteward};

const AUDIT: &str = "th_audit_security";

/// Every record of `thread`, through the admin token.
async fn thread_records(steward: &TestSteward, admin: &str, thread: &str) -> Vec<Value> {
    let (status, page) = steward
        .get(admin, &format!("/v1/records?thread={thread}&limit=1000"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_refusal_is_recorded_before_its_answer_and_names_its_record() {
    let steward = TestSteward::start().await;
    let admin = steward.admin().await;
    let reader = steward.token(&["records:read"], &[]).await;

    // No credential: 401, recorded without a token.
    let (status, refused) = steward.post_anonymous("/v1/records", &json!({})).await;
    assert_eq!(status, 401, "{refused}");
    let first = refused["audit_record"].as_str().expect("named").to_string();
    let (status, record) = steward.get(&admin, &format!("/v1/records/{first}")).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["thread"], AUDIT);
    assert_eq!(record["body"]["kind"], "core.security.refusal.v1");
    assert_eq!(record["body"]["status"], 401);
    assert_eq!(record["body"]["code"], error_code(&refused));
    assert_eq!(record["body"]["path"], "/v1/records");
    assert_eq!(record["body"]["token_id"], Value::Null);

    // A reader writing: 403, recorded with the hash of its token, never the token.
    let write = know("th_refused", "did:sync:user:ana", 1, json!({"n": 1}));
    let (status, refused) = steward.post(&reader, "/v1/records", &write).await;
    assert_eq!(status, 403, "{refused}");
    let second = refused["audit_record"].as_str().expect("named").to_string();
    let (_, record) = steward.get(&admin, &format!("/v1/records/{second}")).await;
    assert_eq!(record["body"]["status"], 403);
    assert_eq!(record["body"]["method"], "POST");
    assert_eq!(
        record["body"]["token_id"],
        sha256_hex(reader.as_bytes()).as_str()
    );
    assert!(
        !record.to_string().contains(&reader),
        "the bearer is never recorded"
    );

    // Only the refusals: an allowed request writes nothing there, and nobody writes there.
    let (status, _) = steward.get(&admin, "/v1/records?thread=th_refused").await;
    assert_eq!(status, 200);
    let audit = thread_records(&steward, &admin, AUDIT).await;
    assert_eq!(audit.len(), 2, "{audit:?}");
    let forged = know(
        AUDIT,
        "did:sync:user:ana",
        1,
        json!({"kind": "core.security.refusal.v1"}),
    );
    let (status, refused) = steward.post(&admin, "/v1/records", &forged).await;
    assert_eq!(status, 403, "{refused}");
}

/// 1,000 refusals as fast as one client can send them: the records written stay within the
/// bucket (its burst and its rate over the time taken), and a later record counts the rest.
#[tokio::test]
async fn a_flood_of_refusals_writes_a_bounded_number_of_records() {
    let steward = TestSteward::start().await;
    let admin = steward.admin().await;
    let started = Instant::now();
    let mut named = 0;
    for _ in 0..1000 {
        let (status, refused) = steward.post_anonymous("/v1/records", &json!({})).await;
        assert_eq!(status, 401);
        named += usize::from(refused["audit_record"].is_string());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bound = 50 + (10.0 * elapsed).ceil() as usize + 1;
    let audit = thread_records(&steward, &admin, AUDIT).await;
    assert_eq!(audit.len(), named);
    assert!(
        named <= bound,
        "{named} records in {elapsed:.1} s (bound {bound})"
    );
    assert!(named < 1000, "{named}");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (_, refused) = steward.post_anonymous("/v1/records", &json!({})).await;
    let id = refused["audit_record"]
        .as_str()
        .expect("the bucket refilled");
    let (_, record) = steward.get(&admin, &format!("/v1/records/{id}")).await;
    let suppressed = record["body"]["suppressed"].as_u64().unwrap();
    assert!(suppressed >= 1, "{record}");
    let counted: u64 = thread_records(&steward, &admin, AUDIT)
        .await
        .iter()
        .map(|r| r["body"]["suppressed"].as_u64().unwrap() + 1)
        .sum();
    assert_eq!(counted, 1001, "every refusal is a record or counted in one");
}

/// Hosted: a refusal is recorded on the tenant it was addressed to, and no other.
#[tokio::test]
async fn a_hosted_refusal_is_recorded_on_its_tenant() {
    with_test_database(|db| async move {
        let replica = Replica::start(&db, Config::default()).await;
        let one = replica.new_tenant("acct-1", "one").await;
        let two = replica.new_tenant("acct-2", "two").await;
        let (status, refused) = replica
            .tenant_post(
                "one",
                "spl_prod_sa_nobody_00000000000000000000000000000000",
                "/v1/records",
                &json!({}),
            )
            .await;
        assert_eq!(status, 401, "{refused}");
        let id = refused["audit_record"].as_str().expect("named");
        let (status, record) = replica
            .tenant_get("one", &one, &format!("/v1/records/{id}"))
            .await;
        assert_eq!(status, 200, "{record}");
        assert_eq!(record["thread"], AUDIT);
        let (status, _) = replica
            .tenant_get("two", &two, &format!("/v1/records/{id}"))
            .await;
        assert_eq!(status, 404);
        replica.stop().await;
    })
    .await;
}

/// `store_bounds` (protocol.md §13): past its bound a tenant keeps reading, its writes answer
/// `507 STORE_CEILING_REACHED`, a restart keeps the bound (it is a fold of config records), and a
/// config record raising it lets writes in again.
#[tokio::test]
async fn past_its_store_bound_a_tenant_reads_but_writes_only_once_the_bound_is_raised() {
    let steward = TestSteward::start().await;
    let admin = steward.admin().await;
    let writer = steward.token(&["records:read", "records:write"], &[]).await;
    let actor = "did:sync:user:ana";
    for n in 1..=3 {
        let (status, body) = steward
            .post(
                &writer,
                "/v1/records",
                &know("th_bound", actor, n, json!({"n": n})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, shown) = steward.get(&admin, "/v1/config").await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(
        shown["config"]["store_bounds"]["max_total_bytes"],
        Value::Null
    );
    let stored = shown["stored_bytes"].as_u64().unwrap();
    assert!(stored > 0, "{shown}");

    // Who may set it, and in what shape.
    let (status, refused) = steward
        .post(
            &writer,
            "/v1/config/store_bounds",
            &json!({"max_total_bytes": 1}),
        )
        .await;
    assert_eq!(
        (status, error_code(&refused)),
        (403, "SCOPE_FORBIDDEN"),
        "{refused}"
    );
    for bad in [
        json!({"max_total_bytes": -5}),
        json!({"max_total_bytes": "1"}),
        json!([1]),
    ] {
        let (status, refused) = steward.post(&admin, "/v1/config/store_bounds", &bad).await;
        assert_eq!(status, 400, "{bad}: {refused}");
    }
    let (status, set) = steward
        .post(
            &admin,
            "/v1/config/store_bounds",
            &json!({"max_total_bytes": 1}),
        )
        .await;
    assert_eq!(status, 201, "{set}");
    assert_eq!(set["thread"], "th_engine_config");
    assert_eq!(set["act"], "LEARN");

    let (status, refused) = write(&steward, &writer, 10).await;
    assert_eq!(
        (status, error_code(&refused)),
        (507, "STORE_CEILING_REACHED"),
        "{refused}"
    );
    let batch = json!({"records": [know("th_bound", actor, 11, json!({}))]});
    let (status, answer) = steward.post(&writer, "/v1/records/batch", &batch).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"][0]["status"], 507, "{answer}");
    let (status, page) = steward.get(&writer, "/v1/records?thread=th_bound").await;
    assert_eq!(status, 200);
    assert_eq!(page["data"].as_array().unwrap().len(), 3, "reads go on");

    // The bound is a fold of records: a restart keeps it.
    let stopped = steward.stop().await;
    let steward = TestSteward::start_with(syncropel_testkit::Options::restart(stopped)).await;
    let (status, refused) = write(&steward, &writer, 12).await;
    assert_eq!(
        (status, error_code(&refused)),
        (507, "STORE_CEILING_REACHED"),
        "{refused}"
    );

    // Raised by a config record a client writes itself (with config:write).
    let raise = json!({"act": "LEARN", "actor": actor, "thread": "th_engine_config", "clock": 1,
                       "body": {"topic": "store_bounds", "max_total_bytes": stored * 1000}});
    let (status, body) = steward.post(&admin, "/v1/records", &raise).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = write(&steward, &writer, 13).await;
    assert_eq!(status, 201, "writes again: {body}");
}

/// A record on `th_bound` at `clock`, written with `token`.
async fn write(steward: &TestSteward, token: &str, clock: i64) -> (u16, Value) {
    let record = know("th_bound", "did:sync:user:ana", clock, json!({"n": clock}));
    steward.post(token, "/v1/records", &record).await
}

/// Hosted: one tenant's bound is its own.
#[tokio::test]
async fn a_hosted_tenants_store_bound_is_its_own() {
    with_test_database(|db| async move {
        let replica = Replica::start(&db, Config::default()).await;
        let full = replica.new_tenant("acct-1", "full").await;
        let free = replica.new_tenant("acct-2", "free").await;
        let (status, set) = replica
            .tenant_post(
                "full",
                &full,
                "/v1/config/store_bounds",
                &json!({"max_total_bytes": 1}),
            )
            .await;
        assert_eq!(status, 201, "{set}");
        let record = know("th_bound", "did:sync:user:ana", 1, json!({}));
        let (status, refused) = replica
            .tenant_post("full", &full, "/v1/records", &record)
            .await;
        assert_eq!(
            (status, error_code(&refused)),
            (507, "STORE_CEILING_REACHED")
        );
        let (status, body) = replica
            .tenant_post("free", &free, "/v1/records", &record)
            .await;
        assert_eq!(status, 201, "{body}");
        replica.stop().await;
    })
    .await;
}

/// A record body holding a string shaped like a key or token is refused, wherever it sits, and
/// nothing is stored (protocol.md §14); the same words without a key pass.
#[tokio::test]
async fn a_body_holding_a_credential_shaped_string_is_refused() {
    let steward = TestSteward::start().await;
    let admin = steward.admin().await;
    let keys = [
        "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv",
        "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl",
        "AKIAABCDEFGHIJKLMNOP",
    ];
    for (n, key) in keys.iter().enumerate() {
        let body = json!({"config": {"providers": [{"name": "x", "auth": format!("use {key}")}]}});
        let record = know("th_keys", "did:sync:user:ana", n as i64 + 1, body);
        let (status, refused) = steward.post(&admin, "/v1/records", &record).await;
        assert_eq!(
            (status, error_code(&refused)),
            (400, "F16_VIOLATION_SENSITIVE_FIELD"),
            "{key}: {refused}"
        );
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .contains("config.providers[0].auth"),
            "{refused}"
        );
        assert!(
            !refused.to_string().contains(key),
            "the answer does not echo it"
        );
    }
    let plain = know(
        "th_keys",
        "did:sync:user:ana",
        9,
        json!({"note": "pass it as a Bearer token"}),
    );
    let (status, body) = steward.post(&admin, "/v1/records", &plain).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(thread_records(&steward, &admin, "th_keys").await.len(), 1);
}

/// Replaying a tenant's records into an empty store rebuilds what they state (protocol.md
/// §13.1): its service accounts and tokens (the same hashes, so every bearer opens the new store),
/// namespaces, consent grants, pairs and config. The records travel in an export bundle; the
/// import replays them.
#[tokio::test]
async fn replaying_a_tenants_records_rebuilds_its_accounts_tokens_grants_pairs_namespaces_and_config(
) {
    use syncropel_testkit::{quick_federation, Node, Options};
    let b = Node::start(Options {
        federation: quick_federation(),
        ..Options::default()
    })
    .await;
    let a = Node::start(Options {
        federation: syncropel_federation::FederationConfig {
            auto_approve: vec![b.did()],
            ..quick_federation()
        },
        ..Options::default()
    })
    .await;
    let pair = b.pair_with(a.url()).await;
    assert_eq!(pair["state"], "active", "{pair}");
    a.register_namespace("acme").await;
    let reader = a.steward.token(&["records:read"], &[]).await;
    let grant = json!({"target_namespace": "default", "peer_did": b.did()});
    let (status, body) = a.post("/v1/consent/grants", &grant).await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let (status, body) = a
        .post(
            "/v1/config/store_bounds",
            &json!({"max_total_bytes": 1u64 << 30}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // A member with two agents, one of them revoked, and an invite still open.
    let (_, invite) = a
        .post(
            "/v1/invites",
            &json!({"membership": {"preset": "contributor"}}),
        )
        .await;
    let redeem = json!({"holder_type": "guest", "holder_pubkey": "ab".repeat(32), "member_label": "mora", "custody": "custodial"});
    let path = format!(
        "/v1/invites/{}/redeem",
        invite["invite_id"].as_str().unwrap()
    );
    let (status, member) = a.steward.post_anonymous(&path, &redeem).await;
    assert_eq!(status, 201, "{member}");
    let mut agents = Vec::new();
    for aud in ["did:sync:agent:one", "did:sync:agent:two"] {
        let (status, agent) = a
            .post("/v1/members/mora/grants", &json!({"aud": aud}))
            .await;
        assert_eq!(status, 201, "{agent}");
        agents.push(agent);
    }
    let revoked = format!(
        "/v1/members/mora/grants/{}",
        agents[1]["grant_id"].as_str().unwrap()
    );
    let request = a
        .steward
        .http
        .delete(format!("{}{revoked}", a.url()))
        .bearer_auth(&a.token);
    assert_eq!(a.steward.send(request).await.0, 200);
    let (_, open_invite) = a
        .post(
            "/v1/invites",
            &json!({"scopes": ["records:read"], "max_uses": 2}),
        )
        .await;
    let (_, members_before) = a.get("/v1/members").await;
    // A closed thread.
    let (status, _) = a
        .post(
            "/v1/records",
            &know("th_done", "did:sync:user:ana", 1, json!({})),
        )
        .await;
    assert_eq!(status, 201);
    let close = a
        .steward
        .http
        .delete(format!("{}/v1/threads/th_done", a.url()))
        .bearer_auth(&a.token);
    assert_eq!(a.steward.send(close).await.0, 200);

    let before = tenant_views(&a).await;

    let exported = a
        .steward
        .http
        .post(format!("{}/v1/portability/export", a.url()))
        .bearer_auth(&a.token)
        .json(&json!({"passphrase": "a passphrase long enough", "carry_tokens": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(exported.status(), 200);
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("a.tar.zst");
    std::fs::write(&bundle, exported.bytes().await.unwrap()).unwrap();

    let empty = Node::start(Options::default()).await;
    let stopped = empty.stop().await;
    let home = syncropel_home::Home::new(stopped.home.path().to_path_buf());
    let summary = syncropel_home::import_offline(
        &home,
        &bundle,
        Some("a passphrase long enough".into()),
        syncropel_portability::ImportOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(summary.records_failed, 0, "{summary:?}");
    let a2 = Node::start(Options::restart(stopped)).await;
    let after = tenant_views(&a2).await;

    let names = |accounts: &Value| -> Vec<Value> {
        let mut listed: Vec<Value> = accounts
            .as_array()
            .unwrap()
            .iter()
            .map(|sa| json!([sa["id"], sa["name"], sa["scopes"], sa["allowed_actors"]]))
            .collect();
        listed.sort_by_key(|v| v.to_string());
        listed
    };
    let (was, is) = (names(&before.0), names(&after.0));
    assert!(
        was.iter().all(|sa| is.contains(sa)),
        "{was:?} within {is:?}"
    );
    assert_eq!(after.1, before.1, "namespaces");
    assert_eq!(after.2, before.2, "consent grants");
    assert_eq!(after.3, before.3, "pairs");
    assert_eq!(after.4, before.4, "config");
    // The same token hashes: the bearers issued on A open A2.
    let member_bearer = member["bearer"].as_str().unwrap();
    let live_agent = agents[0]["bearer"].as_str().unwrap();
    for token in [&a.token, &reader, member_bearer, live_agent] {
        let (status, body) = a2.steward.get(token, "/v1/records?limit=1").await;
        assert_eq!(status, 200, "{body}");
    }
    // Members, grants and invites: the same roster, the revoked agent still refused, the open
    // invite still redeemable.
    let (_, members_after) = a2.get("/v1/members").await;
    assert_eq!(members_after, members_before, "members");
    let dead_agent = agents[1]["bearer"].as_str().unwrap();
    let (status, body) = a2.steward.get(dead_agent, "/v1/records?limit=1").await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "GRANT_REVOKED"),
        "{body}"
    );
    let path = format!(
        "/v1/invites/{}/redeem",
        open_invite["invite_id"].as_str().unwrap()
    );
    let guest = json!({"holder_type": "guest", "holder_pubkey": "cd".repeat(32)});
    let (status, body) = a2.steward.post_anonymous(&path, &guest).await;
    assert_eq!(status, 201, "{body}");
    let late = know("th_done", "did:sync:user:ana", 2, json!({}));
    let (status, body) = a2.post("/v1/records", &late).await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "precondition_failed"),
        "still closed"
    );
}

/// What a tenant's folds say, through its admin token: service accounts, namespaces, consent
/// grants, pairs (id, peer, state, token ids) and config.
async fn tenant_views(node: &syncropel_testkit::Node) -> (Value, Value, Value, Vec<Value>, Value) {
    let (_, accounts) = node.get("/v1/service-accounts").await;
    let (_, namespaces) = node.get("/v1/namespaces").await;
    let (_, grants) = node.get("/v1/consent/grants").await;
    let (_, pairs) = node.get("/v1/federation/pairs").await;
    let (_, config) = node.get("/v1/config").await;
    let pairs: Vec<Value> = pairs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| json!([p["pair_id"], p["peer_did"], p["state"], p["tokens"]]))
        .collect();
    (
        accounts["data"].clone(),
        namespaces,
        grants,
        pairs,
        config["config"].clone(),
    )
}

/// Per-kind field classes (protocol.md §14), declared by a `kind_fields` config record: a
/// `sensitive` field is refused at ingest, a `ciphertext_permitted` one only as a wrapped envelope
/// naming its unwrap key; other kinds and public fields pass.
#[tokio::test]
async fn a_kinds_declared_fields_decide_what_its_records_may_hold() {
    let steward = TestSteward::start().await;
    let admin = steward.admin().await;
    let policy = json!({"kinds": {"acme.payment.v1": {
        "card": "sensitive", "blob": "ciphertext_permitted", "amount": "public"}}});
    let (status, body) = steward
        .post(&admin, "/v1/config/kind_fields", &policy)
        .await;
    assert_eq!(status, 201, "{body}");
    let bad = json!({"kinds": {"acme.payment.v1": {"card": "secret"}}});
    let (status, _) = steward.post(&admin, "/v1/config/kind_fields", &bad).await;
    assert_eq!(status, 400);

    let cases = [
        (json!({"kind": "acme.payment.v1", "card": "4111 1111"}), 400),
        (
            json!({"kind": "acme.payment.v1", "blob": "plain text"}),
            400,
        ),
        (
            json!({"kind": "acme.payment.v1", "blob": {"ciphertext": "q1w2"}}),
            400,
        ),
        (
            json!({"kind": "acme.payment.v1", "amount": 5,
                   "blob": {"ciphertext": "q1w2", "unwrap_key": "secret://kms/k1"}}),
            201,
        ),
        (json!({"kind": "acme.other.v1", "card": "4111 1111"}), 201),
    ];
    for (n, (body, status)) in cases.into_iter().enumerate() {
        let record = know("th_kinds", "did:sync:user:ana", n as i64 + 1, body.clone());
        let (got, answer) = steward.post(&admin, "/v1/records", &record).await;
        assert_eq!(got, status, "{body}: {answer}");
        if status == 400 {
            assert_eq!(error_code(&answer), "F16_VIOLATION_SENSITIVE_FIELD");
        }
    }
    assert_eq!(thread_records(&steward, &admin, "th_kinds").await.len(), 2);
}

/// The routes of governance and portability against every scope of protocol.md §10.2: each
/// opens to `admin` and to the scope the table names, and answers every other scope
/// `403 SCOPE_FORBIDDEN` (recorded, like every refusal).
#[tokio::test]
async fn each_governance_route_opens_to_its_scope_and_no_other() {
    let steward = TestSteward::start().await;
    let mut tokens = Vec::new();
    for scope in syncropel_tenant::Scope::ALL.map(syncropel_tenant::Scope::as_str) {
        tokens.push((scope, steward.token(&[scope], &[]).await));
    }
    let routes: [(&str, Option<Value>, &str); 6] = [
        ("/v1/config", None, "config:read"),
        (
            "/v1/config/telemetry_retention",
            Some(json!({"days": 3})),
            "config:write",
        ),
        ("/v1/secrets/list", Some(json!({})), "admin"),
        (
            "/v1/secrets/set",
            Some(json!({"handle": "h", "value": "v"})),
            "admin",
        ),
        (
            "/v1/portability/export",
            Some(json!({"threads": ["th_x"]})),
            "admin",
        ),
        (
            "/v1/service-accounts",
            Some(json!({"name": "n", "scopes": ["records:read"]})),
            "admin",
        ),
    ];
    for (path, body, opens) in routes {
        for (scope, token) in &tokens {
            let (status, answer) = match &body {
                None => steward.get(token, path).await,
                Some(body) => steward.post(token, path, body).await,
            };
            let allowed = *scope == "admin" || *scope == opens;
            if allowed {
                assert!(status < 300, "{path} with {scope}: {status} {answer}");
            } else {
                assert_eq!(
                    (status, error_code(&answer)),
                    (403, "SCOPE_FORBIDDEN"),
                    "{path} with {scope}"
                );
                assert!(
                    answer["audit_record"].is_string(),
                    "{path} with {scope}: {answer}"
                );
            }
        }
    }
}
