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
    /// Per tenant, how many times its chains were evicted: a check that began before an
    /// eviction must not put back what the eviction removed.
    chain_epochs: RwLock<HashMap<String, u64>>,
}

/// How long a local steward trusts a looked-up token.
pub const LOCAL_TOKEN_CACHE_TTL: Duration = Duration::from_secs(2);

impl TokenCache {
    pub fn new(ttl: Duration) -> TokenCache {
        TokenCache {
            ttl,
            entries: RwLock::default(),
            chains: RwLock::default(),
            chain_epochs: RwLock::default(),
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

    /// The tenant's eviction count, read before a chain is checked (see [`TokenCache::put_chain`]).
    pub fn chain_epoch(&self, tenant: &str) -> u64 {
        let epochs = self.chain_epochs.read().unwrap_or_else(|e| e.into_inner());
        epochs.get(tenant).copied().unwrap_or(0)
    }

    /// Notes the chain of `grant_id` live until `until` (its first grant to expire), as checked
    /// from `epoch` on: not if the tenant's chains were evicted since.
    pub fn put_chain(&self, tenant: &str, grant_id: &str, until: i64, epoch: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut chains = self.chains.write().unwrap_or_else(|e| e.into_inner());
        if self.chain_epoch(tenant) != epoch {
            return;
        }
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
        *self
            .chain_epochs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(tenant.to_string())
            .or_insert(0) += 1;
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
        cache.put_chain("t", "g", 200, cache.chain_epoch("t"));
        assert!(cache.chain_live("t", "g", 199));
        assert!(
            !cache.chain_live("t", "g", 200),
            "past the chain's first expiry"
        );
        assert!(!cache.chain_live("u", "g", 100), "per tenant");
        let before = cache.chain_epoch("t");
        cache.evict_chains("t");
        assert!(!cache.chain_live("t", "g", 100));
        cache.put_chain("t", "g", 200, before);
        assert!(
            !cache.chain_live("t", "g", 100),
            "a check older than the eviction"
        );
        let off = TokenCache::new(Duration::ZERO);
        off.put_chain("t", "g", 200, 0);
        assert!(!off.chain_live("t", "g", 100), "hosted caches nothing");
    }
}
