//! Rate limits per token and per client address: 429 RATE_LIMITED with Retry-After, nothing changed
//! by a refusal, and no throttling at all when the limits are off (the local default).

use std::time::Duration;

use serde_json::{json, Value};
use syncropel_client::api::{BatchResult, CreateRecords};
use syncropel_steward::rate_limit::{RateLimit, RateLimits};
use syncropel_testkit::hosted::{Config, Replica};
use syncropel_testkit::{envelope, error_code, Options, TestSteward};

/// The answer to one request: status, `Retry-After` in seconds (if any), body.
async fn send(req: reqwest::RequestBuilder) -> (u16, Option<u64>, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse::<u64>().expect("whole seconds"));
    (
        status,
        retry_after,
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// Sends `make()` until it is refused with 429 (at most `max` times); returns how many passed
/// before the refusal and the refusal itself. Every pass must be `ok`.
async fn until_refused(
    max: usize,
    ok: u16,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> (usize, u64, Value) {
    for passed in 0..max {
        let (status, retry_after, body) = send(make()).await;
        if status == 429 {
            return (
                passed,
                retry_after.expect("a 429 carries Retry-After"),
                body,
            );
        }
        assert_eq!(status, ok, "{body}");
    }
    panic!("{max} requests and none was refused");
}

#[tokio::test]
async fn a_token_over_its_quota_is_refused_while_another_token_is_served() {
    let steward = TestSteward::start_with(Options {
        rate_limits: RateLimits::per_second(0, 1),
        ..Options::default()
    })
    .await;
    let busy = steward.token(&["records:read"], &[]).await;
    let calm = steward.token(&["records:read"], &[]).await;
    let url = format!("{}/v1/threads", steward.url);

    // 1 request/s with bursts of 2: the burst passes, then the bucket is empty.
    let (passed, retry_after, body) =
        until_refused(10, 200, || steward.http.get(&url).bearer_auth(&busy)).await;
    assert!(
        (2..=4).contains(&passed),
        "passed {passed} before the refusal"
    );
    assert_eq!(error_code(&body), "RATE_LIMITED");
    assert_eq!(body["type"], "rate_limit_error");
    assert_eq!(body["limit"], "per_token");
    assert!(
        body["message"].as_str().unwrap().contains("per token"),
        "{body}"
    );
    assert!(retry_after >= 1);
    assert_eq!(body["retry_after_secs"], retry_after);

    // Another token of the same tenant has its own bucket.
    let (status, _, body) = send(steward.http.get(&url).bearer_auth(&calm)).await;
    assert_eq!(status, 200, "{body}");
    // Open routes and bad credentials are not counted against any token.
    let (status, _, _) = send(steward.http.get(format!("{}/health", steward.url))).await;
    assert_eq!(status, 200);
    let (status, _, body) = send(steward.http.get(&url).bearer_auth("spl_test_nope")).await;
    assert_eq!((status, error_code(&body)), (401, "AUTH_INVALID"));

    // Retry-After tells the truth: after waiting it, the busy token is served again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let (status, _, body) = send(steward.http.get(&url).bearer_auth(&busy)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_address_over_its_quota_is_refused_even_on_open_routes() {
    let steward = TestSteward::start_with(Options {
        rate_limits: RateLimits::per_second(2, 0),
        ..Options::default()
    })
    .await;
    let token = steward.admin().await;
    let health = format!("{}/health", steward.url);

    let (passed, retry_after, body) = until_refused(20, 200, || steward.http.get(&health)).await;
    assert!(
        (4..=8).contains(&passed),
        "passed {passed} before the refusal"
    );
    assert_eq!(error_code(&body), "RATE_LIMITED");
    assert_eq!(body["limit"], "per_address");
    assert!(
        body["message"].as_str().unwrap().contains("per address"),
        "{body}"
    );
    assert!(retry_after >= 1);

    // The address is refused everywhere, whatever it presents, before authentication.
    for (path, auth) in [
        ("/v1/threads", Some(token.as_str())),
        ("/v1/threads", None),
        ("/ready", None),
        ("/no/such/route", None),
    ] {
        let mut req = steward.http.get(format!("{}{path}", steward.url));
        if let Some(token) = auth {
            req = req.bearer_auth(token);
        }
        let (status, retry_after, body) = send(req).await;
        assert_eq!(status, 429, "{path}: {body}");
        assert_eq!(error_code(&body), "RATE_LIMITED");
        assert!(retry_after.is_some_and(|s| s >= 1), "{path}");
    }
}

#[tokio::test]
async fn a_refused_post_writes_no_record() {
    let steward = TestSteward::start_with(Options {
        rate_limits: RateLimits::per_second(0, 1),
        ..Options::default()
    })
    .await;
    let writer = steward.token(&["records:write"], &[]).await;
    let reader = steward.admin().await;
    let url = format!("{}/v1/records", steward.url);

    let clock = std::sync::atomic::AtomicI64::new(0);
    let next = || {
        let n = clock.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        envelope("th_limited", n, json!({"n": n}))
    };
    let (passed, _, body) = until_refused(10, 201, || {
        steward.http.post(&url).bearer_auth(&writer).json(&next())
    })
    .await;
    assert_eq!(error_code(&body), "RATE_LIMITED");
    // Only the accepted writes exist; the refused one (and its clock) left no trace.
    assert_eq!(steward.record_count(&reader).await, passed);
    let (status, page) = steward
        .get(&reader, "/v1/threads/th_limited/records?limit=100")
        .await;
    assert_eq!(status, 200, "{page}");
    let clocks: Vec<i64> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["clock"].as_i64().unwrap())
        .collect();
    assert_eq!(clocks.len(), passed);
    assert!(!clocks.contains(&(passed as i64 + 1)), "{clocks:?}");
}

#[tokio::test]
async fn with_the_limits_off_a_burst_of_200_all_pass() {
    let steward = TestSteward::start().await;
    let token = steward.admin().await;
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..200 {
        let req = if i % 2 == 0 {
            steward
                .http
                .get(format!("{}/v1/threads", steward.url))
                .bearer_auth(&token)
        } else {
            steward.http.get(format!("{}/health", steward.url))
        };
        requests.spawn(async move { req.send().await.unwrap().status().as_u16() });
    }
    let statuses = requests.join_all().await;
    assert_eq!(statuses.len(), 200);
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
}

#[tokio::test]
async fn a_batch_counts_each_record_against_its_token() {
    // 5 requests/s per token, bursts of 10.
    let steward = TestSteward::start_with(Options {
        rate_limits: RateLimits::per_second(0, 5),
        ..Options::default()
    })
    .await;
    let token = steward.admin().await;
    let batch = |from: i64, n: i64| CreateRecords {
        records: (from..from + n)
            .map(|c| envelope("th_rl_batch", c, json!({})))
            .collect(),
    };
    let post = |batch: CreateRecords| {
        let body = serde_json::to_value(batch).unwrap();
        let (steward, token) = (&steward, &token);
        async move { steward.post(token, "/v1/records/batch", &body).await }
    };
    // Larger than the burst: it could never pass, and says so.
    let (status, body) = post(batch(100, 11)).await;
    assert_eq!((status, error_code(&body)), (400, "VALIDATION_ERROR"));
    assert!(body["message"].as_str().unwrap().contains("bursts of 10"));
    // Eight records take eight of the ten; the next batch of eight is refused and writes nothing.
    let (status, body) = post(batch(1, 8)).await;
    assert_eq!((status, &body["created"]), (200, &json!(8)), "{body}");
    let answer: BatchResult<Value> = serde_json::from_value(body).unwrap();
    assert_eq!(answer.created, 8, "{answer:?}");
    let (status, body) = post(batch(9, 8)).await;
    assert_eq!((status, error_code(&body)), (429, "RATE_LIMITED"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, listed) = steward
        .get(&token, "/v1/records?thread=th_rl_batch&limit=100")
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"].as_array().unwrap().len(), 8);
}

/// Behind one address (an ingress counted as the client, or many users behind one NAT), a flood
/// against one tenant empties that tenant's bucket only: the others still answer.
#[tokio::test]
async fn a_flood_against_one_tenant_leaves_the_others_served() {
    syncropel_testkit::with_test_database(|url| async move {
        let config = Config {
            rate_limits: RateLimits::per_second(5, 0),
            ..Config::default()
        };
        let replica = Replica::start(&url, config).await;
        let honest = replica.new_tenant("owner", "acme").await;
        let (passed, _, refused) = until_refused(200, 404, || {
            replica.tenant_request("junk", reqwest::Method::GET, "/health/nothing")
        })
        .await;
        assert!(passed >= 5, "{passed}");
        assert_eq!(error_code(&refused), "RATE_LIMITED");
        let (status, _) = replica.tenant_get("acme", &honest, "/v1/records").await;
        assert_eq!(status, 200);
        replica.stop().await;
    })
    .await;
}

/// One tenant, however many addresses it comes from, gets at most its share of a replica: its
/// requests from everywhere count against one bucket, and the other tenants are served.
#[tokio::test]
async fn a_tenant_flooding_from_many_addresses_is_held_to_its_share() {
    syncropel_testkit::with_test_database(|url| async move {
        let config = Config {
            rate_limits: RateLimits {
                per_tenant: RateLimit::per_second(10),
                trusted_proxies: 1,
                ..RateLimits::default()
            },
            ..Config::default()
        };
        let replica = Replica::start(&url, config).await;
        let noisy = replica.new_tenant("owner-a", "noisy").await;
        let quiet = replica.new_tenant("owner-b", "quiet").await;
        let sent = std::sync::atomic::AtomicU32::new(0);
        let (passed, retry_after, refused) = until_refused(200, 200, || {
            // Each request from an address of its own.
            let n = sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let address = format!("198.51.{}.{}", n / 250, n % 250 + 1);
            replica
                .tenant_request("noisy", reqwest::Method::GET, "/v1/records?limit=1")
                .bearer_auth(&noisy)
                .header("x-forwarded-for", address)
        })
        .await;
        assert!(passed >= 10, "{passed}");
        assert!(retry_after >= 1);
        assert_eq!(refused["limit"], "per_tenant", "{refused}");
        let (status, body) = replica.tenant_get("quiet", &quiet, "/v1/records").await;
        assert_eq!(status, 200, "{body}");
        replica.stop().await;
    })
    .await;
}
