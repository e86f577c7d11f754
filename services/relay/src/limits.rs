//! What one caller may cost the relay: requests per second per DID (counted once its signature
//! holds, so nobody can spend another DID's share) and per client address (before, so floods of
//! bad signatures are bounded too), and pulls held open per DID.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::RelayError;

/// The limits, in requests per second (bursts of twice that; 0: off) and open waits per DID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallLimits {
    pub per_did: u32,
    pub per_address: u32,
    pub waits_per_did: usize,
}

impl Default for CallLimits {
    fn default() -> CallLimits {
        CallLimits {
            per_did: 200,
            per_address: 400,
            waits_per_did: 64,
        }
    }
}

/// The live limiters of a relay replica.
pub struct Limiters {
    per_did: Option<DefaultKeyedRateLimiter<String>>,
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    waits: Arc<Mutex<HashMap<String, usize>>>,
    waits_per_did: usize,
}

fn keyed<K: Hash + Eq + Clone>(per_second: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(per_second.saturating_mul(2))?;
    Some(DefaultKeyedRateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

fn check<K: Hash + Eq + Clone>(
    limiter: &Option<DefaultKeyedRateLimiter<K>>,
    key: &K,
    which: &str,
) -> Result<(), RelayError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter
        .check_key(key)
        .map_err(|not_until| RelayError::RateLimited {
            which: which.to_string(),
            wait: not_until.wait_time_from(limiter.clock().now()),
        })
}

impl Limiters {
    pub fn new(limits: CallLimits) -> Limiters {
        Limiters {
            per_did: keyed(limits.per_did),
            per_address: keyed(limits.per_address),
            waits: Arc::default(),
            waits_per_did: limits.waits_per_did,
        }
    }

    pub fn check_address(&self, address: IpAddr) -> Result<(), RelayError> {
        let key = syncropel_telemetry::connections::address_key(address);
        check(&self.per_address, &key, "address")
    }

    pub fn check_did(&self, did: &str) -> Result<(), RelayError> {
        check(&self.per_did, &did.to_string(), "DID")
    }

    /// A place for one more open pull of `did`, freed when dropped.
    pub fn wait_slot(&self, did: &str) -> Result<WaitSlot, RelayError> {
        let mut waits = self.waits.lock().unwrap_or_else(|e| e.into_inner());
        let open = waits.entry(did.to_string()).or_default();
        if *open >= self.waits_per_did {
            return Err(RelayError::RateLimited {
                which: "open pulls of one DID".into(),
                wait: Duration::from_secs(1),
            });
        }
        *open += 1;
        Ok(WaitSlot {
            waits: self.waits.clone(),
            did: did.to_string(),
        })
    }
}

/// One open pull; dropping it frees its place.
pub struct WaitSlot {
    waits: Arc<Mutex<HashMap<String, usize>>>,
    did: String,
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        let mut waits = self.waits.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = waits.get_mut(&self.did) {
            *open -= 1;
            if *open == 0 {
                waits.remove(&self.did);
            }
        }
    }
}
