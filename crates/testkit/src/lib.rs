//! Fixtures for tests that talk to real services over HTTP on 127.0.0.1.
//!
//! Every service starts through the startup code its binary runs: a local steward through
//! `syncropel_steward::local::start` and `LocalSteward::run` (what `spl serve` does), a hosted
//! replica through `hosted::build` and `Hosted::run`, the did:sync directory through its app and
//! the shared drain. The kit binds each listener itself and hands it over, so a test knows the
//! address before the service starts; a stopped service's port stays held, refusing
//! connections, until it starts there again.
//!
//! - [`TestSteward`] / [`Node`]: a local steward in a temporary home; a [`Node`] adds an admin
//!   token, a typed [`Client`](syncropel_client::Client) and the federation helpers tests share.
//! - [`hosted`]: hosted [`Replica`](hosted::Replica)s in this process, `steward`
//!   [`Process`](hosted::Process)es, and a [`Balancer`](hosted::Balancer) in front of them.
//! - [`Directory`]: the did:sync directory on a SQLite file of its own.
//! - [`Relay`]: the relay on a Postgres database of its own.

// A fixture that cannot set up fails its test, with the reason: that is what a panic is here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod directory;
pub mod hosted;
mod local;
mod node;
mod port;
mod relay;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt as _;
use serde_json::{json, Value};
use syncropel_federation::{FederationConfig, PeerTimeouts};

pub use directory::{Directory, StoppedDirectory};
pub use local::{Identity, Options, Stopped, TestSteward, TENANT};
pub use node::Node;
pub use relay::{Relay, StoppedRelay};
pub use syncropel_relay::store::Limits as RelayLimits;
pub use syncropel_store::testing::{with_test_database, Sql, TestDb};

/// A minimal valid envelope: `DO` by `did:example:test`.
pub fn envelope(thread: &str, clock: i64, body: Value) -> Value {
    json!({
        "act": "DO",
        "actor": "did:example:test",
        "body": body,
        "clock": clock,
        "data_type": "SCALAR",
        "parents": [],
        "thread": thread,
    })
}

/// A `KNOW` envelope by `actor`, as peers' records are written in the federation tests.
pub fn know(thread: &str, actor: &str, clock: i64, body: Value) -> Value {
    json!({"act": "KNOW", "actor": actor, "thread": thread, "clock": clock, "body": body})
}

/// Asserts the ApiError envelope and returns its code.
pub fn error_code(body: &Value) -> &str {
    assert_eq!(body["object"], "error", "{body}");
    assert!(body["type"].is_string(), "{body}");
    assert!(body["message"].is_string(), "{body}");
    body["code"].as_str().expect("code")
}

/// Sends a request; its status and JSON body (`null` when the body is not JSON).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Every record a listing holds, following its cursor in pages of 1000: `listing` makes the
/// `GET /v1/records` request (its address, host and bearer), `thread` narrows it. Read raw:
/// every page must answer `200`.
pub async fn all_records(
    listing: impl Fn() -> reqwest::RequestBuilder,
    thread: Option<&str>,
) -> Vec<Value> {
    let mut records = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "1000".to_string())];
        if let Some(thread) = thread {
            query.push(("thread", thread.to_string()));
        }
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let (status, page) = send(listing().query(&query)).await;
        assert_eq!(status, 200, "{page}");
        records.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return records,
        }
    }
}

/// Short federation intervals for tests: 200 ms polls, 50 ms -> 400 ms backoff, 2 s longpoll
/// holds, peer timeouts of 2 s (connect), 5 s (request) and 6 s (longpoll).
pub fn quick_federation() -> FederationConfig {
    let ms = Duration::from_millis;
    FederationConfig {
        poll_interval: ms(200),
        backoff_base: ms(50),
        backoff_cap: ms(400),
        peer_timeouts: PeerTimeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(5),
            longpoll: Duration::from_secs(6),
        },
        longpoll_hold: Duration::from_secs(2),
        ..FederationConfig::default()
    }
}

/// Polls `check` every 25 ms until it answers; fails the test after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs `scenario` on a Postgres database of its own, dropped afterwards, in the calling task: as
/// [`with_test_database`], which spawns it, for scenarios whose futures are not `Send` (a local
/// steward's startup, with its SQLite store, is not).
pub async fn with_test_database_here<F, Fut>(scenario: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = TestDb::create().await;
    let outcome = AssertUnwindSafe(scenario(db.url.clone()))
        .catch_unwind()
        .await;
    db.drop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
