//! The engine: one [`Federation`] per steward process, holding what every part of federation
//! shares (the store, the peer clients, the DID resolver, the running pull jobs), and the few
//! operations that span parts: starting and stopping jobs, and the records the steward writes on
//! its own account.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};
use syncropel_protocol::pair::PairView;
use syncropel_protocol::{Act, Keypair, PairState};
use syncropel_store::{NewRecord, RecordStore, StateChange};
use syncropel_tenant::{seal, server_record, Namespaces, Tenant, TokenCache};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::actor_keys::VouchCache;
use crate::config::FederationConfig;
use crate::discovery::Discovery;
use crate::error::{FederationError, Result};
use crate::jobs::{self, Jobs};
use crate::peer::{PeerClient, PeerClientOptions, Reach};
use crate::relay::{outbox, Outbox};
use crate::resolve::DidResolver;
use crate::traces::TraceIndex;
use crate::{manifest, pairs, state, sync_pairs, Backoff};

/// What the engine works on, shared with the steward's HTTP layer.
pub struct Shared {
    pub store: Arc<dyn RecordStore>,
    pub namespaces: Arc<Namespaces>,
    /// Token lookups the HTTP layer caches; a revoked pair token is evicted here at once.
    pub tokens: Arc<TokenCache>,
    /// Token environment label of the tokens minted for peers (`spl_<env>_…`).
    pub env: Arc<str>,
    /// Cancelled when the steward begins to stop: jobs end, held longpolls answer.
    pub shutdown: CancellationToken,
}

/// Where pull jobs run when a steward has several replicas: a job runs on the replica that
/// claims it (hosted: leases in Postgres). Without one, every job runs here.
#[async_trait::async_trait]
pub trait JobPlacement: Send + Sync {
    /// Whether this replica may run the job (it holds, or has just taken, its lease).
    async fn claim(&self, tenant: &str, source: &str, thread: &str) -> Result<bool>;
    /// Forgets every job of a source (removed or revoked).
    async fn release(&self, tenant: &str, source: &str) -> Result<()>;
}

/// Spacing of fetches of quarantined `SIGNER_UNRESOLVED` records; the resolver remembers a
/// failure as long, so an earlier retry could not succeed anyway.
const UNRESOLVED_RETRY_INTERVAL: Duration = Duration::from_secs(30);

/// How often a tenant whose outbox is not running is looked at again.
const OUTBOX_LOOK_EVERY: Duration = Duration::from_secs(60);

type PairFold = BTreeMap<String, PairView>;

/// Pull jobs of one tenant that fetch, verify and ingest at once on a replica
/// (federation-protocol.md §5.4); a job waiting in a longpoll holds no place.
pub const ACTIVE_PULLS_PER_TENANT: usize = 4;

/// The federation side of a steward.
pub struct Federation {
    pub config: FederationConfig,
    pub(crate) store: Arc<dyn RecordStore>,
    pub(crate) namespaces: Arc<Namespaces>,
    pub(crate) tokens: Arc<TokenCache>,
    pub(crate) env: Arc<str>,
    pub(crate) shutdown: CancellationToken,
    /// The running pull jobs of this process.
    pub jobs: Jobs,
    peers: PeerClient,
    resolver: DidResolver,
    /// The client and resolver of [`Reach::PublicOnly`] fetches, where `peers` may reach
    /// private addresses (else `peers` and `resolver` serve both).
    public_only: Option<(PeerClient, DidResolver)>,
    directory_client: PeerClient,
    /// When the quarantined `SIGNER_UNRESOLVED` records of a (tenant, source, thread) were last
    /// fetched again (see `puller::ingest::retry_unresolved`).
    unresolved_retries: Mutex<HashMap<(String, String, String), Instant>>,
    placement: Option<Arc<dyn JobPlacement>>,
    /// The last pair fold per tenant and the sequence it was folded up to (see [`pairs::load`]).
    pair_folds: Mutex<HashMap<String, (i64, PairFold)>>,
    /// The places of each tenant's working pulls (see [`ACTIVE_PULLS_PER_TENANT`]).
    working: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// The mDNS daemons, once [`crate::discovery::start`] ran.
    pub discovery: Discovery,
    /// The traces that wrote recent records, handed on to peers that pull them.
    pub traces: TraceIndex,
    /// The direct pulls noted for the relay outbox.
    pub(crate) relay_outbox: Outbox,
    /// Per tenant: whether its outbox job was started, or when that was last looked at.
    outbox_started: Mutex<HashMap<String, Option<Instant>>>,
    /// Peers' answers on the keys of typed actors, and the vouches stored here.
    pub(crate) vouches: VouchCache,
    /// Checks peers' manifests, remembering when it first saw upstream-form signatures.
    pub(crate) manifests: manifest::Verifier,
    /// Per tenant: its own signed manifest and what it was signed for (see [`Self::own_manifest`]).
    own_manifests: Mutex<HashMap<String, (String, Value)>>,
    /// Pullers' L0 acceptances this steward has verified (federation-protocol.md §6.4).
    pub(crate) acceptances: crate::consent::AcceptanceCache,
    /// Our own L0 acceptances, folded (federation-protocol.md §6.4).
    pub(crate) own_acceptances: crate::consent::OwnAcceptances,
}

impl Federation {
    pub fn new(config: FederationConfig, shared: Shared) -> Federation {
        let peer_client = |allow_private: bool| {
            PeerClient::new(PeerClientOptions {
                allow_private,
                connect_timeout: config.peer_timeouts.connect,
                request_timeout: config.peer_timeouts.request,
                longpoll_timeout: config.peer_timeouts.longpoll,
                ..PeerClientOptions::default()
            })
        };
        let peers = peer_client(config.allow_private_peers);
        // The directories are the operator's own: reachable wherever they are, unlike peers.
        let directory_client = PeerClient::new(PeerClientOptions {
            allow_private: true,
            connect_timeout: config.peer_timeouts.connect,
            request_timeout: config.peer_timeouts.request,
            ..PeerClientOptions::default()
        });
        let resolver_over = |client: &PeerClient| {
            let clock = config.resolver_clock.clone();
            DidResolver::new(client.clone(), config.directories.clone())
                .with_directory_client(directory_client.clone())
                .with_clock(move || clock())
        };
        let resolver = resolver_over(&peers);
        let public_only = config.allow_private_peers.then(|| {
            let client = peer_client(false);
            let resolver = resolver_over(&client);
            (client, resolver)
        });
        let jobs = Jobs::new(
            config.poll_interval,
            Backoff::new(config.backoff_base, config.backoff_cap),
        );
        Federation {
            config,
            store: shared.store,
            namespaces: shared.namespaces,
            tokens: shared.tokens,
            env: shared.env,
            shutdown: shared.shutdown,
            jobs,
            peers,
            resolver,
            public_only,
            directory_client,
            unresolved_retries: Mutex::default(),
            placement: None,
            pair_folds: Mutex::default(),
            working: Mutex::default(),
            discovery: Discovery::default(),
            traces: TraceIndex::default(),
            relay_outbox: Outbox::default(),
            outbox_started: Mutex::default(),
            vouches: VouchCache::default(),
            manifests: manifest::Verifier::default(),
            acceptances: crate::consent::AcceptanceCache::default(),
            own_acceptances: crate::consent::OwnAcceptances::default(),
            own_manifests: Mutex::default(),
        }
    }

    pub fn with_placement(mut self, placement: Arc<dyn JobPlacement>) -> Federation {
        self.placement = Some(placement);
        self
    }

    /// The guarded client for calls to peers.
    pub fn client(&self) -> &PeerClient {
        &self.peers
    }

    /// The client for the operator's did:sync directories (registering tenants, resolving).
    pub fn directory_client(&self) -> &PeerClient {
        &self.directory_client
    }

    pub fn resolver(&self) -> &DidResolver {
        &self.resolver
    }

    /// The client and resolver for fetches within `reach`.
    pub(crate) fn reaching(&self, reach: Reach) -> (&PeerClient, &DidResolver) {
        match (&self.public_only, reach) {
            (Some((client, resolver)), Reach::PublicOnly) => (client, resolver),
            _ => (&self.peers, &self.resolver),
        }
    }

    /// Cancelled when the steward begins to stop.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Waits for one of `tenant`'s places to work on a pull (see [`ACTIVE_PULLS_PER_TENANT`]),
    /// held until the permit is dropped.
    pub(crate) async fn work_permit(&self, tenant: &str) -> Result<OwnedSemaphorePermit> {
        let places = {
            let mut working = self.working.lock().unwrap_or_else(|e| e.into_inner());
            working
                .entry(tenant.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(ACTIVE_PULLS_PER_TENANT)))
                .clone()
        };
        places
            .acquire_owned()
            .await
            .map_err(|_| FederationError::internal("the pull places were closed"))
    }

    /// The tenant's signed manifest, with this steward's relays (federation-protocol.md §2.1):
    /// signed once and served until it is a day old or the DID, key or URL it was signed for
    /// changed, so that a peer comparing manifests by digest sees a change only when there is one.
    pub fn own_manifest(&self, tenant: &Tenant) -> Value {
        let identity = &tenant.identity;
        let url = tenant.url.as_deref().unwrap_or_default();
        let signed_for = format!("{}\n{}\n{url}", identity.did, identity.key.did_key());
        let now = SystemTime::now();
        let mut kept = self.own_manifests.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((kept_for, manifest)) = kept.get(&tenant.id) {
            let young = !manifest::expires_before(
                manifest,
                now + manifest::MANIFEST_TTL - manifest::RESIGN_AFTER,
            );
            if *kept_for == signed_for && young {
                return manifest.clone();
            }
        }
        let manifest =
            manifest::sign_announcing(&identity.key, &identity.did, url, now, &self.config);
        if kept.len() > 10_000 {
            kept.clear();
        }
        kept.insert(tenant.id.clone(), (signed_for, manifest.clone()));
        manifest
    }

    pub(crate) fn cached_pairs(&self, tenant: &str) -> Option<(i64, PairFold)> {
        let folds = self.pair_folds.lock().unwrap_or_else(|e| e.into_inner());
        folds.get(tenant).cloned()
    }

    pub(crate) fn cache_pairs(&self, tenant: &str, seq: i64, pairs: PairFold) {
        let mut folds = self.pair_folds.lock().unwrap_or_else(|e| e.into_inner());
        if folds.len() > 10_000 {
            folds.clear();
        }
        folds.insert(tenant.to_string(), (seq, pairs));
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

    /// Starts (or keeps) the pull job of `thread` from `source`, here or on whichever replica
    /// holds it.
    pub async fn start_job(
        self: &Arc<Self>,
        tenant: Arc<Tenant>,
        source: &str,
        thread: &str,
    ) -> Result<()> {
        let here = match &self.placement {
            Some(placement) => placement.claim(&tenant.id, source, thread).await?,
            None => true,
        };
        if here {
            self.jobs.ensure(self, tenant, source, thread);
        }
        Ok(())
    }

    /// Starts the relay outbox of `tenant` (hosted: on whichever replica claims it, as a pull
    /// job) once its peers' direct pulls gave it a queue to deposit to; looked at, from a peer's
    /// pull, at most once a minute per tenant. A local steward starts it with its jobs.
    pub fn ensure_outbox(self: &Arc<Self>, tenant: &Arc<Tenant>) {
        {
            let mut started = self
                .outbox_started
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match started.get(&tenant.id) {
                Some(None) => return,
                Some(Some(at)) if at.elapsed() < OUTBOX_LOOK_EVERY => return,
                _ => {}
            }
            if started.len() > 100_000 {
                started.clear();
            }
            started.insert(tenant.id.clone(), Some(Instant::now()));
        }
        let (fed, tenant) = (self.clone(), tenant.clone());
        tokio::spawn(async move {
            let served = fed.store.state_count(&tenant.id, state::RELAY_SERVED).await;
            if !matches!(served, Ok(n) if n > 0) {
                return;
            }
            match fed
                .start_job(tenant.clone(), outbox::JOB, outbox::JOB_THREAD)
                .await
            {
                Ok(()) => {
                    let mut started = fed.outbox_started.lock().unwrap_or_else(|e| e.into_inner());
                    started.insert(tenant.id.clone(), None);
                }
                Err(e) => {
                    tracing::warn!(tenant = %tenant.id, error = %e, "starting the relay outbox failed")
                }
            }
        });
    }

    /// Stops every job of a source, on every replica.
    pub async fn stop_jobs(&self, tenant: &str, source: &str) -> Result<()> {
        self.jobs.stop(tenant, source);
        if let Some(placement) = &self.placement {
            placement.release(tenant, source).await?;
        }
        Ok(())
    }

    /// Starts the pull job of every cursor row of a tenant whose source still exists, of every
    /// thread a pair checkpointed (the cursor rows are a cache: after a restore the pairs'
    /// `cursor_checkpoint` records say where to go on), and of every one-thread sync pair (at
    /// start). A pair whose bearer is gone degrades here, before its jobs run.
    pub async fn resume_jobs(self: &Arc<Self>, tenant: Arc<Tenant>) -> Result<()> {
        let sync_pairs = sync_pairs::registry(self, &tenant.id).await?;
        let mut pairs = pairs::load(self, &tenant).await?;
        for pair in pairs.values() {
            pairs::degrade_without_credential(self, &tenant, pair).await?;
        }
        pairs = pairs::load(self, &tenant).await?;
        self.seed_cursors(&tenant, &pairs).await?;
        let mut jobs = jobs::cursor_rows(self, &tenant.id).await?;
        // Removed sync pairs and revoked pairs keep their cursor rows (history) but pull no more.
        jobs.retain(|(source, _)| {
            sync_pairs
                .get(source)
                .is_some_and(|p| p.recorded != "stopped")
                || pairs
                    .get(source)
                    .is_some_and(|p| p.state != PairState::Revoked)
        });
        jobs.extend(
            sync_pairs
                .values()
                .filter(|p| p.recorded != "stopped")
                .map(|p| (p.pair_id.clone(), p.thread_id.clone())),
        );
        // Idle until a peer pulls a queue that has a relay (ours or the peer's).
        jobs.push((outbox::JOB.to_string(), outbox::JOB_THREAD.to_string()));
        for (source, thread) in jobs {
            self.start_job(tenant.clone(), &source, &thread).await?;
        }
        Ok(())
    }

    /// A cursor row for every thread a live pair checkpointed and has no row for.
    async fn seed_cursors(
        &self,
        tenant: &Tenant,
        pairs: &std::collections::BTreeMap<String, PairView>,
    ) -> Result<()> {
        let mut seeds = Vec::new();
        for pair in pairs.values().filter(|p| p.state != PairState::Revoked) {
            for (thread, checkpoint) in &pair.cursors {
                let row =
                    state::pull_cursor(self.store.as_ref(), &tenant.id, &pair.pair_id, thread)
                        .await?;
                if row.is_none() {
                    let cursor = state::PullCursor {
                        cursor: checkpoint.cursor.clone(),
                        ..state::PullCursor::default()
                    };
                    seeds.push(state::put_cursor(&pair.pair_id, thread, &cursor));
                }
            }
        }
        if !seeds.is_empty() {
            self.store.write(&tenant.id, Vec::new(), seeds).await?;
        }
        Ok(())
    }

    /// Every record of a steward-written thread (pairs, consent, sync control), in commit order,
    /// and the sequence of the last.
    pub async fn thread_records(&self, tenant: &str, thread: &str) -> Result<(Vec<Value>, i64)> {
        Ok(syncropel_tenant::stored_thread(self.store.as_ref(), tenant, thread).await?)
    }

    /// Signs and stores records the steward writes on its own account (pair, consent and sync
    /// control records with their audit), with state changes, in one transaction. Returns their
    /// ids.
    pub async fn write_own(
        &self,
        tenant: &Tenant,
        entries: Vec<(&str, Map<String, Value>, Vec<String>)>,
        changes: Vec<StateChange>,
    ) -> Result<Vec<String>> {
        let records: Vec<_> = entries
            .into_iter()
            .map(|(thread, body, parents)| own_record(tenant, thread, body, parents))
            .collect();
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        for result in self.store.write(&tenant.id, records, changes).await? {
            result?;
        }
        Ok(ids)
    }
}

/// A LEARN the steward writes on its own account (pair, consent, sync control, their audit),
/// signed with the tenant's key.
pub fn own_record(
    tenant: &Tenant,
    thread: &str,
    body: Map<String, Value>,
    parents: Vec<String>,
) -> NewRecord {
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

/// A handshake or notice body signed with the tenant's identity key (federation-protocol.md
/// federation-protocol.md §1.1: the `sig` object over the canonical JSON of the rest).
pub fn signed(body: Value, key: &Keypair) -> Value {
    let mut object = match body {
        Value::Object(object) => object,
        _ => Map::new(),
    };
    syncropel_protocol::signed::sign_object(&mut object, key);
    Value::Object(object)
}
