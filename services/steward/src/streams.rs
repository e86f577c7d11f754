//! Live streams (watch SSE, sync longpolls): how many one token, tenant and client address may
//! hold open on a replica, and that an open stream still obeys revocation, expiry and the
//! tenant's state (checked every [`RECHECK`], so a revoked token's stream ends within a second).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use syncropel_protocol::{unix_now, ErrorCode};
use syncropel_tenant::Tenant;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::hosted::platform::status_of;
use crate::state::{AppState, Tenancy};

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

    /// Takes a slot for a new stream of `caller` from `address`, or refuses it when one of its
    /// keys is at its limit.
    pub fn acquire(
        self: &Arc<Self>,
        caller: &Caller,
        address: Option<IpAddr>,
    ) -> ApiResult<StreamSlot> {
        let mut keys = vec![(
            Key::Tenant(caller.tenant.id.clone()),
            self.limits.per_tenant,
        )];
        if let Some(grant) = &caller.grant {
            keys.push((
                Key::Token(caller.tenant.id.clone(), grant.token_id.clone()),
                self.limits.per_token,
            ));
        }
        if let Some(address) = address {
            keys.push((
                Key::Address(address.to_canonical()),
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

/// A stream is for an active tenant only: a suspended or deleted one can still be read and
/// exported, but holds nothing open.
pub fn require_active(tenant: &Tenant) -> ApiResult<()> {
    Ok(tenant.status.require_active("watched")?)
}

/// Whether `caller` may keep its stream open: its token neither revoked, expired nor gone (read
/// from the store, never from a cache) and its tenant still active.
pub async fn still_allowed(state: &AppState, caller: &Caller) -> ApiResult<()> {
    let tenant = &caller.tenant;
    if let Tenancy::Hosted(platform) = &state.tenancy {
        let current = platform.store().tenant_state(&tenant.id).await?;
        status_of(current).require_active("watched")?;
    }
    let Some(grant) = &caller.grant else {
        return Ok(());
    };
    let current = state.store.token(&tenant.id, &grant.token_id).await?;
    let refused = |why: &str| ApiError::new(ErrorCode::AuthInvalid, why.to_owned());
    match current {
        None => Err(refused("this token no longer exists")),
        Some(g) if g.revoked_at.is_some() => Err(refused("this token has been revoked")),
        Some(g) if g.expires_at.is_some_and(|at| at <= unix_now()) => {
            Err(refused("this token has expired"))
        }
        Some(_) => Ok(()),
    }
}
