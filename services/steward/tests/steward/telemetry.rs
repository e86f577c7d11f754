//! Telemetry of real stewards on 127.0.0.1: one trace from an emit to its ingest on a peer
//! (spans caught by an in-memory exporter), the named Prometheus series, and the hosted
//! binary's internal metrics listener and drain.
//!
//! The subscriber and the meter are the process's: under `cargo test` other tests' stewards
//! share them, so every span and series checked here is found through what this test did.

use std::future::Future;
use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{json, Value};
use syncropel_client::api::Ready;
use syncropel_federation::FederationConfig;
use syncropel_telemetry::LogFormat;
use syncropel_testkit::hosted::{client_with_host, new_tenant_at, Process, BASE_DOMAIN};
use syncropel_testkit::{error_code, send, with_test_database, Node, Options};

use crate::STEWARD_BIN;

const DEADLINE: Duration = Duration::from_secs(15);

/// Short polls and holds, so the pull job answers within a test's patience.
fn federation(auto_approve: Vec<String>) -> FederationConfig {
    FederationConfig {
        auto_approve,
        ..syncropel_testkit::quick_federation()
    }
}

async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    syncropel_testkit::eventually(what, DEADLINE, check).await
}

/// Two stewards, B pairing with A (which approves B) and pulling thread `th_traced` from it.
struct Pair {
    a: Node,
    b: Node,
    pair_id: String,
}

const THREAD: &str = "th_traced";

async fn paired() -> Pair {
    let b_key = syncropel_protocol::Keypair::generate();
    let b_did = b_key.did_key();
    let a = Node::start(Options {
        federation: federation(vec![b_did]),
        ..Options::default()
    })
    .await;
    let b = Node::start(Options {
        federation: federation(Vec::new()),
        keypair: Some(b_key),
        ..Options::default()
    })
    .await;
    let view = b.pair_with(a.url()).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    b.pull(THREAD, &a.did()).await;
    Pair { a, b, pair_id }
}

impl Pair {
    /// Emits a record on A and waits until B holds it; returns its id.
    async fn emit_and_sync(&self, clock: i64) -> String {
        let record = self
            .a
            .emit(THREAD, &self.a.did(), clock, json!({"n": clock}))
            .await;
        let id = record["id"].as_str().unwrap().to_string();
        self.b.arrived(&id).await;
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
    let ingest = spans
        .iter()
        .find(|s| s.name == "sync.ingest" && attribute(s, "record").as_deref() == Some(&id))
        .unwrap();
    // The emit's server span is the ingest's parent (other tests' emits may share the exporter).
    let emit = spans
        .iter()
        .find(|s| s.name == "POST /v1/records" && s.span_context.span_id() == ingest.parent_span_id)
        .expect("the emit's server span, parent of the ingest on B");
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
    // A method of the caller's invention is counted, but not as a series of its own.
    let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
    let http = &pair.b.steward.http;
    let response = http
        .request(brew, format!("{}/v1/records", pair.b.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    // Both stewards run in this process and share its meter: one scrape shows both sides. Read
    // raw: the content type is part of what is checked.
    let response = http
        .get(format!("{}/metrics", pair.b.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
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
    with_test_database(|url| async move {
        let drain = [
            "--metrics-bind",
            "127.0.0.1:0",
            "--shutdown-delay",
            "2s",
            "--shutdown-grace",
            "5s",
        ];
        let mut process = Process::start_with(STEWARD_BIN, &url, &drain).await;
        let base = process.url.clone();
        let metrics_url = process.metrics_url().expect("the metrics listener");
        let http = reqwest::Client::new();

        let token = new_tenant_at(&base, "acct", "metered").await;
        let tenant_host = format!("metered.{BASE_DOMAIN}");
        let tenant = client_with_host(&base, &tenant_host, &token);
        let write = |clock: i64| {
            let tenant = tenant.clone();
            async move {
                let record = json!({"act": "KNOW", "actor": "did:sync:user:m", "thread": "th_m",
                                    "clock": clock, "body": {}});
                tenant.emit::<Value>(&record).await.unwrap()
            }
        };
        assert!(write(1).await.created);

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
        let ready: Ready = serde_json::from_value(body).unwrap();
        assert_eq!(ready.status, "ready");

        // SIGTERM: not ready at once, still serving during the delay, then gone.
        process.terminate();
        let (status, body) = eventually("/ready to answer 503", || async {
            let (status, body) = send(http.get(format!("{base}/ready"))).await;
            (status == 503).then_some((status, body))
        })
        .await;
        assert_eq!(error_code(&body), "SHUTTING_DOWN", "{status} {body}");
        assert!(write(2).await.created, "a write during the delay is served");
        // A watch opened now is sent elsewhere at once instead of being replayed and told to
        // leave again.
        let (status, body) = send(
            http.get(format!("{base}/v1/threads/th_m/watch"))
                .header("host", &tenant_host)
                .bearer_auth(&token),
        )
        .await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(error_code(&body), "SHUTTING_DOWN");
        let wait = body["retry_after_ms"].as_u64().expect("retry_after_ms");
        assert!((100..500).contains(&wait), "{body}");
        // Every answer while draining closes its connection, so that a client's next request
        // goes through the load balancer to a replica that is ready.
        let response = http.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["connection"], "close");
        let exited = process
            .wait_exit(DEADLINE)
            .await
            .expect("the replica to exit");
        assert!(exited.success(), "{exited}");
        // Its log lines carry trace ids for work done inside traced spans only when an
        // exporter is configured; here every line is still one JSON object.
        let text = process.log();
        for line in text.lines() {
            let line: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(line["level"].is_string() && line["timestamp"].is_string(), "{line}");
        }
        assert!(text.contains("pull leases handed back"), "{text}");
    })
    .await;
}
