//! Live streams (watch SSE, sync longpolls): how many one token, tenant and client address may
//! hold open on a replica. An open stream also checks every [`RECHECK`] that its caller may still
//! hold it ([`crate::auth::Caller::still_allowed`]), so a revoked token's stream ends within a
//! second.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{ApiError, ApiResult};

/// How often an open stream checks that its caller may still hold it.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Streams one replica holds open at once, per token, per tenant and per client address;
/// past one of them a new stream is `429 RATE_LIMITED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    pub per_token: usize,
    pub per_tenant: usize,
    pub per_address: usize,
}

impl Default for StreamLimits {
    fn default() -> StreamLimits {
        StreamLimits {
            per_token: 16,
            per_tenant: 128,
            per_address: 64,
        }
    }
}

/// Exports (`POST /v1/portability/export`) run at once: one per tenant and token, each reads
/// the whole store.
pub const EXPORT_LIMITS: StreamLimits = StreamLimits {
    per_token: 1,
    per_tenant: 1,
    per_address: 2,
};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Token(String, String),
    Tenant(String),
    Address(IpAddr),
}

/// The streams open on this replica, counted by key.
#[derive(Debug, Default)]
pub struct StreamSlots {
    limits: StreamLimits,
    open: Mutex<HashMap<Key, usize>>,
}

/// One open stream's place in the counts; given back when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    keys: Vec<Key>,
}

impl StreamSlots {
    pub fn new(limits: StreamLimits) -> StreamSlots {
        StreamSlots {
            limits,
            open: Mutex::default(),
        }
    }

    /// Takes a slot for a new stream of `tenant`, made with the token `token_id` (none when
    /// authentication is off) from `address`, or refuses it when one of its keys is at its limit.
    pub fn acquire(
        self: &Arc<Self>,
        tenant: &str,
        token_id: Option<&str>,
        address: Option<IpAddr>,
    ) -> ApiResult<StreamSlot> {
        let mut keys = vec![(Key::Tenant(tenant.to_owned()), self.limits.per_tenant)];
        if let Some(token_id) = token_id {
            keys.push((
                Key::Token(tenant.to_owned(), token_id.to_owned()),
                self.limits.per_token,
            ));
        }
        if let Some(address) = address {
            keys.push((
                Key::Address(crate::rate_limit::address_key(address)),
                self.limits.per_address,
            ));
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((key, limit)) = keys
            .iter()
            .find(|(key, limit)| open.get(key).copied().unwrap_or(0) >= *limit)
        {
            let whose = match key {
                Key::Token(..) => "this token",
                Key::Tenant(_) => "this tenant",
                Key::Address(_) => "this address",
            };
            return Err(ApiError::rate_limited(
                format!("{whose} already holds {limit} open streams on this server"),
                Duration::from_secs(1),
            ));
        }
        for (key, _) in &keys {
            *open.entry(key.clone()).or_insert(0) += 1;
        }
        Ok(StreamSlot {
            slots: self.clone(),
            keys: keys.into_iter().map(|(key, _)| key).collect(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        for key in &self.keys {
            if let Some(count) = open.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    open.remove(key);
                }
            }
        }
    }
}
