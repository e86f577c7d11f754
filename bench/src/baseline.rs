//! Measurements without a steward, the ceilings the steward's figures are read against: raw
//! SQLite durable commits, and the wall time of whole commands (`spl init`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use crate::load::{ms, new_histogram, round3};
use crate::{ExecArgs, SqliteArgs};

pub(crate) fn sqlite_bench(a: &SqliteArgs) -> Result<serde_json::Value> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = a.path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    let sync = a.synchronous.to_ascii_uppercase();
    if !["OFF", "NORMAL", "FULL", "EXTRA"].contains(&sync.as_str()) {
        bail!("--synchronous must be OFF, NORMAL, FULL or EXTRA");
    }
    let mut conn = rusqlite::Connection::open(&a.path)
        .with_context(|| format!("opening {}", a.path.display()))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync};
         CREATE TABLE records (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
           thread TEXT NOT NULL, clock INTEGER NOT NULL, body TEXT NOT NULL);"
    ))?;
    let body = "x".repeat(400);
    let batch = a.batch.max(1);
    let mut hist = new_histogram();
    let mut rows = 0u64;
    let mut commits = 0u64;
    let start = Instant::now();
    let end = start + Duration::from_secs(a.duration_secs.max(1));
    while Instant::now() < end {
        let t0 = Instant::now();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO records (id, thread, clock, body) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for _ in 0..batch {
                let id = format!("{rows:064x}");
                stmt.execute(rusqlite::params![id, "th_bench", rows as i64, body])?;
                rows += 1;
            }
        }
        tx.commit()?;
        commits += 1;
        hist.saturating_record((t0.elapsed().as_micros() as u64).max(1));
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(json!({
        "journal_mode": mode,
        "synchronous": sync,
        "batch": batch,
        "commits": commits,
        "rows": rows,
        "secs": round3(secs),
        "commits_per_sec": round3(commits as f64 / secs),
        "rows_per_sec": round3(rows as f64 / secs),
        "commit_p50_ms": ms(hist.value_at_quantile(0.5)),
        "commit_p99_ms": ms(hist.value_at_quantile(0.99)),
    }))
}

pub(crate) fn exec_bench(a: &ExecArgs) -> Result<serde_json::Value> {
    let (prog, args) = a
        .command
        .split_first()
        .ok_or_else(|| anyhow!("no command given"))?;
    let mut times = Vec::with_capacity(a.runs);
    for i in 0..a.warmup + a.runs.max(1) {
        let idx = i.to_string();
        let args: Vec<String> = args.iter().map(|s| s.replace("{i}", &idx)).collect();
        let t0 = Instant::now();
        let out = Command::new(prog)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("starting {prog}"))?;
        let el = t0.elapsed();
        if !out.status.success() {
            bail!(
                "run {i} of {prog} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if i >= a.warmup {
            times.push(el.as_secs_f64() * 1000.0);
        }
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    times.sort_by(f64::total_cmp);
    let median = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };
    Ok(json!({
        "runs": times.len(),
        "min_ms": round3(times[0]),
        "median_ms": round3(median),
        "mean_ms": round3(mean),
        "max_ms": round3(times[times.len() - 1]),
    }))
}
