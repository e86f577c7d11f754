//! The source side of sync (federation-protocol.md §5.1-5.3): the changes feed pages a thread
//! in commit order behind an opaque cursor, holding a longpoll open until the next commit, and
//! records are fetched by id. Both pass every record through the consent filter
//! (federation-protocol.md §6.2) for the namespace the puller will land it in.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use syncropel_protocol::consent::Delivery;
use syncropel_protocol::pair::{NamespaceMap, PairView};
use syncropel_protocol::sync::{
    item_with_traceparent, sync_item, sync_item_text, CursorError, SyncCursor,
};
use syncropel_protocol::{validate_thread, Envelope, ErrorCode, Refusal, DEFAULT_NAMESPACE};
use syncropel_store::{Committed, ListFilter, StoredRecord, TokenGrant};
use syncropel_tenant::Tenant;
use tokio::sync::broadcast::error::RecvError;

use crate::consent::{Grants, L0Consent};
use crate::error::{FederationError, Result};
use crate::handshake::PAIR_ACCOUNT_PREFIX;
use crate::pairs;
use crate::state::sync_meta;
use crate::thread_rule::ThreadRule;
use crate::threads::never_served;
use crate::Federation;

/// A page stops growing past this many bytes of stored records, cut in the store before they are
/// read (the puller reads at most 8 MiB; one record past the budget fits under that).
const MAX_PAGE_BYTES: usize = 6 * 1024 * 1024;

/// Most ids one fetch may name.
pub const MAX_FETCH_IDS: usize = 1000;

/// The credential a sync request came with: the token's grant (none when auth is off) and the
/// DID it claims in `X-Syncropel-Actor`. The HTTP layer has checked its scopes and the claim.
#[derive(Clone, Debug)]
pub struct Access<'a> {
    pub grant: Option<&'a TokenGrant>,
    pub claimed: Option<&'a str>,
}

/// What of a thread a pull is served.
pub enum Scope {
    Whole,
    /// The records the pair's thread rule answers `true` for.
    Ruled(ThreadRule),
}

impl Scope {
    fn serves(&self, thread: &str, stored: &Value) -> bool {
        match self {
            Scope::Whole => true,
            Scope::Ruled(rule) => rule.admits(thread, stored),
        }
    }
}

/// Who pulls and what they may ask for: the pair behind the token, or a token of the older
/// token-based sync.
pub struct Puller {
    pub did: String,
    /// Namespaces the puller may land records in; `None` = any (a token without namespace
    /// grains, or an operator token).
    pub targets: Option<Vec<String>>,
    /// The maps its pair agreed: our namespace `local` lands in the puller's `peer`.
    pub maps: Vec<NamespaceMap>,
    /// The threads its pair limits it to (empty: any), and the pair's thread rule.
    pub thread_allow: BTreeSet<String>,
    pub thread_rule: Option<String>,
    /// The pair (id, generation) behind the token, if any: what relay queues are named by.
    pub pair: Option<(String, u64)>,
}

impl Puller {
    /// The peer of `pair`, pulling as the pair allows.
    pub fn of_pair(pair: &PairView) -> Puller {
        Puller {
            did: pair.peer_did.clone(),
            targets: Some(pairs::target_namespaces(pair)),
            maps: pair.maps.clone(),
            thread_allow: pair.thread_allow.clone(),
            thread_rule: pair.thread_rule.clone(),
            pair: Some((pair.pair_id.clone(), pair.generation)),
        }
    }

    /// The puller behind a sync request, with its pair's state checked (a paused pair is
    /// refused).
    pub async fn of(fed: &Federation, tenant: &Tenant, access: &Access<'_>) -> Result<Puller> {
        let Some(grant) = access.grant else {
            // Auth switched off: the operator's own tooling.
            return Ok(Puller {
                did: access.claimed.unwrap_or_default().to_string(),
                targets: None,
                maps: Vec::new(),
                thread_allow: BTreeSet::new(),
                thread_rule: None,
                pair: None,
            });
        };
        if let Some(pair) = pairs::by_inbound_account(fed, tenant, &grant.sa_id).await? {
            pairs::require_serving(&pair)?;
            return Ok(Puller::of_pair(&pair));
        }
        // An account made for a pair serves only through its live pair: a token of a pair that
        // never finished (a lost confirm) or was superseded is refused, not taken as a plain
        // sync token.
        if fed
            .store
            .service_account(&tenant.id, &grant.sa_id)
            .await?
            .is_some_and(|sa| sa.name.starts_with(PAIR_ACCOUNT_PREFIX))
        {
            return Err(
                Refusal::new(ErrorCode::AuthInvalid, "this token belongs to no live pair").into(),
            );
        }
        let namespaces: Vec<String> = grant
            .scopes
            .iter()
            .filter_map(|s| s.strip_prefix("namespace:")?.strip_suffix(":read"))
            .map(str::to_string)
            .collect();
        // Only a DID the token is bound to counts: a token bound to none may claim any actor, and
        // a claim it cannot back must not match consent scoped to a peer.
        let bound = access
            .claimed
            .filter(|claimed| grant.allowed_actors.iter().any(|a| a == claimed))
            .or_else(|| grant.allowed_actors.first().map(String::as_str));
        Ok(Puller {
            did: bound.unwrap_or_default().to_string(),
            targets: (!namespaces.is_empty()).then_some(namespaces),
            maps: Vec::new(),
            thread_allow: BTreeSet::new(),
            thread_rule: None,
            pair: None,
        })
    }

    /// Our namespace whose records land whole in `target`: the one an agreed map lands there,
    /// else the one of the same name. Any other namespace crosses only as consent allows.
    pub fn source_for<'a>(&'a self, target: &'a str) -> &'a str {
        self.maps
            .iter()
            .find(|m| m.peer == target)
            .map_or(target, |m| m.local.as_str())
    }

    /// What of `thread` the pair's scope serves (federation-protocol.md §5.6): every thread
    /// while the pair names none and has no rule; once it does, a thread it allows whole, any
    /// other only the records its rule answers `true` for, and none without a rule
    /// (`403 THREAD_NOT_ALLOWED`). A rule that no longer compiles serves nothing.
    pub fn scope(&self, thread: &str) -> std::result::Result<Scope, Refusal> {
        if self.thread_allow.contains(thread) {
            return Ok(Scope::Whole);
        }
        if let Some(source) = &self.thread_rule {
            return ThreadRule::compile(source).map(Scope::Ruled).map_err(|e| {
                Refusal::new(
                    ErrorCode::ThreadNotAllowed,
                    format!(
                        "this pair's thread rule does not compile ({}): it serves no thread",
                        e.message
                    ),
                )
            });
        }
        if !self.thread_allow.is_empty() {
            return Err(Refusal::new(
                ErrorCode::ThreadNotAllowed,
                format!("thread '{thread}' is not one this pair allows"),
            ));
        }
        Ok(Scope::Whole)
    }

    /// Refuses a thread of which the pair's scope serves nothing.
    pub fn check_scope(&self, thread: &str) -> std::result::Result<(), Refusal> {
        self.scope(thread).map(|_| ())
    }

    /// Refuses a target namespace the pair did not agree on.
    pub fn check_target(&self, target: &str) -> std::result::Result<(), Refusal> {
        match &self.targets {
            Some(targets) if !targets.iter().any(|t| t == target) => Err(Refusal::new(
                ErrorCode::ConsentDenied,
                format!("namespace '{target}' is not one this pair agreed on"),
            )
            .with_hint(format!("agreed namespaces: {}", targets.join(", ")))),
            _ => Ok(()),
        }
    }
}

/// Refuses a thread that is malformed or never served to peers.
pub fn check_thread(thread: &str) -> Result<()> {
    validate_thread(thread)?;
    if never_served(thread) {
        return Err(Refusal::new(
            ErrorCode::ThreadNotAllowed,
            format!("thread '{thread}' is never served to peers"),
        )
        .into());
    }
    Ok(())
}

/// One request of the changes feed, parsed.
#[derive(Clone, Debug)]
pub struct ChangesQuery {
    pub thread: String,
    /// The namespace the puller lands the records in.
    pub target: String,
    /// The cursor the puller holds ("" from the start).
    pub since: String,
    pub limit: u32,
    /// Hold the request open until a commit (or the hold ends) when there is nothing new.
    pub longpoll: bool,
    /// What L0 grants may deliver whole to this puller (federation-protocol.md §6.4).
    pub l0: L0Consent,
}

/// A page of the changes feed as JSON text: the records are stored as the text the feed serves,
/// so they are spliced in, never parsed again, in the common case.
pub async fn changes(
    fed: &Federation,
    tenant: &Tenant,
    access: &Access<'_>,
    puller: &Puller,
    query: &ChangesQuery,
) -> Result<String> {
    let scope = puller.scope(&query.thread)?;
    let meta = sync_meta(fed.store.as_ref(), &tenant.id).await?;
    let key = meta.mac_key();
    let since = SyncCursor::decode(&query.since, &key, &meta.epoch).map_err(|e| match e {
        CursorError::Invalid => {
            Refusal::new(ErrorCode::InvalidCursor, "not a cursor of this steward")
        }
        CursorError::EpochMismatch => Refusal::new(
            ErrorCode::CursorEpochMismatch,
            "this cursor belongs to an earlier life of this store (it was re-imported)",
        )
        .with_hint("start again from an empty cursor; records de-duplicate by id"),
    })?;
    if since.seq > fed.store.head_seq(&tenant.id).await? {
        return Err(Refusal::new(
            ErrorCode::FutureCursor,
            "this cursor is ahead of everything committed here",
        )
        .into());
    }
    // The peer holds everything up to `since`: what its relay queue may lose (§7.4).
    fed.relay_outbox
        .note_served(fed, tenant, puller, query, since.seq)
        .await;

    // Subscribed before the first read, so a commit between the read and the wait is not missed.
    let mut commits = query.longpoll.then(|| fed.store.subscribe());
    let deadline = tokio::time::Instant::now() + fed.config.longpoll_hold;
    let filter = ListFilter {
        thread: Some(query.thread.clone()),
        actor: None,
        since_clock: None,
        after_seq: since.seq,
        limit: query.limit + 1,
        max_bytes: Some(MAX_PAGE_BYTES),
    };
    loop {
        let rows = fed.store.list(&tenant.id, &filter).await?;
        let Some(commits) = commits.as_mut().filter(|_| rows.is_empty()) else {
            let mut grants = Grants::lazy();
            let cut = filter.cut_by_bytes(&rows);
            let page =
                render_page(fed, tenant, puller, query, &scope, &mut grants, rows, cut).await?;
            let next_cursor = match page.last_seq {
                Some(seq) => SyncCursor {
                    epoch: meta.epoch.clone(),
                    seq,
                }
                .encode(&key),
                None => query.since.clone(),
            };
            // Items are JSON text already (see `render_page`); the envelope is put around them.
            let mut body =
                String::with_capacity(page.items.iter().map(String::len).sum::<usize>() + 256);
            body.push_str(&format!(
                "{{\"object\":\"sync_changes\",\"thread\":{},\"records\":[",
                Value::from(query.thread.as_str())
            ));
            body.push_str(&page.items.join(","));
            body.push_str(&format!(
                "],\"next_cursor\":{},\"has_more\":{}}}",
                Value::from(next_cursor),
                page.has_more
            ));
            return Ok(body);
        };
        // Wait for a commit on this thread, the end of the hold, or shutdown.
        let woke = tokio::select! {
            _ = fed.shutdown.cancelled() => false,
            _ = tokio::time::sleep_until(deadline) => false,
            woke = next_commit(commits, &tenant.id, &query.thread) => woke,
        };
        if !woke {
            return Ok(json!({
                "object": "sync_changes",
                "thread": query.thread,
                "records": [],
                "next_cursor": query.since,
                "has_more": false,
            })
            .to_string());
        }
        // The pair may have been paused or revoked while the request waited.
        Puller::of(fed, tenant, access).await?;
    }
}

/// Waits for a commit of `thread`; `true` also when announcements were lost (read again).
async fn next_commit(
    commits: &mut tokio::sync::broadcast::Receiver<Committed>,
    tenant: &str,
    thread: &str,
) -> bool {
    loop {
        match commits.recv().await {
            Ok(c) if c.tenant == tenant && c.thread == thread => return true,
            Ok(_) => continue,
            Err(RecvError::Lagged(_)) => return true,
            Err(RecvError::Closed) => return false,
        }
    }
}

/// What a changes page after `after_seq` serves `puller` for `target`, without its cursor: the
/// relay outbox deposits exactly this (federation-protocol.md §7.4).
pub(crate) async fn items_after(
    fed: &Federation,
    tenant: &Tenant,
    puller: &Puller,
    query: &ChangesQuery,
    after_seq: i64,
) -> Result<Served> {
    let filter = ListFilter {
        thread: Some(query.thread.clone()),
        actor: None,
        since_clock: None,
        after_seq,
        limit: query.limit + 1,
        max_bytes: Some(MAX_PAGE_BYTES),
    };
    let scope = puller.scope(&query.thread)?;
    let rows = fed.store.list(&tenant.id, &filter).await?;
    let first_seq = rows.first().map(|row| row.seq);
    let cut = filter.cut_by_bytes(&rows);
    let mut grants = Grants::lazy();
    let page = render_page(fed, tenant, puller, query, &scope, &mut grants, rows, cut).await?;
    Ok(Served {
        items: page.items,
        seqs: first_seq.zip(page.last_seq),
        has_more: page.has_more,
    })
}

/// Items as a page serves them, and the sequences of the first and last record looked at.
pub(crate) struct Served {
    pub items: Vec<String>,
    pub seqs: Option<(i64, i64)>,
    pub has_more: bool,
}

struct Page {
    /// Each item as JSON text.
    items: Vec<String>,
    /// The sequence of the last record looked at (served or filtered out): the next cursor.
    last_seq: Option<i64>,
    has_more: bool,
}

#[allow(clippy::too_many_arguments)]
async fn render_page(
    fed: &Federation,
    tenant: &Tenant,
    puller: &Puller,
    query: &ChangesQuery,
    scope: &Scope,
    grants: &mut Grants,
    mut rows: Vec<StoredRecord>,
    cut_by_bytes: bool,
) -> Result<Page> {
    let limit = query.limit as usize;
    let mut has_more = rows.len() > limit || cut_by_bytes;
    rows.truncate(limit);
    let mut items = Vec::with_capacity(rows.len());
    let mut last_seq = None;
    let mut bytes = 0;
    let traced = syncropel_telemetry::propagation::tracing_on();
    let whole = puller.source_for(&query.target);
    for row in rows {
        if bytes > MAX_PAGE_BYTES {
            has_more = true;
            break;
        }
        last_seq = Some(row.seq);
        if let Scope::Ruled(_) = scope {
            if !scope.serves(&query.thread, &parse_stored(&row)?) {
                continue;
            }
        }
        // The common case, a record of the namespace the pair lands whole in the one asked for, is
        // rendered as text directly.
        // Without tracing no trace was noted: no lookup (and no lock) per row.
        let trace = traced.then(|| fed.traces.get(&row.id)).flatten();
        if let Some(item) = sync_item_text(&row.json).filter(|i| i.namespace == whole) {
            let text = match trace {
                Some(trace) => item_with_traceparent(&item.text, &trace),
                None => item.text,
            };
            bytes += text.len();
            items.push(text);
            continue;
        }
        let stored = parse_stored(&row)?;
        let target = (query.target.as_str(), &query.l0);
        if let Some(item) = deliver(fed, tenant, puller, target, grants, &stored).await? {
            let item = match trace {
                Some(trace) => item_with_traceparent(&item.to_string(), &trace),
                None => item.to_string(),
            };
            bytes += item.len();
            items.push(item);
        }
    }
    Ok(Page {
        items,
        last_seq,
        has_more,
    })
}

fn parse_stored(row: &StoredRecord) -> Result<Value> {
    serde_json::from_str(&row.json)
        .map_err(|e| FederationError::corrupt(format!("stored record {}: {e}", row.id)))
}

/// One record as this puller may see it: whole when it is of the namespace the pair lands in
/// `target`, else as consent decides: whole, as a redacted stub, or not at all
/// (federation-protocol.md §6.2), with L0 as `l0` allows (§6.4).
async fn deliver(
    fed: &Federation,
    tenant: &Tenant,
    puller: &Puller,
    (target, l0): (&str, &L0Consent),
    grants: &mut Grants,
    stored: &Value,
) -> Result<Option<Value>> {
    let namespace = stored
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_NAMESPACE);
    if namespace == puller.source_for(target) {
        return Ok(sync_item(stored));
    }
    let thread = stored.get("thread").and_then(Value::as_str).unwrap_or("");
    let grants = grants.load(fed, &tenant.id).await?;
    match grants.decide(
        namespace,
        target,
        &puller.did,
        thread,
        l0,
        &tenant.identity.did,
    ) {
        Delivery::Full => Ok(sync_item(stored)),
        Delivery::Omit => Ok(None),
        Delivery::Redacted { grant_id, levels } => {
            let id = stored.get("id").and_then(Value::as_str).unwrap_or("");
            let envelope = Envelope::from_value(stored.clone())
                .map_err(|e| FederationError::corrupt(format!("stored record {id}: {e}")))?;
            Ok(Some(syncropel_protocol::consent::redacted_item(
                &envelope, id, &grant_id, &levels,
            )))
        }
    }
}

/// Specific records (a puller's missing parents), filtered like a page. Unknown ids and ids on
/// threads never served are left out.
pub async fn fetch(
    fed: &Federation,
    tenant: &Tenant,
    puller: &Puller,
    target: (&str, &L0Consent),
    ids: &[String],
) -> Result<Vec<Value>> {
    let mut grants = Grants::lazy();
    let mut items = Vec::new();
    for id in ids {
        let Some(row) = fed.store.get(&tenant.id, id).await? else {
            continue;
        };
        if never_served(&row.thread) {
            continue;
        }
        let Ok(scope) = puller.scope(&row.thread) else {
            continue;
        };
        let stored = parse_stored(&row)?;
        if !scope.serves(&row.thread, &stored) {
            continue;
        }
        if let Some(item) = deliver(fed, tenant, puller, target, &mut grants, &stored).await? {
            items.push(item);
        }
    }
    Ok(items)
}
