//! The hosted steward over real Postgres: provisioning (JWT, idempotency, labels, limits, grace
//! periods), tenants addressed by host and by path prefix, isolation on every route, and replicas
//! that share one database (in this process and as `steward` processes killed mid-burst).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::hosted::{
    bootstrap_bearer, jwt, jwt_with, send, Config, Process, Replica, AUDIENCE, ISSUER, JWT_SECRET,
};
use common::{envelope, error_code};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use syncropel_store::testing::{with_test_database, Sql};

/// Direct SQL on a replica's database.
fn sql(replica: &Replica) -> Sql {
    Sql::of(replica.platform().store())
}

async fn count(replica: &Replica, query: &str) -> i64 {
    sql(replica).scalar(query, &[]).await
}

#[tokio::test]
async fn a_provisioned_tenant_takes_records_signed_by_its_own_key() {
    with_test_database(|url| async move {
        let replica = Replica::start(&url, Config::default()).await;
        let (status, accepted) = replica
            .provision(
                "acct-1",
                "k1",
                &json!({"label": "acme", "bootstrap_token": "s3cret-bootstrap-token"}),
            )
            .await;
        assert_eq!(status, 202, "{accepted}");
        assert_eq!(accepted["label"], "acme");
        assert_eq!(accepted["phase"], "ready");
        let id = accepted["instance_id"].as_str().unwrap();

        let (status, described) = send(
            replica
                .platform_request(Method::GET, &format!("/provision/{id}"))
                .bearer_auth(jwt("acct-1")),
        )
        .await;
        assert_eq!(status, 200, "{described}");
        let phases: Vec<&str> = described["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                assert_eq!(p["status"], "done", "{p}");
                assert!(p["finished_at"].is_string(), "{p}");
                p["name"].as_str().unwrap()
            })
            .collect();
        assert_eq!(
            phases,
            [
                "reserve",
                "tenant_create",
                "identity",
                "directory",
                "bootstrap",
                "manifest",
                "ready"
            ]
        );
        assert_eq!(described["error"], Value::Null);
        assert_eq!(described["tenant_status"], "active");
        assert_eq!(described["url"], "http://acme.steward.test");
        let did = described["did"].as_str().unwrap();
        assert!(did.starts_with("did:key:z6Mk"), "{did}");

        // Another account cannot see it.
        let (status, _) = send(
            replica
                .platform_request(Method::GET, &format!("/provision/{id}"))
                .bearer_auth(jwt("acct-2")),
        )
        .await;
        assert_eq!(status, 404);

        // The first signed manifest names the tenant's DID and URL and verifies.
        let (status, well_known) =
            send(replica.tenant_request("acme", Method::GET, "/.well-known/syncropel")).await;
        assert_eq!(status, 200, "{well_known}");
        let manifest = &well_known["federation_manifest"];
        syncropel_federation::manifest::verify(manifest, &[]).unwrap();
        assert_eq!(manifest["daemon"]["did"], did);
        assert_eq!(
            manifest["federation"]["sync_change_endpoint"],
            "http://acme.steward.test/v1/sync/changes"
        );

        // The bootstrap bearer works at once; the record is signed with the tenant's key.
        let token = bootstrap_bearer("s3cret-bootstrap-token");
        let (status, record) = replica
            .tenant_post(
                "acme",
                &token,
                "/v1/records",
                &envelope("th_a", 1, json!({"n": 1})),
            )
            .await;
        assert_eq!(status, 201, "{record}");
        assert_eq!(record["signer"], did);
        let canonical = syncropel_protocol::Envelope::from_value(record.clone())
            .unwrap()
            .canonical_json();
        syncropel_protocol::verify_signature(
            did,
            canonical.as_bytes(),
            record["sig"].as_str().unwrap(),
        )
        .unwrap();

        // The key is stored sealed: the row holds 32 bytes of seed + 16 of tag, and no column
        // holds the seed in the clear (the tenant's records verify against the DID above, so the
        // key that signed them is the sealed one).
        let sealed_len = count(&replica, "SELECT length(key_sealed)::bigint FROM tenants").await;
        assert_eq!(sealed_len, 48);
        // Bootstrap made exactly one account and one token, with audit records.
        assert_eq!(
            count(&replica, "SELECT count(*) FROM service_accounts").await,
            1
        );
        assert_eq!(count(&replica, "SELECT count(*) FROM tokens").await, 1);
        let (_, audit) = replica
            .tenant_get("acme", &token, "/v1/threads/th_audit_tokens/records")
            .await;
        assert_eq!(audit["data"].as_array().unwrap().len(), 2, "{audit}");
        replica.stop().await;
    })
    .await;
}

#[tokio::test]
async fn retries_with_the_same_idempotency_key_make_nothing_new() {
    with_test_database(|url| async move {
        let replica = Replica::start(&url, Config::default()).await;
        let body = json!({"label": "retry", "bootstrap_token": "retry-bootstrap-token"});
        // The platform retries before the first attempt has answered: every attempt runs at once,
        // and all of them answer the same instance.
        let attempts = futures_util::future::join_all(
            (0..5).map(|_| replica.provision("acct", "same-key", &body)),
        )
        .await;
        let first = attempts[0].1.clone();
        for (status, again) in attempts {
            assert_eq!(status, 202, "{again}");
            assert_eq!(again, first);
        }
        let (status, again) = replica.provision("acct", "same-key", &body).await;
        assert_eq!((status, &again), (202, &first));
        let (status, conflict) = replica
            .provision(
                "acct",
                "same-key",
                &json!({"label": "other", "bootstrap_token": "retry-bootstrap-token"}),
            )
            .await;
        assert_eq!(status, 409, "{conflict}");
        assert_eq!(error_code(&conflict), "IDEMPOTENCY_CONFLICT");
        // The same key under another account is another request.
        let (status, _) = replica
            .provision(
                "acct-b",
                "same-key",
                &json!({"label": "retry-b", "bootstrap_token": "retry-bootstrap-token"}),
            )
            .await;
        assert_eq!(status, 202);
        assert_eq!(count(&replica, "SELECT count(*) FROM tenants").await, 2);
        assert_eq!(count(&replica, "SELECT count(*) FROM provisions").await, 2);
        assert_eq!(
            count(&replica, "SELECT count(*) FROM service_accounts").await,
            2
        );
        assert_eq!(count(&replica, "SELECT count(*) FROM tokens").await, 2);

        // A provisioning that stopped after its first transaction (the replica died) resumes on
        // retry: the steps after it find what is already there and make nothing twice.
        sql(&replica)
            .execute(
                "UPDATE provisions SET phase = 'bootstrap' WHERE label = 'retry'",
                &[],
            )
            .await;
        sql(&replica)
            .execute(
                "UPDATE tenants SET status = 'provisioning' WHERE label = 'retry'",
                &[],
            )
            .await;
        let token = bootstrap_bearer("retry-bootstrap-token");
        replica.platform().forget("retry");
        let (status, _) = replica.tenant_get("retry", &token, "/v1/records").await;
        assert_eq!(status, 404, "a tenant is not served before it is ready");
        let (status, resumed) = replica.provision("acct", "same-key", &body).await;
        assert_eq!(status, 202, "{resumed}");
        assert_eq!(resumed, first);
        let (status, _) = replica.write("retry", &token, "th_r", 1).await;
        assert_eq!(status, 201);
        assert_eq!(
            count(&replica, "SELECT count(*) FROM service_accounts").await,
            2
        );
        assert_eq!(count(&replica, "SELECT count(*) FROM tokens").await, 2);
        replica.stop().await;
    })
    .await;
}

#[tokio::test]
async fn refused_provisioning_leaves_nothing_behind() {
    with_test_database(|url| async move {
        let replica = Replica::start(&url, Config::default()).await;
        let good = json!({"label": "fine", "bootstrap_token": "a-good-bootstrap-token"});
        let post = |token: Option<String>, key: Option<&str>, body: Value| {
            let mut request = replica.platform_request(Method::POST, "/provision");
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            send(request.json(&body))
        };
        // (bearer, idempotency key, body, expected status, expected code)
        type Case<'a> = (Option<String>, Option<&'a str>, Value, u16, &'a str);
        let cases: Vec<Case> = vec![
            (None, Some("k"), good.clone(), 401, "AUTH_REQUIRED"),
            (Some("not.a.jwt".into()), Some("k"), good.clone(), 401, "AUTH_INVALID"),
            (
                Some(jwt_with("a", 600, ISSUER, AUDIENCE, "another-secret-of-at-least-32-bytes")),
                Some("k"),
                good.clone(),
                401,
                "AUTH_INVALID",
            ),
            (Some(jwt_with("a", -3600, ISSUER, AUDIENCE, JWT_SECRET)), Some("k"), good.clone(), 401, "AUTH_INVALID"),
            (Some(jwt_with("a", 600, ISSUER, "someone-else", JWT_SECRET)), Some("k"), good.clone(), 401, "AUTH_INVALID"),
            (Some(jwt_with("a", 600, "mallory", AUDIENCE, JWT_SECRET)), Some("k"), good.clone(), 401, "AUTH_INVALID"),
            (Some(jwt("a")), None, good.clone(), 400, "VALIDATION_ERROR"),
            (Some(jwt("a")), Some("k"), json!({"label": "ab", "bootstrap_token": "a-good-bootstrap-token"}), 400, "LABEL_INVALID"),
            (Some(jwt("a")), Some("k"), json!({"label": "a".repeat(33), "bootstrap_token": "a-good-bootstrap-token"}), 400, "LABEL_INVALID"),
            (Some(jwt("a")), Some("k"), json!({"label": "Acme", "bootstrap_token": "a-good-bootstrap-token"}), 400, "LABEL_INVALID"),
            (Some(jwt("a")), Some("k"), json!({"label": "ac_me", "bootstrap_token": "a-good-bootstrap-token"}), 400, "LABEL_INVALID"),
            (Some(jwt("a")), Some("k"), json!({"label": "-acme", "bootstrap_token": "a-good-bootstrap-token"}), 400, "LABEL_INVALID"),
            (Some(jwt("a")), Some("k"), json!({"label": "www", "bootstrap_token": "a-good-bootstrap-token"}), 400, "LABEL_RESERVED"),
            (Some(jwt("a")), Some("k"), json!({"label": "admin", "bootstrap_token": "a-good-bootstrap-token"}), 400, "LABEL_RESERVED"),
            (Some(jwt("a")), Some("k"), json!({"label": "fine", "bootstrap_token": "short"}), 400, "VALIDATION_ERROR"),
            (Some(jwt("a")), Some("k"), json!({"label": "fine", "bootstrap_token": "has a space in it!!"}), 400, "VALIDATION_ERROR"),
            (Some(jwt("a")), Some("k"), json!({"label": "fine", "bootstrap_token": "a-good-bootstrap-token", "recovery_key": "did:key:nope"}), 400, "VALIDATION_ERROR"),
            (Some(jwt("a")), Some("k"), json!({"label": 7, "bootstrap_token": "a-good-bootstrap-token"}), 400, "VALIDATION_ERROR"),
            (Some(jwt("a")), Some("k"), json!({"label": "fine", "bootstrap_token": "a-good-bootstrap-token", "plan": "gold"}), 400, "VALIDATION_ERROR"),
            (Some(jwt("a")), Some("k"), json!(["fine"]), 400, "VALIDATION_ERROR"),
        ];
        for (token, key, body, want_status, want_code) in cases {
            let (status, answer) = post(token, key, body.clone()).await;
            assert_eq!(status, want_status, "{body} -> {answer}");
            assert_eq!(error_code(&answer), want_code, "{body} -> {answer}");
        }
        let (status, answer) = send(
            replica
                .platform_request(Method::POST, "/provision")
                .bearer_auth(jwt("a"))
                .header("idempotency-key", "k")
                .header("content-type", "application/json")
                .body("{\"label\": \"fine\", \"label\": \"twice\"}"),
        )
        .await;
        assert_eq!((status, error_code(&answer)), (400, "INVALID_JSON"));
        for table in ["tenants", "provisions", "records", "service_accounts", "tokens"] {
            let n = count(&replica, &format!("SELECT count(*) FROM {table}")).await;
            assert_eq!(n, 0, "{table} after refusals");
        }
        // A recovery key that is a real did:key is accepted and kept for the directory.
        let recovery = syncropel_protocol::Keypair::generate().did_key();
        let (status, body) = replica
            .provision(
                "a",
                "k-ok",
                &json!({"label": "fine", "bootstrap_token": "a-good-bootstrap-token", "recovery_key": recovery}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        let stored: String = sql(&replica)
            .scalar("SELECT recovery_key FROM tenants", &[])
            .await;
        assert_eq!(stored, recovery);
        replica.stop().await;
    })
    .await;
}

#[tokio::test]
async fn labels_are_unique_and_accounts_are_limited() {
    with_test_database(|url| async move {
        let replica = Replica::start(&url, Config::default()).await;
        replica.new_tenant("alice", "shop").await;
        let (status, taken) = replica
            .provision(
                "bob",
                "bob-1",
                &json!({"label": "shop", "bootstrap_token": "bob-bootstrap-token"}),
            )
            .await;
        assert_eq!((status, error_code(&taken)), (409, "LABEL_TAKEN"));

        replica.new_tenant("alice", "shop-two").await;
        replica.new_tenant("alice", "shop-three").await;
        let (status, limited) = replica
            .provision(
                "alice",
                "alice-4",
                &json!({"label": "shop-four", "bootstrap_token": "alice-bootstrap-token"}),
            )
            .await;
        assert_eq!(status, 403, "{limited}");
        assert_eq!(error_code(&limited), "TENANT_LIMIT_REACHED");
        assert_eq!(limited["tenant_count"], 3);
        assert!(limited["message"].as_str().unwrap().contains('3'));
        assert_eq!(count(&replica, "SELECT count(*) FROM tenants").await, 3);

        // Two accounts racing for one label: exactly one wins.
        let body = |who: &str| json!({"label": "race", "bootstrap_token": format!("{who}-bootstrap-token")});
        let (carol, dave) = (body("carol"), body("dave"));
        let (a, b) = tokio::join!(
            replica.provision("carol", "c", &carol),
            replica.provision("dave", "d", &dave),
        );
        let mut statuses = [a.0, b.0];
        statuses.sort();
        assert_eq!(statuses, [202, 409], "{} / {}", a.1, b.1);
        assert_eq!(
            count(&replica, "SELECT count(*) FROM tenants WHERE label = 'race'").await,
            1
        );
        replica.stop().await;
    })
    .await;
}

#[tokio::test]
async fn suspended_and_deleted_tenants_are_read_only_until_the_grace_period_ends() {
    with_test_database(|url| async move {
        let config = Config {
            deletion_grace: Duration::from_secs(2),
            ..Config::default()
        };
        let replica = Replica::start(&url, config).await;
        let (status, accepted) = replica
            .provision(
                "owner",
                "k",
                &json!({"label": "brief", "bootstrap_token": "brief-bootstrap-token"}),
            )
            .await;
        assert_eq!(status, 202);
        let id = accepted["instance_id"].as_str().unwrap().to_string();
        let token = bootstrap_bearer("brief-bootstrap-token");
        let (status, _) = replica.write("brief", &token, "th_a", 1).await;
        assert_eq!(status, 201);
        // A second tenant, deleted too, is left to the sweeper.
        let other = replica.new_tenant("owner", "swept").await;
        let (status, _) = replica.write("swept", &other, "th_s", 1).await;
        assert_eq!(status, 201);
        let platform = |method: Method, path: &str| {
            replica
                .platform_request(method, &format!("/provision/{id}{path}"))
                .bearer_auth(jwt("owner"))
        };

        let (status, body) = send(platform(Method::POST, "/suspend")).await;
        assert_eq!(
            (status, body["tenant_status"].as_str()),
            (200, Some("suspended"))
        );
        let (status, refused) = replica.write("brief", &token, "th_a", 2).await;
        assert_eq!((status, error_code(&refused)), (403, "TENANT_SUSPENDED"));
        assert_eq!(replica.thread_len("brief", &token, "th_a").await, 1);
        let (status, _) = send(platform(Method::POST, "/resume")).await;
        assert_eq!(status, 200);
        let (status, _) = replica.write("brief", &token, "th_a", 2).await;
        assert_eq!(status, 201);

        let swept_id: String = sql(&replica)
            .scalar(
                "SELECT instance_id FROM provisions WHERE label = 'swept'",
                &[],
            )
            .await;
        let (status, _) = send(
            replica
                .platform_request(Method::DELETE, &format!("/provision/{swept_id}"))
                .bearer_auth(jwt("owner")),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            replica.platform().purge_expired().await.unwrap(),
            0,
            "not yet"
        );
        let (status, body) = send(platform(Method::DELETE, "")).await;
        assert_eq!(
            (status, body["tenant_status"].as_str()),
            (200, Some("deleted"))
        );
        let (status, refused) = replica.write("brief", &token, "th_a", 3).await;
        assert_eq!((status, error_code(&refused)), (403, "TENANT_DELETED"));
        // Export still works during the grace period: everything reads.
        assert_eq!(replica.thread_len("brief", &token, "th_a").await, 2);
        let retake = json!({"label": "brief", "bootstrap_token": "next-bootstrap-token"});
        let (status, taken) = replica.provision("someone", "s1", &retake).await;
        assert_eq!((status, error_code(&taken)), (409, "LABEL_TAKEN"));

        tokio::time::sleep(Duration::from_millis(2300)).await;
        let (status, _) = replica.tenant_get("brief", &token, "/v1/records").await;
        assert_eq!(status, 404, "past the grace period the tenant is gone");
        let (status, body) = replica.provision("someone", "s2", &retake).await;
        assert_eq!(status, 202, "{body}");
        let next = bootstrap_bearer("next-bootstrap-token");
        let (status, listed) = replica
            .tenant_get("brief", &next, "/v1/records?thread=th_a")
            .await;
        assert_eq!(status, 200);
        assert_eq!(listed["data"], json!([]), "the new tenant inherits nothing");
        let (status, _) = replica.tenant_get("brief", &token, "/v1/records").await;
        assert_eq!(
            status, 401,
            "the old tenant's token means nothing to the new one"
        );
        assert_eq!(
            count(
                &replica,
                "SELECT count(*) FROM tenants WHERE status = 'purged'"
            )
            .await,
            1
        );
        // The sweeper takes the other one: its records, accounts and tokens are gone.
        assert_eq!(replica.platform().purge_expired().await.unwrap(), 1);
        let swept = "(SELECT id FROM tenants WHERE label = 'swept')";
        for table in ["records", "service_accounts", "tokens", "threads"] {
            let sql = format!("SELECT count(*) FROM {table} WHERE tenant = {swept}");
            assert_eq!(count(&replica, &sql).await, 0, "{table}");
        }
        assert_eq!(
            count(
                &replica,
                "SELECT count(*) FROM tenants WHERE status = 'purged'"
            )
            .await,
            2
        );
        replica.stop().await;
    })
    .await;
}

/// Every tenant route, as (method, path, body) with `{id}` and `{token_id}` to fill in.
fn tenant_routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/v1/records", None),
        (Method::GET, "/v1/records?thread=th_shared", None),
        (Method::GET, "/v1/records/{id}", None),
        (
            Method::POST,
            "/v1/records",
            Some(envelope("th_shared", 99, json!({"x": 1}))),
        ),
        (
            Method::POST,
            "/v1/records/batch",
            Some(json!({"records": [envelope("th_shared", 98, json!({}))]})),
        ),
        (
            Method::POST,
            "/v1/records/query",
            Some(json!({"filter": {"thread": "th_shared"}})),
        ),
        (
            Method::POST,
            "/v1/records/search",
            Some(json!({"query": "secretword"})),
        ),
        (Method::GET, "/v1/threads", None),
        (Method::GET, "/v1/threads/th_shared/records", None),
        (Method::GET, "/v1/threads/th_shared/watch", None),
        (Method::GET, "/v1/health", None),
        (Method::GET, "/v1/service-accounts", None),
        (
            Method::POST,
            "/v1/service-accounts",
            Some(json!({"name": "x", "scopes": ["admin"]})),
        ),
        (
            Method::POST,
            "/v1/service-accounts/sa-bootstrap-env/tokens",
            Some(json!({})),
        ),
        (Method::DELETE, "/v1/tokens/{token_id}", None),
        (Method::GET, "/v1/namespaces", None),
        (Method::POST, "/v1/namespaces", Some(json!({"id": "acme"}))),
    ]
}

#[tokio::test]
async fn tenants_see_nothing_of_each_other_on_any_route() {
    with_test_database(|url| async move {
        let replica = Replica::start(&url, Config::default()).await;
        let token_a = replica.new_tenant("acct-a", "tenant-a").await;
        let token_b = replica.new_tenant("acct-b", "tenant-b").await;
        let (status, b_record) = replica
            .tenant_post(
                "tenant-b",
                &token_b,
                "/v1/records",
                &envelope("th_shared", 1, json!({"text": "secretword of b"})),
            )
            .await;
        assert_eq!(status, 201);
        let b_id = b_record["id"].as_str().unwrap();
        let b_token_id = syncropel_protocol::sha256_hex(token_b.as_bytes());

        // A's token at B's host: 401 on every route, and nothing changes.
        for (method, path, body) in tenant_routes() {
            let path = path
                .replace("{id}", b_id)
                .replace("{token_id}", &b_token_id);
            let mut request = replica
                .tenant_request("tenant-b", method.clone(), &path)
                .bearer_auth(&token_a);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let (status, answer) = send(request).await;
            assert_eq!(status, 401, "{method} {path}: {answer}");
            assert_eq!(error_code(&answer), "AUTH_INVALID", "{method} {path}");
        }

        // Through A's own host nothing of B exists.
        let (status, answer) = replica
            .tenant_get("tenant-a", &token_a, &format!("/v1/records/{b_id}"))
            .await;
        assert_eq!((status, error_code(&answer)), (404, "NOT_FOUND"));
        let (_, listed) = replica
            .tenant_get("tenant-a", &token_a, "/v1/records")
            .await;
        let ids: Vec<&str> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["thread"].as_str().unwrap())
            .collect();
        assert!(ids.iter().all(|t| t.starts_with("th_audit_")), "{listed}");
        let (_, threads) = replica
            .tenant_get("tenant-a", &token_a, "/v1/threads")
            .await;
        assert!(!threads.to_string().contains("th_shared"), "{threads}");
        let (_, thread) = replica
            .tenant_get("tenant-a", &token_a, "/v1/threads/th_shared/records")
            .await;
        assert_eq!(thread["data"], json!([]));
        let (_, found) = replica
            .tenant_post(
                "tenant-a",
                &token_a,
                "/v1/records/query",
                &json!({"filter": {"thread": "th_shared"}}),
            )
            .await;
        assert_eq!(found["data"], json!([]), "{found}");
        let (_, found) = replica
            .tenant_post(
                "tenant-a",
                &token_a,
                "/v1/records/search",
                &json!({"query": "secretword"}),
            )
            .await;
        assert_eq!(found["data"], json!([]), "{found}");
        let (status, _) = send(
            replica
                .tenant_request(
                    "tenant-a",
                    Method::DELETE,
                    &format!("/v1/tokens/{b_token_id}"),
                )
                .bearer_auth(&token_a),
        )
        .await;
        assert_eq!(status, 404);
        let (status, _) = replica
            .tenant_get("tenant-b", &token_b, "/v1/records")
            .await;
        assert_eq!(status, 200, "B's token still works");

        // A watch on A's thread gets A's record and never B's.
        let response = replica
            .tenant_request("tenant-a", Method::GET, "/v1/threads/th_shared/watch")
            .bearer_auth(&token_a)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut stream = response.bytes_stream();
        replica
            .tenant_post(
                "tenant-b",
                &token_b,
                "/v1/records",
                &envelope("th_shared", 2, json!({"who": "b"})),
            )
            .await;
        let (status, a_record) = replica
            .tenant_post(
                "tenant-a",
                &token_a,
                "/v1/records",
                &envelope("th_shared", 2, json!({"who": "a"})),
            )
            .await;
        assert_eq!(status, 201);
        let mut seen = String::new();
        while !seen.contains(a_record["id"].as_str().unwrap()) {
            let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .expect("A's record reaches A's watcher")
                .unwrap()
                .unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(!seen.contains("\"who\":\"b\""), "{seen}");

        // The same record content written to both tenants is two records, one per tenant.
        assert_eq!(
            count(
                &replica,
                "SELECT count(DISTINCT tenant) FROM records WHERE thread = 'th_shared'"
            )
            .await,
            2
        );
        replica.stop().await;
    })
    .await;
}

#[tokio::test]
async fn platform_and_tenant_addresses_do_not_mix() {
    with_test_database(|url| async move {
        let replica = Replica::start(&url, Config::default()).await;
        let token = replica.new_tenant("acct", "mixed").await;
        // Tenant routes on the platform host and on unknown hosts.
        let (status, body) = send(
            replica
                .platform_request(Method::GET, "/v1/records")
                .bearer_auth(&token),
        )
        .await;
        assert_eq!((status, error_code(&body)), (404, "NOT_FOUND"));
        let (status, _) = replica.tenant_get("nobody", &token, "/v1/records").await;
        assert_eq!(status, 404);
        let (status, _) = send(
            replica
                .http
                .get(format!("{}/v1/records", replica.url))
                .header("host", "mixed.elsewhere.example")
                .bearer_auth(&token),
        )
        .await;
        assert_eq!(status, 404);
        // Provisioning on a tenant host does not exist.
        let (status, _) = send(
            replica
                .tenant_request("mixed", Method::POST, "/provision")
                .bearer_auth(jwt("acct"))
                .header("idempotency-key", "x")
                .json(&json!({"label": "sneaky", "bootstrap_token": "sneaky-bootstrap-token"})),
        )
        .await;
        assert_eq!(status, 404);
        // Open health answers everywhere (probes come by pod address).
        let (status, _) = send(replica.http.get(format!("{}/health", replica.url))).await;
        assert_eq!(status, 200);
        replica.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_path_prefix_addresses_tenants_on_any_host() {
    with_test_database(|url| async move {
        let config = Config {
            path_prefix: Some("/t".into()),
            ..Config::default()
        };
        let replica = Replica::start(&url, config).await;
        let token = replica.new_tenant("acct", "pathy").await;
        let (status, record) = replica
            .tenant_post(
                "pathy",
                &token,
                "/v1/records",
                &envelope("th_p", 1, json!({})),
            )
            .await;
        assert_eq!(status, 201, "{record}");
        let (status, listed) = replica
            .tenant_get("pathy", &token, "/v1/records?thread=th_p&limit=5")
            .await;
        assert_eq!(status, 200);
        assert_eq!(listed["data"][0]["id"], record["id"]);
        let (_, well_known) =
            send(replica.tenant_request("pathy", Method::GET, "/.well-known/syncropel")).await;
        assert_eq!(
            well_known["federation_manifest"]["federation"]["pair_endpoint"],
            "http://steward.test/t/pathy/v1/sync"
        );
        replica.stop().await;
    })
    .await;
}

#[tokio::test]
async fn replicas_share_writes_watches_and_revocations() {
    with_test_database(|url| async move {
        let a = Replica::start(&url, Config::default()).await;
        let b = Replica::start(&url, Config::default()).await;
        let admin = a.new_tenant("acct", "shared").await;

        // A token minted through A is revoked through B: A refuses it on the very next request.
        let (status, minted) = a
            .tenant_post(
                "shared",
                &admin,
                "/v1/service-accounts/sa-bootstrap-env/tokens",
                &json!({}),
            )
            .await;
        assert_eq!(status, 201, "{minted}");
        let extra = minted["token"].as_str().unwrap();
        let (status, _) = a.tenant_get("shared", extra, "/v1/records").await;
        assert_eq!(status, 200);
        let (status, _) = send(
            b.tenant_request(
                "shared",
                Method::DELETE,
                &format!("/v1/tokens/{}", minted["token_id"].as_str().unwrap()),
            )
            .bearer_auth(&admin),
        )
        .await;
        assert_eq!(status, 200);
        let (status, refused) = a.tenant_get("shared", extra, "/v1/records").await;
        assert_eq!((status, error_code(&refused)), (401, "AUTH_INVALID"));

        // A watch through B sees writes made through A, in order, with no gaps.
        let response = b
            .tenant_request("shared", Method::GET, "/v1/threads/th_live/watch")
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut stream = response.bytes_stream();
        let mut written = Vec::new();
        for clock in 1..=20 {
            let (status, record) = a
                .tenant_post(
                    "shared",
                    &admin,
                    "/v1/records",
                    &envelope("th_live", clock, json!({})),
                )
                .await;
            assert_eq!(status, 201);
            written.push(record["id"].as_str().unwrap().to_string());
        }
        let mut seen = String::new();
        while !seen.contains(written.last().unwrap().as_str()) {
            let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .expect("writes through A reach B's watcher")
                .unwrap()
                .unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        let positions: Vec<usize> = written
            .iter()
            .map(|id| seen.find(id.as_str()).unwrap())
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "announced in order"
        );
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn killing_a_replica_mid_burst_loses_no_acknowledged_record() {
    with_test_database(|url| async move {
        let mut writer = Process::start(&url).await;
        let reader = Process::start(&url).await;
        let http = reqwest::Client::new();
        let config = Config::default();
        let request = |base: &str, method: Method, path: &str| {
            common::hosted::tenant_request(&http, base, &config, "burst", method, path)
        };
        let (status, body) = send(
            http.post(format!("{}/provision", writer.url))
                .header("host", common::hosted::BASE_DOMAIN)
                .bearer_auth(jwt("acct"))
                .header("idempotency-key", "burst")
                .json(&json!({"label": "burst", "bootstrap_token": "burst-bootstrap-token"})),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        let token = bootstrap_bearer("burst-bootstrap-token");

        // A watch through the other process sees the burst as it happens.
        let watch = request(&reader.url, Method::GET, "/v1/threads/th_burst_0/watch")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(watch.status(), 200);
        let mut watch = watch.bytes_stream();

        // Eight writers post through one replica until it dies, keeping every acknowledged id.
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let mut writers = Vec::new();
        for w in 0..8 {
            let post = request(&writer.url, Method::POST, "/v1/records");
            let token = token.clone();
            let acked = acked.clone();
            writers.push(tokio::spawn(async move {
                for clock in 1.. {
                    let post = post.try_clone().unwrap();
                    let body = envelope(&format!("th_burst_{w}"), clock, json!({"w": w}));
                    match post.bearer_auth(&token).json(&body).send().await {
                        Ok(r) if r.status() == 201 => {
                            let record: Value = r.json().await.unwrap();
                            acked
                                .lock()
                                .unwrap()
                                .push(record["id"].as_str().unwrap().into());
                        }
                        Ok(r) => {
                            return format!(
                                "{}: {}",
                                r.status(),
                                r.text().await.unwrap_or_default()
                            )
                        }
                        Err(e) => return e.to_string(),
                    }
                }
                unreachable!()
            }));
        }
        while acked.lock().unwrap().len() < 300 && !writers.iter().all(|w| w.is_finished()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            acked.lock().unwrap().len() >= 300,
            "the writers stopped early: {:?}",
            futures_util::future::join_all(writers).await
        );
        writer.kill();
        for w in writers {
            let stopped = w.await.unwrap();
            assert!(!stopped.is_empty());
        }
        let acked = acked.lock().unwrap().clone();

        // Every acknowledged record is readable through the surviving replica, exactly once.
        let mut stored = Vec::new();
        let mut stored_threads = std::collections::HashMap::new();
        let mut cursor = String::new();
        loop {
            let (status, page) = send(
                request(
                    &reader.url,
                    Method::GET,
                    &format!("/v1/records?limit=1000&cursor={cursor}"),
                )
                .bearer_auth(&token),
            )
            .await;
            assert_eq!(status, 200, "{page}");
            for r in page["data"].as_array().unwrap() {
                stored.push(r["id"].as_str().unwrap().to_string());
                stored_threads.insert(
                    r["id"].as_str().unwrap().to_string(),
                    r["thread"].as_str().unwrap().to_string(),
                );
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = next.to_string(),
                None => break,
            }
        }
        let unique: HashSet<&String> = stored.iter().collect();
        assert_eq!(unique.len(), stored.len(), "no record is stored twice");
        for id in &acked {
            assert!(unique.contains(id), "acknowledged record {id} is missing");
        }
        // Every acknowledged record of thread 0 reached the watcher on the other process.
        let thread_0: Vec<&String> = acked
            .iter()
            .filter(|id| stored_threads.get(*id).map(String::as_str) == Some("th_burst_0"))
            .collect();
        assert!(!thread_0.is_empty());
        let mut seen = String::new();
        while !thread_0.iter().all(|id| seen.contains(id.as_str())) {
            let chunk = tokio::time::timeout(Duration::from_secs(5), watch.next())
                .await
                .expect("the burst reaches the other process's watcher")
                .unwrap()
                .unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }

        // The survivor still takes writes.
        let (status, _) = send(
            request(&reader.url, Method::POST, "/v1/records")
                .bearer_auth(&token)
                .json(&envelope("th_after", 1, json!({}))),
        )
        .await;
        assert_eq!(status, 201);
        drop(reader);
    })
    .await;
}

#[tokio::test]
async fn many_tenants_provisioned_at_once_all_become_usable() {
    with_test_database(|url| async move {
        let config = Config {
            tenant_limit: 100,
            ..Config::default()
        };
        let replica = Replica::start(&url, config).await;
        // More at once than any connection pool of the replica holds.
        let labels: Vec<String> = (0..24).map(|i| format!("crowd-{i}")).collect();
        let made = tokio::time::timeout(
            Duration::from_secs(30),
            futures_util::future::join_all(labels.iter().map(|l| replica.new_tenant("crowd", l))),
        )
        .await
        .expect("concurrent provisionings finish");
        for (label, token) in labels.iter().zip(&made) {
            let (status, body) = replica.write(label, token, "th_c", 1).await;
            assert_eq!(status, 201, "{label}: {body}");
        }
        replica.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_key_encryption_key_rotates_without_losing_a_tenant() {
    with_test_database(|url| async move {
        let old = Replica::start(&url, Config::default()).await;
        let token = old.new_tenant("acct", "rotating").await;
        let (status, before) = old.write("rotating", &token, "th_k", 1).await;
        assert_eq!(status, 201);

        // Replicas move to the new key with the old one as previous; then every key is re-sealed.
        let new_kek = "7a".repeat(32);
        let rotating = Replica::start(
            &url,
            Config {
                kek: new_kek.clone(),
                previous_kek: Some(common::hosted::KEK_HEX.into()),
                ..Config::default()
            },
        )
        .await;
        let (status, _) = rotating.write("rotating", &token, "th_k", 2).await;
        assert_eq!(status, 201, "the previous key still opens the tenant's key");
        let kek = syncropel_steward::hosted::kek::Kek::parse(&new_kek)
            .unwrap()
            .with_previous(
                syncropel_steward::hosted::kek::Kek::parse(common::hosted::KEK_HEX).unwrap(),
            );
        let platform = rotating.platform().store();
        assert_eq!(
            syncropel_steward::hosted::rotate_kek(platform, &kek)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            syncropel_steward::hosted::rotate_kek(platform, &kek)
                .await
                .unwrap(),
            0
        );

        // A replica with only the new key serves the tenant, signing with the same identity.
        let new_only = Replica::start(
            &url,
            Config {
                kek: new_kek,
                ..Config::default()
            },
        )
        .await;
        let (status, after) = new_only.write("rotating", &token, "th_k", 3).await;
        assert_eq!(status, 201, "{after}");
        assert_eq!(after["signer"], before["signer"]);
        // One with only the old key no longer opens it (and answers in the error envelope).
        old.platform().forget("rotating");
        let (status, refused) = old.write("rotating", &token, "th_k", 4).await;
        assert_eq!(
            (status, common::error_code(&refused)),
            (500, "INTERNAL_ERROR")
        );
        for replica in [old, rotating, new_only] {
            replica.stop().await;
        }
    })
    .await;
}
