//! Rate limits: a token bucket per client address and one per token, both kept by the `governor`
//! crate (GCRA, which admits exactly what a token bucket of the same rate and burst admits).
//!
//! The address limit runs as middleware in front of every route, open ones included, keyed by the
//! peer address of the connection (`ConnectInfo<SocketAddr>`). The token limit runs in the
//! [`Caller`](crate::auth::Caller) extractor after the token has been authenticated, so only real
//! tokens ever get a bucket; floods of bad or missing credentials are the address limit's job.
//!
//! A refusal is `429 RATE_LIMITED` with a `Retry-After` header and happens before the handler
//! runs, so a refused request changes nothing. A refused check takes nothing from the bucket.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use futures_util::future::{ready, Either, Ready};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::ApiError;
use crate::hosted::addressing::Addressed;

/// One token bucket: refills `per_second` requests each second and holds at most `burst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// `n` requests per second with a burst of `2 × n`; `0` means no limit.
    pub fn per_second(n: u32) -> Option<RateLimit> {
        Some(RateLimit {
            per_second: NonZeroU32::new(n)?,
            burst: NonZeroU32::new(n.saturating_mul(2))?,
        })
    }

    fn quota(self) -> Quota {
        Quota::per_second(self.per_second).allow_burst(self.burst)
    }
}

/// Which limits a steward enforces; `None` switches a limit off.
///
/// The default is off for both: a local steward serves its owner on their own machine, and a
/// laptop steward must not throttle the person it belongs to (a script replaying a backlog, a burst
/// of `spl` commands). The hosted steward, which faces the internet, turns them on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Per client address (IPv4 address, or IPv6 /64 network) and tenant host, on every route:
    /// a client flooding one tenant (or every client behind one address) exhausts the bucket of
    /// that tenant only, never the other tenants' answers to the same address.
    pub per_address: Option<RateLimit>,
    /// Per authenticated token (tenant + token id), on every authenticated route.
    pub per_token: Option<RateLimit>,
    /// Per tenant, every authenticated request from any of its tokens and addresses: however many
    /// it uses, a tenant gets at most this share of a replica (anonymous requests count against
    /// their address only, so that strangers cannot use up a tenant's share).
    pub per_tenant: Option<RateLimit>,
    /// Exports (`POST /v1/portability/export`) one tenant may start per hour, each of which reads
    /// its whole store; the hour's allowance may be used at once.
    pub exports_per_hour: Option<NonZeroU32>,
    /// Reverse proxies in front of the steward that append the address they saw to
    /// `X-Forwarded-For`. With `n > 0` the client is the `n`-th address from the right of that
    /// header (entries further left are whatever the client chose to send, so they are never
    /// trusted); with 0 it is the connection's peer address.
    pub trusted_proxies: u8,
}

impl RateLimits {
    /// Both limits in requests per second (burst `2 × n`); `0` switches a limit off.
    pub fn per_second(per_address: u32, per_token: u32) -> RateLimits {
        RateLimits {
            per_address: RateLimit::per_second(per_address),
            per_token: RateLimit::per_second(per_token),
            per_tenant: None,
            exports_per_hour: None,
            trusted_proxies: 0,
        }
    }
}

/// Sweep a keyed limiter of idle keys after this many checks, so its memory stays bounded by the
/// keys active in the last few seconds; the cost of a sweep is spread over the checks before it.
const SWEEP_EVERY: u64 = 4096;

/// A keyed limiter that forgets idle keys every [`SWEEP_EVERY`] checks.
struct Keyed<K: Hash + Eq + Clone> {
    limit: RateLimit,
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(limit: RateLimit) -> Keyed<K> {
        Keyed {
            limit,
            limiter: DefaultKeyedRateLimiter::keyed(limit.quota()),
            checks: AtomicU64::new(0),
        }
    }

    /// `Err(wait)` when `key` is over its quota: how long until one more request would pass.
    fn check(&self, key: &K) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// [`Keyed::check`] for `n` requests at once; `Err(None)` when `n` exceeds the burst, so
    /// it could never pass.
    fn check_n(&self, key: &K, n: NonZeroU32) -> Result<(), Option<Duration>> {
        match self.limiter.check_key_n(key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Some(not_until.wait_time_from(self.limiter.clock().now()))),
            Err(_) => Err(None),
        }
    }

    /// Drops every key whose bucket has refilled completely (indistinguishable from a new one).
    fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    fn refusal(&self, which: &str, wait: Duration) -> ApiError {
        ApiError::rate_limited(
            format!(
                "rate limit per {which} exceeded: {} requests per second, bursts of {}",
                self.limit.per_second, self.limit.burst
            ),
            wait,
        )
        .with_extra("limit", format!("per_{which}"))
    }
}

/// Unauthenticated pair requests per client address (federation-protocol.md §4.2), always on:
/// each one makes the steward fetch and verify a manifest.
const PAIR_INITS_PER_MINUTE: u32 = 10;

/// The live limiters of a steward. Cheap to share behind an `Arc`.
pub struct RateLimiters {
    per_address: Option<Keyed<(Option<String>, IpAddr)>>,
    per_token: Option<Keyed<(String, String)>>,
    per_tenant: Option<Keyed<String>>,
    pair_inits: DefaultKeyedRateLimiter<IpAddr>,
    exports: Option<(NonZeroU32, DefaultKeyedRateLimiter<String>)>,
    trusted_proxies: u8,
}

impl RateLimiters {
    pub fn new(limits: RateLimits) -> RateLimiters {
        let per_minute = NonZeroU32::new(PAIR_INITS_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        RateLimiters {
            per_address: limits.per_address.map(Keyed::new),
            per_token: limits.per_token.map(Keyed::new),
            per_tenant: limits.per_tenant.map(Keyed::new),
            pair_inits: DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_minute)),
            exports: limits
                .exports_per_hour
                .map(|n| (n, DefaultKeyedRateLimiter::keyed(Quota::per_hour(n)))),
            trusted_proxies: limits.trusted_proxies,
        }
    }

    /// Counts one export of `tenant`: `429 RATE_LIMITED` past its hourly allowance.
    pub fn check_export(&self, tenant: &str) -> Result<(), ApiError> {
        let Some((per_hour, limiter)) = &self.exports else {
            return Ok(());
        };
        limiter.check_key(&tenant.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(limiter.clock().now());
            ApiError::rate_limited(
                format!(
                    "at most {per_hour} exports an hour per tenant: each reads the whole store"
                ),
                wait,
            )
            .with_extra("limit", "exports_per_hour")
        })
    }

    /// Counts one pair request from `addr`: at most ten a minute, `429 PAIR_RATE_LIMITED` beyond.
    pub fn check_pair_init(&self, addr: IpAddr) -> Result<(), ApiError> {
        let key = address_key(addr);
        self.pair_inits.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.pair_inits.clock().now());
            let mut refusal = ApiError::rate_limited(
                format!("at most {PAIR_INITS_PER_MINUTE} pair requests a minute from one address"),
                wait,
            );
            refusal.code = syncropel_protocol::ErrorCode::PairRateLimited;
            refusal
        })
    }

    pub fn limits(&self) -> RateLimits {
        RateLimits {
            per_address: self.per_address.as_ref().map(|k| k.limit),
            per_token: self.per_token.as_ref().map(|k| k.limit),
            per_tenant: self.per_tenant.as_ref().map(|k| k.limit),
            exports_per_hour: self.exports.as_ref().map(|(n, _)| *n),
            trusted_proxies: self.trusted_proxies,
        }
    }

    /// Counts one request from `addr` to `tenant` (its label; `None` for the platform host, a
    /// local steward and unknown hosts) against the address limit.
    pub fn check_address(&self, tenant: Option<&str>, addr: IpAddr) -> Result<(), ApiError> {
        let Some(keyed) = &self.per_address else {
            return Ok(());
        };
        keyed
            .check(&(tenant.map(str::to_owned), address_key(addr)))
            .map_err(|wait| keyed.refusal("address", wait))
    }

    /// Counts one authenticated request to `tenant` against the tenant limit.
    pub fn check_tenant(&self, tenant: &str) -> Result<(), ApiError> {
        let Some(keyed) = &self.per_tenant else {
            return Ok(());
        };
        keyed
            .check(&tenant.to_string())
            .map_err(|wait| keyed.refusal("tenant", wait))
    }

    /// Counts one request made with the token `token_id` of `tenant` against the token limit.
    pub fn check_token(&self, tenant: &str, token_id: &str) -> Result<(), ApiError> {
        let Some(keyed) = &self.per_token else {
            return Ok(());
        };
        keyed
            .check(&(tenant.to_string(), token_id.to_string()))
            .map_err(|wait| keyed.refusal("token", wait))
    }

    /// Charges a token for a request that writes `records` records: the request itself was charged
    /// as one already, so `records - 1` more. A batch larger than the burst could never pass and is
    /// refused as such.
    pub fn charge_token(
        &self,
        tenant: &str,
        token_id: &str,
        records: usize,
    ) -> Result<(), ApiError> {
        let Some(keyed) = &self.per_token else {
            return Ok(());
        };
        let too_large = || {
            ApiError::validation(format!(
                "this batch of {records} records is more than the token's rate limit allows at once (bursts of {})",
                keyed.limit.burst
            ))
            .with_hint("send smaller batches")
        };
        if records > keyed.limit.burst.get() as usize {
            return Err(too_large());
        }
        let Some(extra) = NonZeroU32::new(records.saturating_sub(1) as u32) else {
            return Ok(());
        };
        keyed
            .check_n(&(tenant.to_string(), token_id.to_string()), extra)
            .map_err(|wait| match wait {
                Some(wait) => keyed.refusal("token", wait),
                None => too_large(),
            })
    }

    /// Drops the buckets of idle keys now (it also happens by itself every few thousand checks).
    pub fn sweep(&self) {
        if let Some(keyed) = &self.per_address {
            keyed.sweep();
        }
        if let Some(keyed) = &self.per_token {
            keyed.sweep();
        }
        if let Some(keyed) = &self.per_tenant {
            keyed.sweep();
        }
        self.pair_inits.retain_recent();
    }

    /// How many keys each limiter holds: `(addresses, tokens)`.
    pub fn tracked(&self) -> (usize, usize) {
        (
            self.per_address.as_ref().map_or(0, |k| k.limiter.len()),
            self.per_token.as_ref().map_or(0, |k| k.limiter.len()),
        )
    }
}

impl Default for RateLimiters {
    fn default() -> RateLimiters {
        RateLimiters::new(RateLimits::default())
    }
}

pub use syncropel_telemetry::connections::address_key;

/// The client's address: the peer, or with `trusted_proxies > 0` the address the outermost trusted
/// proxy saw (see [`RateLimits::trusted_proxies`]). A request that did not pass through that many
/// proxies, or whose entry is not an address, counts against its peer.
fn client_address(req: &Request, peer: IpAddr, trusted_proxies: u8) -> IpAddr {
    if trusted_proxies == 0 {
        return peer;
    }
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    forwarded
        .len()
        .checked_sub(usize::from(trusted_proxies))
        .and_then(|i| forwarded[i].parse().ok())
        .unwrap_or(peer)
}

/// Layer: the address limit, in front of every route. A plain tower layer holding only the
/// limiters: it runs on every request, where `from_fn_with_state` would clone the whole
/// `AppState` and box the call.
#[derive(Clone)]
pub struct AddressLimit(pub Arc<RateLimiters>);

impl<S> tower::Layer<S> for AddressLimit {
    type Service = AddressLimited<S>;

    fn layer(&self, inner: S) -> AddressLimited<S> {
        AddressLimited {
            inner,
            limits: self.0.clone(),
        }
    }
}

/// A service behind [`AddressLimit`].
#[derive(Clone)]
pub struct AddressLimited<S> {
    inner: S,
    limits: Arc<RateLimiters>,
}

/// The client's address as the rate limits see it (see [`client_address`]), for handlers that
/// count per address too (the stream caps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

impl<S> AddressLimited<S> {
    /// Notes the client's address on the request, and answers a request over its address's
    /// limit, if it is.
    fn refusal(&self, req: &mut Request) -> Option<Response> {
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().copied();
        let client = peer
            .map(|ConnectInfo(peer)| client_address(req, peer.ip(), self.limits.trusted_proxies));
        if let Some(client) = client {
            req.extensions_mut().insert(ClientAddress(client));
        }
        let tenant = match req.extensions().get::<Addressed>() {
            Some(Addressed::Tenant(label)) => Some(label.as_str()),
            _ => None,
        };
        let checked = match (&self.limits.per_address, client) {
            (None, _) => Ok(()),
            (Some(_), Some(client)) => self.limits.check_address(tenant, client),
            (Some(_), None) => Err(ApiError::internal(
                "the address rate limit is on but the server was not started with \
                 the peer address of each connection",
            )),
        };
        checked.err().map(IntoResponse::into_response)
    }
}

impl<S> tower::Service<Request> for AddressLimited<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        match self.refusal(&mut req) {
            Some(refusal) => Either::Left(ready(Ok(refusal))),
            None => Either::Right(self.inner.call(req)),
        }
    }
}

/// Refusal records one tenant may cost a replica each second, and in one burst.
const REFUSALS_PER_SECOND: u32 = 10;
pub const REFUSAL_BURST: u32 = 50;

/// How many refusals are recorded (protocol.md §13.3, `crate::refusals`): a bucket per tenant,
/// and the refusals counted past it.
pub struct RefusalLog {
    bucket: DefaultKeyedRateLimiter<String>,
    suppressed: Mutex<HashMap<String, u64>>,
}

impl Default for RefusalLog {
    fn default() -> RefusalLog {
        let per_second = NonZeroU32::new(REFUSALS_PER_SECOND).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(REFUSAL_BURST).unwrap_or(NonZeroU32::MIN);
        RefusalLog {
            bucket: DefaultKeyedRateLimiter::keyed(
                Quota::per_second(per_second).allow_burst(burst),
            ),
            suppressed: Mutex::new(HashMap::new()),
        }
    }
}

impl RefusalLog {
    /// Whether this refusal of `tenant` is recorded; if so, how many were not since the last.
    pub fn admit(&self, tenant: &str) -> Option<u64> {
        let mut suppressed = self.suppressed.lock().unwrap_or_else(|e| e.into_inner());
        if self.bucket.check_key(&tenant.to_string()).is_ok() {
            return Some(suppressed.remove(tenant).unwrap_or(0));
        }
        if suppressed.len() > 100_000 {
            suppressed.clear();
            self.bucket.retain_recent();
        }
        *suppressed.entry(tenant.to_string()).or_default() += 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use syncropel_protocol::ErrorCode;

    use super::*;

    #[test]
    fn forwarded_for_is_trusted_only_as_far_as_the_configured_proxies() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let req = |xff: &[&str]| {
            let mut b = Request::builder();
            for v in xff {
                b = b.header("x-forwarded-for", *v);
            }
            b.body(axum::body::Body::empty()).unwrap()
        };
        let spoofed = req(&["1.1.1.1, 203.0.113.9", "198.51.100.4"]);
        assert_eq!(client_address(&spoofed, peer, 0), peer);
        assert_eq!(
            client_address(&spoofed, peer, 1),
            "198.51.100.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_address(&spoofed, peer, 2),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(&spoofed, peer, 4), peer);
        assert_eq!(client_address(&req(&[]), peer, 1), peer);
        assert_eq!(client_address(&req(&["not-an-ip"]), peer, 1), peer);
    }

    #[test]
    fn zero_switches_a_limit_off_and_burst_is_twice_the_rate() {
        assert_eq!(RateLimit::per_second(0), None);
        let limit = RateLimit::per_second(5).unwrap();
        assert_eq!((limit.per_second.get(), limit.burst.get()), (5, 10));
        let huge = RateLimit::per_second(u32::MAX).unwrap();
        assert_eq!(huge.burst.get(), u32::MAX);
        assert_eq!(RateLimits::default(), RateLimits::per_second(0, 0));
    }

    #[test]
    fn a_bucket_admits_its_burst_then_refuses_with_a_wait() {
        let limiters = RateLimiters::new(RateLimits::per_second(0, 1));
        assert!(limiters.check_token("t", "a").is_ok());
        assert!(limiters.check_token("t", "a").is_ok());
        let refusal = limiters.check_token("t", "a").unwrap_err();
        assert_eq!(refusal.code, ErrorCode::RateLimited);
        assert!(refusal.extra["retry_after_secs"].as_u64().unwrap() >= 1);
        assert!(limiters.check_token("t", "b").is_ok());
        assert!(limiters.check_token("other", "a").is_ok());
        // The address limit is off.
        for _ in 0..100 {
            assert!(limiters.check_address(None, [127, 0, 0, 1].into()).is_ok());
        }
    }

    #[test]
    fn a_tenant_has_one_bucket_for_all_its_addresses_and_tokens() {
        let limiters = RateLimiters::new(RateLimits {
            per_tenant: RateLimit::per_second(1),
            ..RateLimits::default()
        });
        assert!(limiters.check_tenant("acme").is_ok());
        assert!(limiters.check_tenant("acme").is_ok());
        let refusal = limiters.check_tenant("acme").unwrap_err();
        assert_eq!(refusal.code, ErrorCode::RateLimited);
        assert_eq!(refusal.extra["limit"], "per_tenant");
        assert!(
            limiters.check_tenant("other").is_ok(),
            "another tenant's bucket"
        );
    }

    #[test]
    fn an_address_has_a_bucket_per_tenant() {
        let limiters = RateLimiters::new(RateLimits::per_second(1, 0));
        let client: IpAddr = [192, 0, 2, 7].into();
        while limiters.check_address(Some("junk"), client).is_ok() {}
        assert!(limiters.check_address(Some("acme"), client).is_ok());
        assert!(limiters.check_address(None, client).is_ok());
    }

    #[test]
    fn ipv6_hosts_share_their_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(address_key(mapped), "10.0.0.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn sweeping_forgets_idle_keys() {
        let limiters = RateLimiters::new(RateLimits::per_second(1000, 0));
        for i in 0..=255u8 {
            limiters.check_address(None, [10, 0, 0, i].into()).unwrap();
        }
        assert_eq!(limiters.tracked().0, 256);
        // One request out of a 2000 burst refills in 1 ms.
        std::thread::sleep(Duration::from_millis(20));
        limiters.sweep();
        assert_eq!(limiters.tracked().0, 0);
    }

    #[test]
    fn idle_keys_are_swept_without_being_asked() {
        let limiters = RateLimiters::new(RateLimits::per_second(1000, 0));
        for i in 0..SWEEP_EVERY - 1 {
            let [a, b, ..] = i.to_le_bytes();
            limiters.check_address(None, [10, 1, b, a].into()).unwrap();
        }
        assert_eq!(limiters.tracked().0, SWEEP_EVERY as usize - 1);
        std::thread::sleep(Duration::from_millis(20));
        // The next check sweeps first: only its own key is left.
        limiters.check_address(None, [192, 0, 2, 1].into()).unwrap();
        assert_eq!(limiters.tracked().0, 1);
    }

    #[test]
    fn past_its_burst_a_tenant_is_counted_and_the_next_record_says_how_many() {
        let log = super::RefusalLog::default();
        for _ in 0..super::REFUSAL_BURST {
            assert_eq!(log.admit("a"), Some(0));
        }
        for _ in 0..7 {
            assert_eq!(log.admit("a"), None);
        }
        assert_eq!(log.admit("b"), Some(0), "another tenant has its own bucket");
        std::thread::sleep(std::time::Duration::from_millis(150));
        assert_eq!(log.admit("a"), Some(7));
    }
}
