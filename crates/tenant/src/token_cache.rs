//! Cached token lookups. A local steward trusts a looked-up token for a moment (a revocation
//! through the steward evicts it at once); hosted replicas cache nothing, so a revocation through
//! any replica holds on every replica at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use syncropel_store::TokenGrant;

/// `(tenant, token_id)` -> the grant and when it was looked up.
type CachedGrants = HashMap<(String, String), (Arc<TokenGrant>, Instant)>;

/// Cached token lookups. Only hits are cached, for `ttl`; a zero `ttl` caches nothing.
pub struct TokenCache {
    ttl: Duration,
    entries: RwLock<CachedGrants>,
}

/// How long a local steward trusts a looked-up token.
pub const LOCAL_TOKEN_CACHE_TTL: Duration = Duration::from_secs(2);

impl TokenCache {
    pub fn new(ttl: Duration) -> TokenCache {
        TokenCache {
            ttl,
            entries: RwLock::default(),
        }
    }

    pub fn get(&self, tenant: &str, token_id: &str) -> Option<Arc<TokenGrant>> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&(tenant.to_string(), token_id.to_string()))
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(grant, _)| grant.clone())
    }

    pub fn put(&self, tenant: &str, grant: Arc<TokenGrant>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() > 10_000 {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        entries.insert(
            (tenant.to_string(), grant.token_id.clone()),
            (grant, Instant::now()),
        );
    }

    pub fn evict(&self, tenant: &str, token_id: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.remove(&(tenant.to_string(), token_id.to_string()));
    }
}
