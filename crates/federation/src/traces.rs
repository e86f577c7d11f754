//! Which trace wrote each recent record, so that a peer pulling it continues that trace: the
//! changes feed hands the `traceparent` on with the item (an optional member peers ignore if
//! they do not trace). Kept in memory for the most recent records only: a record pulled long
//! after it was written starts a trace of its own, as does one served by another replica.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Records remembered per steward process.
const CAPACITY: usize = 16_384;

#[derive(Default)]
pub struct TraceIndex {
    inner: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    by_id: HashMap<String, String>,
    order: VecDeque<String>,
}

impl TraceIndex {
    /// Remembers that the span `traceparent` wrote record `id`.
    pub fn note(&self, id: &str, traceparent: String) {
        let mut recent = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if recent.by_id.insert(id.to_string(), traceparent).is_none() {
            recent.order.push_back(id.to_string());
            while recent.order.len() > CAPACITY {
                if let Some(oldest) = recent.order.pop_front() {
                    recent.by_id.remove(&oldest);
                }
            }
        }
    }

    /// Remembers the current span as the writer of `id`, when it is traced.
    pub fn note_current(&self, id: &str) {
        if let Some(traceparent) = syncropel_telemetry::propagation::current_traceparent() {
            self.note(id, traceparent);
        }
    }

    pub fn get(&self, id: &str) -> Option<String> {
        let recent = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        recent.by_id.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let index = TraceIndex::default();
        let parent = |n: usize| format!("00-{:032x}-{:016x}-01", n + 1, n + 1);
        for n in 0..CAPACITY + 10 {
            index.note(&format!("r{n}"), parent(n));
        }
        assert_eq!(index.get("r0"), None);
        assert_eq!(index.get("r9"), None);
        assert_eq!(index.get("r10"), Some(parent(10)));
        assert_eq!(
            index.get(&format!("r{}", CAPACITY + 9)),
            Some(parent(CAPACITY + 9))
        );
        // Noting an id again neither duplicates it in the order nor evicts another.
        index.note("r10", parent(1));
        assert_eq!(index.get("r11"), Some(parent(11)));
    }
}
