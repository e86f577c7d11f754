//! Telemetry of real stewards on 127.0.0.1: one trace from an emit to its ingest on a peer
//! (spans caught by an in-memory exporter), the named Prometheus series, and the hosted
//! binary's internal metrics listener and drain.

mod common;

use std::future::Future;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::hosted::{jwt, send, BASE_DOMAIN, JWT_SECRET, KEK_HEX};
use common::{Options, TestSteward};
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{json, Value};
use syncropel_federation::FederationConfig;
use syncropel_telemetry::LogFormat;

const DEADLINE: Duration = Duration::from_secs(15);

/// Short polls and holds, so the pull job answers within a test's patience.
fn federation(auto_approve: Vec<String>) -> FederationConfig {
    FederationConfig {
        auto_approve,
        ..common::quick_federation()
    }
}

async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    common::eventually(what, DEADLINE, check).await
}

/// Two stewards, B pairing with A (which approves B) and pulling thread `th_traced` from it.
struct Pair {
    a: TestSteward,
    a_token: String,
    b: TestSteward,
    b_token: String,
    pair_id: String,
}

const THREAD: &str = "th_traced";

async fn paired() -> Pair {
    let b_key = syncropel_protocol::Keypair::generate();
    let b_did = b_key.did_key();
    let a = TestSteward::start_with(Options {
        federation: federation(vec![b_did]),
        ..Options::default()
    })
    .await;
    let b = TestSteward::start_with(Options {
        federation: federation(Vec::new()),
        keypair: Some(b_key),
        ..Options::default()
    })
    .await;
    let (a_token, b_token) = (a.admin().await, b.admin().await);
    let (status, view) = b
        .post(
            &b_token,
            "/v1/federation/pairs",
            &json!({"peer_url": a.url}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    let (status, pulled) = b
        .post(
            &b_token,
            "/v1/sync/pull",
            &json!({"thread": THREAD, "peer": a.did()}),
        )
        .await;
    assert_eq!(status, 200, "{pulled}");
    Pair {
        a,
        a_token,
        b,
        b_token,
        pair_id,
    }
}

impl Pair {
    /// Emits a record on A and waits until B holds it; returns its id.
    async fn emit_and_sync(&self, clock: i64) -> String {
        let envelope = json!({"act": "KNOW", "actor": self.a.did(), "thread": THREAD,
                              "clock": clock, "body": {"n": clock}});
        let (status, record) = self.a.post(&self.a_token, "/v1/records", &envelope).await;
        assert_eq!(status, 201, "{record}");
        let id = record["id"].as_str().unwrap().to_string();
        eventually(&format!("record {id} on B"), || async {
            let (status, _) = self
                .b
                .get(&self.b_token, &format!("/v1/records/{id}"))
                .await;
            (status == 200).then_some(())
        })
        .await;
        id
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emit_and_its_ingest_on_the_peer_are_one_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    syncropel_telemetry::install(Some(provider.clone()), LogFormat::Text);

    let pair = paired().await;
    let id = pair.emit_and_sync(1).await;

    // The ingest span ends once the page is stored; the pull that carried it ends after.
    let spans = eventually("the ingest span and the pull it links to", || {
        let exporter = exporter.clone();
        let id = id.clone();
        async move {
            let spans = exporter.get_finished_spans().unwrap();
            let ingest = spans.iter().find(|s| {
                s.name == "sync.ingest" && attribute(s, "record").as_deref() == Some(&id)
            })?;
            let pull = ingest.links.links.first()?.span_context.span_id();
            spans
                .iter()
                .any(|s| s.span_context.span_id() == pull)
                .then_some(spans)
        }
    })
    .await;
    let emit = spans
        .iter()
        .find(|s| s.name == "POST /v1/records")
        .expect("the emit's server span");
    let ingest = spans
        .iter()
        .find(|s| s.name == "sync.ingest" && attribute(s, "record").as_deref() == Some(&id))
        .unwrap();
    assert_ne!(emit.span_context.trace_id(), TraceId::INVALID);
    assert_eq!(
        ingest.span_context.trace_id(),
        emit.span_context.trace_id(),
        "the ingest on B continues the emit's trace on A"
    );
    assert_eq!(ingest.parent_span_id, emit.span_context.span_id());
    assert_eq!(
        attribute(ingest, "source").as_deref(),
        Some(pair.pair_id.as_str())
    );
    // The pull that carried it is linked, and itself reached A as one trace: A's span for
    // the changes request is a child of B's pull.
    let pull_link = ingest.links.links.first().expect("a link to the pull");
    let pull = spans
        .iter()
        .find(|s| {
            s.name == "sync.pull" && s.span_context.span_id() == pull_link.span_context.span_id()
        })
        .expect("the linked pull span");
    let served = spans
        .iter()
        .find(|s| {
            s.name == "GET /v1/sync/changes" && s.parent_span_id == pull.span_context.span_id()
        })
        .expect("A's span for B's pull request, child of the pull");
    assert_eq!(served.span_context.trace_id(), pull.span_context.trace_id());
    // Store calls are spans inside the requests.
    let append = spans
        .iter()
        .find(|s| {
            s.name == "store.append" && s.span_context.trace_id() == emit.span_context.trace_id()
        })
        .expect("the emit's store call");
    assert_ne!(append.parent_span_id, SpanId::INVALID);
    provider.shutdown().unwrap();
}

/// Every series named in the issue that a local steward has, by its Prometheus name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_names_the_series() {
    let pair = paired().await;
    let id = pair.emit_and_sync(1).await;
    let metrics = |steward: &TestSteward| {
        let request = steward.http.get(format!("{}/metrics", steward.url));
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert!(response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain"));
            response.text().await.unwrap()
        }
    };
    // A method of the caller's invention is counted, but not as a series of its own.
    let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
    let response = pair
        .b
        .http
        .request(brew, format!("{}/v1/records", pair.b.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    // Both stewards run in this process and share its meter: one scrape shows both sides.
    let text = metrics(&pair.b).await;
    assert!(text.contains("method=\"_OTHER\""), "{text}");
    assert!(!text.contains("BREW"), "{text}");
    for series in [
        "syncropel_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/records\",status=\"201\"",
        "syncropel_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/sync/changes\"",
        "syncropel_records_ingested_total{via=\"api\"}",
        "syncropel_records_ingested_total{via=\"sync\"}",
        &format!("syncropel_sync_lag_seconds{{pair=\"{}\"}}", pair.pair_id),
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
    // Routes are templates: the record B was asked for by id is not a label of its own.
    assert!(text.contains("route=\"/v1/records/{id}\""), "{text}");
    assert!(!text.contains(&id), "{text}");
}

/// The hosted binary as run by the chart: metrics on an internal listener only; on SIGTERM it
/// stops being ready, keeps serving through the delay, then exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_replica_serves_metrics_internally_and_drains_on_sigterm() {
    syncropel_store::testing::with_test_database(|url| async move {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_steward"))
            .args([
                "--bind",
                "127.0.0.1:0",
                "--metrics-bind",
                "127.0.0.1:0",
                "--base-domain",
                BASE_DOMAIN,
                "--public-scheme",
                "http",
                "--jwt-issuer",
                common::hosted::ISSUER,
                "--shutdown-delay",
                "2s",
                "--shutdown-grace",
                "5s",
                "--log-format",
                "json",
            ])
            .env("DATABASE_URL", &url)
            .env("STEWARD_KEK", KEK_HEX)
            .env("STEWARD_JWT_SECRET", JWT_SECRET)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        // JSON log lines: the listening line names both addresses.
        let listening: Value = eventually("the listening log line", || async {
            let text = std::fs::read_to_string(log.path()).unwrap();
            text.lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|line| line["message"] == "hosted steward listening")
        })
        .await;
        let base = format!("http://{}", listening["addr"].as_str().unwrap());
        let metrics_addr = listening["metrics"].as_str().unwrap();
        let metrics_addr = metrics_addr
            .trim_start_matches("Some(")
            .trim_end_matches(')');
        let metrics_url = format!("http://{metrics_addr}/metrics");
        let http = reqwest::Client::new();

        let (status, body) = send(
            http.post(format!("{base}/provision"))
                .header("host", BASE_DOMAIN)
                .bearer_auth(jwt("acct"))
                .header("idempotency-key", "metrics")
                .json(&json!({"label": "metered", "bootstrap_token": "metered-bootstrap-token"})),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        let tenant_host = format!("metered.{BASE_DOMAIN}");
        let token = common::hosted::bootstrap_bearer("metered-bootstrap-token");
        let write = |clock: i64| {
            http.post(format!("{base}/v1/records"))
                .header("host", &tenant_host)
                .bearer_auth(&token)
                .json(&json!({"act": "KNOW", "actor": "did:sync:user:m", "thread": "th_m",
                              "clock": clock, "body": {}}))
        };
        let (status, body) = send(write(1)).await;
        assert_eq!(status, 201, "{body}");

        let text = http.get(&metrics_url).send().await.unwrap().text().await.unwrap();
        for series in [
            "syncropel_provisioning_duration_seconds_bucket{outcome=\"created\"",
            "syncropel_active_tenants 1",
            "syncropel_records_ingested_total{via=\"api\"} 1",
            "syncropel_http_request_duration_seconds_count{method=\"POST\",route=\"/provision\",status=\"202\"}",
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
        // Neither a tenant host nor the platform host serves metrics.
        for host in [tenant_host.as_str(), BASE_DOMAIN] {
            let (status, body) = send(http.get(format!("{base}/metrics")).header("host", host)).await;
            assert_eq!(status, 404, "{host}: {body}");
        }
        let (status, body) = send(http.get(format!("{base}/ready"))).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("ready")));

        // SIGTERM: not ready at once, still serving during the delay, then gone.
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let (status, body) = eventually("/ready to answer 503", || async {
            let (status, body) = send(http.get(format!("{base}/ready"))).await;
            (status == 503).then_some((status, body))
        })
        .await;
        assert_eq!(common::error_code(&body), "SHUTTING_DOWN", "{status} {body}");
        let (status, body) = send(write(2)).await;
        assert_eq!(status, 201, "a write during the delay is served: {body}");
        // A watch opened now is sent elsewhere at once instead of being replayed and told to
        // leave again.
        let (status, body) = send(
            http.get(format!("{base}/v1/threads/th_m/watch"))
                .header("host", &tenant_host)
                .bearer_auth(&token),
        )
        .await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(common::error_code(&body), "SHUTTING_DOWN");
        let wait = body["retry_after_ms"].as_u64().expect("retry_after_ms");
        assert!((100..500).contains(&wait), "{body}");
        // Every answer while draining closes its connection, so that a client's next request
        // goes through the load balancer to a replica that is ready.
        let response = http.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["connection"], "close");
        let exited = eventually("the replica to exit", || {
            let status = child.try_wait().unwrap();
            async move { status }
        })
        .await;
        assert!(exited.success(), "{exited}");
        // Its log lines carry trace ids for work done inside traced spans only when an
        // exporter is configured; here every line is still one JSON object.
        let text = std::fs::read_to_string(log.path()).unwrap();
        for line in text.lines() {
            let line: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(line["level"].is_string() && line["timestamp"].is_string(), "{line}");
        }
        assert!(text.contains("pull leases handed back"), "{text}");
    })
    .await;
}
