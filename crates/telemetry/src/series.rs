//! The steward's named metric series, defined once so that their names and labels never drift
//! between the parts that record them (request latency comes from [`crate::http`]). Series are
//! labelled by kind, never by tenant, so their number stays small on a platform of many tenants;
//! sync lag is per pair, which a peer only has by pairing.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry::metrics::{Counter, Gauge, Histogram, ObservableGauge};
use opentelemetry::KeyValue;

struct Instruments {
    ingested: Counter<u64>,
    provisioning: Histogram<f64>,
    active_tenants: Gauge<u64>,
    connections_refused: Counter<u64>,
    quarantine_dropped: Counter<u64>,
    relay_outbox_refusals: Counter<u64>,
    relay_envelopes_rejected: Counter<u64>,
    relay_pulled: Counter<u64>,
    relay_duplicates: Counter<u64>,
    _relay_outbox_behind: ObservableGauge<u64>,
    _relay_outbox_stalled: ObservableGauge<u64>,
    _sync_lag: ObservableGauge<f64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = crate::metrics::meter();
        Instruments {
            ingested: meter
                .u64_counter("syncropel_records_ingested")
                .with_description("Records stored for the first time, by how they came (api, sync)")
                .build(),
            provisioning: meter
                .f64_histogram("syncropel_provisioning_duration")
                .with_unit("s")
                .with_description("Time to provision a tenant, by outcome")
                .with_boundaries(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
                .build(),
            active_tenants: meter
                .u64_gauge("syncropel_active_tenants")
                .with_description("Tenants whose status is active")
                .build(),
            connections_refused: meter
                .u64_counter("syncropel_connections_refused")
                .with_description(
                    "Connections closed as they arrived, by the cap they met (total, address)",
                )
                .build(),
            quarantine_dropped: meter
                .u64_counter("syncropel_quarantine_dropped")
                .with_description(
                    "Quarantined records dropped, oldest first, from tenants past their cap",
                )
                .build(),
            relay_outbox_refusals: meter
                .u64_counter("relay_outbox_refusals")
                .with_description(
                    "Deposits at a relay that failed, by the relay's code or the failure's class",
                )
                .build(),
            relay_envelopes_rejected: meter
                .u64_counter("relay_envelopes_rejected")
                .with_description("Envelopes pulled from a relay and discarded whole, by why")
                .build(),
            relay_pulled: meter
                .u64_counter("relay_pulled_records")
                .with_description("Records stored for the first time from a relay")
                .build(),
            relay_duplicates: meter
                .u64_counter("relay_duplicate_records")
                .with_description("Records a relay delivered that this steward held already")
                .build(),
            _relay_outbox_behind: meter
                .u64_observable_gauge("relay_outbox_behind")
                .with_description(
                    "Relay outbox rows (a peer's thread at a relay) not deposited up to the log's end: \
                     more waiting, or failing and backing off",
                )
                .with_callback(|observer| observer.observe(relay_outbox_totals().0, &[]))
                .build(),
            _relay_outbox_stalled: meter
                .u64_observable_gauge("relay_outbox_stalled")
                .with_description("Relay outbox rows without progress for 7 days (still retrying)")
                .with_callback(|observer| observer.observe(relay_outbox_totals().1, &[]))
                .build(),
            _sync_lag: meter
                .f64_observable_gauge("syncropel_sync_lag")
                .with_unit("s")
                .with_description(
                    "Per pair: how long since this steward last held everything the peer had \
                     on its slowest thread (0 while caught up)",
                )
                .with_callback(|observer| {
                    for (pair, lag) in sync_lag_by_pair() {
                        observer.observe(lag.as_secs_f64(), &[KeyValue::new("pair", pair)]);
                    }
                })
                .build(),
        }
    })
}

/// Counts records stored for the first time; `via` is `api` or `sync`.
pub fn records_ingested(via: &'static str, count: usize) {
    if count > 0 {
        instruments()
            .ingested
            .add(count as u64, &[KeyValue::new("via", via)]);
    }
}

/// Records how long a provisioning took; `outcome` is `created`, `existing` or `failed`.
pub fn provisioned(elapsed: Duration, outcome: &'static str) {
    instruments()
        .provisioning
        .record(elapsed.as_secs_f64(), &[KeyValue::new("outcome", outcome)]);
}

pub fn active_tenants(count: u64) {
    instruments().active_tenants.record(count, &[]);
}

/// Counts quarantined records dropped to keep a tenant's quarantine within its cap.
pub fn quarantine_dropped(count: usize) {
    if count > 0 {
        instruments().quarantine_dropped.add(count as u64, &[]);
    }
}

/// Counts a deposit at a relay that failed; `code` is the relay's error code or the class of
/// the failure.
pub fn relay_outbox_refused(code: &str) {
    instruments()
        .relay_outbox_refusals
        .add(1, &[KeyValue::new("code", code.to_string())]);
}

/// Counts an envelope pulled from a relay and discarded whole.
pub fn relay_envelope_rejected(code: &'static str) {
    instruments()
        .relay_envelopes_rejected
        .add(1, &[KeyValue::new("code", code)]);
}

/// Counts what one pull from a relay stored and what it held already.
pub fn relay_pulled(stored: usize, duplicates: usize) {
    let instruments = instruments();
    instruments.relay_pulled.add(stored as u64, &[]);
    instruments.relay_duplicates.add(duplicates as u64, &[]);
}

/// The relay outbox rows of each tenant (kept here, summed when read, so that no series is
/// labelled by tenant): how many are behind, and how many stalled.
fn relay_outbox_rows() -> &'static Mutex<HashMap<String, (u64, u64)>> {
    static ROWS: OnceLock<Mutex<HashMap<String, (u64, u64)>>> = OnceLock::new();
    ROWS.get_or_init(Mutex::default)
}

fn relay_outbox_totals() -> (u64, u64) {
    let rows = relay_outbox_rows()
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    rows.values().fold((0, 0), |(behind, stalled), (b, s)| {
        (behind + b, stalled + s)
    })
}

/// Records a tenant's relay outbox after a pass: rows behind, rows stalled.
pub fn relay_outbox(tenant: &str, behind: u64, stalled: u64) {
    instruments();
    let mut rows = relay_outbox_rows()
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if behind == 0 && stalled == 0 {
        rows.remove(tenant);
    } else {
        rows.insert(tenant.to_string(), (behind, stalled));
    }
}

/// Counts a connection closed at a cap; `cap` is `total` or `address`.
pub fn connection_refused(cap: &'static str) {
    instruments()
        .connections_refused
        .add(1, &[KeyValue::new("cap", cap)]);
}

/// Where each pull job stands: `None` while caught up, else since when it has not been.
#[derive(Default)]
struct Lag {
    jobs: HashMap<(String, String), Option<Instant>>,
}

static LAG: OnceLock<Mutex<Lag>> = OnceLock::new();

/// The pull jobs' lag, with the gauge that reports it registered.
fn lag() -> &'static Mutex<Lag> {
    instruments();
    LAG.get_or_init(Mutex::default)
}

/// A pull of `thread` through `pair` reached the end of what the peer had.
pub fn sync_caught_up(pair: &str, thread: &str) {
    let mut lag = lag().lock().unwrap_or_else(|e| e.into_inner());
    lag.jobs
        .insert((pair.to_string(), thread.to_string()), None);
}

/// A pull of `thread` through `pair` failed or left more to fetch: lag counts from the last
/// time it was caught up (or from now, for a job never caught up).
pub fn sync_behind(pair: &str, thread: &str) {
    let mut lag = lag().lock().unwrap_or_else(|e| e.into_inner());
    let since = lag
        .jobs
        .entry((pair.to_string(), thread.to_string()))
        .or_insert(None);
    since.get_or_insert_with(Instant::now);
}

/// The job stopped (pair revoked, lease moved): its lag is no longer this steward's to report.
pub fn sync_stopped(pair: &str, thread: &str) {
    let mut lag = lag().lock().unwrap_or_else(|e| e.into_inner());
    lag.jobs.remove(&(pair.to_string(), thread.to_string()));
}

fn sync_lag_by_pair() -> Vec<(String, Duration)> {
    let Some(lag) = LAG.get() else {
        return Vec::new();
    };
    let lag = lag.lock().unwrap_or_else(|e| e.into_inner());
    let mut worst: HashMap<&str, Duration> = HashMap::new();
    for ((pair, _), since) in &lag.jobs {
        let behind = since.map(|at| at.elapsed()).unwrap_or_default();
        let entry = worst.entry(pair).or_default();
        *entry = (*entry).max(behind);
    }
    worst.into_iter().map(|(p, d)| (p.to_string(), d)).collect()
}
