//! Provisioning: the platform JWT, idempotent retries, labels, limits, suspension and deletion.
//! Provisioning requests are sent raw where their status (202, 409, ...) is what is checked.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use syncropel_client::ListParams;
use syncropel_testkit::hosted::{
    bootstrap_bearer, jwt, jwt_with, Config, Replica, AUDIENCE, ISSUER, JWT_SECRET,
};
use syncropel_testkit::{error_code, send, with_test_database};

use super::{count, sql};

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

        let described = replica.provision_status("acct-1", id).await;
        let phases: Vec<&str> = described
            .phases
            .iter()
            .map(|p| {
                assert_eq!(p.status, "done", "{p:?}");
                assert!(p.finished_at.is_some(), "{p:?}");
                p.name.as_str()
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
        assert_eq!(described.error, None);
        assert_eq!(described.tenant_status, "active");
        assert_eq!(described.url, "http://acme.steward.test");
        let did = described.did.as_str();
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
        let record = replica.emit("acme", &token, "th_a", 1).await;
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
        let audit = replica
            .tenant_client("acme", &token)
            .thread_records::<Value>("th_audit_tokens", &ListParams::default())
            .await
            .unwrap();
        assert_eq!(audit.data.len(), 2, "{audit:?}");
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
        replica.emit("retry", &token, "th_r", 1).await;
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
            (Some(jwt("a")), Some("k"), json!({"label": "xn--acme-9qa", "bootstrap_token": "a-good-bootstrap-token"}), 400, "LABEL_INVALID"),
            (Some(jwt("a")), Some("k"), json!({"label": "ab--cd", "bootstrap_token": "a-good-bootstrap-token"}), 400, "LABEL_INVALID"),
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
        replica.emit("brief", &token, "th_a", 1).await;
        // A second tenant, deleted too, is left to the sweeper.
        let other = replica.new_tenant("owner", "swept").await;
        replica.emit("swept", &other, "th_s", 1).await;
        // A pull job's lease, as a pair of this tenant would hold.
        sql(&replica)
            .execute(
                "INSERT INTO pull_leases (tenant, source, thread) \
                 SELECT id, 'fed_gone', 'th_s' FROM tenants WHERE label = 'swept'",
                &[],
            )
            .await;
        let platform = replica.platform_client("owner");

        let suspended = platform.suspend_tenant(&id).await.unwrap();
        assert_eq!(
            (
                suspended.status(),
                suspended.json()["tenant_status"].as_str()
            ),
            (200, Some("suspended"))
        );
        assert_eq!(suspended.tenant_status, "suspended");
        let (status, refused) = replica.write("brief", &token, "th_a", 2).await;
        assert_eq!((status, error_code(&refused)), (403, "TENANT_SUSPENDED"));
        assert_eq!(replica.thread_len("brief", &token, "th_a").await, 1);
        let resumed = platform.resume_tenant(&id).await.unwrap();
        assert_eq!(resumed.status(), 200, "{}", resumed.json());
        replica.emit("brief", &token, "th_a", 2).await;

        let swept_id: String = sql(&replica)
            .scalar(
                "SELECT instance_id FROM provisions WHERE label = 'swept'",
                &[],
            )
            .await;
        let swept = platform.delete_tenant(&swept_id).await.unwrap();
        assert_eq!(swept.status(), 200, "{}", swept.json());
        assert_eq!(
            replica.platform().purge_expired().await.unwrap(),
            0,
            "not yet"
        );
        let deleted = platform.delete_tenant(&id).await.unwrap();
        assert_eq!(
            (deleted.status(), deleted.json()["tenant_status"].as_str()),
            (200, Some("deleted"))
        );
        assert_eq!(deleted.tenant_status, "deleted");
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
        let listed = replica.thread_len("brief", &next, "th_a").await;
        assert_eq!(listed, 0, "the new tenant inherits nothing");
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
        // Every step of both lifecycles is a record on the platform's audit thread of the
        // tenant, which outlives its purge, each signed by the platform's key.
        for (label, events) in [
            (
                "brief",
                vec!["provisioned", "suspended", "resumed", "deleted", "purged"],
            ),
            ("swept", vec!["provisioned", "deleted", "purged"]),
        ] {
            let query = format!(
                "SELECT coalesce(string_agg(r.record_json, '\n' ORDER BY r.seq), '') \
                 FROM records r JOIN tenants t ON r.thread = 'th_audit_provisioning_' || t.id \
                 WHERE r.tenant = '_platform' AND t.label = '{label}' AND t.status = 'purged'"
            );
            let text: String = sql(&replica).scalar(&query, &[]).await;
            let records: Vec<Value> = text
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
            let got: Vec<&str> = records
                .iter()
                .map(|r| r["body"]["event"].as_str().unwrap())
                .collect();
            assert_eq!(got, events, "{label}");
            assert!(records
                .iter()
                .all(|r| r["body"]["kind"] == "core.provisioning.event.v1"
                    && r["signer"] == records[0]["signer"]));
        }
        let swept = "(SELECT id FROM tenants WHERE label = 'swept')";
        for table in [
            "records",
            "service_accounts",
            "tokens",
            "threads",
            "pull_leases",
            "federation_state",
        ] {
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
            replica.emit(label, token, "th_c", 1).await;
        }
        replica.stop().await;
    })
    .await;
}
