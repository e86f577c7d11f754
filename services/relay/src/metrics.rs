//! The relay's metric series (federation-protocol.md §7.3), labelled by outcome, never by DID or
//! queue, so their number stays small however many parties use the relay.

use std::sync::OnceLock;

use opentelemetry::metrics::{Counter, Gauge};
use opentelemetry::KeyValue;

struct Instruments {
    deposits: Counter<u64>,
    pulls: Counter<u64>,
    acks: Counter<u64>,
    auth_failures: Counter<u64>,
    limit_hits: Counter<u64>,
    items_expired: Counter<u64>,
    queue_items: Gauge<u64>,
    queue_bytes: Gauge<u64>,
    oldest_seconds: Gauge<f64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = syncropel_telemetry::metrics::meter();
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .build()
        };
        Instruments {
            deposits: counter(
                "relay_deposits",
                "Deposits, by result (created, duplicate, refused)",
            ),
            pulls: counter("relay_pulls", "Pages pulled by destinations"),
            acks: counter("relay_acks", "Acks, by who sent them"),
            auth_failures: counter(
                "relay_auth_failures",
                "Calls refused before their route, by code",
            ),
            limit_hits: counter(
                "relay_rate_limit_hits",
                "Deposits refused by a bound, by kind (queue_full, payload_too_large)",
            ),
            items_expired: counter(
                "relay_items_expired",
                "Items deleted unpulled at their time",
            ),
            queue_items: meter
                .u64_gauge("relay_queue_items")
                .with_description("Items queued, over every queue")
                .build(),
            queue_bytes: meter
                .u64_gauge("relay_queue_bytes")
                .with_description("Bytes queued, over every queue")
                .build(),
            oldest_seconds: meter
                .f64_gauge("relay_oldest_envelope")
                .with_unit("s")
                .with_description("Age of the oldest queued envelope (0 when none)")
                .build(),
        }
    })
}

pub fn deposit(result: &'static str) {
    instruments()
        .deposits
        .add(1, &[KeyValue::new("result", result)]);
}

pub fn pull() {
    instruments().pulls.add(1, &[]);
}

pub fn ack(by: &'static str) {
    instruments().acks.add(1, &[KeyValue::new("by", by)]);
}

pub fn auth_failure(code: &'static str) {
    instruments()
        .auth_failures
        .add(1, &[KeyValue::new("code", code)]);
}

pub fn limit_hit(kind: &'static str) {
    instruments()
        .limit_hits
        .add(1, &[KeyValue::new("kind", kind)]);
}

pub fn items_expired(items: i64) {
    if let Ok(items) = u64::try_from(items) {
        instruments().items_expired.add(items, &[]);
    }
}

/// What the relay holds, as read by the last sweep: items, bytes, age of the oldest envelope.
pub fn holding(items: i64, bytes: i64, oldest_secs: i64) {
    let instruments = instruments();
    instruments
        .queue_items
        .record(u64::try_from(items).unwrap_or(0), &[]);
    instruments
        .queue_bytes
        .record(u64::try_from(bytes).unwrap_or(0), &[]);
    instruments
        .oldest_seconds
        .record(oldest_secs.max(0) as f64, &[]);
}
