//! The scope table of protocol.md §10.2, route by route: every route below is sent with a token
//! of each coarse scope and of each grain, and must open (`2xx`) exactly to the credentials the
//! table names and refuse every other with `403 SCOPE_FORBIDDEN`. (Each refusal is recorded up to
//! the refusal log's rate; that it is is tested with the governance routes.)
//! Routes that need no scope (`GET /v1/health`, the open invite routes) are outside the table.

use std::sync::atomic::{AtomicI64, Ordering};

use reqwest::Method;
use serde_json::{json, Value};
use syncropel_testkit::{error_code, know, TestSteward};

/// What a token may hold: the coarse scopes and one grain of each kind.
const CREDENTIALS: [&str; 13] = [
    "records:read",
    "records:write",
    "threads:write",
    "federation:manage",
    "config:read",
    "config:write",
    "admin",
    "thread:th_m:read",
    "thread:th_m:write",
    "namespace:acme:read",
    "namespace:acme:write",
    "federation:sync_pull",
    "federation:sync_push",
];

/// Who a route opens to, as the table says.
#[derive(Clone, Copy)]
enum Opens {
    /// A coarse scope (and `admin`).
    Scope(&'static str),
    /// A coarse scope, `admin`, or one of these grains.
    ScopeOrGrains(&'static str, &'static [&'static str]),
    /// `admin` alone.
    Admin,
}

impl Opens {
    fn lets_in(self, credential: &str) -> bool {
        match self {
            Opens::Admin => credential == "admin",
            Opens::Scope(scope) => credential == "admin" || credential == scope,
            Opens::ScopeOrGrains(scope, grains) => {
                credential == "admin" || credential == scope || grains.contains(&credential)
            }
        }
    }
}

struct Route {
    method: Method,
    path: String,
    /// The body, made fresh for each request (records need clocks of their own).
    body: Option<Box<dyn Fn() -> Value>>,
    opens: Opens,
}

fn route(method: Method, path: impl Into<String>, opens: Opens) -> Route {
    Route {
        method,
        path: path.into(),
        body: None,
        opens,
    }
}

fn with(
    method: Method,
    path: impl Into<String>,
    opens: Opens,
    body: impl Fn() -> Value + 'static,
) -> Route {
    Route {
        method,
        path: path.into(),
        body: Some(Box::new(body)),
        opens,
    }
}

/// The status of a request and its body; a stream (a watch) is read no further than its head.
async fn send(steward: &TestSteward, token: &str, route: &Route) -> (u16, Value) {
    let mut request = steward
        .http
        .request(
            route.method.clone(),
            format!("{}{}", steward.url, route.path),
        )
        .bearer_auth(token);
    if let Some(body) = &route.body {
        request = request.json(&body());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let streaming = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if streaming {
        return (status, Value::Null);
    }
    let bytes = response.bytes().await.unwrap();
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    // A batch answers each record on its own (protocol.md §11.14): its one item is the answer.
    if answer["object"] == "batch_result" {
        let item = &answer["data"][0];
        let status = item["status"].as_u64().unwrap() as u16;
        return (status, item.get("error").cloned().unwrap_or(item.clone()));
    }
    (status, answer)
}

static CLOCK: AtomicI64 = AtomicI64::new(1);

fn record_on(thread: &'static str, namespace: Option<&'static str>) -> impl Fn() -> Value {
    move || {
        let mut body = json!({"n": 1});
        if let Some(namespace) = namespace {
            body["namespace"] = json!(namespace);
        }
        know(
            thread,
            "did:sync:user:ana",
            CLOCK.fetch_add(1, Ordering::Relaxed),
            body,
        )
    }
}

#[tokio::test]
async fn every_route_opens_to_the_scopes_and_grains_its_row_names_and_no_other() {
    use Method as M;
    use Opens::*;
    const READ: Opens = Scope("records:read");
    const THREAD_READ: Opens = ScopeOrGrains("records:read", &["thread:th_m:read"]);
    const WRITE_M: Opens = ScopeOrGrains("records:write", &["thread:th_m:write"]);
    const WRITE_ACME: Opens = ScopeOrGrains("records:write", &["namespace:acme:write"]);
    const FEDERATION: Opens = Scope("federation:manage");
    const PULL: Opens = ScopeOrGrains("federation:manage", &["federation:sync_pull"]);

    let steward = TestSteward::start().await;
    let admin = steward.admin().await;
    let (status, body) = steward
        .post(&admin, "/v1/namespaces", &json!({"id": "acme"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, stored) = steward
        .post(&admin, "/v1/records", &record_on("th_m", None)())
        .await;
    assert_eq!(status, 201, "{stored}");
    let record = stored["id"].as_str().unwrap().to_string();
    let (status, body) = steward
        .post(&admin, "/v1/records", &record_on("th_closing", None)())
        .await;
    assert_eq!(status, 201, "{body}");

    let routes = vec![
        // Records and threads.
        route(M::GET, "/v1/records", READ),
        route(M::GET, "/v1/records?thread=th_m", THREAD_READ),
        route(M::GET, "/v1/records?thread=th_other", READ),
        route(M::GET, format!("/v1/records/{record}"), READ),
        route(M::GET, "/v1/threads", READ),
        with(
            M::POST,
            "/v1/threads",
            Scope("threads:write"),
            || json!({"title": "t"}),
        ),
        route(M::DELETE, "/v1/threads/th_closing", Scope("threads:write")),
        route(M::GET, "/v1/threads/th_m/records", THREAD_READ),
        route(M::GET, "/v1/threads/th_other/records", READ),
        route(M::GET, "/v1/threads/th_m/watch", THREAD_READ),
        route(M::GET, "/v1/threads/th_other/watch", READ),
        with(
            M::POST,
            "/v1/records/query",
            READ,
            || json!({"filter": {"thread": "th_m"}}),
        ),
        with(
            M::POST,
            "/v1/records/search",
            READ,
            || json!({"query": "anything"}),
        ),
        with(M::POST, "/v1/records", WRITE_M, record_on("th_m", None)),
        with(
            M::POST,
            "/v1/records",
            Scope("records:write"),
            record_on("th_other", None),
        ),
        with(
            M::POST,
            "/v1/records",
            WRITE_ACME,
            record_on("th_other", Some("acme")),
        ),
        with(
            M::POST,
            "/v1/records/batch",
            WRITE_M,
            || json!({"records": [record_on("th_m", None)()]}),
        ),
        // Namespaces, configuration, identity.
        route(M::GET, "/v1/namespaces", READ),
        route(M::GET, "/v1/namespaces/acme", READ),
        with(
            M::POST,
            "/v1/namespaces",
            Scope("config:write"),
            || json!({"id": "acme/sub"}),
        ),
        route(M::GET, "/v1/config", Scope("config:read")),
        with(
            M::POST,
            "/v1/config/telemetry_retention",
            Scope("config:write"),
            || json!({"days": 3}),
        ),
        route(M::GET, "/v1/identity", Scope("config:read")),
        // Accounts, tokens, secrets, moves, invites and members.
        with(
            M::POST,
            "/v1/service-accounts",
            Admin,
            || json!({"name": "n", "scopes": ["records:read"]}),
        ),
        route(M::GET, "/v1/service-accounts", Admin),
        with(M::POST, "/v1/secrets/list", Admin, || json!({})),
        with(
            M::POST,
            "/v1/portability/export",
            Admin,
            || json!({"threads": ["th_m"]}),
        ),
        with(
            M::POST,
            "/v1/invites",
            Admin,
            || json!({"scopes": ["records:read"]}),
        ),
        with(
            M::POST,
            "/v1/members/adopt",
            Admin,
            || json!({"label": "owner"}),
        ),
        route(M::GET, "/v1/members", READ),
        // Federation: the operator's routes, and the feed a pair's grain opens.
        route(M::GET, "/v1/federation/pairs", FEDERATION),
        route(M::GET, "/v1/federation/pending", FEDERATION),
        route(M::GET, "/v1/consent/grants", FEDERATION),
        route(M::GET, "/v1/sync/pairs", FEDERATION),
        route(M::GET, "/v1/sync/quarantine", FEDERATION),
        route(M::GET, "/v1/sync/changes?thread=th_m", PULL),
        route(
            M::GET,
            "/v1/federation/actor-keys?did=did:sync:user:m",
            PULL,
        ),
    ];

    let mut tokens = Vec::new();
    for credential in CREDENTIALS {
        tokens.push((credential, steward.token(&[credential], &[]).await));
    }
    for route in &routes {
        for (credential, token) in &tokens {
            let (status, answer) = send(&steward, token, route).await;
            let what = format!("{} {} with {credential}", route.method, route.path);
            if route.opens.lets_in(credential) {
                assert!(status < 300, "{what}: {status} {answer}");
            } else {
                assert_eq!(status, 403, "{what}: {answer}");
                assert_eq!(error_code(&answer), "SCOPE_FORBIDDEN", "{what}");
            }
        }
    }
    // Outside the table: any valid token reads the health report.
    for (credential, token) in &tokens {
        let (status, _) = steward.get(token, "/v1/health").await;
        assert_eq!(status, 200, "GET /v1/health with {credential}");
    }
}
