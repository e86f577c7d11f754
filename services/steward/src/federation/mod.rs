//! Federation (FEDERATION.md): pairs as records and the handshake that makes them, the sync
//! feed peers pull from and the jobs that pull from peers, consent between namespaces, and the
//! older one-thread sync pairs.

pub mod changes;
pub mod consent;
pub mod handshake;
pub mod identities;
pub mod legacy;
pub mod pairs;
pub mod puller;
pub mod renewal;
pub mod state;
pub mod traces;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{delete, get, post};
use axum::Router;
use serde_json::{Map, Value};
use syncropel_federation::{DidResolver, PeerClient, PeerClientOptions};
use syncropel_protocol::Act;
use syncropel_store::StateChange;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::tenant::Tenant;
use syncropel_tenant::{seal, server_record};

/// How this steward federates.
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
    pub clock: renewal::Clock,
    /// Hosted: how long a replica's lease on a pull job lasts without renewal (a dead
    /// replica's jobs move to the others after at most this long).
    pub lease_ttl: Duration,
    /// Deadlines of calls to peers (§5.5: connect 5 s, request 30 s, longpoll 40 s).
    pub peer_timeouts: PeerTimeouts,
    /// The retry schedule of a failing pull job (§5.5: full jitter, base 2 s, cap 300 s).
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// How long the source holds a longpoll open before answering an empty page (30 s). It
    /// must stay below the pullers' longpoll deadline.
    pub longpoll_hold: Duration,
    /// did:sync directories (base URLs) asked in order to resolve directory DIDs (§1.4).
    pub directories: Vec<String>,
    /// mDNS and introductions (all off unless the operator turns them on).
    pub discovery: crate::discovery::DiscoveryConfig,
    /// The clock the DID resolver's cache reads (tests move it past cache lifetimes).
    pub resolver_clock: ResolverClock,
}

pub type ResolverClock = Arc<dyn Fn() -> std::time::Instant + Send + Sync>;

/// Spacing of fetches of quarantined `SIGNER_UNRESOLVED` records; the resolver remembers a
/// failure as long, so an earlier retry could not succeed anyway.
const UNRESOLVED_RETRY_INTERVAL: Duration = Duration::from_secs(30);

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
            clock: renewal::system_clock(),
            lease_ttl: Duration::from_secs(60),
            peer_timeouts: PeerTimeouts::default(),
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(300),
            longpoll_hold: Duration::from_secs(30),
            directories: Vec::new(),
            discovery: crate::discovery::DiscoveryConfig::default(),
            resolver_clock: Arc::new(std::time::Instant::now),
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
            .finish_non_exhaustive()
    }
}

/// Where pull jobs run when a steward has several replicas: a job runs on the replica that
/// claims it (hosted: leases in Postgres). Without one, every job runs here.
#[async_trait::async_trait]
pub trait JobPlacement: Send + Sync {
    /// Whether this replica may run the job (it holds, or has just taken, its lease).
    async fn claim(&self, tenant: &str, source: &str, thread: &str) -> ApiResult<bool>;
    /// Forgets every job of a source (removed or revoked).
    async fn release(&self, tenant: &str, source: &str) -> ApiResult<()>;
}

/// The federation side of a steward: its configuration and its running pull jobs.
pub struct Federation {
    pub config: FederationConfig,
    pub jobs: Arc<puller::Jobs>,
    resolver: DidResolver,
    directory_client: PeerClient,
    /// When the quarantined `SIGNER_UNRESOLVED` records of a (tenant, source, thread) were last
    /// fetched again (see `puller::retry_unresolved`).
    unresolved_retries: std::sync::Mutex<HashMap<(String, String, String), std::time::Instant>>,
    placement: Option<Arc<dyn JobPlacement>>,
    /// The last pair fold per tenant and the sequence it was folded up to (see [`pairs::load`]).
    pair_folds: std::sync::Mutex<HashMap<String, (i64, PairFold)>>,
    /// The mDNS daemons, once [`crate::discovery::start`] ran.
    pub discovery: crate::discovery::Discovery,
    /// The traces that wrote recent records, handed on to peers that pull them.
    pub traces: traces::TraceIndex,
}

type PairFold = BTreeMap<String, syncropel_protocol::pair::PairView>;

impl Federation {
    pub fn new(config: FederationConfig, shutdown: CancellationToken) -> Federation {
        let client = PeerClient::new(PeerClientOptions {
            allow_private: config.allow_private_peers,
            connect_timeout: config.peer_timeouts.connect,
            request_timeout: config.peer_timeouts.request,
            longpoll_timeout: config.peer_timeouts.longpoll,
            ..PeerClientOptions::default()
        });
        let backoff = syncropel_federation::Backoff::new(config.backoff_base, config.backoff_cap);
        // The directories are the operator's own: reachable wherever they are, unlike peers.
        let directory_client = PeerClient::new(PeerClientOptions {
            allow_private: true,
            connect_timeout: config.peer_timeouts.connect,
            request_timeout: config.peer_timeouts.request,
            ..PeerClientOptions::default()
        });
        let clock = config.resolver_clock.clone();
        let resolver = DidResolver::new(client.clone(), config.directories.clone())
            .with_directory_client(directory_client.clone())
            .with_clock(move || clock());
        let jobs = Arc::new(puller::Jobs::new(
            client,
            config.poll_interval,
            backoff,
            shutdown,
        ));
        Federation {
            config,
            jobs,
            resolver,
            directory_client,
            unresolved_retries: std::sync::Mutex::default(),
            traces: traces::TraceIndex::default(),
            placement: None,
            pair_folds: std::sync::Mutex::default(),
            discovery: crate::discovery::Discovery::default(),
        }
    }

    fn cached_pairs(&self, tenant: &str) -> Option<(i64, PairFold)> {
        let folds = self.pair_folds.lock().unwrap_or_else(|e| e.into_inner());
        folds.get(tenant).cloned()
    }

    fn cache_pairs(&self, tenant: &str, seq: i64, pairs: PairFold) {
        let mut folds = self.pair_folds.lock().unwrap_or_else(|e| e.into_inner());
        if folds.len() > 10_000 {
            folds.clear();
        }
        folds.insert(tenant.to_string(), (seq, pairs));
    }

    pub fn with_placement(mut self, placement: Arc<dyn JobPlacement>) -> Federation {
        self.placement = Some(placement);
        self
    }

    pub fn client(&self) -> &PeerClient {
        self.jobs.client()
    }

    /// The client for the operator's did:sync directories (registering tenants, resolving).
    pub fn directory_client(&self) -> &PeerClient {
        &self.directory_client
    }

    /// Whether the waiting `SIGNER_UNRESOLVED` records of a source's thread are due to be fetched
    /// again (at most every 30 s, so a large quarantine is not re-read on every pull); marks
    /// them as retried now when they are.
    pub(crate) fn unresolved_retry_due(&self, tenant: &str, source: &str, thread: &str) -> bool {
        let now = (self.config.resolver_clock)();
        let mut retries = self
            .unresolved_retries
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if retries.len() > 100_000 {
            retries.clear();
        }
        let key = (tenant.to_string(), source.to_string(), thread.to_string());
        let due = retries
            .get(&key)
            .is_none_or(|at| now.saturating_duration_since(*at) >= UNRESOLVED_RETRY_INTERVAL);
        if due {
            retries.insert(key, now);
        }
        due
    }
}

/// The resolver of a job's source: legacy pairs are `sp_…`, record-bound pairs `fed_…`.
pub fn resolver_for(source: &str) -> puller::Resolver {
    if source.starts_with("sp_") {
        legacy::resolver()
    } else {
        pairs::resolver()
    }
}

/// Starts (or keeps) the pull job of `thread` from `source`, here or on whichever replica
/// holds it.
pub async fn start_job(
    state: &AppState,
    tenant: Arc<Tenant>,
    source: &str,
    thread: &str,
) -> ApiResult<()> {
    let here = match &state.federation.placement {
        Some(placement) => placement.claim(&tenant.id, source, thread).await?,
        None => true,
    };
    if here {
        let resolver = resolver_for(source);
        state
            .federation
            .jobs
            .ensure(state, tenant, source, thread, resolver);
    }
    Ok(())
}

/// Stops every job of a source, on every replica.
pub async fn stop_jobs(state: &AppState, tenant: &str, source: &str) -> ApiResult<()> {
    state.federation.jobs.stop(tenant, source);
    if let Some(placement) = &state.federation.placement {
        placement.release(tenant, source).await?;
    }
    Ok(())
}

/// Starts the pull job of every cursor row of a tenant whose source still exists, and of every
/// legacy pair (at start).
pub async fn resume_jobs(state: &AppState, tenant: Arc<Tenant>) -> ApiResult<()> {
    let legacy = legacy::registry(state, &tenant.id).await?;
    let pairs = pairs::load(state, &tenant).await?;
    let mut jobs = puller::cursor_rows(state, &tenant.id).await?;
    // Removed legacy pairs and revoked pairs keep their cursor rows (history) but pull no more.
    jobs.retain(|(source, _)| {
        legacy.get(source).is_some_and(|p| p.recorded != "stopped")
            || pairs
                .get(source)
                .is_some_and(|p| p.state != syncropel_protocol::PairState::Revoked)
    });
    jobs.extend(
        legacy
            .values()
            .filter(|p| p.recorded != "stopped")
            .map(|p| (p.pair_id.clone(), p.thread_id.clone())),
    );
    for (source, thread) in jobs {
        start_job(state, tenant.clone(), &source, &thread).await?;
    }
    Ok(())
}

/// A handshake or notice body signed with the tenant's identity key (FEDERATION §1.1: the
/// `sig` object over the canonical JSON of the rest).
pub fn signed(body: Value, key: &syncropel_protocol::Keypair) -> Value {
    let mut object = match body {
        Value::Object(object) => object,
        _ => Map::new(),
    };
    syncropel_protocol::signed::sign_object(&mut object, key);
    Value::Object(object)
}

/// Every record of a steward-written thread (pairs, consent, sync control), in commit order,
/// and the sequence of the last.
pub async fn thread_records(
    state: &AppState,
    tenant: &str,
    thread: &str,
) -> ApiResult<(Vec<Value>, i64)> {
    stored_thread(state.store.as_ref(), tenant, thread).await
}

/// [`thread_records`] straight from a store.
pub async fn stored_thread(
    store: &dyn syncropel_store::RecordStore,
    tenant: &str,
    thread: &str,
) -> ApiResult<(Vec<Value>, i64)> {
    let mut records = Vec::new();
    let mut after = 0;
    loop {
        let filter = syncropel_store::ListFilter {
            thread: Some(thread.into()),
            actor: None,
            since_clock: None,
            after_seq: after,
            limit: 1000,
        };
        let page = store.list(tenant, &filter).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for row in page {
            let value = serde_json::from_str(&row.json).map_err(|e| {
                ApiError::internal(format!("stored record {} is malformed: {e}", row.id))
            })?;
            records.push(value);
        }
    }
    Ok((records, after))
}

/// A LEARN the steward writes on its own account (pair, consent, sync control, their audit),
/// signed with the tenant's key.
pub fn own_record(
    tenant: &Tenant,
    thread: &str,
    body: Map<String, Value>,
    parents: Vec<String>,
) -> syncropel_store::NewRecord {
    let identity = &tenant.identity;
    let mut envelope = server_record(
        Act::Learn,
        thread,
        &identity.did,
        identity.clock.next(),
        body,
    );
    envelope.parents = parents;
    seal(&envelope, &identity.key, &identity.signer)
}

/// Signs and stores records the steward writes on its own account (pair, consent and sync
/// control records with their audit), with state changes, in one transaction. Returns their ids.
pub async fn write_own(
    state: &AppState,
    tenant: &Tenant,
    entries: Vec<(&str, Map<String, Value>, Vec<String>)>,
    changes: Vec<StateChange>,
) -> ApiResult<Vec<String>> {
    let records: Vec<_> = entries
        .into_iter()
        .map(|(thread, body, parents)| own_record(tenant, thread, body, parents))
        .collect();
    let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    for result in state.store.write(&tenant.id, records, changes).await? {
        result.map_err(ApiError::from)?;
    }
    Ok(ids)
}

/// The federation routes under `/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sync/changes", get(changes::changes))
        .route("/federation/sync/changes", get(changes::changes))
        .route("/sync/records", post(changes::fetch))
        .route("/sync/pull", post(pairs::pull))
        .route("/sync/pairs", post(legacy::create).get(legacy::list))
        .route(
            "/sync/pairs/{id}",
            get(legacy::get_one).delete(legacy::remove),
        )
        .route("/sync/pairs/{id}/pause", post(legacy::pause))
        .route("/sync/pairs/{id}/resume", post(legacy::resume))
        .route("/sync/pairs/{id}/kick", post(legacy::kick))
        .route("/federation/pair", post(handshake::init))
        .route("/federation/pair/init", post(handshake::init))
        .route("/federation/pair/poll", post(handshake::poll))
        .route("/federation/pair/confirm", post(handshake::confirm))
        .route("/federation/pair/notify-revoke", post(pairs::notify_revoke))
        .route("/federation/pair/refresh", post(renewal::refresh))
        .route("/federation/pairs/{id}/refresh", post(renewal::refresh_now))
        .route("/federation/pairs", post(handshake::start).get(pairs::list))
        .route("/federation/pairs/{id}", get(pairs::get_one))
        .route(
            "/federation/pairs/{id}/poll",
            post(handshake::continue_pairing),
        )
        .route("/federation/pairs/{id}/pause", post(pairs::pause))
        .route("/federation/pairs/{id}/resume", post(pairs::resume))
        .route("/federation/pairs/{id}/revoke", post(pairs::revoke))
        .route("/federation/pending", get(handshake::pending))
        .route("/federation/pending/{id}/approve", post(handshake::approve))
        .route("/federation/pending/{id}/reject", post(handshake::reject))
        .route("/consent/grants", post(consent::grant).get(consent::list))
        .route("/consent/grants/{id}", delete(consent::revoke))
}
