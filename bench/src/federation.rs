//! Federation loads: propagation latency from an emit on the source steward to the record being
//! stored (verified, durably) on a steward that pulls from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use futures_util::StreamExt;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};
use syncropel_api::WatchEvent;
use syncropel_client::{Client, Emitted, WatchStart};

use crate::load::{http_client, new_histogram, steward, RecordMaker};
use crate::RecordShape;

/// Of a stored record, only its id is read.
#[derive(Deserialize)]
struct Stored {
    id: String,
}

#[derive(Args)]
pub struct PropagationArgs {
    /// The steward records are emitted on.
    #[arg(long)]
    source_url: String,
    #[arg(long, hide_env_values = true, env = "SPL_BENCH_SOURCE_TOKEN")]
    source_token: String,
    /// The steward that pulls the thread from the source.
    #[arg(long)]
    sink_url: String,
    #[arg(long, hide_env_values = true, env = "SPL_BENCH_SINK_TOKEN")]
    sink_token: String,
    #[arg(long)]
    thread: String,
    #[arg(long, default_value_t = 1000)]
    records: u64,
    /// Pause between emits, in milliseconds.
    #[arg(long, default_value_t = 20)]
    interval_ms: u64,
    /// Time each record from its write's acknowledgement instead of from just before its POST
    /// (how `couch-propagation` measures, for a like-for-like comparison).
    #[arg(long)]
    from_ack: bool,
    #[command(flatten)]
    shape: RecordShape,
}

/// Emits `records` records on the source, `interval_ms` apart, and times each from just before
/// its POST (or its acknowledgement, `--from-ack`) to its `record.created` event on the sink's watch stream (sent after the sink's
/// commit). Latencies in microseconds.
pub async fn propagation(a: PropagationArgs) -> Result<Value> {
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    // The watch stream stays open, so it needs a client without the runs' request timeout.
    let sink = Client::new(&a.sink_url, Some(a.sink_token.trim().to_owned()))?;
    let events = sink
        .watch::<IgnoredAny>(&a.thread, WatchStart::Live)
        .await
        .context("opening the sink's watch stream")?;
    let watcher = {
        let arrived = arrived.clone();
        tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            while let Some(Ok(event)) = events.next().await {
                if let WatchEvent::Record { created, .. } = event {
                    let now = Instant::now();
                    arrived
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(created.id)
                        .or_insert(now);
                }
            }
        })
    };
    // Let the watch subscribe before the first emit.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let source = steward(&http_client(1)?, &a.source_url, Some(&a.source_token))?;
    let maker = RecordMaker::new(&a.shape);
    let mut sent: Vec<(String, Instant)> = Vec::with_capacity(a.records as usize);
    let mut next = Instant::now();
    for i in 0..a.records {
        tokio::time::sleep_until(next.into()).await;
        next += Duration::from_millis(a.interval_ms);
        let started = Instant::now();
        let Emitted { record, created }: Emitted<Stored> =
            source.emit(&maker.make(i, &a.thread)).await?;
        if !created {
            bail!("emit {i} answered 200: the record was stored already");
        }
        sent.push((record.id, if a.from_ack { Instant::now() } else { started }));
    }
    let report = arrival_report(&sent, &arrived).await;
    watcher.abort();
    report
}

/// Waits up to 5 s for the last records to arrive, then times each sent record (id, when it was
/// sent) to its arrival: `{records, arrived, missing, p50_us, p90_us, p99_us, max_us, mean_us}`.
pub(crate) async fn arrival_report(
    sent: &[(String, Instant)],
    arrived: &Mutex<HashMap<String, Instant>>,
) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if arrived.lock().unwrap_or_else(|e| e.into_inner()).len() >= sent.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrived = arrived.lock().unwrap_or_else(|e| e.into_inner());
    let mut histogram = new_histogram();
    let mut missing = 0;
    for (id, started) in sent {
        match arrived.get(id) {
            Some(at) => {
                histogram.record(at.saturating_duration_since(*started).as_micros().max(1) as u64)?
            }
            None => missing += 1,
        }
    }
    Ok(json!({
        "records": sent.len(),
        "arrived": sent.len() - missing,
        "missing": missing,
        "p50_us": histogram.value_at_quantile(0.50),
        "p90_us": histogram.value_at_quantile(0.90),
        "p99_us": histogram.value_at_quantile(0.99),
        "max_us": histogram.max(),
        "mean_us": histogram.mean(),
    }))
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Records to check.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Records per page (one batch verification each).
    #[arg(long, default_value_t = 1000)]
    page: usize,
}

/// The puller's per-record CPU work before its store, on one thread: parsing sync items
/// (envelope validation, canonical JSON, id), batch signature verification, and for comparison
/// strict single verification of the same records.
pub fn verify(a: &VerifyArgs) -> Result<Value> {
    use syncropel_protocol::sync::{verify_items, PeerItem};
    use syncropel_protocol::{record_id, verify_signature, Envelope, Keypair};

    let key = Keypair::from_seed(&[9; 32]);
    let signer = key.did_key();
    let items: Vec<Value> = (0..a.records)
        .map(|i| {
            let envelope = Envelope::from_value(json!({
                "act": "DO", "actor": "did:example:bench", "thread": "th_bench_verify",
                "clock": i, "body": {"text": "lorem ipsum dolor sit amet lorem ipsum dolor sit amet", "n": i},
            }))
            .map_err(|e| anyhow::anyhow!("a bench envelope: {e}"))?;
            let canonical = envelope.canonical_json();
            let mut record: Value = serde_json::from_str(&canonical)?;
            record["sig"] = json!(key.sign_hex(canonical.as_bytes()));
            record["signer"] = json!(signer);
            Ok(json!({"id": record_id(&canonical), "record": record}))
        })
        .collect::<Result<_>>()?;

    let started = Instant::now();
    let mut parsed = Vec::with_capacity(items.len());
    for item in items {
        parsed.push(PeerItem::from_value(item).map_err(anyhow::Error::msg)?);
    }
    let parse_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut bad = 0;
    for page in parsed.chunks(a.page.max(1)) {
        bad += verify_items(page, &Default::default())
            .iter()
            .filter(|v| v.is_err())
            .count();
    }
    let batch_secs = started.elapsed().as_secs_f64();
    if bad > 0 {
        bail!("{bad} records did not verify");
    }
    let started = Instant::now();
    for item in &parsed {
        verify_signature(
            &signer,
            item.canonical.as_bytes(),
            item.sig.as_deref().unwrap_or(""),
        )?;
    }
    let single_secs = started.elapsed().as_secs_f64();
    let n = parsed.len() as f64;
    Ok(json!({
        "records": parsed.len(),
        "parse_per_sec": (n / parse_secs).round(),
        "batch_verify_per_sec": (n / batch_secs).round(),
        "single_verify_per_sec": (n / single_secs).round(),
        "parse_and_batch_per_sec": (n / (parse_secs + batch_secs)).round(),
    }))
}
