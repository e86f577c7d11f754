//! The puller side of sync (federation-protocol.md §5.4-5.5): one job per (source, thread) pulls
//! pages from the peer, checks every record before anything is stored
//! (federation-protocol.md §1.1), and ingests a page together with the cursor that moves past it,
//! in one transaction. Jobs hold a longpoll open at the peer, so a record committed there arrives
//! here within milliseconds; the interval only spaces polls to a peer that does not hold longpolls,
//! and backoff spaces retries after failures.

mod ingest;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use syncropel_protocol::sync::{
    verify_items, PeerItem, Rejection, ResolvedKeys, SyncCursor, DEFAULT_PAGE,
};
use syncropel_protocol::Refusal;
use syncropel_store::StateChange;
use syncropel_tenant::Tenant;
use tokio::sync::mpsc;

use crate::error::FederationError;
use crate::peer::{ChangesRequest, LiveFeed, PeerClient, PeerError};
use crate::signers::verify_with_documents;
use crate::state::pull_cursor;
use crate::{ChangesPage, Federation};

pub use ingest::fetch_parents;
use ingest::{retry_unresolved, store_checked, store_page};

/// Where one job pulls from: resolved afresh before every pull, so a pause, a revoke or a new
/// token takes effect on the next one.
#[derive(Clone, Debug)]
pub struct Source {
    /// The pair id (record-bound, `fed_…`) or one-thread sync pair id (`sp_…`).
    pub id: String,
    pub peer_did: String,
    pub base_url: String,
    pub token: String,
    /// Our DID, sent as `X-Syncropel-Actor` (pair tokens are bound to it).
    pub actor: String,
    /// Our namespace the records land in, sent to the source as `target_namespace`; none: the
    /// source filters for `default` and each record is stored in its own.
    pub target_namespace: Option<String>,
    /// The pair's generation (names its relay queues; 0 for sources that are not pairs).
    pub generation: u64,
    /// Pull over the continuous feed (the pair's `mode` is `continuous`) instead of longpolls.
    pub continuous: bool,
    /// Pull only when asked (`spl sync`, the pair's `mode` is `on-demand`): its job waits.
    pub on_demand: bool,
    /// The pair's own poll interval, when its operator set one (else the steward's).
    pub poll_interval: Option<Duration>,
    /// Our L0 acceptances for this source and target namespace, shown on every request
    /// (federation-protocol.md §6.4).
    pub consent_accepts: Vec<String>,
}

impl Source {
    /// This source for the job of `thread`: aimed at the namespace the job's cursor row names
    /// (federation-protocol.md §6.2), none when it names none.
    pub(crate) async fn for_thread(
        mut self,
        fed: &Federation,
        tenant: &str,
        thread: &str,
    ) -> Result<Source, PullError> {
        self.target_namespace = pull_cursor(fed.store.as_ref(), tenant, &self.id, thread)
            .await?
            .and_then(|row| row.target_namespace);
        self.with_acceptances(fed, tenant).await
    }

    /// This source with the acceptances we show it for its target namespace.
    pub(crate) async fn with_acceptances(
        mut self,
        fed: &Federation,
        tenant: &str,
    ) -> Result<Source, PullError> {
        if !self.peer_did.is_empty() {
            let target = self
                .target_namespace
                .as_deref()
                .unwrap_or(syncropel_protocol::DEFAULT_NAMESPACE);
            self.consent_accepts =
                crate::consent::shown_acceptances(fed, tenant, &self.peer_did, target).await?;
        }
        Ok(self)
    }
}

/// Why a pull did not happen or failed.
#[derive(Debug)]
pub enum PullError {
    /// The peer failed or broke the protocol; classified (federation-protocol.md §5.5).
    Peer(PeerError),
    /// The source may not be pulled now (paused, revoked, unpaired, no credential).
    Parked(Refusal),
    /// This steward failed (its store, say).
    Local(FederationError),
}

impl PullError {
    pub fn code(&self) -> String {
        match self {
            PullError::Peer(e) => e.code().to_string(),
            PullError::Parked(e) => e.code.as_str().to_string(),
            PullError::Local(e) => e.code().as_str().to_string(),
        }
    }

    pub fn message(&self) -> String {
        match self {
            PullError::Peer(e) => e.to_string(),
            PullError::Parked(e) => e.message.clone(),
            PullError::Local(e) => e.to_string(),
        }
    }

    /// The HTTP status behind the failure, for a job's health.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            PullError::Peer(e) => e.http_status(),
            PullError::Parked(e) => Some(e.code.http_status()),
            PullError::Local(e) => Some(e.code().http_status()),
        }
    }
}

impl<E: Into<FederationError>> From<E> for PullError {
    fn from(e: E) -> PullError {
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
    /// From a relay: the highest source sequence its verified envelopes reached.
    #[serde(skip)]
    pub relayed_through: i64,
}

/// Pulls one page of `thread` from `source` and ingests it. Nothing from a page that breaks the
/// protocol is stored and the cursor stays; a record that fails its checks is quarantined and
/// the cursor moves past it, so one bad record cannot wedge the job.
pub async fn pull_once(
    fed: &Arc<Federation>,
    tenant: &Tenant,
    source: &Source,
    thread: &str,
    longpoll: bool,
) -> Result<PullOutcome, PullError> {
    let mut cursor = pull_cursor(fed.store.as_ref(), &tenant.id, &source.id, thread)
        .await?
        .unwrap_or_default();
    let page = fetch(fed, source, thread, &cursor.cursor, longpoll).await?;
    let _working = fed.work_permit(&tenant.id).await?;
    let outcome = store_page(fed, tenant, source, thread, page, &mut cursor).await?;
    fetch_parents(fed, tenant, source, &outcome.missing_parents).await;
    retry_unresolved(fed, tenant, source, thread).await;
    Ok(outcome)
}

/// Opens the continuous feed of `thread` at `source` from the cursor held (federation-protocol.md
/// §5.1).
pub async fn open_live(
    fed: &Arc<Federation>,
    tenant: &Tenant,
    source: &Source,
    thread: &str,
) -> Result<LiveFeed, PullError> {
    let cursor = pull_cursor(fed.store.as_ref(), &tenant.id, &source.id, thread)
        .await?
        .unwrap_or_default();
    let request = ChangesRequest {
        base: &source.base_url,
        token: &source.token,
        actor: &source.actor,
        thread,
        since: &cursor.cursor,
        limit: DEFAULT_PAGE,
        longpoll: true,
        target_namespace: source.target_namespace.as_deref(),
        consent_accepts: &source.consent_accepts,
    };
    fed.client()
        .changes_live(&request)
        .await
        .map_err(PullError::Peer)
}

/// The next record of an open continuous feed, checked and ingested as a page of one with the
/// cursor after it; `None` when the source ended the feed.
pub async fn pull_live(
    fed: &Arc<Federation>,
    tenant: &Tenant,
    source: &Source,
    thread: &str,
    feed: &mut LiveFeed,
) -> Result<Option<PullOutcome>, PullError> {
    let Some(record) = feed.next().await.map_err(PullError::Peer)? else {
        return Ok(None);
    };
    let mut cursor = pull_cursor(fed.store.as_ref(), &tenant.id, &source.id, thread)
        .await?
        .unwrap_or_default();
    let page = ChangesPage {
        thread: thread.to_string(),
        records: vec![record.item],
        next_cursor: record.cursor,
        has_more: false,
    };
    let page = check_page(page, thread, fed).await?;
    let _working = fed.work_permit(&tenant.id).await?;
    let outcome = store_page(fed, tenant, source, thread, page, &mut cursor).await?;
    fetch_parents(fed, tenant, source, &outcome.missing_parents).await;
    Ok(Some(outcome))
}

/// Pulls until the source has nothing more (a catch-up), as a pipeline: while one page is
/// stored, the next ones are parsed and verified on the blocking pool and the one after them is
/// being served by the source. At most [`PIPELINE_PAGES`] pages wait, so memory stays bounded;
/// pages are stored in order, each with the cursor past it, and nothing after a failing page.
pub async fn pull_through(
    fed: &Arc<Federation>,
    tenant: &Tenant,
    source: &Source,
    thread: &str,
) -> Result<PullOutcome, PullError> {
    // A catch-up works from start to end: it holds one of the tenant's places throughout.
    let _working = fed.work_permit(&tenant.id).await?;
    let mut cursor = pull_cursor(fed.store.as_ref(), &tenant.id, &source.id, thread)
        .await?
        .unwrap_or_default();
    let (pages, mut checked) = mpsc::channel(PIPELINE_PAGES);
    let producer = {
        let source = source.clone();
        let federation = fed.clone();
        let (thread, mut since) = (thread.to_string(), cursor.cursor.clone());
        tokio::spawn(async move {
            loop {
                let page = fetch_page(federation.client(), &source, &thread, &since, false).await;
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
            Ok(Ok(page)) => store_page(fed, tenant, source, thread, page, &mut cursor).await,
            Ok(Err(e)) => Err(e),
            Err(e) => Err(FederationError::internal(format!("checking a page failed: {e}")).into()),
        };
        let outcome = match stored {
            Ok(outcome) => outcome,
            Err(e) => {
                producer.abort();
                return Err(e);
            }
        };
        fetch_parents(fed, tenant, source, &outcome.missing_parents).await;
        total.pulled += outcome.pulled;
        total.duplicates += outcome.duplicates;
        total.quarantined += outcome.quarantined;
        total.cursor = outcome.cursor;
        total.has_more = outcome.has_more;
    }
    retry_unresolved(fed, tenant, source, thread).await;
    Ok(total)
}

/// Checks items that came through a relay as a page's items are checked (ids, signatures,
/// thread); not yet stored.
pub(crate) async fn check_relayed(
    fed: &Federation,
    thread: &str,
    items: Vec<serde_json::Value>,
    carried: BTreeMap<String, Vec<String>>,
) -> Result<Checked, PullError> {
    let page = ChangesPage {
        thread: thread.to_string(),
        records: items,
        next_cursor: String::new(),
        has_more: false,
    };
    let mut checked = check_page(page, thread, fed).await?;
    checked.carried = carried;
    Ok(Checked(checked))
}

/// Stores the records of checked relay items that pass, with `moved` (the relay cursor) in one
/// transaction. The source cursor does not move.
pub(crate) async fn store_relayed(
    fed: &Federation,
    tenant: &Tenant,
    source: &Source,
    checked: Checked,
    moved: Option<StateChange>,
) -> Result<PullOutcome, PullError> {
    store_checked(fed, tenant, source, checked.0, moved).await
}

impl Checked {
    /// The first item that is forged (an id that is not its hash, a signature missing or not
    /// holding), with its code: a push carrying one is refused whole.
    pub(crate) fn forged(&self) -> Option<(&str, Rejection)> {
        self.0
            .items
            .iter()
            .zip(&self.0.verdicts)
            .find_map(|(item, verdict)| match verdict {
                Err(r) if r.is_final() => Some((item.id.as_str(), *r)),
                _ => None,
            })
    }

    /// The items held back, with why (a signer not resolvable yet, say).
    pub(crate) fn held(&self) -> Vec<(String, String)> {
        self.0
            .items
            .iter()
            .zip(&self.0.verdicts)
            .filter_map(|(item, verdict)| {
                verdict
                    .as_ref()
                    .err()
                    .map(|r| (item.id.clone(), r.code().to_string()))
            })
            .collect()
    }
}

/// Items checked by [`check_relayed`].
pub(crate) struct Checked(Fetched);

/// Pages parsed and verified ahead of the one being stored.
const PIPELINE_PAGES: usize = 2;

/// A page fetched and checked against the protocol (federation-protocol.md §5.5), its items parsed
/// and their ids and signatures checked (federation-protocol.md §1.1); not yet stored.
struct Fetched {
    items: Vec<PeerItem>,
    verdicts: Vec<Result<(), Rejection>>,
    /// The source's vouches for typed actors that came with the items (a relay envelope's).
    carried: BTreeMap<String, Vec<String>>,
    next_cursor: String,
    has_more: bool,
}

async fn fetch(
    fed: &Federation,
    source: &Source,
    thread: &str,
    since: &str,
    longpoll: bool,
) -> Result<Fetched, PullError> {
    let page = fetch_page(fed.client(), source, thread, since, longpoll).await?;
    check_page(page, thread, fed).await
}

/// Asks the source for the page after `since` and checks the page as a whole
/// (federation-protocol.md §5.5): the thread, progress, a cursor that must not go backwards.
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
        consent_accepts: &source.consent_accepts,
    };
    let mut held = since;
    let mut page = client.changes(&request).await;
    if refuses_our_cursor(&page) && !since.is_empty() {
        // The source's store was made anew (imported, restored; with its cursor key or without):
        // start again from its beginning; what we hold already de-duplicates by id
        // (federation-protocol.md §5.4). A source could force this any time, so believing it
        // costs nothing but the pull.
        tracing::info!(source = %source.id, thread, "the source refuses our cursor (a new store epoch or key); pulling again from the start");
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

fn refuses_our_cursor<T>(result: &Result<T, PeerError>) -> bool {
    matches!(
        result,
        Err(PeerError::Http4xx { status: 409 | 400, code: Some(code), .. })
            if code == "CURSOR_EPOCH_MISMATCH" || code == "INVALID_CURSOR"
    )
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
            carried: BTreeMap::new(),
            next_cursor: page.next_cursor,
            has_more: page.has_more,
        })
    };
    let mut fetched = if small {
        check()?
    } else {
        tokio::task::spawn_blocking(check)
            .await
            .map_err(|e| FederationError::internal(format!("verification task failed: {e}")))??
    };
    verify_with_documents(federation, &fetched.items, &mut fetched.verdicts).await;
    Ok(fetched)
}
