//! Cached token lookups. A local steward trusts a looked-up token, and a grant chain found live,
//! for a moment (a revocation through the steward evicts at once); hosted replicas cache
//! nothing, so a revocation through any replica holds on every replica at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use syncropel_store::TokenGrant;

/// `(tenant, token_id)` -> the grant and when it was looked up.
type CachedGrants = HashMap<(String, String), (Arc<TokenGrant>, Instant)>;

/// `(tenant, grant_id)` -> when its chain next expires (unix seconds) and when it was checked.
type LiveChains = HashMap<(String, String), (i64, Instant)>;

/// Cached token lookups. Only hits are cached, for `ttl`; a zero `ttl` caches nothing.
pub struct TokenCache {
    ttl: Duration,
    entries: RwLock<CachedGrants>,
    chains: RwLock<LiveChains>,
}

/// How long a local steward trusts a looked-up token.
pub const LOCAL_TOKEN_CACHE_TTL: Duration = Duration::from_secs(2);

impl TokenCache {
    pub fn new(ttl: Duration) -> TokenCache {
        TokenCache {
            ttl,
            entries: RwLock::default(),
            chains: RwLock::default(),
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

    /// Whether the chain of `grant_id` was found live a moment ago and has not expired since.
    pub fn chain_live(&self, tenant: &str, grant_id: &str, now: i64) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let chains = self.chains.read().unwrap_or_else(|e| e.into_inner());
        chains
            .get(&(tenant.to_string(), grant_id.to_string()))
            .is_some_and(|(until, at)| at.elapsed() < self.ttl && now < *until)
    }

    /// Notes the chain of `grant_id` live until `until` (its first grant to expire).
    pub fn put_chain(&self, tenant: &str, grant_id: &str, until: i64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut chains = self.chains.write().unwrap_or_else(|e| e.into_inner());
        if chains.len() > 10_000 {
            let ttl = self.ttl;
            chains.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        chains.insert(
            (tenant.to_string(), grant_id.to_string()),
            (until, Instant::now()),
        );
    }

    /// Forgets every live chain of `tenant`: one of its grants was just revoked.
    pub fn evict_chains(&self, tenant: &str) {
        let mut chains = self.chains.write().unwrap_or_else(|e| e.into_inner());
        chains.retain(|(t, _), _| t != tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_chain_is_trusted_until_it_expires_or_is_evicted() {
        let cache = TokenCache::new(Duration::from_secs(60));
        assert!(!cache.chain_live("t", "g", 100));
        cache.put_chain("t", "g", 200);
        assert!(cache.chain_live("t", "g", 199));
        assert!(
            !cache.chain_live("t", "g", 200),
            "past the chain's first expiry"
        );
        assert!(!cache.chain_live("u", "g", 100), "per tenant");
        cache.evict_chains("t");
        assert!(!cache.chain_live("t", "g", 100));
        let off = TokenCache::new(Duration::ZERO);
        off.put_chain("t", "g", 200);
        assert!(!off.chain_live("t", "g", 100), "hosted caches nothing");
    }
}
