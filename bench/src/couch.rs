//! The CouchDB replication protocol side of `bench/peers.sh`: the same shapes the steward is
//! measured on, sent to a CouchDB-protocol server (PouchDB Server). Each document is the very
//! JSON envelope the steward's runs send as a record, so both sides receive the same bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::load::{
    batch_report, closed_loop, http_client, round3, short, throughput, Outcome, RecordMaker,
};
use crate::RecordShape;

#[derive(Args)]
pub struct PostArgs {
    /// The database, e.g. http://127.0.0.1:5984/bench (created if missing).
    #[arg(long)]
    db: String,
    #[command(flatten)]
    shape: RecordShape,
    #[arg(long, default_value_t = 32)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
}

#[derive(Args)]
pub struct BatchArgs {
    #[command(flatten)]
    post: PostArgs,
    /// Documents per `_bulk_docs` request.
    #[arg(long, default_value_t = 1000)]
    batch: u64,
}

#[derive(Args)]
pub struct SeedArgs {
    #[arg(long)]
    db: String,
    #[command(flatten)]
    shape: RecordShape,
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Documents per `_bulk_docs` request.
    #[arg(long, default_value_t = 1000)]
    batch: u64,
    #[arg(long, default_value_t = 4)]
    clients: usize,
}

#[derive(Args)]
pub struct PropagationArgs {
    /// The database documents are written to.
    #[arg(long)]
    source_db: String,
    /// The database a continuous replication fills from the source.
    #[arg(long)]
    sink_db: String,
    #[arg(long, default_value_t = 1000)]
    records: u64,
    /// Pause between writes, in milliseconds.
    #[arg(long, default_value_t = 20)]
    interval_ms: u64,
    #[command(flatten)]
    shape: RecordShape,
}

/// The thread a document names; only a field of the document for CouchDB.
const THREAD: &str = "th_couch";

/// Creates the database if it does not exist (`412` means it does).
async fn ensure_db(http: &reqwest::Client, db: &str) -> Result<()> {
    let answer = http.put(db).send().await.context("PUT database")?;
    match answer.status().as_u16() {
        201 | 202 | 412 => Ok(()),
        s => bail!("PUT {db} answered {s}: {}", answer.text().await?),
    }
}

/// Reads an answer to its end (so the connection is reused) and classifies it.
async fn created(answer: reqwest::Result<reqwest::Response>) -> Outcome {
    match answer {
        Ok(a) if a.status().as_u16() == 201 => match a.bytes().await {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Err(short(&e)),
        },
        Ok(a) => Outcome::Err(format!("HTTP {}", a.status())),
        Err(e) => Outcome::Err(short(&e)),
    }
}

/// Concurrent single-document `POST /{db}` for a fixed duration.
pub async fn post(a: PostArgs) -> Result<Value> {
    let http = http_client(a.clients)?;
    ensure_db(&http, &a.db).await?;
    let maker = Arc::new(RecordMaker::new(&a.shape));
    let db = Arc::new(a.db.clone());
    let op = move |i: u64| {
        let request = http.post(db.as_str()).json(&maker.make(i, THREAD));
        async move { created(request.send().await).await }
    };
    throughput("records", a.clients, a.warmup_secs, a.duration_secs, op).await
}

/// One `_bulk_docs` answer: an array with `ok: true` for each document written.
#[derive(Deserialize)]
struct BulkItem {
    #[serde(default)]
    ok: bool,
    error: Option<String>,
}

async fn bulk(http: &reqwest::Client, db: &str, docs: Vec<Value>) -> Outcome {
    let answer = http
        .post(format!("{db}/_bulk_docs"))
        .json(&json!({ "docs": docs }))
        .send()
        .await;
    let items: Vec<BulkItem> = match answer {
        Ok(a) if a.status().as_u16() == 201 => match a.json().await {
            Ok(items) => items,
            Err(e) => return Outcome::Err(short(&e)),
        },
        Ok(a) => return Outcome::Err(format!("HTTP {}", a.status())),
        Err(e) => return Outcome::Err(short(&e)),
    };
    let ok = items.iter().filter(|i| i.ok).count() as u64;
    Outcome::Items {
        ok,
        failed: items.len() as u64 - ok,
        sample: items.iter().find_map(|i| i.error.clone()),
    }
}

/// Concurrent `_bulk_docs` of `batch` documents for a fixed duration.
pub async fn batch(a: BatchArgs) -> Result<Value> {
    let p = a.post;
    let http = http_client(p.clients)?;
    ensure_db(&http, &p.db).await?;
    let maker = Arc::new(RecordMaker::new(&p.shape));
    let db = Arc::new(p.db.clone());
    let size = a.batch.max(1);
    let op = move |i: u64| {
        let docs = (0..size)
            .map(|j| maker.make(i * size + j, THREAD))
            .collect();
        let (http, db) = (http.clone(), db.clone());
        async move { bulk(&http, &db, docs).await }
    };
    let (t, secs) = closed_loop(
        p.clients,
        Duration::from_secs(p.warmup_secs),
        Duration::from_secs(p.duration_secs.max(1)),
        op,
    )
    .await?;
    Ok(batch_report(&t, secs, p.clients, size))
}

/// Fills a database with `records` documents through `_bulk_docs`.
pub async fn seed(a: SeedArgs) -> Result<Value> {
    let http = http_client(a.clients)?;
    ensure_db(&http, &a.db).await?;
    let maker = Arc::new(RecordMaker::new(&a.shape));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let size = a.batch.max(1);
    let mut tasks = Vec::new();
    for _ in 0..a.clients.max(1) {
        let (http, maker, next, db) = (http.clone(), maker.clone(), next.clone(), a.db.clone());
        let total = a.records;
        tasks.push(tokio::spawn(async move {
            let mut written = 0u64;
            loop {
                let from = next.fetch_add(size, Ordering::Relaxed);
                if from >= total {
                    return Ok(written);
                }
                let docs = (from..(from + size).min(total))
                    .map(|i| maker.make(i, THREAD))
                    .collect();
                match bulk(&http, &db, docs).await {
                    Outcome::Items { ok, failed: 0, .. } => written += ok,
                    Outcome::Items { sample, .. } => bail!("a seed batch failed: {sample:?}"),
                    Outcome::Err(e) => bail!("a seed batch failed: {e}"),
                    Outcome::Ok => unreachable!("bulk() answers Items or Err"),
                }
            }
        }));
    }
    let mut written = 0;
    for t in tasks {
        written += t.await.context("seed task panicked")??;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(json!({
        "records": written,
        "secs": round3(secs),
        "records_per_sec": round3(written as f64 / secs),
    }))
}

/// One line of a continuous `_changes` feed (heartbeats are empty lines).
#[derive(Deserialize)]
struct Change {
    id: String,
}

#[derive(Deserialize)]
struct Written {
    id: String,
}

/// Writes `records` documents on the source, `interval_ms` apart, and times each from its write's
/// acknowledgement to its line on the sink's continuous `_changes` feed (sent after the sink
/// stored it), as the steward's propagation run does with `--from-ack`. Latencies in
/// microseconds.
pub async fn propagation(a: PropagationArgs) -> Result<Value> {
    // The feed stays open, so it needs a client without the runs' request timeout.
    let feed_http = reqwest::Client::builder().http1_only().build()?;
    let http = http_client(1)?;
    ensure_db(&http, &a.source_db).await?;
    ensure_db(&http, &a.sink_db).await?;
    let feed = feed_http
        .get(format!(
            "{}/_changes?feed=continuous&since=now&heartbeat=5000",
            a.sink_db
        ))
        .send()
        .await
        .context("opening the sink's _changes feed")?;
    if !feed.status().is_success() {
        bail!("the sink's _changes feed answered {}", feed.status());
    }
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watcher = {
        let arrived = arrived.clone();
        tokio::spawn(async move {
            let mut bytes = feed.bytes_stream();
            let mut line = Vec::new();
            while let Some(Ok(chunk)) = bytes.next().await {
                for b in chunk {
                    if b != b'\n' {
                        line.push(b);
                        continue;
                    }
                    if let Ok(change) = serde_json::from_slice::<Change>(&line) {
                        let now = Instant::now();
                        arrived
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(change.id)
                            .or_insert(now);
                    }
                    line.clear();
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let maker = RecordMaker::new(&a.shape);
    let mut sent: Vec<(String, Instant)> = Vec::with_capacity(a.records as usize);
    let mut next = Instant::now();
    for i in 0..a.records {
        tokio::time::sleep_until(next.into()).await;
        next += Duration::from_millis(a.interval_ms);
        let answer = http
            .post(&a.source_db)
            .json(&maker.make(i, THREAD))
            .send()
            .await?;
        if answer.status().as_u16() != 201 {
            bail!("write {i} answered {}", answer.status());
        }
        let written: Written = answer.json().await?;
        sent.push((written.id, Instant::now()));
    }
    let report = crate::federation::arrival_report(&sent, &arrived).await;
    watcher.abort();
    report
}
