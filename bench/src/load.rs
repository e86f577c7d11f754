//! The load runner the benchmarks share: a closed loop of concurrent clients for a fixed time,
//! the latency histograms and tallies it keeps, and the records it sends.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde::de::IgnoredAny;
use serde_json::{json, Value};
use syncropel_client::{Client, ClientError, Emitted};

use crate::{RecordShape, MAX_LATENCY_US};

/// User + system CPU time of this process so far, from `/proc/self/stat`
/// (Linux; clock ticks assumed to be the usual 100 per second).
pub(crate) fn self_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

// ---------------------------------------------------------------------------
// HTTP plumbing

/// The one connection pool of a run: every closed loop shares it, and it keeps an idle
/// keep-alive connection for each of them.
pub(crate) fn http_client(clients: usize) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(clients.max(4))
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")
}

/// A steward client over `http`, with `token` as its bearer.
pub(crate) fn steward(http: &reqwest::Client, url: &str, token: Option<&str>) -> Result<Client> {
    Client::with_http(http.clone(), url, token.map(str::trim))
        .with_context(|| format!("a client for {url}"))
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    // Constant bounds that satisfy the library's rules (low >= 1, high >= 2 * low, 3 digits).
    #[allow(clippy::expect_used)]
    let histogram =
        Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds");
    histogram
}

pub(crate) fn ms(us: u64) -> f64 {
    round3(us as f64 / 1000.0)
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Outcome of one request as seen by a closed-loop client.
pub(crate) enum Outcome {
    Ok,
    /// A multi-item request answered as a whole: how many of its items were
    /// accepted and how many not (with a sample of the latter's errors).
    Items {
        ok: u64,
        failed: u64,
        sample: Option<String>,
    },
    /// Unexpected status or transport error, with a short description.
    Err(String),
}

/// Per-client tallies of a closed-loop run, merged at the end.
pub(crate) struct Tally {
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    /// Items accepted / refused inside `Outcome::Items` answers.
    pub(crate) items: u64,
    pub(crate) item_errors: u64,
    pub(crate) hist: Histogram<u64>,
}

impl Tally {
    pub(crate) fn new() -> Self {
        Self {
            ok: 0,
            errors: 0,
            items: 0,
            item_errors: 0,
            hist: new_histogram(),
        }
    }
}

/// Remembers the first few distinct error messages for stderr.
#[derive(Default)]
pub(crate) struct ErrorLog {
    pub(crate) seen: Mutex<Vec<String>>,
}

impl ErrorLog {
    pub(crate) fn note(&self, msg: String) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() < 5 && !seen.contains(&msg) {
            seen.push(msg);
        }
    }

    pub(crate) fn report(&self) {
        for m in self.seen.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            eprintln!("syncropel-bench: error sample: {m}");
        }
    }
}

/// Classifies an answer read through the steward client.
pub(crate) fn finish<T>(answer: Result<T, ClientError>) -> Outcome {
    match answer {
        Ok(_) => Outcome::Ok,
        Err(e) => Outcome::Err(short(&e)),
    }
}

/// A single-record write: new (`201`) is the only success; a replay means a reused clock.
pub(crate) fn emitted(answer: Result<Emitted<IgnoredAny>, ClientError>) -> Outcome {
    match answer {
        Ok(Emitted { created: true, .. }) => Outcome::Ok,
        Ok(_) => Outcome::Err("HTTP 200: the record was stored already".into()),
        Err(e) => Outcome::Err(short(&e)),
    }
}

/// An error's first 300 characters.
pub(crate) fn short(error: &dyn std::fmt::Display) -> String {
    error.to_string().chars().take(300).collect()
}

/// A closed-loop run reported as `{<unit>, secs, <unit>_per_sec, errors, clients}` plus latencies.
pub(crate) async fn throughput<F, Fut>(
    unit: &str,
    clients: usize,
    warmup_secs: u64,
    duration_secs: u64,
    op: F,
) -> Result<serde_json::Value>
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    let (t, secs) = closed_loop(
        clients,
        Duration::from_secs(warmup_secs),
        Duration::from_secs(duration_secs.max(1)),
        op,
    )
    .await?;
    let mut report = serde_json::Map::new();
    report.insert(unit.to_string(), json!(t.ok));
    report.insert("secs".into(), json!(secs));
    report.insert(format!("{unit}_per_sec"), json!(round3(t.ok as f64 / secs)));
    report.insert("errors".into(), json!(t.errors));
    report.insert("clients".into(), json!(clients));
    Ok(merge(
        serde_json::Value::Object(report),
        latency_json(&t.hist),
    ))
}

/// Run `clients` closed loops for `warmup + duration`; only requests that
/// complete inside the measured window are counted. `op(i)` makes request `i`
/// (through the run's one shared client, which it holds).
pub(crate) async fn closed_loop<F, Fut>(
    clients: usize,
    warmup: Duration,
    duration: Duration,
    op: F,
) -> Result<(Tally, f64)>
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let seq = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(ErrorLog::default());
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients.max(1) {
        let op = op.clone();
        let seq = seq.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::new();
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let i = seq.fetch_add(1, Ordering::Relaxed);
                let outcome = op(i).await;
                let done = Instant::now();
                if done < measure_from || done > end {
                    continue;
                }
                match outcome {
                    Outcome::Ok => {
                        t.ok += 1;
                        let us = (done - t0).as_micros() as u64;
                        t.hist.saturating_record(us.max(1));
                    }
                    Outcome::Items { ok, failed, sample } => {
                        t.ok += 1;
                        t.items += ok;
                        t.item_errors += failed;
                        if let Some(msg) = sample {
                            errors.note(msg);
                        }
                        let us = (done - t0).as_micros() as u64;
                        t.hist.saturating_record(us.max(1));
                    }
                    Outcome::Err(msg) => {
                        t.errors += 1;
                        errors.note(msg);
                        // Do not spin on a server that refuses everything.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            t
        }));
    }
    let mut total = Tally::new();
    for task in tasks {
        let t = task.await.context("client task panicked")?;
        total.ok += t.ok;
        total.errors += t.errors;
        total.items += t.items;
        total.item_errors += t.item_errors;
        total.hist.add(&t.hist).context("merging histograms")?;
    }
    errors.report();
    if total.ok == 0 && total.errors > 0 {
        bail!(
            "every request failed ({} errors; samples above)",
            total.errors
        );
    }
    Ok((total, duration.as_secs_f64()))
}

/// A closed-loop run of multi-record requests: records (the items accepted) per second, then
/// requests and latencies.
pub(crate) fn batch_report(t: &Tally, secs: f64, clients: usize, batch: u64) -> serde_json::Value {
    merge(
        json!({
            "records": t.items,
            "secs": secs,
            "records_per_sec": round3(t.items as f64 / secs),
            "record_errors": t.item_errors,
            "requests": t.ok,
            "errors": t.errors,
            "clients": clients,
            "batch": batch,
        }),
        latency_json(&t.hist),
    )
}

pub(crate) fn latency_json(h: &Histogram<u64>) -> serde_json::Value {
    if h.is_empty() {
        return json!({"p50_ms": null, "p99_ms": null, "max_ms": null});
    }
    json!({
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
    })
}

pub(crate) fn merge(mut a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

// ---------------------------------------------------------------------------
// Records

/// Builds unique record envelopes: one global counter gives every record a
/// distinct clock, so `(thread, actor, clock)` never repeats.
pub(crate) struct RecordMaker {
    pub(crate) actor: String,
    pub(crate) filler: String,
    pub(crate) clock_base: u64,
    /// `body.kind`, when the records should carry one.
    pub(crate) kind: Option<String>,
}

impl RecordMaker {
    pub(crate) fn new(shape: &RecordShape) -> Self {
        let filler: String = "lorem ipsum dolor sit amet "
            .chars()
            .cycle()
            .take(shape.body_bytes)
            .collect();
        Self {
            actor: shape.actor.clone(),
            filler,
            clock_base: shape.clock_base.unwrap_or_else(now_micros),
            kind: None,
        }
    }

    pub(crate) fn with_kind(mut self, kind: &str) -> Self {
        self.kind = Some(kind.to_string());
        self
    }

    pub(crate) fn make(&self, i: u64, thread: &str) -> Value {
        let body = match &self.kind {
            Some(kind) => json!({"kind": kind, "text": self.filler, "n": i}),
            None => json!({"text": self.filler, "n": i}),
        };
        json!({
            "act": "DO",
            "actor": self.actor,
            "body": body,
            "clock": self.clock_base + i,
            "data_type": "SCALAR",
            "parents": [],
            "thread": thread,
        })
    }
}
