//! A rolling restart of two `steward` processes behind a load balancer, under a steady write load:
//! every acknowledged write is stored and reaches a watcher, and clients that honour
//! `retry_after_ms` (and resend an idempotent write after a broken connection) see no failed
//! request. The load and the watcher are raw HTTP clients: what they check is how connections
//! break and are retried.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use syncropel_testkit::hosted::{new_tenant_at, Balancer, Process, BASE_DOMAIN};
use syncropel_testkit::{all_records, envelope, with_test_database};
use tokio_util::sync::CancellationToken;

use crate::STEWARD_BIN;

const LABEL: &str = "rolling";
const THREAD: &str = "th_rolling";
const WRITERS: i64 = 4;
/// The drain every replica runs with: not ready but serving for `DELAY`, then `GRACE` for
/// in-flight requests.
/// Longer than the watcher's `retry_after_ms`, so that its reconnect can reach the draining
/// replica (which must send it elsewhere rather than start a stream).
const DELAY: Duration = Duration::from_secs(3);
const GRACE: Duration = Duration::from_secs(10);
const DRAIN: [&str; 4] = ["--shutdown-delay", "3s", "--shutdown-grace", "10s"];
/// Slack on top of `DELAY + GRACE` for the process to exit.
const EXIT_MARGIN: Duration = Duration::from_secs(5);
/// How long a client retries one write.
const WRITE_BUDGET: Duration = Duration::from_secs(30);
/// How long the load runs before the first restart and after each one.
const SETTLE: Duration = Duration::from_secs(2);

fn tenant_host() -> String {
    format!("{LABEL}.{BASE_DOMAIN}")
}

/// An error with its sources: reqwest's own text rarely says what broke.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// What the writers did.
#[derive(Default)]
struct Load {
    /// Acknowledged writes: the record id and the status (201 new, 200 a replay of a write
    /// applied before its connection broke).
    acked: Mutex<Vec<(String, u16)>>,
    /// Writes that did not end in 201 or 200, with their last error.
    failed: Mutex<Vec<String>>,
    /// Resends after a connection broke before an answer.
    transport_retries: AtomicU64,
    /// Resends after a 503, once its `retry_after_ms` had passed.
    unavailable_retries: AtomicU64,
}

/// Writes records to the thread until `stop`, one at a time, over one pooled client.
async fn writer(w: i64, url: String, token: String, load: Arc<Load>, stop: CancellationToken) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for k in 0.. {
        if stop.is_cancelled() {
            return;
        }
        let clock = k * WRITERS + w + 1;
        let record = envelope(THREAD, clock, json!({"writer": w, "n": k}));
        match write(&http, &url, &token, &record, &load).await {
            Ok(ack) => load.acked.lock().unwrap().push(ack),
            Err(e) => load
                .failed
                .lock()
                .unwrap()
                .push(format!("writer {w}, clock {clock}: {e}")),
        }
    }
}

/// Posts one record as a client that honours `retry_after_ms`: after a 503 it waits as told
/// (the body's `retry_after_ms`, else `Retry-After`, else a second) and resends; after a
/// connection that broke before an answer it resends after 100 ms (the write is idempotent by
/// id). Gives up after [`WRITE_BUDGET`]. The record's id and status (201 or 200), or the reason
/// it failed.
async fn write(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    record: &Value,
    load: &Load,
) -> Result<(String, u16), String> {
    let started = Instant::now();
    loop {
        let sent = http
            .post(format!("{url}/v1/records"))
            .header("host", tenant_host())
            .bearer_auth(token)
            .json(record)
            .send()
            .await;
        let (wait, error) = match sent {
            Err(e) => {
                load.transport_retries.fetch_add(1, Ordering::Relaxed);
                (
                    Duration::from_millis(100),
                    format!("transport: {}", chain(&e)),
                )
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after_header = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|secs| secs * 1000);
                match response.bytes().await {
                    // The answer was cut off: as good as none.
                    Err(e) => {
                        load.transport_retries.fetch_add(1, Ordering::Relaxed);
                        (
                            Duration::from_millis(100),
                            format!("transport (reading a {status}): {}", chain(&e)),
                        )
                    }
                    Ok(body) => {
                        let text = String::from_utf8_lossy(&body).into_owned();
                        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        match status {
                            200 | 201 => {
                                return match json["id"].as_str() {
                                    Some(id) => Ok((id.to_string(), status)),
                                    None => Err(format!("{status} without an id: {text}")),
                                }
                            }
                            503 => {
                                load.unavailable_retries.fetch_add(1, Ordering::Relaxed);
                                let ms = json["retry_after_ms"]
                                    .as_u64()
                                    .or(retry_after_header)
                                    .unwrap_or(1000);
                                (Duration::from_millis(ms), format!("503: {text}"))
                            }
                            _ => return Err(format!("{status}: {text}")),
                        }
                    }
                }
            }
        };
        if started.elapsed() + wait > WRITE_BUDGET {
            return Err(format!(
                "gave up after {:?} of retries; last: {error}",
                started.elapsed()
            ));
        }
        tokio::time::sleep(wait).await;
    }
}

/// What the watcher saw.
#[derive(Default)]
struct Watched {
    /// Record ids of `record.created` frames, in arrival order, and their event ids (sequences).
    ids: Vec<String>,
    seqs: Vec<i64>,
    shutdowns: u64,
    connects: u64,
    /// Streams that broke or ended without `server_shutdown`, and connections refused.
    drops: u64,
    /// Watches refused with 503 (retried after their `retry_after_ms`).
    unavailable: u64,
    /// `error` frames and watches refused otherwise.
    errors: Vec<String>,
}

/// Watches the thread until `stop`: on `server_shutdown` it waits `retry_after_ms` and
/// reconnects with `Last-Event-ID`; after a broken stream it reconnects after 500 ms.
async fn watcher(
    url: String,
    token: String,
    watched: Arc<Mutex<Watched>>,
    stop: CancellationToken,
) {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut last_event_id: Option<String> = None;
    loop {
        let wait = tokio::select! {
            _ = stop.cancelled() => return,
            wait = watch_once(&http, &url, &token, &mut last_event_id, &watched) => wait,
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One watch connection, read until it ends; how long to wait before the next.
async fn watch_once(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    last_event_id: &mut Option<String>,
    watched: &Mutex<Watched>,
) -> Duration {
    let retry = Duration::from_millis(500);
    let mut request = http
        .get(format!("{url}/v1/threads/{THREAD}/watch"))
        .header("host", tenant_host())
        .bearer_auth(token);
    request = match last_event_id {
        Some(id) => request.header("last-event-id", id.as_str()),
        // The first connection replays the thread from the start: nothing written before the
        // stream subscribes is missed.
        None => request.query(&[("since_clock", "0")]),
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(_) => {
            watched.lock().unwrap().drops += 1;
            return retry;
        }
    };
    let status = response.status().as_u16();
    if status != 200 {
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let mut watched = watched.lock().unwrap();
        return match status {
            503 => {
                watched.unavailable += 1;
                Duration::from_millis(body["retry_after_ms"].as_u64().unwrap_or(1000))
            }
            _ => {
                watched
                    .errors
                    .push(format!("watch answered {status}: {body}"));
                retry
            }
        };
    }
    watched.lock().unwrap().connects += 1;
    let mut stream = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            watched.lock().unwrap().drops += 1;
            return retry;
        };
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let frame = String::from_utf8_lossy(&buffer[..end]).into_owned();
            buffer.drain(..end + 2);
            let (mut event, mut data, mut id) = ("message", String::new(), None);
            for line in frame.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event = if value.is_empty() { "message" } else { value },
                    "data" => {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(value);
                    }
                    "id" => id = Some(value.to_string()),
                    _ => {} // comments (keep-alives) and retry hints
                }
            }
            if let Some(id) = &id {
                *last_event_id = Some(id.clone());
            }
            let data: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            let mut watched = watched.lock().unwrap();
            match event {
                "record.created" => {
                    watched
                        .ids
                        .push(data["id"].as_str().unwrap_or_default().to_string());
                    watched
                        .seqs
                        .push(id.and_then(|id| id.parse().ok()).unwrap_or(-1));
                }
                "server_shutdown" => {
                    watched.shutdowns += 1;
                    return Duration::from_millis(data["retry_after_ms"].as_u64().unwrap_or(1000));
                }
                "error" => {
                    watched.errors.push(format!("error frame: {data}"));
                    return retry;
                }
                _ => {} // heartbeats
            }
        }
    }
    // The stream ended without saying why.
    watched.lock().unwrap().drops += 1;
    retry
}

/// Waits (at most 30 s) until `check` (an expression, possibly awaiting) holds, polling every
/// 20 ms.
macro_rules! until {
    ($what:expr, $check:expr) => {{
        let deadline = Instant::now() + Duration::from_secs(30);
        while !$check {
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {}",
                $what
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_no_write_and_fails_no_request() {
    with_test_database(|url| async move {
        let run = Instant::now();
        let mut stewards = vec![
            Process::start_with(STEWARD_BIN, &url, &DRAIN).await,
            Process::start_with(STEWARD_BIN, &url, &DRAIN).await,
        ];
        let balancer = Balancer::start(&[&stewards[0].url, &stewards[1].url]).await;
        for steward in &stewards {
            until!("both replicas are ready", balancer.is_ready(&steward.url));
        }

        let token = new_tenant_at(&balancer.url, "acct", LABEL).await;

        let stop_watching = CancellationToken::new();
        let watched = Arc::new(Mutex::new(Watched::default()));
        let watch = tokio::spawn(watcher(
            balancer.url.clone(),
            token.clone(),
            watched.clone(),
            stop_watching.clone(),
        ));
        let stop_writing = CancellationToken::new();
        let load = Arc::new(Load::default());
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                tokio::spawn(writer(
                    w,
                    balancer.url.clone(),
                    token.clone(),
                    load.clone(),
                    stop_writing.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(SETTLE).await;

        // Restart each replica in turn, as a Deployment's rolling update does.
        let mut exits = Vec::new();
        for (i, steward) in stewards.iter_mut().enumerate() {
            let old = steward.url.clone();
            let signalled = Instant::now();
            steward.terminate();
            // Not ready, but still serving, until the delay has passed.
            let probe = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let mut not_ready = false;
            while signalled.elapsed() < DELAY {
                if let Ok(r) = probe.get(format!("{old}/ready")).send().await {
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    if status == 503 && body["code"] == "SHUTTING_DOWN" {
                        not_ready = true;
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                not_ready,
                "replica {i} never answered /ready with 503 SHUTTING_DOWN after SIGTERM"
            );
            let exit = steward.wait_exit(DELAY + GRACE + EXIT_MARGIN).await;
            let took = signalled.elapsed();
            let log = steward.log();
            let exit = exit
                .unwrap_or_else(|| panic!("replica {i} still runs {took:?} after SIGTERM:\n{log}"));
            assert!(exit.success(), "replica {i} exited with {exit}:\n{log}");
            assert!(
                took >= DELAY,
                "replica {i} exited {took:?} after SIGTERM, before its {DELAY:?} not-ready delay"
            );
            exits.push(took);

            let replacement = Process::start_with(STEWARD_BIN, &url, &DRAIN).await;
            until!("the replacement is ready", replacement.ready().await);
            balancer.replace(&old, &replacement.url);
            until!(
                "the balancer routes to the replacement",
                balancer.is_ready(&replacement.url)
            );
            *steward = replacement;
            tokio::time::sleep(SETTLE).await;
        }

        stop_writing.cancel();
        for w in writers {
            w.await.unwrap();
        }
        let failed = load.failed.lock().unwrap().clone();
        let acked = load.acked.lock().unwrap().clone();
        let acked_ids: HashSet<&str> = acked.iter().map(|(id, _)| id.as_str()).collect();

        // The watcher catches up (or 20 s pass).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen: HashSet<String> = watched.lock().unwrap().ids.iter().cloned().collect();
            if acked_ids.iter().all(|id| seen.contains(*id)) || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop_watching.cancel();
        watch.await.unwrap();
        let watched = std::mem::take(&mut *watched.lock().unwrap());

        // What the thread holds, read through the balancer.
        let http = reqwest::Client::new();
        let listing = || {
            http.get(format!("{}/v1/records", balancer.url))
                .header("host", tenant_host())
                .bearer_auth(&token)
        };
        let stored: Vec<String> = all_records(listing, Some(THREAD))
            .await
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();

        let replays = acked.iter().filter(|(_, status)| *status == 200).count();
        eprintln!(
            "rolling restart: {} acked ({} as replays), {} failed, {} transport retries, \
             {} 503 retries, {} shutdown events, {} watch connections, {} watch drops, \
             {} watches refused with 503, {} watch errors; exits after SIGTERM {:?}; connections {:?}; {:?} in all",
            acked.len(),
            replays,
            failed.len(),
            load.transport_retries.load(Ordering::Relaxed),
            load.unavailable_retries.load(Ordering::Relaxed),
            watched.shutdowns,
            watched.connects,
            watched.drops,
            watched.unavailable,
            watched.errors.len(),
            exits,
            balancer.connections(),
            run.elapsed(),
        );
        for e in &watched.errors {
            eprintln!("watch: {e}");
        }

        // No request failed.
        for f in &failed {
            eprintln!("FAILED: {f}");
        }
        assert!(
            failed.is_empty(),
            "{} writes failed (listed above)",
            failed.len()
        );
        assert!(
            acked.len() >= 200,
            "only {} writes were acknowledged",
            acked.len()
        );
        assert_eq!(
            acked_ids.len(),
            acked.len(),
            "a record was acknowledged twice"
        );

        // Every acknowledged write is stored, once, and nothing else is.
        let stored_ids: HashSet<&str> = stored.iter().map(String::as_str).collect();
        assert_eq!(stored_ids.len(), stored.len(), "a record is listed twice");
        let missing: Vec<&&str> = acked_ids
            .iter()
            .filter(|id| !stored_ids.contains(**id))
            .collect();
        assert!(
            missing.is_empty(),
            "acknowledged but not stored: {missing:?}"
        );
        let unacked: Vec<&&str> = stored_ids
            .iter()
            .filter(|id| !acked_ids.contains(**id))
            .collect();
        assert!(
            unacked.is_empty(),
            "stored but never acknowledged: {unacked:?}"
        );

        // The watcher saw every acknowledged write exactly once, in sequence order, across its
        // reconnections.
        let seen: HashSet<&str> = watched.ids.iter().map(String::as_str).collect();
        let unseen: Vec<&&str> = acked_ids.iter().filter(|id| !seen.contains(**id)).collect();
        assert!(
            unseen.is_empty(),
            "{} acknowledged records never reached the watcher: {unseen:?}",
            unseen.len()
        );
        assert_eq!(
            seen.len(),
            watched.ids.len(),
            "the watcher was sent a record twice"
        );
        assert!(
            watched.seqs.windows(2).all(|w| w[0] < w[1]),
            "the watcher's event ids do not increase"
        );
        assert!(
            watched.shutdowns >= 1,
            "the watcher was never told that its replica was shutting down"
        );
        // One `server_shutdown` per restart at most: a draining replica starts no new stream.
        assert!(
            watched.shutdowns <= 2,
            "the watcher was sent back to a draining replica ({} shutdown events)",
            watched.shutdowns
        );
    })
    .await;
}
