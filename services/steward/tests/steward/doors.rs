//! The doors a caller without a token can reach: the bootstrap route hands out one admin token,
//! once, to a caller on the steward's own machine or holding its secret; and no web page may
//! read a steward's answers unless its origin is configured.

use serde_json::{json, Value};
use syncropel_testkit::hosted::{Config, Replica};
use syncropel_testkit::{error_code, with_test_database, Options, TestSteward};

const BOOTSTRAP: &str = "/v1/bootstrap/service-account";

fn admin() -> Value {
    json!({"name": "admin", "scopes": ["admin"]})
}

#[tokio::test]
async fn of_concurrent_bootstraps_exactly_one_gets_the_token() {
    let steward = TestSteward::start().await;
    let body = admin();
    let attempts = (0..8).map(|_| steward.post_anonymous(BOOTSTRAP, &body));
    let answers = futures_util::future::join_all(attempts).await;
    let created = answers.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(created, 1, "{answers:?}");
    for (status, answer) in answers.iter().filter(|(status, _)| *status != 201) {
        assert_eq!(
            (*status, error_code(answer)),
            (409, "BOOTSTRAP_CLOSED"),
            "{answer}"
        );
    }
    let (status, answer) = steward.post_anonymous(BOOTSTRAP, &body).await;
    assert_eq!((status, error_code(&answer)), (409, "BOOTSTRAP_CLOSED"));
}

#[tokio::test]
async fn with_a_secret_the_bootstrap_asks_for_it() {
    let steward = TestSteward::start_with(Options {
        bootstrap_secret: Some("a-long-bootstrap-secret".into()),
        ..Options::default()
    })
    .await;
    let send = |secret: Option<&'static str>| {
        let mut request = steward
            .http
            .post(format!("{}{BOOTSTRAP}", steward.url))
            .json(&admin());
        if let Some(secret) = secret {
            request = request.header("x-bootstrap-secret", secret);
        }
        steward.send(request)
    };
    for wrong in [None, Some("a-long-bootstrap-secreT"), Some("")] {
        let (status, answer) = send(wrong).await;
        assert_eq!(
            (status, error_code(&answer)),
            (403, "PERMISSION_DENIED"),
            "{answer}"
        );
    }
    let (status, answer) = send(Some("a-long-bootstrap-secret")).await;
    assert_eq!(status, 201, "{answer}");
    assert!(answer["token"]["token"].is_string(), "{answer}");
}

/// A hosted tenant is bootstrapped by its provisioning: the route does not exist there, so a
/// tenant deleted before it had an account cannot be taken over.
#[tokio::test]
async fn hosted_tenants_have_no_bootstrap_route() {
    with_test_database(|url| async move {
        let replica = Replica::start(&url, Config::default()).await;
        replica.new_tenant("owner", "doorless").await;
        let answer = replica
            .tenant_request("doorless", reqwest::Method::POST, BOOTSTRAP)
            .json(&admin())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
        replica.stop().await;
    })
    .await;
}

#[tokio::test]
async fn cors_is_off_unless_origins_are_configured() {
    let preflight = |steward: &TestSteward, origin: &'static str| {
        steward
            .http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/v1/records", steward.url),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-api-key,content-type")
            .send()
    };
    let allowed = |response: &reqwest::Response| {
        response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string())
    };
    let closed = TestSteward::start().await;
    let answer = preflight(&closed, "https://app.example").await.unwrap();
    assert_eq!(allowed(&answer), None);

    let open = TestSteward::start_with(Options {
        cors_origins: vec!["https://app.example".into()],
        ..Options::default()
    })
    .await;
    let answer = preflight(&open, "https://app.example").await.unwrap();
    assert_eq!(allowed(&answer).as_deref(), Some("https://app.example"));
    let answer = preflight(&open, "https://elsewhere.example").await.unwrap();
    assert_eq!(allowed(&answer), None);
}
