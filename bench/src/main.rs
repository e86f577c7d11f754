//! `syncropel-bench`: a small, lean load generator for the Syncropel steward.
//!
//! Every subcommand prints exactly one JSON object on stdout (diagnostics go to
//! stderr), so `bench/run.sh` can collect figures without extra tooling.
//!
//! - `post`: closed-loop concurrent `POST /v1/records` for a fixed duration.
//! - `batch`: closed-loop concurrent `POST /v1/records/batch` for a fixed duration.
//! - `seed`: concurrent fill of one thread with a fixed number of records.
//! - `page`: page through one thread with `limit`/`cursor` until `has_more` is false.
//! - `health`: closed-loop `GET /health`, the ceiling of the HTTP stack.
//! - `sqlite`: raw SQLite durable commit rate, the ceiling of the store.
//! - `exec`: wall time of a whole command over several runs (e.g. `spl init`).
//! - `wait-ready`: wait until `GET /health` answers 200.
//! - `hosted-provision`, `hosted-post`, `hosted-batch`: the hosted steward (many
//!   tenants over Postgres), see [`hosted`].
//! - `directory`: the did:sync directory in-process: resolves/s and signed ops/s.
//! - `discovery`: cached DID resolution and loopback mDNS discovery, see [`discovery`].
//! - `couch-post`, `couch-batch`, `couch-seed`, `couch-propagation`: the same shapes against a
//!   CouchDB-protocol server, for `bench/peers.sh`, see [`couch`].

mod baseline;
mod couch;
mod directory;
mod discovery;
mod federation;
mod hosted;
mod load;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use serde::de::IgnoredAny;
use serde_json::json;
use syncropel_client::{Client, ListParams};

use baseline::{exec_bench, sqlite_bench};
use load::{
    emitted, finish, http_client, merge, ms, new_histogram, round3, self_cpu_secs, steward,
    throughput, ErrorLog, Outcome, RecordMaker,
};

/// Highest latency the histograms track, in microseconds (60 s).
const MAX_LATENCY_US: u64 = 60_000_000;

#[derive(Parser)]
#[command(
    name = "syncropel-bench",
    version,
    about = "Load generator for the Syncropel steward"
)]
struct Cli {
    /// Tokio worker threads for the generator. The steward usually shares the
    /// machine, so keep this small.
    #[arg(long, global = true, default_value_t = 2)]
    workers: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Concurrent single-record `POST /v1/records` for a fixed duration.
    Post(PostArgs),
    /// Concurrent `POST /v1/records/batch` for a fixed duration.
    Batch(BatchArgs),
    /// Fill one thread with a fixed number of records, concurrently.
    Seed(SeedArgs),
    /// Page through one thread's records following `next_cursor`.
    Page(PageArgs),
    /// Concurrent `GET /health` for a fixed duration (HTTP stack baseline).
    Health(HealthArgs),
    /// A refusal flood: concurrent `POST /v1/records` with a bearer nobody issued, each
    /// answered `401` (the outcome counted as a success), for a fixed duration.
    Refused(HealthArgs),
    /// Raw SQLite durable commit rate (WAL, synchronous=FULL), store baseline.
    Sqlite(SqliteArgs),
    /// Time a whole command over several runs; `{i}` in an argument is
    /// replaced by the run index (warm-up runs included).
    Exec(ExecArgs),
    /// Wait until `GET /health` answers 200.
    WaitReady(WaitArgs),
    /// Hosted steward: provision tenants (`POST /provision`), each timed to its
    /// first accepted record; writes `label token` lines for the other hosted
    /// subcommands.
    HostedProvision(hosted::ProvisionArgs),
    /// Hosted steward: concurrent single-record `POST /v1/records` spread over
    /// many tenants.
    HostedPost(hosted::PostArgs),
    /// Hosted steward: concurrent `POST /v1/records/batch` spread over many
    /// tenants.
    HostedBatch(hosted::BatchArgs),
    /// Federation: time records from an emit on one steward to their arrival on a steward
    /// that pulls the thread from it.
    Propagation(federation::PropagationArgs),
    /// Federation: the puller's per-record parse and signature work on one thread (batch and
    /// single verification).
    Verify(federation::VerifyArgs),
    /// The did:sync directory, served in-process: resolves/s and signed update ops/s.
    Directory(directory::DirectoryArgs),
    /// Identity and discovery: cached DID resolution (ns/hit) and loopback mDNS discovery (ms).
    Discovery(discovery::DiscoveryArgs),
    /// CouchDB protocol: concurrent single-document `POST /{db}` for a fixed duration.
    CouchPost(couch::PostArgs),
    /// CouchDB protocol: concurrent `POST /{db}/_bulk_docs` for a fixed duration.
    CouchBatch(couch::BatchArgs),
    /// CouchDB protocol: fill a database through `_bulk_docs`.
    CouchSeed(couch::SeedArgs),
    /// CouchDB protocol: write-acknowledged to arrival on a continuously replicated database.
    CouchPropagation(couch::PropagationArgs),
}

#[derive(Args, Clone)]
struct Target {
    /// Base URL of the steward, e.g. http://127.0.0.1:7777
    #[arg(long)]
    url: String,
    /// Bearer token (sent as `Authorization: Bearer <token>`).
    #[arg(long, env = "SPL_BENCH_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Args, Clone)]
struct RecordShape {
    /// Actor of the generated records (must be allowed for the token).
    #[arg(long, default_value = "did:example:bench")]
    actor: String,
    /// Bytes of filler text in each record body.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
    /// First clock value; defaults to the current time in microseconds, so
    /// repeated runs against one store never reuse a clock.
    #[arg(long)]
    clock_base: Option<u64>,
}

#[derive(Args)]
struct PostArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    shape: RecordShape,
    /// Concurrent clients (each a closed loop over one keep-alive connection).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Measured duration.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Unmeasured warm-up before the measured window.
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Records are spread over this many threads, `th_bench_<k>`.
    #[arg(long, default_value_t = 64)]
    threads: u64,
    /// Prefix of the thread names.
    #[arg(long, default_value = "th_bench_")]
    thread_prefix: String,
}

#[derive(Args)]
struct BatchArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    shape: RecordShape,
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Records per request (the steward takes at most 1000).
    #[arg(long, default_value_t = 1000)]
    batch: u64,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Thread of the records.
    #[arg(long, default_value = "th_batch")]
    thread: String,
}

#[derive(Args)]
struct SeedArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    shape: RecordShape,
    /// The thread to fill.
    #[arg(long)]
    thread: String,
    /// How many records to write.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Stop after this many seconds even if not all records were written
    /// (0 = no bound); the output says how many were.
    #[arg(long, default_value_t = 0)]
    max_secs: u64,
}

#[derive(Args)]
struct PageArgs {
    #[command(flatten)]
    target: Target,
    /// The thread to read.
    #[arg(long)]
    thread: String,
    /// Page size (`limit=`).
    #[arg(long, default_value_t = 1000)]
    limit: u64,
    /// Full passes over the thread; the median pass (by rate) is reported.
    #[arg(long, default_value_t = 1)]
    passes: usize,
    /// Fail unless every pass returns exactly this many records.
    #[arg(long)]
    expect: Option<u64>,
}

#[derive(Args)]
struct HealthArgs {
    /// Base URL of the steward.
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 32)]
    clients: usize,
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,
    #[arg(long, default_value_t = 1)]
    warmup_secs: u64,
}

#[derive(Args)]
struct SqliteArgs {
    /// Database file to create (removed first if it exists).
    #[arg(long)]
    path: PathBuf,
    /// Measured duration.
    #[arg(long, default_value_t = 3)]
    duration_secs: u64,
    /// Rows per transaction (1 = one durable commit per row).
    #[arg(long, default_value_t = 1)]
    batch: u64,
    /// `PRAGMA synchronous` value.
    #[arg(long, default_value = "FULL")]
    synchronous: String,
}

#[derive(Args)]
struct ExecArgs {
    /// Counted runs.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Uncounted runs first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Args)]
struct WaitArgs {
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let cpu0 = self_cpu_secs();
    let wall0 = Instant::now();
    let out = match cli.cmd {
        Cmd::Exec(a) => {
            println!("{}", exec_bench(&a)?);
            return Ok(());
        }
        Cmd::Sqlite(a) => sqlite_bench(&a)?,
        Cmd::Verify(a) => federation::verify(&a)?,
        cmd => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(cli.workers.max(1))
                .enable_all()
                .build()
                .context("building the tokio runtime")?;
            rt.block_on(async move {
                match cmd {
                    Cmd::Post(a) => post_bench(a).await,
                    Cmd::Batch(a) => batch_bench(a).await,
                    Cmd::Seed(a) => seed(a).await,
                    Cmd::Page(a) => page_bench(a).await,
                    Cmd::Health(a) => health_bench(a).await,
                    Cmd::Refused(a) => refused_bench(a).await,
                    Cmd::WaitReady(a) => wait_ready(a).await,
                    Cmd::HostedProvision(a) => hosted::provision(a).await,
                    Cmd::HostedPost(a) => hosted::post(a).await,
                    Cmd::HostedBatch(a) => hosted::batch(a).await,
                    Cmd::Propagation(a) => federation::propagation(a).await,
                    Cmd::Directory(a) => directory::directory(a).await,
                    Cmd::Discovery(a) => discovery::discovery(a).await,
                    Cmd::CouchPost(a) => couch::post(a).await,
                    Cmd::CouchBatch(a) => couch::batch(a).await,
                    Cmd::CouchSeed(a) => couch::seed(a).await,
                    Cmd::CouchPropagation(a) => couch::propagation(a).await,
                    Cmd::Sqlite(_) | Cmd::Exec(_) | Cmd::Verify(_) => unreachable!("handled above"),
                }
            })?
        }
    };
    // The generator's own cost, so a run can tell how much of the shared
    // CPUs the client took from the steward.
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = match (cpu0, self_cpu_secs()) {
        (Some(a), Some(b)) => Some(round3(b - a)),
        _ => None,
    };
    let out = merge(
        out,
        json!({"gen_cpu_secs": cpu, "gen_wall_secs": round3(wall)}),
    );
    println!("{out}");
    Ok(())
}

async fn post_bench(a: PostArgs) -> Result<serde_json::Value> {
    let client = steward(
        &http_client(a.clients)?,
        &a.target.url,
        Some(&a.target.token),
    )?;
    let maker = Arc::new(RecordMaker::new(&a.shape));
    let prefix = Arc::new(a.thread_prefix.clone());
    let threads = a.threads.max(1);
    let op = move |i: u64| {
        let thread = format!("{prefix}{}", i % threads);
        let record = maker.make(i, &thread);
        let client = client.clone();
        async move { emitted(client.emit(&record).await) }
    };
    throughput("records", a.clients, a.warmup_secs, a.duration_secs, op).await
}

async fn batch_bench(a: BatchArgs) -> Result<serde_json::Value> {
    let client = steward(
        &http_client(a.clients)?,
        &a.target.url,
        Some(&a.target.token),
    )?;
    let maker = Arc::new(RecordMaker::new(&a.shape));
    let thread = Arc::new(a.thread.clone());
    let size = a.batch.clamp(1, 1000);
    let op = move |i: u64| {
        let records = (0..size)
            .map(|j| maker.make(i * size + j, &thread))
            .collect();
        let client = client.clone();
        async move {
            let batch = syncropel_api::CreateRecords { records };
            hosted::batch_outcome(client.emit_batch(&batch).await)
        }
    };
    let (t, secs) = load::closed_loop(
        a.clients,
        Duration::from_secs(a.warmup_secs),
        Duration::from_secs(a.duration_secs.max(1)),
        op,
    )
    .await?;
    Ok(load::batch_report(&t, secs, a.clients, size))
}

async fn health_bench(a: HealthArgs) -> Result<serde_json::Value> {
    let client = steward(&http_client(a.clients)?, &a.url, None)?;
    let op = move |_i: u64| {
        let client = client.clone();
        async move { finish(client.probe().await) }
    };
    throughput("requests", a.clients, a.warmup_secs, a.duration_secs, op).await
}

async fn refused_bench(a: HealthArgs) -> Result<serde_json::Value> {
    let http = http_client(a.clients)?;
    let url = format!("{}/v1/records", a.url.trim_end_matches('/'));
    let op = move |i: u64| {
        let request = http
            .post(&url)
            .bearer_auth("spl_prod_sa_nobody_00000000000000000000000000000000")
            .json(
                &serde_json::json!({"act": "DO", "actor": "did:example:flood",
                                      "thread": "th_flood", "clock": i + 1, "body": {}}),
            );
        async move {
            match request.send().await {
                Ok(answer) if answer.status() == reqwest::StatusCode::UNAUTHORIZED => {
                    // Read to the end, as a client would, so the connection is reused.
                    match answer.bytes().await {
                        Ok(_) => Outcome::Ok,
                        Err(e) => Outcome::Err(e.to_string()),
                    }
                }
                Ok(answer) => Outcome::Err(format!("HTTP {}", answer.status())),
                Err(e) => Outcome::Err(e.to_string()),
            }
        }
    };
    throughput("refusals", a.clients, a.warmup_secs, a.duration_secs, op).await
}

async fn seed(a: SeedArgs) -> Result<serde_json::Value> {
    let client = steward(
        &http_client(a.clients)?,
        &a.target.url,
        Some(&a.target.token),
    )?;
    let maker = Arc::new(RecordMaker::new(&a.shape));
    let thread = Arc::new(a.thread.clone());
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(ErrorLog::default());
    let written = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let stop_at = (a.max_secs > 0).then(|| start + Duration::from_secs(a.max_secs));
    let mut tasks = Vec::new();
    for _ in 0..a.clients.max(1) {
        let written = written.clone();
        let (client, maker, thread, next, failed, errors) = (
            client.clone(),
            maker.clone(),
            thread.clone(),
            next.clone(),
            failed.clone(),
            errors.clone(),
        );
        let total = a.records;
        tasks.push(tokio::spawn(async move {
            let mut n_err = 0u64;
            while !failed.load(Ordering::Relaxed) {
                if stop_at.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                match emitted(client.emit(&maker.make(i, &thread)).await) {
                    Outcome::Ok => {
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::Err(msg) => {
                        n_err += 1;
                        errors.note(msg);
                        failed.store(true, Ordering::Relaxed);
                    }
                    Outcome::Items { .. } => unreachable!("emitted() answers Ok or Err"),
                }
            }
            n_err
        }));
    }
    let mut n_err = 0;
    for t in tasks {
        n_err += t.await.context("seed task panicked")?;
    }
    let secs = start.elapsed().as_secs_f64();
    errors.report();
    if n_err > 0 {
        bail!("seeding failed ({n_err} errors; samples above)");
    }
    let written = written.load(Ordering::Relaxed);
    Ok(json!({
        "records": written,
        "complete": written == a.records,
        "secs": round3(secs),
        "records_per_sec": round3(written as f64 / secs),
        "errors": 0,
    }))
}

struct Pass {
    records: u64,
    pages: u64,
    secs: f64,
    hist: Histogram<u64>,
}

async fn page_pass(client: &Client, thread: &str, limit: u64) -> Result<Pass> {
    let mut params = ListParams {
        limit: Some(u32::try_from(limit).context("--limit is too large")?),
        ..ListParams::default()
    };
    let mut pass = Pass {
        records: 0,
        pages: 0,
        secs: 0.0,
        hist: new_histogram(),
    };
    let start = Instant::now();
    loop {
        let t0 = Instant::now();
        // Records are counted, not parsed: the generator must not compete with the steward.
        let page = client
            .thread_records::<IgnoredAny>(thread, &params)
            .await
            .with_context(|| format!("page {}", pass.pages + 1))?;
        pass.hist
            .saturating_record((t0.elapsed().as_micros() as u64).max(1));
        pass.pages += 1;
        pass.records += page.data.len() as u64;
        if !page.has_more {
            break;
        }
        if page.data.is_empty() {
            bail!("page {} is empty but has_more is true", pass.pages);
        }
        params.cursor = Some(
            page.next_cursor
                .ok_or_else(|| anyhow!("has_more is true but next_cursor is null"))?,
        );
    }
    pass.secs = start.elapsed().as_secs_f64();
    Ok(pass)
}

async fn page_bench(a: PageArgs) -> Result<serde_json::Value> {
    let client = steward(&http_client(1)?, &a.target.url, Some(&a.target.token))?;
    let mut passes = Vec::new();
    for _ in 0..a.passes.max(1) {
        let p = page_pass(&client, &a.thread, a.limit).await?;
        if let Some(want) = a.expect {
            if p.records != want {
                bail!("expected {want} records, the pass returned {}", p.records);
            }
        }
        passes.push(p);
    }
    let rate = |p: &Pass| p.records as f64 / p.secs;
    let all: Vec<f64> = passes.iter().map(|p| round3(rate(p))).collect();
    passes.sort_by(|x, y| rate(x).total_cmp(&rate(y)));
    let med = &passes[passes.len() / 2];
    Ok(json!({
        "records": med.records,
        "secs": round3(med.secs),
        "records_per_sec": round3(rate(med)),
        "pages": med.pages,
        "page_p50_ms": ms(med.hist.value_at_quantile(0.5)),
        "page_p99_ms": ms(med.hist.value_at_quantile(0.99)),
        "passes_records_per_sec": all,
    }))
}

async fn wait_ready(a: WaitArgs) -> Result<serde_json::Value> {
    let client = steward(&http_client(1)?, &a.url, None)?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(a.timeout_secs);
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(2), client.probe()).await {
            Ok(Ok(())) => {
                return Ok(json!({"ready": true, "secs": round3(start.elapsed().as_secs_f64())}));
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "no answer within 2 s".into(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "{}/health not ready after {}s: {last}",
        a.url.trim_end_matches('/'),
        a.timeout_secs
    )
}

// ---------------------------------------------------------------------------
// Baselines without HTTP
