//! Addressing and isolation: tenants by host and by path prefix, and nothing of one tenant
//! reachable from another on any route. Refusals are read raw, as the error envelope.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use syncropel_client::api::{Health, QueryRequest, SearchRequest};
use syncropel_client::ListParams;
use syncropel_federation::state::QUARANTINE;
use syncropel_store::StateChange;
use syncropel_testkit::hosted::{jwt, Config, Replica};
use syncropel_testkit::{envelope, error_code, send, with_test_database};

use super::count;

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
        (Method::GET, "/v1/sync/quarantine", None),
    ]
}

#[tokio::test]
async fn tenants_see_nothing_of_each_other_on_any_route() {
    with_test_database(|url| async move {
        let replica = Replica::start(&url, Config::default()).await;
        let token_a = replica.new_tenant("acct-a", "tenant-a").await;
        let token_b = replica.new_tenant("acct-b", "tenant-b").await;
        let (a, b) = (
            replica.tenant_client("tenant-a", &token_a),
            replica.tenant_client("tenant-b", &token_b),
        );
        let b_record = b
            .emit::<Value>(&envelope(
                "th_shared",
                1,
                json!({"text": "secretword of b"}),
            ))
            .await
            .unwrap();
        assert!(b_record.created, "{}", b_record.record);
        let b_record = b_record.record;
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
        let listed = a
            .list_records::<Value>(&ListParams::default())
            .await
            .unwrap();
        let threads: Vec<&str> = listed
            .data
            .iter()
            .map(|r| r["thread"].as_str().unwrap())
            .collect();
        assert!(
            threads.iter().all(|t| t.starts_with("th_audit_")),
            "{threads:?}"
        );
        // Read as sent: no member of the answer names B's thread.
        let (_, threads) = replica
            .tenant_get("tenant-a", &token_a, "/v1/threads")
            .await;
        assert!(!threads.to_string().contains("th_shared"), "{threads}");
        let thread = a
            .thread_records::<Value>("th_shared", &ListParams::default())
            .await
            .unwrap();
        assert_eq!(thread.data, Vec::<Value>::new());
        let query = QueryRequest {
            filter: Some(json!({"thread": "th_shared"})),
            ..QueryRequest::default()
        };
        let found = a.query::<Value>(&query).await.unwrap();
        assert_eq!(found.json()["data"], json!([]), "{}", found.json());
        let search = SearchRequest {
            query: "secretword".into(),
            ..SearchRequest::default()
        };
        let found = a.search::<Value>(&search).await.unwrap();
        assert_eq!(found.json()["data"], json!([]), "{}", found.json());
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
        b.emit::<Value>(&envelope("th_shared", 2, json!({"who": "b"})))
            .await
            .unwrap();
        let a_record = a
            .emit::<Value>(&envelope("th_shared", 2, json!({"who": "a"})))
            .await
            .unwrap();
        assert!(a_record.created);
        let a_record = a_record.record;
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
        let (status, health) = send(replica.http.get(format!("{}/health", replica.url))).await;
        assert_eq!(status, 200, "{health}");
        serde_json::from_value::<Health>(health).unwrap();
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
        let pathy = replica.tenant_client("pathy", &token);
        let record = pathy
            .emit::<Value>(&envelope("th_p", 1, json!({})))
            .await
            .unwrap();
        assert!(record.created, "{}", record.record);
        let (status, listed) = replica
            .tenant_get("pathy", &token, "/v1/records?thread=th_p&limit=5")
            .await;
        assert_eq!(status, 200, "{listed}");
        assert_eq!(listed["data"][0]["id"], record.record["id"]);
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

/// Each hosted tenant reads its own quarantine (Postgres, row-level security): the other
/// tenant's token is unknown at its address, its own finds none of the other's entries, and a
/// cursor cut from the other's page leads nowhere but its own.
#[tokio::test]
async fn a_tenants_quarantine_is_its_own() {
    with_test_database(|url| async move {
        let replica = Replica::start(&url, Config::default()).await;
        let mut tokens = Vec::new();
        for label in ["quar-a", "quar-b"] {
            tokens.push(replica.new_tenant(&format!("acct-{label}"), label).await);
            let tenant = replica.platform().tenant(label).await.unwrap().unwrap();
            let changes = (0..3)
                .map(|n| {
                    let id = format!("{label}-held-{n}");
                    let entry = json!({"source": "fed_same", "id": id, "thread": "th_q",
                                       "actor": "did:sync:user:q", "code": "SIGNATURE_INVALID",
                                       "at": 1_777_000_000});
                    StateChange::put(QUARANTINE, &format!("fed_same\n{id}"), entry.to_string())
                })
                .collect();
            replica
                .state
                .store
                .write(&tenant.id, Vec::new(), changes)
                .await
                .unwrap();
        }
        let (token_a, token_b) = (&tokens[0], &tokens[1]);

        let (status, page) = replica
            .tenant_get(
                "quar-a",
                token_a,
                "/v1/sync/quarantine?pair=fed_same&limit=2",
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let ids: Vec<&str> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["quar-a-held-0", "quar-a-held-1"]);
        let cursor = page["next_cursor"].as_str().unwrap().to_string();

        // A's token at B's address is unknown there.
        let (status, refused) = replica
            .tenant_get("quar-b", token_a, "/v1/sync/quarantine")
            .await;
        assert_eq!((status, error_code(&refused)), (401, "AUTH_INVALID"));
        // B's own token with A's cursor: only B's entries, after A's key.
        let path = format!("/v1/sync/quarantine?cursor={cursor}");
        let (status, page) = replica.tenant_get("quar-b", token_b, &path).await;
        assert_eq!(status, 200, "{page}");
        assert!(!page.to_string().contains("quar-a"), "{page}");
        let (_, page) = replica
            .tenant_get("quar-b", token_b, "/v1/sync/quarantine?limit=500")
            .await;
        assert_eq!(page["data"].as_array().unwrap().len(), 3, "{page}");
        assert!(!page.to_string().contains("quar-a"), "{page}");
        replica.stop().await;
    })
    .await;
}
