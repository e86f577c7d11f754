//! How a steward federates: intervals, deadlines, the retry schedule, the operator's directories
//! and discovery, and the clocks tests can move.

use std::sync::Arc;
use std::time::Duration;

use crate::discovery::DiscoveryConfig;
use crate::peer::PeerClientOptions;

#[derive(Clone)]
pub struct FederationConfig {
    /// Spacing of polls to a peer that answers longpolls at once, and after an error.
    pub poll_interval: Duration,
    /// Peer DIDs whose pair requests are approved without the operator (the responder's own
    /// configuration; nothing an initiator sends can switch it on).
    pub auto_approve: Vec<String>,
    /// Whether peer URLs may be loopback or private addresses (local stewards: yes; hosted: no
    /// unless configured).
    pub allow_private_peers: bool,
    /// How often pair tokens are checked for renewal.
    pub renewal_interval: Duration,
    /// The clock renewal decisions read (tests stand it at day 84 of a token).
    pub clock: Clock,
    /// Hosted: how long a replica's lease on a pull job lasts without renewal (a dead
    /// replica's jobs move to the others after at most this long).
    pub lease_ttl: Duration,
    /// Deadlines of calls to peers (federation-protocol.md §5.5: connect 5 s, request 30 s,
    /// longpoll 40 s).
    pub peer_timeouts: PeerTimeouts,
    /// The retry schedule of a failing pull job (federation-protocol.md §5.5: full jitter, base 2
    /// s, cap 300 s).
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// How long the source holds a longpoll open before answering an empty page (30 s). It
    /// must stay below the pullers' longpoll deadline.
    pub longpoll_hold: Duration,
    /// did:sync directories (base URLs) asked in order to resolve directory DIDs
    /// (federation-protocol.md §1.4).
    pub directories: Vec<String>,
    /// mDNS and introductions (all off unless the operator turns them on).
    pub discovery: DiscoveryConfig,
    /// The clock the DID resolver's cache reads (tests move it past cache lifetimes).
    pub resolver_clock: ResolverClock,
    /// Most quarantined records a tenant keeps; past it the oldest entries are dropped.
    pub quarantine_cap: usize,
    /// A tenant whose store takes this many bytes takes no more records from peers (their pull
    /// jobs wait with `TENANT_LIMIT_REACHED`), so a peer that always has more cannot fill it.
    pub store_ceiling: u64,
    /// Relays (federation-protocol.md §7): where this steward deposits what its peers pull, and
    /// when its pull jobs turn to a source's relays.
    pub relay: RelayConfig,
    /// Who may ask to pair, what is approved unattended, and what the manifest announces of it.
    pub pairing: PairingPolicy,
    /// Two-sided L0 consent (federation-protocol.md §6.4): a grant with L0 delivers full records
    /// only to a puller that shows its signed acceptance; otherwise its best digest level.
    pub l0_requires_acceptance: bool,
}

/// The responder's pairing policy (federation-protocol.md §2.1 `consent_policy`, §3.7): the
/// manifest announces it and the handshake enforces it.
#[derive(Clone, Debug, Default)]
pub struct PairingPolicy {
    /// Pair requests are refused (`503 PAIRING_DISABLED`); announced as
    /// `accepts_pair_requests: false`, posture `closed`.
    pub refuse_requests: bool,
    /// DID methods (`key`, `web`, `sync`) an initiator must use; empty takes any.
    pub requires_did_method: Vec<String>,
    /// DID methods refused whatever `requires_did_method` says.
    pub rejects_did_method: Vec<String>,
    /// A CEL rule that approves a pending request without the operator when it answers true,
    /// over `record.body` = the request (`pair_id`, `peer_did`, `peer_url`, `namespaces`,
    /// `maps`, and `aitl.kind` = `pair_pending.v1`).
    pub approve_rule: Option<Arc<crate::ThreadRule>>,
    /// Body kinds announced under `advertises.kinds`.
    pub advertised_kinds: Vec<String>,
}

impl PairingPolicy {
    /// Whether an initiator of `did` may ask at all.
    pub fn admits_method(&self, did: &str) -> bool {
        let method = did.split(':').nth(1).unwrap_or_default();
        let required = self.requires_did_method.is_empty()
            || self.requires_did_method.iter().any(|m| m == method);
        required && !self.rejects_did_method.iter().any(|m| m == method)
    }
}

/// How a steward uses relays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// This steward's relays, in order (at most three): it deposits there, for each peer, what
    /// that peer pulls, so that the peer gets it while this steward is unreachable.
    pub urls: Vec<String>,
    /// Announced in the manifest: peers turn to the relays at the first failure (a laptop or a
    /// steward behind NAT), not after `after_failures`.
    pub offline_capable: bool,
    /// Reachability failures in a row after which a pull job turns to its source's relays.
    pub after_failures: u32,
    /// How soon a job pulling from a relay asks its source again; later on the job's backoff.
    pub probe_after: Duration,
    /// How long a pull from a relay waits for a deposit (at most 25 s).
    pub wait: Duration,
    /// Items a pull from a relay asks for per page: the relay's most (10,000) by default, so that
    /// a destination far behind makes few round trips (the relay's 8 MiB bound still holds).
    pub page_items: u32,
    /// How often a job pulling from a relay asks the source's other relays how far their queue
    /// goes: one ahead of what the relay pulled has delivered is pulled instead, so a relay that
    /// withholds records is bypassed (10 min).
    pub compare_every: Duration,
}

impl Default for RelayConfig {
    fn default() -> RelayConfig {
        RelayConfig {
            urls: Vec::new(),
            offline_capable: false,
            after_failures: 3,
            probe_after: Duration::from_secs(30),
            wait: Duration::from_secs(25),
            page_items: 10_000,
            compare_every: Duration::from_secs(600),
        }
    }
}

/// The default of [`FederationConfig::store_ceiling`]: 10 GiB.
pub const DEFAULT_STORE_CEILING: u64 = 10 << 30;

/// Seconds of the steward's clock (injectable, so tests can stand at day 84 of a token).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub type ResolverClock = Arc<dyn Fn() -> std::time::Instant + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(syncropel_protocol::unix_now)
}

/// Deadlines of calls to peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerTimeouts {
    pub connect: Duration,
    pub request: Duration,
    pub longpoll: Duration,
}

impl Default for PeerTimeouts {
    fn default() -> PeerTimeouts {
        let defaults = PeerClientOptions::default();
        PeerTimeouts {
            connect: defaults.connect_timeout,
            request: defaults.request_timeout,
            longpoll: defaults.longpoll_timeout,
        }
    }
}

impl Default for FederationConfig {
    fn default() -> FederationConfig {
        FederationConfig {
            poll_interval: Duration::from_secs(2),
            auto_approve: Vec::new(),
            allow_private_peers: true,
            renewal_interval: Duration::from_secs(6 * 3600),
            clock: system_clock(),
            lease_ttl: Duration::from_secs(60),
            peer_timeouts: PeerTimeouts::default(),
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(300),
            longpoll_hold: Duration::from_secs(30),
            directories: Vec::new(),
            discovery: DiscoveryConfig::default(),
            resolver_clock: Arc::new(std::time::Instant::now),
            quarantine_cap: 10_000,
            store_ceiling: DEFAULT_STORE_CEILING,
            relay: RelayConfig::default(),
            pairing: PairingPolicy::default(),
            l0_requires_acceptance: false,
        }
    }
}

impl std::fmt::Debug for FederationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederationConfig")
            .field("poll_interval", &self.poll_interval)
            .field("auto_approve", &self.auto_approve)
            .field("allow_private_peers", &self.allow_private_peers)
            .field("renewal_interval", &self.renewal_interval)
            .field("lease_ttl", &self.lease_ttl)
            .field("peer_timeouts", &self.peer_timeouts)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_cap", &self.backoff_cap)
            .field("longpoll_hold", &self.longpoll_hold)
            .field("directories", &self.directories)
            .field("quarantine_cap", &self.quarantine_cap)
            .field("store_ceiling", &self.store_ceiling)
            .field("relay", &self.relay)
            .field("l0_requires_acceptance", &self.l0_requires_acceptance)
            .finish_non_exhaustive()
    }
}
