//! Secrets (protocol.md §14): values live in a backend and move only through `/v1/secrets/*`;
//! records hold handles; every call, refused ones too, leaves its `secret.access.v1` on
//! `th_secret_audit` before it is answered.

use serde_json::{json, Value};
use syncropel_testkit::hosted::{Config, Replica};
use syncropel_testkit::{error_code, know, with_test_database, TestSteward};

/// Shaped like a key on purpose: a value may be one, a record body may not.
const VALUE: &str = "sk-ant-api03-ThisIsTheSecretValue0001";

/// Every record of the tenant, paging through them all.
async fn all_records(steward: &TestSteward, admin: &str) -> Vec<Value> {
    let mut records = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/records?limit=1000&cursor={cursor}");
        let (status, page) = steward.get(admin, &path).await;
        assert_eq!(status, 200, "{page}");
        records.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => return records,
        }
    }
}

#[tokio::test]
async fn a_secret_lives_in_its_backend_and_every_call_is_audited_before_its_answer() {
    let steward = TestSteward::start().await;
    let admin = steward.admin().await;
    let reader = steward.token(&["records:read"], &[]).await;
    let call = |token: String, operation: &'static str, body: Value| {
        let steward = &steward;
        async move {
            steward
                .post(&token, &format!("/v1/secrets/{operation}"), &body)
                .await
        }
    };

    let (status, set) = call(
        admin.clone(),
        "set",
        json!({"handle": "anthropic-prod", "value": VALUE, "purpose": "setup"}),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["backend_ref"], "store://anthropic-prod");
    assert_eq!(set["lifecycle"], "active");
    let (status, got) = call(
        admin.clone(),
        "get",
        json!({"handle": "anthropic-prod", "purpose": "summarize"}),
    )
    .await;
    assert_eq!((status, got["value"].as_str()), (200, Some(VALUE)), "{got}");
    let (status, listed) = call(admin.clone(), "list", json!({})).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["data"][0]["handle"], "anthropic-prod");
    assert!(
        !listed.to_string().contains(VALUE),
        "a list never shows values"
    );

    // Refused: recorded as denied, then answered.
    let (status, refused) = call(reader, "get", json!({"handle": "anthropic-prod"})).await;
    assert_eq!((status, error_code(&refused)), (403, "SCOPE_FORBIDDEN"));
    let denied = refused["secret_audit_record"].as_str().unwrap();
    let (_, denied) = steward.get(&admin, &format!("/v1/records/{denied}")).await;
    assert_eq!(denied["body"]["outcome"], "denied", "{denied}");
    assert!(!refused.to_string().contains(VALUE));

    for (operation, bad, code) in [
        ("set", json!({"handle": "x"}), "VALIDATION_ERROR"),
        (
            "set",
            json!({"handle": "Not A Handle", "value": "v"}),
            "VALIDATION_ERROR",
        ),
        (
            "set",
            json!({"handle": "x", "value": 5}),
            "VALIDATION_ERROR",
        ),
        (
            "set",
            json!({"handle": "x", "value": "v", "backend_ref": "env://X"}),
            "VALIDATION_ERROR",
        ),
        (
            "set",
            json!({"handle": "x", "value": "v", "backend_ref": "vault://x"}),
            "VALIDATION_ERROR",
        ),
        (
            "set",
            json!({"handle": "x", "value": "v".repeat(70_000)}),
            "PAYLOAD_TOO_LARGE",
        ),
        ("get", json!({"handle": "never-set"}), "NOT_FOUND"),
        ("peek", json!({"handle": "anthropic-prod"}), "NOT_FOUND"),
    ] {
        let (status, answer) = call(admin.clone(), operation, bad.clone()).await;
        assert!(status >= 400, "{operation} {bad}: {answer}");
        assert_eq!(error_code(&answer), code, "{operation} {bad}");
    }

    let (status, deleted) =
        call(admin.clone(), "delete", json!({"handle": "anthropic-prod"})).await;
    assert_eq!(
        (status, deleted["lifecycle"].as_str()),
        (200, Some("erased")),
        "{deleted}"
    );
    let (status, gone) = call(admin.clone(), "get", json!({"handle": "anthropic-prod"})).await;
    assert_eq!((status, error_code(&gone)), (404, "NOT_FOUND"));

    // Records: handles and the trail, never the value; nobody but the steward writes there.
    let records = all_records(&steward, &admin).await;
    assert!(records.iter().all(|r| !r.to_string().contains(VALUE)));
    let trail: Vec<&Value> = records
        .iter()
        .filter(|r| r["thread"] == "th_secret_audit")
        .collect();
    let operations: Vec<&str> = trail
        .iter()
        .map(|r| r["body"]["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        operations,
        ["set", "get", "list", "get", "delete"],
        "one record per call that reached a handle, in order"
    );
    assert!(trail
        .iter()
        .all(|r| r["act"] == "DO" && r["body"]["kind"] == "secret.access.v1"));
    assert_eq!(trail[1]["body"]["purpose"], "summarize");
    for (id, answer) in [(&set, "set"), (&got, "get"), (&deleted, "delete")] {
        let named = id["audit_record"].as_str().unwrap();
        assert!(trail.iter().any(|r| r["id"] == named), "{answer}");
    }
    for thread in ["th_secret_audit", "th_credentials"] {
        let forged = know(
            thread,
            "did:sync:user:ana",
            1,
            json!({"handle": "anthropic-prod"}),
        );
        let (status, refused) = steward.post(&admin, "/v1/records", &forged).await;
        assert_eq!(
            (status, error_code(&refused)),
            (403, "RESERVED_THREAD"),
            "{thread}"
        );
    }
}

/// `env://` reads the local steward's environment, read-only; `promote` copies the value into
/// the store, which then answers without the variable.
#[tokio::test]
async fn an_env_secret_is_read_where_the_steward_runs_and_promoted_into_the_store() {
    const VAR: &str = "SYNCROPEL_TEST_SECRET_PROMOTED";
    std::env::set_var(VAR, "from-the-environment");
    let steward = TestSteward::start().await;
    let admin = steward.admin().await;
    let body = json!({"handle": "from-env", "backend_ref": format!("env://{VAR}")});
    let (status, set) = steward.post(&admin, "/v1/secrets/set", &body).await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["backend_ref"], format!("env://{VAR}"));
    let get = json!({"handle": "from-env"});
    let (_, got) = steward.post(&admin, "/v1/secrets/get", &get).await;
    assert_eq!(got["value"], "from-the-environment");
    let (status, promoted) = steward.post(&admin, "/v1/secrets/promote", &get).await;
    assert_eq!(status, 200, "{promoted}");
    assert_eq!(promoted["backend_ref"], "store://from-env");
    std::env::remove_var(VAR);
    let (_, got) = steward.post(&admin, "/v1/secrets/get", &get).await;
    assert_eq!(got["value"], "from-the-environment", "{got}");
    let (status, again) = steward.post(&admin, "/v1/secrets/promote", &get).await;
    assert_eq!(
        (status, error_code(&again)),
        (409, "precondition_failed"),
        "{again}"
    );
}

/// Hosted: a tenant's secrets are its own, and a replica's environment is no tenant's.
#[tokio::test]
async fn a_hosted_tenants_secrets_are_its_own() {
    with_test_database(|db| async move {
        let replica = Replica::start(&db, Config::default()).await;
        let one = replica.new_tenant("acct-1", "one").await;
        let two = replica.new_tenant("acct-2", "two").await;
        let set = json!({"handle": "shared-name", "value": VALUE});
        let (status, answer) = replica
            .tenant_post("one", &one, "/v1/secrets/set", &set)
            .await;
        assert_eq!(status, 200, "{answer}");
        let get = json!({"handle": "shared-name"});
        let (status, got) = replica
            .tenant_post("one", &one, "/v1/secrets/get", &get)
            .await;
        assert_eq!((status, got["value"].as_str()), (200, Some(VALUE)));
        let (status, other) = replica
            .tenant_post("two", &two, "/v1/secrets/get", &get)
            .await;
        assert_eq!((status, error_code(&other)), (404, "NOT_FOUND"), "{other}");
        let env = json!({"handle": "path", "backend_ref": "env://PATH"});
        let (status, refused) = replica
            .tenant_post("one", &one, "/v1/secrets/set", &env)
            .await;
        assert_eq!(
            (status, error_code(&refused)),
            (400, "VALIDATION_ERROR"),
            "{refused}"
        );
        let stored: String = syncropel_testkit::Sql::of(replica.platform().store())
            .scalar(
                "SELECT coalesce(string_agg(value, ''), '') FROM federation_state \
                 WHERE kind = 'secret_values'",
                &[],
            )
            .await;
        assert!(
            !stored.is_empty() && !stored.contains(VALUE),
            "sealed at rest"
        );
        replica.stop().await;
    })
    .await;
}

/// A tenant holds at most `MAX_HANDLES` live secrets, so that `list` is bounded; the index
/// `get` and `list` read is rebuilt from `th_credentials` where it is missing.
#[tokio::test]
async fn a_tenants_secrets_are_bounded_and_their_index_rebuilds_from_its_records() {
    use syncropel_tenant::secrets::MAX_HANDLES;
    let steward = TestSteward::start().await;
    let admin = steward.admin().await;
    let set = |handle: String| {
        let (steward, admin) = (&steward, &admin);
        async move {
            let body = json!({"handle": handle, "value": "v"});
            steward.post(admin, "/v1/secrets/set", &body).await
        }
    };
    for chunk in (0..MAX_HANDLES).collect::<Vec<_>>().chunks(50) {
        let sets = chunk.iter().map(|n| set(format!("h{n}")));
        for (status, body) in futures_util::future::join_all(sets).await {
            assert_eq!(status, 200, "{body}");
        }
    }
    let (status, body) = set("one-more".into()).await;
    assert_eq!((status, error_code(&body)), (403, "TENANT_LIMIT_REACHED"));
    let (status, _) = set("h7".into()).await;
    assert_eq!(status, 200, "a held handle takes a new value");
    let (status, _) = steward
        .post(&admin, "/v1/secrets/delete", &json!({"handle": "h7"}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = set("one-more".into()).await;
    assert_eq!(status, 200, "{body}");

    // The index gone (a store from before it): rebuilt from the records, erased ones left out.
    let store = steward.state.store.as_ref();
    let tenant = syncropel_testkit::TENANT;
    let mut gone = vec![syncropel_store::StateChange::delete(
        "secret_handles_built",
        "v1",
    )];
    for (handle, _) in store.state_list(tenant, "secret_handles").await.unwrap() {
        gone.push(syncropel_store::StateChange::delete(
            "secret_handles",
            &handle,
        ));
    }
    store.write(tenant, Vec::new(), gone).await.unwrap();
    let (status, listed) = steward.post(&admin, "/v1/secrets/list", &json!({})).await;
    assert_eq!(status, 200, "{listed}");
    let handles: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["handle"].as_str().unwrap())
        .collect();
    assert_eq!(handles.len() as u64, MAX_HANDLES, "{}", handles.len());
    assert!(handles.contains(&"one-more") && !handles.contains(&"h7"));
    let (status, got) = steward
        .post(&admin, "/v1/secrets/get", &json!({"handle": "h999"}))
        .await;
    assert_eq!((status, &got["value"]), (200, &json!("v")), "{got}");
}
