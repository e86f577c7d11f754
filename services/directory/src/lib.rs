//! The did:sync directory (federation-protocol.md §1.4): stores signed operation logs, serves the
//! DID documents they resolve to, and keeps handles unique.
//!
//! The directory is untrusted by design: every op is signed by a rotation key and chained by
//! `prev`, and resolvers can download a DID's log and replay it themselves. The rules live in
//! [`syncropel_protocol::did_sync`]; this crate adds storage, handles, rate limits and HTTP.

mod error;
mod routes;
mod store;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio_util::sync::CancellationToken;

pub use error::DirectoryError;
pub use routes::{app, routes};
pub use store::{Store, DOCUMENT_LIFETIME};

/// Largest request body; an op is at most 7,500 bytes of canonical JSON, so this leaves room
/// for whitespace and still refuses floods early.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Per-directory policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// How long (seconds) after receipt an op can still be displaced by a recovery fork.
    pub recovery_window_secs: i64,
    /// Ops accepted per DID in any hour and in any day.
    pub ops_per_hour: usize,
    pub ops_per_day: usize,
    /// New DIDs one client address may create per hour (0: no limit). Genesis needs no prior
    /// identity, so this is what stops one machine from minting DIDs and taking handles in bulk.
    pub geneses_per_address_per_hour: u32,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            recovery_window_secs: syncropel_protocol::did_sync::RECOVERY_WINDOW_SECS,
            ops_per_hour: 10,
            ops_per_day: 30,
            geneses_per_address_per_hour: 100,
        }
    }
}

/// The receipt clock (unix seconds). Manual clocks let tests cross the recovery window and
/// rate-limit windows without sleeping.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::default()
    }

    pub fn manual(now: i64) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(now))),
        }
    }

    pub fn now(&self) -> i64 {
        match &self.manual {
            Some(now) => now.load(Ordering::SeqCst),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        }
    }

    /// Moves a manual clock (a system clock ignores this).
    pub fn set(&self, now: i64) {
        if let Some(clock) = &self.manual {
            clock.store(now, Ordering::SeqCst);
        }
    }

    pub fn advance(&self, secs: i64) {
        self.set(self.now() + secs);
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub rules: Rules,
    pub clock: Clock,
    /// Cancelled when the server begins to drain: `/ready` then answers 503.
    pub stopping: CancellationToken,
    /// Geneses per client address (see [`Rules::geneses_per_address_per_hour`]).
    pub geneses: Arc<GenesisLimit>,
}

impl AppState {
    pub fn new(
        store: Arc<Store>,
        rules: Rules,
        clock: Clock,
        stopping: CancellationToken,
    ) -> AppState {
        AppState {
            store,
            rules,
            clock,
            stopping,
            geneses: Arc::new(GenesisLimit::per_hour(rules.geneses_per_address_per_hour)),
        }
    }
}

/// A token bucket of geneses per client address (an IPv6 /64 counts as one address).
pub struct GenesisLimit(Option<DefaultKeyedRateLimiter<IpAddr>>);

impl GenesisLimit {
    pub fn per_hour(n: u32) -> GenesisLimit {
        GenesisLimit(NonZeroU32::new(n).map(|n| DefaultKeyedRateLimiter::keyed(Quota::per_hour(n))))
    }

    /// Counts one genesis from `addr`; `Err(seconds)` to wait when over the limit.
    pub fn check(&self, addr: IpAddr) -> Result<(), u64> {
        let Some(limiter) = &self.0 else {
            return Ok(());
        };
        limiter
            .check_key(&syncropel_telemetry::connections::address_key(addr))
            .map_err(|not_until| {
                not_until
                    .wait_time_from(limiter.clock().now())
                    .as_secs()
                    .max(1)
            })
    }
}
