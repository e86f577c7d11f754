//! Load for the hosted steward (`steward`, many tenants over Postgres), addressed
//! by path prefix (`--path-prefix /t`): tenants live under `<url>/t/<label>/…`
//! and the platform's provisioning API at `<url>/provision`.
//!
//! - `hosted-provision`: `POST /provision` with a platform JWT (HS256), then at
//!   once `POST /t/<label>/v1/records` with the new tenant's bootstrap token;
//!   times both the provisioning call and the whole way to the first `201`.
//!   Writes `label token` lines for the other two subcommands.
//! - `hosted-post`: closed-loop single-record writes spread over the tenants.
//! - `hosted-batch`: closed-loop `POST /v1/records/batch` spread over the tenants.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::de::IgnoredAny;
use serde::Serialize;
use serde_json::json;
use syncropel_api::{BatchResult, CreateRecords, ProvisionRequest};
use syncropel_client::{Client, ClientError};

use crate::load::{
    closed_loop, emitted, finish, http_client, merge, ms, new_histogram, now_micros, round3, short,
    steward, ErrorLog, Outcome, RecordMaker,
};
use crate::RecordShape;

/// `body.kind` of every generated record.
const KIND: &str = "bench.item.v1";

#[derive(Args, Clone)]
pub struct HostedTarget {
    /// Base URL of the hosted steward, e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
    /// The steward's `--path-prefix`: tenants are `<url><prefix>/<label>/…`.
    #[arg(long, default_value = "/t")]
    path_prefix: String,
}

impl HostedTarget {
    /// Where the tenant `label` answers: `<url><prefix>/<label>`.
    fn tenant_url(&self, label: &str) -> String {
        format!(
            "{}{}/{label}",
            self.url.trim_end_matches('/'),
            self.path_prefix.trim_end_matches('/')
        )
    }
}

#[derive(Args)]
pub struct ProvisionArgs {
    #[command(flatten)]
    target: HostedTarget,
    #[command(flatten)]
    shape: RecordShape,
    /// HS256 secret shared with the steward (`--jwt-secret`).
    #[arg(long, env = "SPL_BENCH_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// `iss` of the platform JWTs (the steward's `--jwt-issuer`).
    #[arg(long, default_value = "bench-platform")]
    jwt_issuer: String,
    /// `aud` of the platform JWTs (the steward's `--jwt-audience`).
    #[arg(long, default_value = "syncropel-steward")]
    jwt_audience: String,
    /// The steward's `--token-env`: bootstrap tokens read `spl_<env>_sa-bootstrap-env_<secret>`.
    #[arg(long, default_value = "prod")]
    token_env: String,
    /// Tenants to provision.
    #[arg(long, default_value_t = 100)]
    count: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Labels are `<prefix><n>` for n in start..start+count.
    #[arg(long, default_value = "bench-")]
    label_prefix: String,
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Platform accounts (JWT `sub`) the tenants are spread over; 0 gives every
    /// tenant its own account, as signups would.
    #[arg(long, default_value_t = 0)]
    accounts: u64,
    /// Write `label token` lines of the provisioned tenants here (in label order).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Stop starting new tenants after this many seconds (0 = no bound); the
    /// output says how many were made.
    #[arg(long, default_value_t = 0)]
    max_secs: u64,
    /// Count a tenant as failed if its first record is not accepted this long
    /// after the provisioning answered.
    #[arg(long, default_value_t = 10)]
    first_record_timeout_secs: u64,
}

/// The tenants a load is spread over.
#[derive(Args)]
struct TenantFile {
    /// `label token` lines, as written by `hosted-provision --out`.
    #[arg(long)]
    tenants: PathBuf,
    /// Use the first this many tenants of the file.
    #[arg(long, default_value_t = 100)]
    tenant_count: usize,
}

#[derive(Args)]
pub struct PostArgs {
    #[command(flatten)]
    target: HostedTarget,
    #[command(flatten)]
    shape: RecordShape,
    #[command(flatten)]
    tenants: TenantFile,
    /// Concurrent clients; request i goes to tenant i mod tenants.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Threads per tenant the records are spread over.
    #[arg(long, default_value_t = 4)]
    threads: u64,
    #[arg(long, default_value = "th_bench_")]
    thread_prefix: String,
}

#[derive(Args)]
pub struct BatchArgs {
    #[command(flatten)]
    target: HostedTarget,
    #[command(flatten)]
    shape: RecordShape,
    #[command(flatten)]
    tenants: TenantFile,
    /// Concurrent clients; request i goes to tenant i mod tenants.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Records per request (the steward takes at most 1000).
    #[arg(long, default_value_t = 500)]
    batch: u64,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Threads per tenant the records of a batch are spread over.
    #[arg(long, default_value_t = 4)]
    threads: u64,
    #[arg(long, default_value = "th_batch_")]
    thread_prefix: String,
}

/// p50/p90/p99/max of a histogram as `<prefix>_p50_ms`, ….
fn quantiles_json(prefix: &str, h: &Histogram<u64>) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (name, q) in [("p50", 0.50), ("p90", 0.90), ("p99", 0.99)] {
        let v = (!h.is_empty()).then(|| ms(h.value_at_quantile(q)));
        m.insert(format!("{prefix}_{name}_ms"), json!(v));
    }
    let max = (!h.is_empty()).then(|| ms(h.max()));
    m.insert(format!("{prefix}_max_ms"), json!(max));
    serde_json::Value::Object(m)
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// A client of each tenant of the file, all over `http`.
fn load_tenants(
    http: &reqwest::Client,
    target: &HostedTarget,
    file: &TenantFile,
) -> Result<Vec<Client>> {
    let (path, count) = (&file.tenants, file.tenant_count);
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the tenants file {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((label, token)) = line.split_once(' ') else {
            bail!("{}:{}: expected `label token`", path.display(), n + 1);
        };
        out.push(steward(http, &target.tenant_url(label), Some(token))?);
        if out.len() == count {
            break;
        }
    }
    if out.is_empty() {
        bail!("no tenants in {}", path.display());
    }
    if out.len() < count {
        eprintln!(
            "syncropel-bench: only {} tenants in {} (asked for {count})",
            out.len(),
            path.display()
        );
    }
    Ok(out)
}

/// Per-client results of `hosted-provision`.
struct ProvTally {
    made: Vec<(u64, String, String)>,
    errors: u64,
    retries: u64,
    e2e: Histogram<u64>,
    provision: Histogram<u64>,
    first_record: Histogram<u64>,
}

pub async fn provision(a: ProvisionArgs) -> Result<serde_json::Value> {
    if a.jwt_secret.len() < 32 {
        bail!("--jwt-secret must be at least 32 bytes (as the steward requires)");
    }
    let a = Arc::new(a);
    let key = Arc::new(EncodingKey::from_secret(a.jwt_secret.as_bytes()));
    let http = http_client(a.clients)?;
    let maker = Arc::new(RecordMaker::new(&a.shape).with_kind(KIND));
    // Distinguishes the secrets and idempotency keys of separate runs.
    let nonce = now_micros();
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(ErrorLog::default());
    let start = Instant::now();
    let stop_at = (a.max_secs > 0).then(|| start + Duration::from_secs(a.max_secs));
    let mut tasks = Vec::new();
    for _ in 0..a.clients.max(1) {
        let (http, a, key, maker, next, stop, errors) = (
            http.clone(),
            a.clone(),
            key.clone(),
            maker.clone(),
            next.clone(),
            stop.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut t = ProvTally {
                made: Vec::new(),
                errors: 0,
                retries: 0,
                e2e: new_histogram(),
                provision: new_histogram(),
                first_record: new_histogram(),
            };
            loop {
                if stop.load(Ordering::Relaxed) || stop_at.is_some_and(|s| Instant::now() >= s) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= a.count {
                    break;
                }
                let n = a.start + i;
                let label = format!("{}{n}", a.label_prefix);
                let account = if a.accounts == 0 {
                    format!("bench-acct-{label}")
                } else {
                    format!("bench-acct-{}", n % a.accounts)
                };
                let secret = format!("bt{nonce:x}x{n:08}");
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let claims = Claims {
                    sub: &account,
                    iss: &a.jwt_issuer,
                    aud: &a.jwt_audience,
                    iat: now,
                    exp: now + 600,
                };
                let jwt = match encode(&Header::new(Algorithm::HS256), &claims, &key) {
                    Ok(j) => j,
                    Err(e) => {
                        errors.note(format!("signing a JWT: {e}"));
                        t.errors += 1;
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                };
                let token = format!("spl_{}_sa-bootstrap-env_{secret}", a.token_env);
                let (Ok(platform), Ok(tenant)) = (
                    steward(&http, &a.target.url, Some(&jwt)),
                    steward(&http, &a.target.tenant_url(&label), Some(&token)),
                ) else {
                    errors.note("a token is not a valid header value".into());
                    t.errors += 1;
                    stop.store(true, Ordering::Relaxed);
                    break;
                };
                let request = ProvisionRequest {
                    label: label.clone(),
                    bootstrap_token: secret,
                    recovery_key: None,
                };
                let t0 = Instant::now();
                let provisioned = platform
                    .provision(&format!("bench-{nonce:x}-{label}"), &request)
                    .await;
                if let Outcome::Err(msg) = finish(provisioned) {
                    errors.note(format!("POST /provision ({label}): {msg}"));
                    t.errors += 1;
                    continue;
                }
                let t_prov = t0.elapsed();
                // The first record, at once; retried (with a fresh clock) until
                // accepted or the timeout, so a tenant that opens late shows up as
                // retries and latency rather than as a failure.
                let deadline = Instant::now() + Duration::from_secs(a.first_record_timeout_secs);
                let mut attempt = 0u64;
                let accepted = loop {
                    let record = maker.make(n * 1000 + attempt.min(999), "th_bench_first");
                    match emitted(tenant.emit(&record).await) {
                        Outcome::Ok => break true,
                        Outcome::Err(msg) => {
                            errors.note(format!("first record ({label}): {msg}"));
                            attempt += 1;
                            t.retries += 1;
                            if Instant::now() >= deadline {
                                break false;
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Outcome::Items { .. } => unreachable!("emitted() answers Ok or Err"),
                    }
                };
                if !accepted {
                    t.errors += 1;
                    continue;
                }
                let t_e2e = t0.elapsed();
                let us = |d: Duration| (d.as_micros() as u64).max(1);
                t.provision.saturating_record(us(t_prov));
                t.e2e.saturating_record(us(t_e2e));
                t.first_record.saturating_record(us(t_e2e - t_prov));
                t.made.push((n, label, token));
            }
            t
        }));
    }
    let mut made = Vec::new();
    let (mut n_err, mut retries) = (0u64, 0u64);
    let (mut e2e, mut prov, mut first) = (new_histogram(), new_histogram(), new_histogram());
    for task in tasks {
        let t = task.await.context("provisioning task panicked")?;
        made.extend(t.made);
        n_err += t.errors;
        retries += t.retries;
        e2e.add(&t.e2e).context("merging histograms")?;
        prov.add(&t.provision).context("merging histograms")?;
        first.add(&t.first_record).context("merging histograms")?;
    }
    let secs = start.elapsed().as_secs_f64();
    errors.report();
    made.sort_by_key(|m| m.0);
    if let Some(path) = &a.out {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        for (_, label, token) in &made {
            writeln!(f, "{label} {token}")?;
        }
        f.flush()?;
    }
    if made.is_empty() && n_err > 0 {
        bail!("every provisioning failed ({n_err} errors; samples above)");
    }
    let report = json!({
        "tenants": made.len(),
        "requested": a.count,
        "complete": made.len() as u64 == a.count,
        "errors": n_err,
        "first_record_retries": retries,
        "clients": a.clients,
        "secs": round3(secs),
        "tenants_per_sec": round3(made.len() as f64 / secs),
    });
    let report = merge(report, quantiles_json("e2e", &e2e));
    let report = merge(report, quantiles_json("provision", &prov));
    Ok(merge(report, quantiles_json("first_record", &first)))
}

pub async fn post(a: PostArgs) -> Result<serde_json::Value> {
    let tenants = Arc::new(load_tenants(
        &http_client(a.clients)?,
        &a.target,
        &a.tenants,
    )?);
    let maker = Arc::new(RecordMaker::new(&a.shape).with_kind(KIND));
    let prefix = Arc::new(a.thread_prefix.clone());
    let threads = a.threads.max(1);
    let n = tenants.len() as u64;
    let op = move |i: u64| {
        let tenant = tenants[(i % n) as usize].clone();
        let thread = format!("{prefix}{}", (i / n) % threads);
        let record = maker.make(i, &thread);
        async move { emitted(tenant.emit(&record).await) }
    };
    let (t, secs) = closed_loop(
        a.clients,
        Duration::from_secs(a.warmup_secs),
        Duration::from_secs(a.duration_secs.max(1)),
        op,
    )
    .await?;
    let report = json!({
        "records": t.ok,
        "secs": secs,
        "records_per_sec": round3(t.ok as f64 / secs),
        "errors": t.errors,
        "clients": a.clients,
        "tenants": n,
    });
    Ok(merge(report, quantiles_json("latency", &t.hist)))
}

/// A batch answered as a whole: its items counted, the first refusal kept as a sample.
pub(crate) fn batch_outcome(answer: Result<BatchResult<IgnoredAny>, ClientError>) -> Outcome {
    let result = match answer {
        Ok(result) => result,
        Err(e) => return Outcome::Err(short(&e)),
    };
    let mut ok = 0;
    let mut sample = None;
    for item in &result.data {
        if item.status == 201 {
            ok += 1;
        } else if sample.is_none() {
            let error = item
                .error
                .as_ref()
                .and_then(|e| serde_json::to_string(e).ok())
                .unwrap_or_default();
            sample = Some(format!(
                "batch item status {}: {}",
                item.status,
                short(&error)
            ));
        }
    }
    Outcome::Items {
        ok,
        failed: result.data.len() as u64 - ok,
        sample,
    }
}

pub async fn batch(a: BatchArgs) -> Result<serde_json::Value> {
    let tenants = Arc::new(load_tenants(
        &http_client(a.clients)?,
        &a.target,
        &a.tenants,
    )?);
    let maker = Arc::new(RecordMaker::new(&a.shape).with_kind(KIND));
    let prefix = Arc::new(a.thread_prefix.clone());
    let threads = a.threads.max(1);
    let size = a.batch.clamp(1, 1000);
    let n = tenants.len() as u64;
    let bytes_seen = Arc::new(Mutex::new(0usize));
    let op = {
        let bytes_seen = bytes_seen.clone();
        move |i: u64| {
            let tenant = tenants[(i % n) as usize].clone();
            let records = (0..size)
                .map(|j| maker.make(i * size + j, &format!("{prefix}{}", j % threads)))
                .collect();
            let batch = CreateRecords { records };
            // Sized once: the batches differ only in a few digits of their counters, and
            // serializing every one twice would take CPU from the steward.
            if i == 0 {
                if let (Ok(mut seen), Ok(body)) = (bytes_seen.lock(), serde_json::to_vec(&batch)) {
                    *seen = body.len();
                }
            }
            async move { batch_outcome(tenant.emit_batch(&batch).await) }
        }
    };
    let (t, secs) = closed_loop(
        a.clients,
        Duration::from_secs(a.warmup_secs),
        Duration::from_secs(a.duration_secs.max(1)),
        op,
    )
    .await?;
    let body_bytes = *bytes_seen.lock().unwrap_or_else(|e| e.into_inner());
    let report = json!({
        "records": t.items,
        "secs": secs,
        "records_per_sec": round3(t.items as f64 / secs),
        "record_errors": t.item_errors,
        "requests": t.ok,
        "requests_per_sec": round3(t.ok as f64 / secs),
        "errors": t.errors,
        "clients": a.clients,
        "batch": size,
        "request_bytes": body_bytes,
        "tenants": n,
    });
    Ok(merge(report, quantiles_json("latency", &t.hist)))
}
