//! Full-jitter exponential backoff (federation-protocol.md §5.5).

use std::time::Duration;

use rand::Rng;

/// Full-jitter exponential backoff (federation-protocol.md §5.5): delay after the n-th consecutive
/// failure = random(0, min(cap, base × 2^(n−1))), base 2 s, cap 300 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Default for Backoff {
    /// The federation-protocol.md §5.5 schedule: base 2 s, cap 300 s, no failures yet.
    fn default() -> Self {
        Backoff::new(Duration::from_secs(2), Duration::from_secs(300))
    }
}

impl Backoff {
    /// A backoff with the given base delay and cap, and no failures yet.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            failures: 0,
        }
    }

    /// Records one more consecutive failure and returns the delay before the next attempt,
    /// uniformly random in `[0, ceiling()]`.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let ceiling = u64::try_from(self.ceiling().as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::thread_rng().gen_range(0..=ceiling))
    }

    /// The schedule after `failures` consecutive failures (a retry schedule kept in a store).
    pub fn after(mut self, failures: u32) -> Backoff {
        self.failures = failures;
        self
    }

    /// Success (or hearing from the peer): the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The current upper bound `min(cap, base × 2^(n−1))` (zero before the first failure).
    pub fn ceiling(&self) -> Duration {
        let Some(exp) = self.failures.checked_sub(1) else {
            return Duration::ZERO;
        };
        1u32.checked_shl(exp)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.cap, |d| d.min(self.cap))
    }
}
