//! The puller side of sync (FEDERATION §5.4-5.5): one job per (source, thread) pulls pages from
//! the peer, checks every record before anything is stored (§1.1), and ingests a page together
//! with the cursor that moves past it, in one transaction. Jobs hold a longpoll open at the peer,
//! so a record committed there arrives here within milliseconds; the interval only spaces polls
//! to a peer that does not hold longpolls, and backoff spaces retries after failures.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use syncropel_federation::{Backoff, ChangesPage, ChangesRequest, PeerClient, PeerError};
use syncropel_protocol::sync::{
    verify_items, PeerItem, Rejection, ResolvedKeys, SyncCursor, DEFAULT_PAGE,
};
use syncropel_protocol::{is_config_thread, is_server_only_thread};
use syncropel_store::{Appended, NewRecord, StateChange, StoreError};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::identities::verify_with_documents;
use super::state::{self, pull_cursor, put_cursor, PullCursor, QUARANTINE};
use super::Federation;
use crate::app::AppState;
use crate::error::ApiError;
use crate::tenant::Tenant;
use syncropel_protocol::unix_now;
use syncropel_tenant::stored_form;

/// Where one job pulls from: resolved afresh before every pull, so a pause, a revoke or a new
/// token takes effect on the next one.
#[derive(Clone, Debug)]
pub struct Source {
    /// The pair id (record-bound) or legacy pair id (`sp_…`).
    pub id: String,
    pub peer_did: String,
    pub base_url: String,
    pub token: String,
    /// Our DID, sent as `X-Syncropel-Actor` (pair tokens are bound to it).
    pub actor: String,
    pub target_namespace: Option<String>,
}

/// Why a pull did not happen or failed.
#[derive(Debug)]
pub enum PullError {
    /// The peer failed or broke the protocol; classified (§5.5).
    Peer(PeerError),
    /// The source may not be pulled now (paused, revoked, unpaired, no credential).
    Parked(ApiError),
    /// Our own store failed.
    Local(ApiError),
}

impl PullError {
    pub fn code(&self) -> String {
        match self {
            PullError::Peer(e) => e.code().to_string(),
            PullError::Parked(e) | PullError::Local(e) => e.code.as_str().to_string(),
        }
    }

    pub fn message(&self) -> String {
        match self {
            PullError::Peer(e) => e.to_string(),
            PullError::Parked(e) | PullError::Local(e) => e.message.clone(),
        }
    }
}

impl From<ApiError> for PullError {
    fn from(e: ApiError) -> PullError {
        PullError::Local(e)
    }
}

impl From<StoreError> for PullError {
    fn from(e: StoreError) -> PullError {
        PullError::Local(e.into())
    }
}

/// What one pull did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PullOutcome {
    /// Records stored for the first time.
    pub pulled: usize,
    /// Records of the page already held (re-delivery).
    pub duplicates: usize,
    pub quarantined: usize,
    pub has_more: bool,
    pub cursor: String,
    /// Parents the page named that this store lacks, for [`fetch_parents`].
    #[serde(skip)]
    pub missing_parents: Vec<String>,
}

/// Pulls one page of `thread` from `source` and ingests it. Nothing from a page that breaks the
/// protocol is stored and the cursor stays; a record that fails its checks is quarantined and
/// the cursor moves past it, so one bad record cannot wedge the job.
pub async fn pull_once(
    state: &AppState,
    client: &PeerClient,
    tenant: &Tenant,
    source: &Source,
    thread: &str,
    longpoll: bool,
) -> Result<PullOutcome, PullError> {
    let mut cursor = pull_cursor(state.store.as_ref(), &tenant.id, &source.id, thread)
        .await?
        .unwrap_or_default();
    let page = fetch(
        client,
        &state.federation,
        source,
        thread,
        &cursor.cursor,
        longpoll,
    )
    .await?;
    let outcome = ingest(state, tenant, source, thread, page, &mut cursor).await?;
    fetch_parents(state, client, tenant, source, &outcome.missing_parents).await;
    retry_unresolved(state, client, tenant, source, thread).await;
    Ok(outcome)
}

/// Pulls until the source has nothing more (a catch-up), as a pipeline: while one page is
/// stored, the next ones are parsed and verified on the blocking pool and the one after them is
/// being served by the source. At most [`PIPELINE_PAGES`] pages wait, so memory stays bounded;
/// pages are stored in order, each with the cursor past it, and nothing after a failing page.
pub async fn pull_through(
    state: &AppState,
    client: &PeerClient,
    tenant: &Tenant,
    source: &Source,
    thread: &str,
) -> Result<PullOutcome, PullError> {
    let mut cursor = pull_cursor(state.store.as_ref(), &tenant.id, &source.id, thread)
        .await?
        .unwrap_or_default();
    let (pages, mut checked) = mpsc::channel(PIPELINE_PAGES);
    let producer = {
        let (client, source) = (client.clone(), source.clone());
        let federation = state.federation.clone();
        let (thread, mut since) = (thread.to_string(), cursor.cursor.clone());
        tokio::spawn(async move {
            loop {
                let page = fetch_page(&client, &source, &thread, &since, false).await;
                let more = match &page {
                    Ok(page) => {
                        since = page.next_cursor.clone();
                        page.has_more
                    }
                    Err(_) => false,
                };
                let (thread, federation) = (thread.clone(), federation.clone());
                let check =
                    tokio::spawn(async move { check_page(page?, &thread, &federation).await });
                if pages.send(check).await.is_err() || !more {
                    return;
                }
            }
        })
    };
    let mut total = PullOutcome::default();
    while let Some(check) = checked.recv().await {
        let stored = match check.await {
            Ok(Ok(page)) => ingest(state, tenant, source, thread, page, &mut cursor).await,
            Ok(Err(e)) => Err(e),
            Err(e) => Err(ApiError::internal(format!("checking a page failed: {e}")).into()),
        };
        let outcome = match stored {
            Ok(outcome) => outcome,
            Err(e) => {
                producer.abort();
                return Err(e);
            }
        };
        fetch_parents(state, client, tenant, source, &outcome.missing_parents).await;
        total.pulled += outcome.pulled;
        total.duplicates += outcome.duplicates;
        total.quarantined += outcome.quarantined;
        total.cursor = outcome.cursor;
        total.has_more = outcome.has_more;
    }
    retry_unresolved(state, client, tenant, source, thread).await;
    Ok(total)
}

/// Pages parsed and verified ahead of the one being stored.
const PIPELINE_PAGES: usize = 2;

/// A page fetched and checked against the protocol (§5.5), its items parsed and their ids and
/// signatures checked (§1.1); not yet stored.
struct Fetched {
    items: Vec<PeerItem>,
    verdicts: Vec<Result<(), Rejection>>,
    next_cursor: String,
    has_more: bool,
}

async fn fetch(
    client: &PeerClient,
    federation: &Federation,
    source: &Source,
    thread: &str,
    since: &str,
    longpoll: bool,
) -> Result<Fetched, PullError> {
    let page = fetch_page(client, source, thread, since, longpoll).await?;
    check_page(page, thread, federation).await
}

/// Asks the source for the page after `since` and checks the page as a whole (§5.5): the
/// thread, progress, a cursor that must not go backwards.
async fn fetch_page(
    client: &PeerClient,
    source: &Source,
    thread: &str,
    since: &str,
    longpoll: bool,
) -> Result<ChangesPage, PullError> {
    let request = ChangesRequest {
        base: &source.base_url,
        token: &source.token,
        actor: &source.actor,
        thread,
        since,
        limit: DEFAULT_PAGE,
        longpoll,
        target_namespace: source.target_namespace.as_deref(),
    };
    let mut held = since;
    let mut page = client.changes(&request).await;
    if is_epoch_mismatch(&page) && !since.is_empty() {
        // The source's store was made anew (imported, restored): start again from its
        // beginning; what we hold already de-duplicates by id (§5.4).
        tracing::info!(source = %source.id, thread, "the source has a new store epoch; pulling again from the start");
        held = "";
        page = client
            .changes(&ChangesRequest {
                since: "",
                ..request
            })
            .await;
    }
    let page = page.map_err(PullError::Peer)?;
    if page.thread != thread {
        return Err(violation(format!("page is for thread '{}'", page.thread)));
    }
    if page.has_more && page.records.is_empty() && page.next_cursor == held {
        return Err(violation(
            "has_more with no records and the same cursor".into(),
        ));
    }
    if let (Some(held), Some(next)) = (SyncCursor::peek(held), SyncCursor::peek(&page.next_cursor))
    {
        if held.epoch == next.epoch && next.seq < held.seq {
            return Err(violation(format!(
                "the cursor went backwards ({} -> {})",
                held.seq, next.seq
            )));
        }
    }
    Ok(page)
}

fn violation(detail: String) -> PullError {
    PullError::Peer(PeerError::Parse(detail))
}

/// Parses a page's items and checks each id and signature: CPU work, done on the blocking pool
/// unless the page is small. Records of actors with DID documents are then checked against
/// their resolved keys.
async fn check_page(
    page: ChangesPage,
    thread: &str,
    federation: &Federation,
) -> Result<Fetched, PullError> {
    let thread = thread.to_string();
    // A longpoll's page of a few records is checked in place; a catch-up page is not.
    let small = page.records.len() <= 32;
    let check = move || -> Result<Fetched, PullError> {
        let mut items = Vec::with_capacity(page.records.len());
        for raw in page.records {
            let item = PeerItem::from_value(raw).map_err(violation)?;
            if item.envelope.thread != thread {
                return Err(violation(format!(
                    "record {} is on thread '{}'",
                    item.id, item.envelope.thread
                )));
            }
            items.push(item);
        }
        let verdicts = verify_items(&items, &ResolvedKeys::new());
        Ok(Fetched {
            items,
            verdicts,
            next_cursor: page.next_cursor,
            has_more: page.has_more,
        })
    };
    let mut fetched = if small {
        check()?
    } else {
        tokio::task::spawn_blocking(check)
            .await
            .map_err(|e| ApiError::internal(format!("verification task failed: {e}")))??
    };
    verify_with_documents(federation, &fetched.items, &mut fetched.verdicts).await;
    Ok(fetched)
}

/// Stores what passed the checks of a fetched page, with the cursor row, in one transaction.
async fn ingest(
    state: &AppState,
    tenant: &Tenant,
    source: &Source,
    thread: &str,
    page: Fetched,
    cursor: &mut PullCursor,
) -> Result<PullOutcome, PullError> {
    let admitted = admit(state, tenant, source, &page.items, page.verdicts).await?;
    cursor.cursor = page.next_cursor;
    cursor.last_sync_at = Some(unix_now());
    cursor.pulled += admitted.records.len() as u64;
    let moved = put_cursor(&source.id, thread, cursor);
    let mut outcome = store_admitted(state, tenant, source, admitted, [moved]).await?;
    outcome.has_more = page.has_more;
    outcome.cursor = cursor.cursor.clone();
    // Parents the page names but neither it nor this store holds (often on threads not pulled).
    let held: HashSet<&str> = page.items.iter().map(|i| i.id.as_str()).collect();
    let mut wanted: Vec<String> = Vec::new();
    for parent in page.items.iter().flat_map(|i| &i.envelope.parents) {
        if wanted.len() >= MAX_PARENT_FETCH {
            break;
        }
        if !held.contains(parent.as_str())
            && !wanted.contains(parent)
            && state.store.get(&tenant.id, parent).await?.is_none()
        {
            wanted.push(parent.clone());
        }
    }
    outcome.missing_parents = wanted;
    Ok(outcome)
}

/// Most quarantined records fetched again at once, so that their answer fits the client's 1 MiB
/// limit for such calls in the common case of small records.
const UNRESOLVED_RETRY_BATCH: usize = 100;

/// Most missing parents asked for after one page.
const MAX_PARENT_FETCH: usize = 1000;

/// Asks the source for missing parents (`POST /v1/sync/records`) and stores those that pass
/// the same checks as a page. Best effort: a failure is logged, never fails the pull.
pub async fn fetch_parents(
    state: &AppState,
    client: &PeerClient,
    tenant: &Tenant,
    source: &Source,
    ids: &[String],
) {
    if ids.is_empty() {
        return;
    }
    if let Err(e) = fetch_records(state, client, tenant, source, ids).await {
        tracing::debug!(source = %source.id, code = %e.code(), "fetching missing parents failed");
    }
}

/// Records of `source` on `thread` quarantined as `SIGNER_UNRESOLVED` are fetched again and
/// checked anew on each pull (§1.1): admitted as soon as their actor's document names the key.
/// The resolver's negative cache keeps an unreachable document host from being asked each time.
/// Best effort, like fetching parents.
async fn retry_unresolved(
    state: &AppState,
    client: &PeerClient,
    tenant: &Tenant,
    source: &Source,
    thread: &str,
) {
    if let Err(e) = retry_unresolved_records(state, client, tenant, source, thread).await {
        tracing::debug!(source = %source.id, code = %e.code(), "re-verifying quarantined records failed");
    }
}

async fn retry_unresolved_records(
    state: &AppState,
    client: &PeerClient,
    tenant: &Tenant,
    source: &Source,
    thread: &str,
) -> Result<(), PullError> {
    if !state
        .federation
        .unresolved_retry_due(&tenant.id, &source.id, thread)
    {
        return Ok(());
    }
    let prefix = format!("{}\n", source.id);
    let waiting: Vec<String> = state
        .store
        .state_list(&tenant.id, QUARANTINE)
        .await?
        .into_iter()
        .filter(|(key, _)| key.starts_with(&prefix))
        .filter_map(|(_, entry)| serde_json::from_str::<serde_json::Value>(&entry).ok())
        .filter(|e| e["code"] == Rejection::SignerUnresolved.code() && e["thread"] == thread)
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .take(UNRESOLVED_RETRY_BATCH)
        .collect();
    if !waiting.is_empty() {
        fetch_records(state, client, tenant, source, &waiting).await?;
    }
    Ok(())
}

/// Fetches records of `source` by id and stores those that pass the checks of a page; their
/// quarantine entries, if any, leave in the same transaction.
async fn fetch_records(
    state: &AppState,
    client: &PeerClient,
    tenant: &Tenant,
    source: &Source,
    ids: &[String],
) -> Result<PullOutcome, PullError> {
    let url = format!("{}/v1/sync/records", source.base_url.trim_end_matches('/'));
    let (status, answer) = client
        .post_json(
            &url,
            &serde_json::json!({ "ids": ids }),
            Some(&source.token),
            Some(&source.actor),
        )
        .await
        .map_err(PullError::Peer)?;
    if status != 200 {
        return Err(violation(format!("fetching records answered {status}")));
    }
    let Some(serde_json::Value::Array(records)) = answer.get("records").cloned() else {
        return Err(violation("the answer has no records".into()));
    };
    let mut items = Vec::with_capacity(records.len());
    for raw in records {
        let item = PeerItem::from_value(raw).map_err(violation)?;
        // Only what was asked for.
        if ids.contains(&item.id) {
            items.push(item);
        }
    }
    let mut verdicts = verify_items(&items, &ResolvedKeys::new());
    verify_with_documents(&state.federation, &items, &mut verdicts).await;
    let admitted = admit(state, tenant, source, &items, verdicts).await?;
    let settled: Vec<StateChange> = admitted
        .items
        .iter()
        .map(|item| StateChange::delete(QUARANTINE, &format!("{}\n{}", source.id, item.id)))
        .collect();
    store_admitted(state, tenant, source, admitted, settled).await
}

/// Whether records of `thread` may come from a peer: never the steward's own bookkeeping
/// (config, registry, pair, consent and audit threads).
pub fn pullable_thread(thread: &str) -> bool {
    !(is_config_thread(thread)
        || is_server_only_thread(thread)
        || super::changes::never_served(thread))
}

/// Records of a page that passed every check, ready to store, and the quarantine entries of the
/// others.
struct Admitted<'a> {
    records: Vec<NewRecord>,
    /// The items behind `records`, in the same order.
    items: Vec<&'a PeerItem>,
    quarantine: Vec<StateChange>,
}

async fn admit<'a>(
    state: &AppState,
    tenant: &Tenant,
    source: &Source,
    items: &'a [PeerItem],
    verdicts: Vec<Result<(), Rejection>>,
) -> Result<Admitted<'a>, PullError> {
    let store = state.store.as_ref();
    let mut admitted = Admitted {
        records: Vec::with_capacity(items.len()),
        items: Vec::with_capacity(items.len()),
        quarantine: Vec::new(),
    };
    // A page's records share a few namespaces: each is checked against the registry once.
    let mut writable: HashMap<String, bool> = HashMap::new();
    for (item, verdict) in items.iter().zip(verdicts) {
        if let Err(rejection) = verdict {
            admitted
                .quarantine
                .push(quarantined(&source.id, item, rejection.code()));
            continue;
        }
        // Pair, consent, registry and audit threads are this steward's own: a peer's record
        // there would change what its folds decide.
        if !pullable_thread(&item.envelope.thread) {
            admitted
                .quarantine
                .push(quarantined(&source.id, item, "THREAD_NOT_ALLOWED"));
            continue;
        }
        let namespace = item.envelope.namespace();
        let allowed = match writable.get(namespace) {
            Some(allowed) => *allowed,
            None => {
                let allowed = state
                    .namespaces
                    .check_writable(store, &tenant.id, namespace)
                    .await
                    .is_ok();
                writable.insert(namespace.to_string(), allowed);
                allowed
            }
        };
        if !allowed {
            admitted
                .quarantine
                .push(quarantined(&source.id, item, "NAMESPACE_REJECTED"));
            continue;
        }
        admitted.records.push(stored_form(
            &item.envelope,
            &item.id,
            item.sig.as_deref(),
            item.signer.as_deref(),
            item.redaction.as_ref(),
        ));
        admitted.items.push(item);
    }
    Ok(admitted)
}

/// Stores admitted records with the quarantine entries and `extra` state in one transaction;
/// a record whose (thread, actor, clock) another record holds is quarantined after.
async fn store_admitted(
    state: &AppState,
    tenant: &Tenant,
    source: &Source,
    admitted: Admitted<'_>,
    extra: impl IntoIterator<Item = StateChange>,
) -> Result<PullOutcome, PullError> {
    let store = state.store.as_ref();
    let mut outcome = PullOutcome {
        quarantined: admitted.quarantine.len(),
        ..PullOutcome::default()
    };
    let mut changes = admitted.quarantine;
    changes.extend(extra);
    // A record written in a traced request at the source is ingested in that same trace.
    let spans: Vec<Option<tracing::Span>> = admitted
        .items
        .iter()
        .map(|item| {
            let traceparent = item.traceparent.as_deref()?;
            let span = tracing::debug_span!(
                "sync.ingest",
                otel.kind = "consumer",
                record = %item.id,
                source = %source.id,
            );
            syncropel_telemetry::propagation::set_parent(&span, traceparent);
            syncropel_telemetry::propagation::link_current(&span);
            Some(span)
        })
        .collect();
    let results = store.write(&tenant.id, admitted.records, changes).await?;
    let mut clashes = Vec::new();
    for ((item, result), span) in admitted.items.into_iter().zip(results).zip(spans) {
        if let (Some(span), Ok(Appended::Inserted(_))) = (&span, &result) {
            // A steward pulling from this one continues the trace from here.
            if let Some(traceparent) = syncropel_telemetry::propagation::traceparent(span) {
                state.federation.traces.note(&item.id, traceparent);
            }
        }
        match result {
            Ok(Appended::Inserted(_)) => outcome.pulled += 1,
            Ok(Appended::Existing(_)) => outcome.duplicates += 1,
            // Another record already holds this (thread, actor, clock): kept out of the log.
            Err(_) => clashes.push(quarantined(&source.id, item, "DUPLICATE_CLOCK")),
        }
    }
    crate::metrics::records_ingested("sync", outcome.pulled);
    if !clashes.is_empty() {
        outcome.quarantined += clashes.len();
        store.write(&tenant.id, Vec::new(), clashes).await?;
    }
    Ok(outcome)
}

fn is_epoch_mismatch<T>(result: &Result<T, PeerError>) -> bool {
    matches!(
        result,
        Err(PeerError::Http4xx { status: 409, code: Some(code), .. }) if code == "CURSOR_EPOCH_MISMATCH"
    )
}

fn quarantined(source: &str, item: &PeerItem, code: &str) -> StateChange {
    let entry = serde_json::json!({
        "source": source,
        "id": item.id,
        "thread": item.envelope.thread,
        "actor": item.envelope.actor,
        "code": code,
        "at": unix_now(),
    });
    let key = format!("{source}\n{}", item.id);
    // A record still waiting for its signer keeps the time it was first quarantined.
    if code == Rejection::SignerUnresolved.code() {
        StateChange::put_if_absent(QUARANTINE, &key, entry.to_string())
    } else {
        StateChange::put(QUARANTINE, &key, entry.to_string())
    }
}

/// Health of one job, kept in memory (FEDERATION §5.5: not recorded per attempt).
#[derive(Clone, Debug, Serialize)]
pub struct JobHealth {
    pub source: String,
    pub thread: String,
    /// `starting`, `ok`, `failing` or `parked`.
    pub status: &'static str,
    pub retries: u32,
    pub last_error: Option<LastError>,
    pub last_success_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
    /// The current upper bound of the backoff delay, in milliseconds.
    pub backoff_ceiling_ms: u64,
    pub pulled: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LastError {
    pub code: String,
    pub message: String,
    pub http_status: Option<u16>,
    pub at: i64,
}

/// Resolves a job's source before each pull (pair or legacy pair state, token, URL).
pub type Resolver = Arc<
    dyn Fn(
            AppState,
            Arc<Tenant>,
            String,
        ) -> futures_util::future::BoxFuture<'static, Result<Source, PullError>>
        + Send
        + Sync,
>;

/// The running jobs of this steward, one task per (source, thread).
pub struct Jobs {
    client: PeerClient,
    interval: Duration,
    /// The schedule every job's backoff starts from.
    backoff: Backoff,
    jobs: Mutex<HashMap<(String, String, String), Arc<Job>>>,
    shutdown: CancellationToken,
}

struct Job {
    kick: Notify,
    stop: CancellationToken,
    health: Mutex<JobHealth>,
}

impl Jobs {
    pub fn new(
        client: PeerClient,
        interval: Duration,
        backoff: Backoff,
        shutdown: CancellationToken,
    ) -> Jobs {
        Jobs {
            client,
            interval,
            backoff,
            jobs: Mutex::default(),
            shutdown,
        }
    }

    pub fn client(&self) -> &PeerClient {
        &self.client
    }

    /// The spacing of polls to a peer that does not hold longpolls.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Starts the job for (source, thread) unless it runs already.
    pub fn ensure(
        self: &Arc<Self>,
        state: &AppState,
        tenant: Arc<Tenant>,
        source: &str,
        thread: &str,
        resolve: Resolver,
    ) {
        let key = (tenant.id.clone(), source.to_string(), thread.to_string());
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.contains_key(&key) {
            return;
        }
        let job = Arc::new(Job {
            kick: Notify::new(),
            stop: self.shutdown.child_token(),
            health: Mutex::new(JobHealth {
                source: source.to_string(),
                thread: thread.to_string(),
                status: "starting",
                retries: 0,
                last_error: None,
                last_success_at: None,
                next_attempt_at: None,
                backoff_ceiling_ms: 0,
                pulled: 0,
            }),
        });
        jobs.insert(key, job.clone());
        let (jobs, state) = (self.clone(), state.clone());
        let (source, thread) = (source.to_string(), thread.to_string());
        tokio::spawn(async move {
            jobs.run(state, tenant, source.clone(), thread.clone(), job, resolve)
                .await;
            crate::metrics::sync_stopped(&source, &thread);
        });
    }

    /// Runs every job of a source now, whatever its schedule or backoff.
    pub fn kick(&self, tenant: &str, source: &str) {
        for ((t, s, _), job) in self.jobs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if t == tenant && s == source {
                job.kick.notify_one();
            }
        }
    }

    /// Stops and forgets every job of a source (a removed legacy pair, a revoked pair).
    pub fn stop(&self, tenant: &str, source: &str) {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(t, s, _), job| {
                let keep = !(t == tenant && s == source);
                if !keep {
                    job.stop.cancel();
                }
                keep
            });
    }

    /// Stops one job.
    pub fn stop_one(&self, tenant: &str, source: &str, thread: &str) {
        let key = (tenant.to_string(), source.to_string(), thread.to_string());
        if let Some(job) = self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key)
        {
            job.stop.cancel();
        }
    }

    /// Every job running here, as (tenant, source, thread).
    pub fn running(&self) -> Vec<(String, String, String)> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    pub fn health(&self, tenant: &str, source: &str) -> Vec<JobHealth> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<JobHealth> = jobs
            .iter()
            .filter(|((t, s, _), _)| t == tenant && s == source)
            .map(|(_, job)| job.health.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        out.sort_by(|a, b| a.thread.cmp(&b.thread));
        out
    }

    async fn run(
        &self,
        state: AppState,
        tenant: Arc<Tenant>,
        source_id: String,
        thread: String,
        job: Arc<Job>,
        resolve: Resolver,
    ) {
        let mut backoff = self.backoff.clone();
        let mut last_checkpoint = None;
        loop {
            if job.stop.is_cancelled() {
                return;
            }
            let source = match resolve(state.clone(), tenant.clone(), source_id.clone()).await {
                Ok(source) => source,
                Err(e) => {
                    job.update(|h| {
                        h.status = "parked";
                        h.last_error = Some(last_error(&e));
                    });
                    // Parked until kicked (resume, approve) or a slow re-check.
                    job.wait(self.interval.max(Duration::from_secs(2))).await;
                    continue;
                }
            };
            let started = Instant::now();
            let span = tracing::debug_span!(
                "sync.pull",
                otel.kind = "client",
                pair = %source_id,
                thread = %thread,
                pulled = tracing::field::Empty,
            );
            let result = tokio::select! {
                _ = job.stop.cancelled() => return,
                // A kick (pause, resume, revoke, a new credential) abandons a held longpoll so
                // that the change holds from now on; a page being ingested commits whole or not
                // at all, with its cursor.
                _ = job.kick.notified() => continue,
                result = pull_once(&state, &self.client, &tenant, &source, &thread, true)
                    .instrument(span.clone()) => result,
            };
            // Far behind: catch up with pipelined pages before going back to longpolls.
            let result = match result {
                Ok(outcome) if outcome.has_more => tokio::select! {
                    _ = job.stop.cancelled() => return,
                    // A pause during a long catch-up holds from the next page on.
                    _ = job.kick.notified() => continue,
                    more = pull_through(&state, &self.client, &tenant, &source, &thread)
                        .instrument(span.clone()) => more.map(|more| PullOutcome {
                        pulled: outcome.pulled + more.pulled,
                        duplicates: outcome.duplicates + more.duplicates,
                        quarantined: outcome.quarantined + more.quarantined,
                        ..more
                    }),
                },
                other => other,
            };
            match &result {
                Ok(outcome) => {
                    span.record("pulled", outcome.pulled);
                    if outcome.has_more {
                        crate::metrics::sync_behind(&source_id, &thread);
                    } else {
                        crate::metrics::sync_caught_up(&source_id, &thread);
                    }
                }
                Err(_) => crate::metrics::sync_behind(&source_id, &thread),
            }
            // Health first, so a pair state written below never shows beside stale health.
            let wait = match &result {
                Ok(outcome) => {
                    backoff.reset();
                    job.update(|h| {
                        h.status = "ok";
                        h.retries = 0;
                        h.last_success_at = Some(unix_now());
                        h.next_attempt_at = None;
                        h.backoff_ceiling_ms = 0;
                        h.pulled += outcome.pulled as u64;
                    });
                    let held = started.elapsed() >= Duration::from_secs(1);
                    let busy = outcome.has_more
                        || outcome.pulled + outcome.duplicates + outcome.quarantined > 0;
                    (!(busy || held)).then_some(self.interval)
                }
                Err(e) => {
                    let delay = backoff.failed();
                    let retries = backoff.failures();
                    let ceiling = backoff.ceiling();
                    tracing::debug!(source = %source_id, thread = %thread, code = %e.code(), "pull failed");
                    job.update(|h| {
                        h.status = "failing";
                        h.retries = retries;
                        h.last_error = Some(last_error(e));
                        h.next_attempt_at = Some(unix_now() + delay.as_secs() as i64);
                        h.backoff_ceiling_ms = ceiling.as_millis() as u64;
                    });
                    Some(delay)
                }
            };
            if source_id.starts_with("fed_") {
                let noted = super::pairs::after_pull(
                    &state,
                    &tenant,
                    &source_id,
                    &thread,
                    &result,
                    &mut last_checkpoint,
                )
                .await;
                if let Err(e) = noted {
                    tracing::warn!(source = %source_id, error = %e.message, "recording the pull on its pair failed");
                }
            }
            if let Some(delay) = wait {
                job.wait(delay).await;
            }
        }
    }
}

impl Job {
    fn update(&self, f: impl FnOnce(&mut JobHealth)) {
        f(&mut self.health.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Sleeps for `delay`, or less when kicked or stopped.
    async fn wait(&self, delay: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.kick.notified() => {}
            _ = self.stop.cancelled() => {}
        }
    }
}

fn last_error(e: &PullError) -> LastError {
    LastError {
        code: e.code(),
        message: e.message(),
        http_status: match e {
            PullError::Peer(p) => p.http_status(),
            PullError::Parked(a) | PullError::Local(a) => Some(a.code.http_status()),
        },
        at: unix_now(),
    }
}

/// The cursor row of a job, for views.
pub async fn cursor_of(
    state: &AppState,
    tenant: &str,
    source: &str,
    thread: &str,
) -> Result<Option<PullCursor>, ApiError> {
    state::pull_cursor(state.store.as_ref(), tenant, source, thread).await
}

/// Every (source, thread) that has a cursor row: the jobs to run at start.
pub async fn cursor_rows(
    state: &AppState,
    tenant: &str,
) -> Result<Vec<(String, String)>, ApiError> {
    Ok(state
        .store
        .state_list(tenant, state::CURSOR)
        .await?
        .into_iter()
        .filter_map(|(key, _)| {
            let (source, thread) = state::split_cursor_key(&key)?;
            Some((source.to_string(), thread.to_string()))
        })
        .collect())
}
