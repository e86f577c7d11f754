//! [`DidResolver`]: the keys and endpoint of a did:web or did:sync
//! (federation-protocol.md §1.3–1.5), cached so that verifying a record rarely waits on the
//! network.
//!
//! did:web documents are trusted as served by their host (that is what did:web means);
//! did:sync logs are not trusted at all: every op is replayed and re-verified here, so a
//! directory can withhold ops but cannot forge or reorder them.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use syncropel_protocol::did_doc::{did_web_url, parse_document, RELAY_SERVICE};
use syncropel_protocol::did_sync::{DidState, LoggedOp, OpLog, DID_HASH_CHARS};

use crate::peer::PeerClient;
use crate::peer::PeerError;

/// Largest did:web document read.
const DOCUMENT_LIMIT: usize = 64 * 1024;
/// Largest did:sync operation log read.
pub(crate) const OP_LOG_LIMIT: usize = 1024 * 1024;
/// did:web cache lifetime without a `Cache-Control` max-age.
const WEB_DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);
/// Bounds on a served max-age: short enough to see rotations, long enough to spare the host.
const WEB_MIN_TTL: Duration = Duration::from_secs(60);
const WEB_MAX_TTL: Duration = Duration::from_secs(60 * 60);
/// did:sync cache lifetime (directories send no useful cache headers).
const SYNC_TTL: Duration = Duration::from_secs(10 * 60);
/// How long a failure is remembered, so a dead host is not asked again for every record.
const NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// At most one forced refetch per DID per this interval, so records signed by unknown keys
/// cannot make us hammer a host.
const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Cache size at which expired entries (then all idle ones) are dropped.
const MAX_ENTRIES: usize = 10_000;

/// What a DID says about its keys and endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedDid {
    pub did: String,
    /// `did:key`s valid for verifying records: current and retired keys, minus compromised
    /// ones; empty once deactivated.
    pub keys: Vec<String>,
    /// `did:key`s in force for new records.
    pub current: Vec<String>,
    /// The `syncropel` service endpoint.
    pub endpoint: Option<String>,
    /// The `syncropel-relay` service endpoints, in order (federation-protocol.md §7.2).
    pub relays: Vec<String>,
    pub also_known_as: Vec<String>,
    /// did:sync handles (empty for did:web).
    pub handles: Vec<String>,
    /// A did:sync whose log ends in a tombstone.
    pub deactivated: bool,
    /// did:sync: the cid of the last live operation (the `prev` of the next one); none for
    /// did:web.
    pub head: Option<String>,
}

impl ResolvedDid {
    /// Whether a record signed by `signer_did_key` (`did:key:z6Mk…`) can be this DID's.
    pub fn accepts(&self, signer_did_key: &str) -> bool {
        self.keys.iter().any(|k| k == signer_did_key)
    }
}

type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;
type Outcome = Result<Arc<ResolvedDid>, PeerError>;

/// Resolves did:web and did:sync DIDs through a guarded [`PeerClient`], with a cache.
/// Share one per steward (e.g. in an `Arc`): concurrent resolves of one DID make one request.
pub struct DidResolver {
    client: PeerClient,
    /// Directories are the operator's own choice, so they may sit on a private network even
    /// where peers' hosts may not (see [`DidResolver::with_directory_client`]).
    directory_client: PeerClient,
    directories: Vec<String>,
    clock: Clock,
    cache: RwLock<HashMap<String, Entry>>,
}

struct Entry {
    cached: Option<Cached>,
    /// Held while fetching, so callers that miss together share one fetch.
    fetch: Arc<tokio::sync::Mutex<()>>,
    /// When `refresh` last forced a fetch.
    last_forced: Option<Instant>,
    /// Fetches completed so far; a forced fetch can share only one that ends after it asked.
    fetches: u64,
}

struct Cached {
    outcome: Outcome,
    expires: Instant,
}

impl Entry {
    fn new() -> Entry {
        Entry {
            cached: None,
            fetch: Arc::new(tokio::sync::Mutex::new(())),
            last_forced: None,
            fetches: 0,
        }
    }

    fn fresh(&self, now: Instant) -> Option<&Cached> {
        self.cached.as_ref().filter(|c| c.expires > now)
    }

    /// Someone is fetching or waiting to.
    fn busy(&self) -> bool {
        Arc::strong_count(&self.fetch) > 1
    }
}

/// Where a DID's data comes from.
enum Source {
    Web(String),
    /// The did:sync hash.
    Sync(String),
}

impl std::fmt::Debug for DidResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DidResolver")
            .field("client", &self.client)
            .field("directories", &self.directories)
            .finish_non_exhaustive()
    }
}

impl DidResolver {
    /// A resolver fetching through `client` (whose `allow_private` policy applies to DID
    /// hosts and directories alike) and asking the did:sync `directories` (base URLs) in order.
    pub fn new(client: PeerClient, directories: Vec<String>) -> DidResolver {
        DidResolver {
            directory_client: client.clone(),
            client,
            directories,
            clock: Arc::new(Instant::now),
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Fetches did:sync logs from the configured directories through `client` instead: a
    /// hosted steward refuses private addresses for peers, not for the directory its operator
    /// configured.
    pub fn with_directory_client(mut self, client: PeerClient) -> Self {
        self.directory_client = client;
        self
    }

    /// Replaces the clock cache expiry and the refresh limit are measured with (tests).
    pub fn with_clock(mut self, clock: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The DID's keys and endpoint, from the cache when fresh. Failures are cached for 30 s.
    pub async fn resolve(&self, did: &str) -> Result<Arc<ResolvedDid>, PeerError> {
        let now = (self.clock)();
        if let Some(outcome) = self.read(|cache| Some(cache.get(did)?.fresh(now)?.outcome.clone()))
        {
            return outcome;
        }
        let source = source(did)?;
        self.fetch_shared(did, &source, None).await
    }

    /// Resolves again, bypassing the cache, e.g. when a record's signer is not among the cached
    /// keys. Forced fetches are limited to one per DID per 30 s; beyond that this is
    /// [`DidResolver::resolve`].
    pub async fn refresh(&self, did: &str) -> Result<Arc<ResolvedDid>, PeerError> {
        let source = source(did)?;
        let now = (self.clock)();
        let forced = self.write(|cache| {
            let entry = entry_mut(cache, did, now);
            let due = entry
                .last_forced
                .is_none_or(|at| now.saturating_duration_since(at) >= REFRESH_INTERVAL);
            if due {
                entry.last_forced = Some(now);
            }
            due.then_some(entry.fetches)
        });
        match forced {
            Some(fetches) => self.fetch_shared(did, &source, Some(fetches)).await,
            None => self.resolve(did).await,
        }
    }

    /// A did:sync's operation log from the first configured directory that holds it, checked
    /// by replaying it (what an export carries as `directory/ops.jsonl`).
    pub async fn sync_log(&self, did: &str) -> Result<Vec<LoggedOp>, PeerError> {
        let Source::Sync(hash) = source(did)? else {
            return Err(PeerError::DidUnsupported(format!("{did}: not a did:sync")));
        };
        Ok(self.fetch_log(did, &hash).await?.0)
    }

    /// The cached, unexpired resolution of `did`, without any I/O.
    pub fn cached(&self, did: &str) -> Option<Arc<ResolvedDid>> {
        let now = (self.clock)();
        self.read(|cache| cache.get(did)?.fresh(now)?.outcome.clone().ok())
    }

    /// Fetches under the DID's fetch lock. Whoever waited on the lock first re-checks the
    /// cache: a fresh entry (or, for a forced fetch, one completed after `forced_after`
    /// fetches) was fetched by the caller ahead of it and is shared.
    async fn fetch_shared(
        &self,
        did: &str,
        source: &Source,
        forced_after: Option<u64>,
    ) -> Result<Arc<ResolvedDid>, PeerError> {
        let lock = self.write(|cache| Arc::clone(&entry_mut(cache, did, (self.clock)()).fetch));
        let _fetching = lock.lock().await;
        let now = (self.clock)();
        let shared = self.read(|cache| {
            let entry = cache.get(did)?;
            let cached = entry.cached.as_ref()?;
            let usable = match forced_after {
                Some(fetches) => entry.fetches > fetches,
                None => cached.expires > now,
            };
            usable.then(|| cached.outcome.clone())
        });
        if let Some(outcome) = shared {
            return outcome;
        }

        let (outcome, ttl) = match self.fetch(did, source).await {
            Ok((resolved, ttl)) => (Ok(Arc::new(resolved)), ttl),
            Err(e) => (Err(e), NEGATIVE_TTL),
        };
        let now = (self.clock)();
        self.write(|cache| {
            let entry = entry_mut(cache, did, now);
            entry.fetches += 1;
            entry.cached = Some(Cached {
                outcome: outcome.clone(),
                expires: now + ttl,
            });
        });
        outcome
    }

    async fn fetch(
        &self,
        did: &str,
        source: &Source,
    ) -> Result<(ResolvedDid, Duration), PeerError> {
        match source {
            Source::Web(url) => self.fetch_web(did, url).await,
            Source::Sync(hash) => self.fetch_sync(did, hash).await.map(|r| (r, SYNC_TTL)),
        }
    }

    async fn fetch_web(&self, did: &str, url: &str) -> Result<(ResolvedDid, Duration), PeerError> {
        let (doc, max_age) = self
            .client
            .get_document(url, DOCUMENT_LIMIT)
            .await
            .map_err(|e| not_found_on_404(did, e))?;
        let parsed =
            parse_document(did, &doc).map_err(|e| PeerError::DidInvalid(format!("{did}: {e}")))?;
        let ttl = max_age.map_or(WEB_DEFAULT_TTL, |age| age.clamp(WEB_MIN_TTL, WEB_MAX_TTL));
        let resolved = ResolvedDid {
            did: parsed.did,
            current: parsed
                .keys
                .iter()
                .filter(|k| k.current)
                .map(|k| k.did_key.clone())
                .collect(),
            keys: parsed.keys.into_iter().map(|k| k.did_key).collect(),
            endpoint: parsed.endpoint,
            relays: parsed.relays,
            also_known_as: parsed.also_known_as,
            handles: Vec::new(),
            deactivated: false,
            head: None,
        };
        Ok((resolved, ttl))
    }

    /// Asks each directory in turn; a 404 or a failure moves on to the next. With no good
    /// answer, the first failure other than 404 is reported, else `DID_NOT_FOUND`.
    async fn fetch_sync(&self, did: &str, hash: &str) -> Result<ResolvedDid, PeerError> {
        let (_, state) = self.fetch_log(did, hash).await?;
        Ok(resolved(state))
    }

    /// The DID's operation log from the first directory that serves one that checks (replayed),
    /// and the state it comes to. A 404 or a failure moves on to the next directory; with no good
    /// answer, the first failure other than 404 is reported, else `DID_NOT_FOUND`.
    async fn fetch_log(
        &self,
        did: &str,
        hash: &str,
    ) -> Result<(Vec<LoggedOp>, DidState), PeerError> {
        let mut first_error = None;
        for directory in &self.directories {
            let url = format!(
                "{}/directory/{hash}/operations",
                directory.trim_end_matches('/')
            );
            let outcome = match self.directory_client.get_document(&url, OP_LOG_LIMIT).await {
                Ok((body, _)) => served_log(did, body)
                    .and_then(|log| replay_log(did, &log).map(|state| (log, state))),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(checked) => return Ok(checked),
                Err(e) if e.http_status() == Some(404) => {}
                Err(e) => {
                    tracing::debug!(%did, %directory, code = e.code(), error = %e, "directory failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| PeerError::DidNotFound(did.to_owned())))
    }

    fn read<T>(&self, f: impl FnOnce(&HashMap<String, Entry>) -> Option<T>) -> Option<T> {
        f(&self.cache.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        f(&mut self.cache.write().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The entry of `did`, created if needed. A full cache first drops expired entries, then, if
/// still full, every idle one: DIDs named by hostile records must not grow it without bound.
fn entry_mut<'a>(cache: &'a mut HashMap<String, Entry>, did: &str, now: Instant) -> &'a mut Entry {
    if cache.len() >= MAX_ENTRIES && !cache.contains_key(did) {
        cache.retain(|_, e| e.busy() || e.fresh(now).is_some());
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, e| e.busy());
        }
    }
    cache.entry(did.to_owned()).or_insert_with(Entry::new)
}

/// Where `did` is resolved from; other methods and typed did:sync forms are unsupported.
fn source(did: &str) -> Result<Source, PeerError> {
    let unsupported = |why: String| Err(PeerError::DidUnsupported(format!("{did}: {why}")));
    if did.starts_with("did:web:") {
        return did_web_url(did)
            .map(Source::Web)
            .or_else(|e| unsupported(e.to_string()));
    }
    if let Some(hash) = did.strip_prefix("did:sync:") {
        let base32 = |b: u8| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b);
        if hash.len() == DID_HASH_CHARS && hash.bytes().all(base32) {
            return Ok(Source::Sync(hash.to_owned()));
        }
        return unsupported("only did:sync:<24 base32 characters> is resolvable".into());
    }
    unsupported("only did:web and did:sync are resolvable".into())
}

/// A 404 from the DID's host means the DID does not exist.
fn not_found_on_404(did: &str, e: PeerError) -> PeerError {
    if e.http_status() == Some(404) {
        PeerError::DidNotFound(did.to_owned())
    } else {
        e
    }
}

/// What a DID's state in force says of it.
fn resolved(state: DidState) -> ResolvedDid {
    let did_key = |multibase: &String| format!("did:key:{multibase}");
    ResolvedDid {
        did: state.did,
        keys: if state.deactivated {
            Vec::new()
        } else {
            state
                .historical_signing_keys
                .iter()
                .map(|(_, key)| did_key(key))
                .collect()
        },
        current: state.signing_keys.values().map(did_key).collect(),
        endpoint: state.services.get("syncropel").map(|s| s.endpoint.clone()),
        // Named `relay-1`, `relay-2`, …: in that order.
        relays: state
            .services
            .values()
            .filter(|s| s.kind == RELAY_SERVICE)
            .map(|s| s.endpoint.clone())
            .collect(),
        also_known_as: Vec::new(),
        handles: state.handles,
        deactivated: state.deactivated,
        head: Some(state.head),
    }
}

/// Replays a served `did_operations` answer into the DID's state ([`replay_log`]).
pub(crate) fn replay_state(did: &str, body: Value) -> Result<DidState, PeerError> {
    replay_log(did, &served_log(did, body)?)
}

/// The operations of a served `did_operations` answer for `did`, unchecked.
fn served_log(did: &str, body: Value) -> Result<Vec<LoggedOp>, PeerError> {
    let invalid = |why: String| PeerError::DidInvalid(format!("{did}: {why}"));
    let Value::Object(mut body) = body else {
        return Err(invalid("answer is not an object".into()));
    };
    if body.get("object").and_then(Value::as_str) != Some("did_operations") {
        return Err(invalid("answer is not a did_operations object".into()));
    }
    if body.get("did").and_then(Value::as_str) != Some(did) {
        return Err(invalid("the directory answered for another DID".into()));
    }
    serde_json::from_value(body.remove("operations").unwrap_or(Value::Null))
        .map_err(|e| invalid(format!("operations: {e}")))
}

/// Replays a did:sync's logged operations, re-verifying every op, and folds them into the DID's
/// state. The log's cids and `nullified` flags must match what the replay computes.
pub fn replay_log(did: &str, served: &[LoggedOp]) -> Result<DidState, PeerError> {
    let invalid = |why: String| PeerError::DidInvalid(format!("{did}: {why}"));
    let mut log = OpLog::new();
    for (i, entry) in served.iter().enumerate() {
        let applied = log
            .apply(&entry.op, entry.received_at)
            .map_err(|e| invalid(format!("operation {i}: {e}")))?;
        if applied.entry.cid != entry.cid {
            return Err(invalid(format!(
                "operation {i}: cid does not match its content"
            )));
        }
    }
    if log.did().as_deref() != Some(did) {
        return Err(invalid("the log's genesis is not this DID's".into()));
    }
    if let Some(i) = (0..served.len()).find(|&i| served[i].nullified != log.entries[i].nullified) {
        return Err(invalid(format!("operation {i}: nullified flag is wrong")));
    }
    log.current()
        .ok_or_else(|| invalid("the log has no live genesis".into()))
}
