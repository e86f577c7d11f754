//! What each pair's jobs did lately (`GET /v1/sync/pairs/{id}/trace`, `spl fleet sync trace`):
//! the last pulls of each source, in this process's memory like the jobs' health, never
//! recorded (federation-protocol.md §5.5: not recorded per attempt). Alike events in a row
//! (the empty longpolls of an idle thread) fold into one with a count, so the window keeps what
//! happened rather than the waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use syncropel_api::SyncEvent;
use syncropel_protocol::unix_now;

/// Events kept per (tenant, source).
pub const EVENTS_PER_SOURCE: usize = 100;
/// Sources kept in all (a steward with more forgets the traces of all but the busiest moment).
const MAX_SOURCES: usize = 10_000;

#[derive(Default)]
pub struct SyncTrace {
    events: Mutex<HashMap<(String, String), VecDeque<SyncEvent>>>,
}

impl SyncTrace {
    /// Notes `event` of `source`'s job; `event.at`, `last_at` and `count` are set here.
    pub(crate) fn note(&self, tenant: &str, source: &str, mut event: SyncEvent) {
        let now = unix_now();
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if events.len() >= MAX_SOURCES && !events.contains_key(&(tenant.into(), source.into())) {
            events.clear();
        }
        let kept = events
            .entry((tenant.to_string(), source.to_string()))
            .or_default();
        if let Some(last) = kept.back_mut() {
            let alike = last.thread == event.thread
                && last.via == event.via
                && last.outcome == event.outcome
                && event.pulled + event.duplicates + event.quarantined == 0
                && last.pulled + last.duplicates + last.quarantined == 0
                && last.error.as_ref().map(|e| &e.code) == event.error.as_ref().map(|e| &e.code);
            if alike {
                last.count += 1;
                last.last_at = now;
                last.duration_ms = event.duration_ms;
                last.error = event.error;
                return;
            }
        }
        event.at = now;
        event.last_at = now;
        event.count = 1;
        kept.push_back(event);
        if kept.len() > EVENTS_PER_SOURCE {
            kept.pop_front();
        }
    }

    /// The events of `source`, newest first, at most `limit`.
    pub fn recent(&self, tenant: &str, source: &str, limit: usize) -> Vec<SyncEvent> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events
            .get(&(tenant.to_string(), source.to_string()))
            .map(|kept| kept.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(thread: &str, outcome: &str, pulled: u64) -> SyncEvent {
        SyncEvent {
            thread: thread.into(),
            via: "source".into(),
            outcome: outcome.into(),
            pulled,
            ..SyncEvent::default()
        }
    }

    #[test]
    fn alike_idle_events_fold_and_the_window_keeps_the_newest() {
        let trace = SyncTrace::default();
        for _ in 0..5 {
            trace.note("t", "fed_a", event("th_a", "empty", 0));
        }
        trace.note("t", "fed_a", event("th_a", "pulled", 3));
        trace.note("t", "fed_a", event("th_a", "pulled", 2));
        let recent = trace.recent("t", "fed_a", 10);
        let shape: Vec<(&str, u64, u64)> = recent
            .iter()
            .map(|e| (e.outcome.as_str(), e.pulled, e.count))
            .collect();
        assert_eq!(shape, [("pulled", 2, 1), ("pulled", 3, 1), ("empty", 0, 5)]);
        assert!(trace.recent("t", "fed_b", 10).is_empty());
        assert!(trace.recent("other", "fed_a", 10).is_empty());

        for n in 0..(EVENTS_PER_SOURCE as u64 + 20) {
            trace.note("t", "fed_a", event("th_a", "pulled", n + 1));
        }
        let recent = trace.recent("t", "fed_a", 1000);
        assert_eq!(recent.len(), EVENTS_PER_SOURCE);
        assert_eq!(recent[0].pulled, EVENTS_PER_SOURCE as u64 + 20);
        assert_eq!(trace.recent("t", "fed_a", 3).len(), 3);
    }
}
