//! The source side of sync (FEDERATION §5.1-5.3): `GET /v1/sync/changes` pages a thread in
//! commit order behind an opaque cursor, holding a longpoll open until the next commit, and
//! `POST /v1/sync/records` fetches records by id. Both pass every record through the consent
//! filter (§6.2) for the namespace the puller will land it in.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use syncropel_protocol::consent::Delivery;
use syncropel_protocol::sync::{
    item_with_traceparent, sync_item, sync_item_text, CursorError, SyncCursor, DEFAULT_PAGE,
    MAX_PAGE,
};
use syncropel_protocol::{validate_thread, Envelope, ErrorCode, DEFAULT_NAMESPACE};
use syncropel_store::ListFilter;
use tokio::sync::broadcast::error::RecvError;

use super::consent::Grants;
use super::pairs;
use super::state::sync_meta;
use crate::app::{AppState, JsonBody};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::{json_text, Params};

/// A page stops growing past this many bytes (the puller reads at most 8 MiB).
const MAX_PAGE_BYTES: usize = 6 * 1024 * 1024;

/// Threads no grant ever opens (§5.1): the steward's own bookkeeping.
pub fn never_served(thread: &str) -> bool {
    thread.starts_with("th_audit_")
        || matches!(
            thread,
            "th_federation_pairs"
                | "th_consent"
                | "th_engine_config"
                | "th_secret_audit"
                | "th_sync_control"
                | "th_invites"
                | "th_service_accounts"
                | "th_tokens"
        )
}

/// Who pulls and what they may ask for: the pair behind the token, or a legacy token.
pub struct Puller {
    pub did: String,
    /// Namespaces the puller may land records in; `None` = any (a legacy token without
    /// namespace grains, or an operator token).
    pub targets: Option<Vec<String>>,
}

impl Puller {
    /// Establishes the puller of a sync request: scopes, the actor claim, the pair's state.
    pub async fn of(state: &AppState, caller: &Caller, headers: &HeaderMap) -> ApiResult<Puller> {
        caller.require_federation_pull()?;
        let claimed = headers
            .get("x-syncropel-actor")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let Some(grant) = &caller.grant else {
            // Auth switched off: the operator's own tooling.
            return Ok(Puller {
                did: claimed.unwrap_or_default(),
                targets: None,
            });
        };
        if !grant.allowed_actors.is_empty() {
            let Some(did) = claimed.as_deref() else {
                return Err(ApiError::new(
                    ErrorCode::DidClaimDenied,
                    "a pair token must name its peer in X-Syncropel-Actor",
                ));
            };
            caller.require_actor(did)?;
        }
        if let Some(pair) = pairs::by_inbound_account(state, &caller.tenant, &grant.sa_id).await? {
            pairs::require_serving(&pair)?;
            return Ok(Puller {
                did: pair.peer_did.clone(),
                targets: Some(pairs::target_namespaces(&pair)),
            });
        }
        // An account made for a pair serves only through its live pair: a token of a pair that
        // never finished (a lost confirm) or was superseded is refused, not taken as legacy.
        if state
            .store
            .service_account(&caller.tenant.id, &grant.sa_id)
            .await?
            .is_some_and(|sa| sa.name.starts_with(super::handshake::PAIR_ACCOUNT_PREFIX))
        {
            return Err(ApiError::new(
                ErrorCode::AuthInvalid,
                "this token belongs to no live pair",
            ));
        }
        let namespaces: Vec<String> = grant
            .scopes
            .iter()
            .filter_map(|s| s.strip_prefix("namespace:")?.strip_suffix(":read"))
            .map(str::to_string)
            .collect();
        Ok(Puller {
            did: claimed
                .or_else(|| grant.allowed_actors.first().cloned())
                .unwrap_or_default(),
            targets: (!namespaces.is_empty()).then_some(namespaces),
        })
    }

    fn check_target(&self, target: &str) -> ApiResult<()> {
        match &self.targets {
            Some(targets) if !targets.iter().any(|t| t == target) => Err(ApiError::new(
                ErrorCode::ConsentDenied,
                format!("namespace '{target}' is not one this pair agreed on"),
            )
            .with_hint(format!("agreed namespaces: {}", targets.join(", ")))),
            _ => Ok(()),
        }
    }
}

/// `GET /v1/sync/changes?thread=T&since=C&limit=N&feed=normal|longpoll&target_namespace=NS`
pub async fn changes(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Params,
) -> ApiResult<Response> {
    let puller = Puller::of(&state, &caller, &headers).await?;
    let thread = params
        .str("thread")
        .ok_or_else(|| ApiError::validation("thread is required"))?
        .to_string();
    validate_thread(&thread)?;
    if never_served(&thread) {
        return Err(ApiError::new(
            ErrorCode::ThreadNotAllowed,
            format!("thread '{thread}' is never served to peers"),
        ));
    }
    let target = params
        .str("target_namespace")
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_string();
    puller.check_target(&target)?;
    let limit = params.limit(DEFAULT_PAGE, MAX_PAGE)?;
    let longpoll = match params.str("feed") {
        None | Some("normal") => false,
        Some("longpoll") => true,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "feed must be normal or longpoll, not '{other}'"
            )))
        }
    };
    let tenant = &caller.tenant.id;
    let meta = sync_meta(state.store.as_ref(), tenant).await?;
    let key = meta.mac_key();
    let since_text = params.str("since").unwrap_or("");
    let since = SyncCursor::decode(since_text, &key, &meta.epoch).map_err(|e| match e {
        CursorError::Invalid => {
            ApiError::new(ErrorCode::InvalidCursor, "not a cursor of this steward")
        }
        CursorError::EpochMismatch => ApiError::new(
            ErrorCode::CursorEpochMismatch,
            "this cursor belongs to an earlier life of this store (it was re-imported)",
        )
        .with_hint("start again from an empty cursor; records de-duplicate by id"),
    })?;
    if since.seq > state.store.head_seq(tenant).await? {
        return Err(ApiError::new(
            ErrorCode::FutureCursor,
            "this cursor is ahead of everything committed here",
        ));
    }

    // Subscribed before the first read, so a commit between the read and the wait is not missed.
    let mut commits = longpoll.then(|| state.store.subscribe());
    let deadline = tokio::time::Instant::now() + state.federation.config.longpoll_hold;
    let filter = ListFilter {
        thread: Some(thread.clone()),
        actor: None,
        since_clock: None,
        after_seq: since.seq,
        limit: limit + 1,
    };
    loop {
        let rows = state.store.list(tenant, &filter).await?;
        let Some(commits) = commits.as_mut().filter(|_| rows.is_empty()) else {
            let mut grants = Grants::lazy();
            let page =
                render_page(&state, &caller, &puller, &target, &mut grants, rows, limit).await?;
            let next = SyncCursor {
                epoch: meta.epoch.clone(),
                seq: page.last_seq.unwrap_or(since.seq),
            };
            let next_cursor = if page.last_seq.is_some() {
                next.encode(&key)
            } else {
                since_text.to_string()
            };
            // Items are JSON text already (see `render_page`); the envelope is put around them.
            let mut body =
                String::with_capacity(page.items.iter().map(String::len).sum::<usize>() + 256);
            body.push_str(&format!(
                "{{\"object\":\"sync_changes\",\"thread\":{},\"records\":[",
                Value::from(thread.as_str())
            ));
            body.push_str(&page.items.join(","));
            body.push_str(&format!(
                "],\"next_cursor\":{},\"has_more\":{}}}",
                Value::from(next_cursor),
                page.has_more
            ));
            return Ok(json_text(StatusCode::OK, body));
        };
        // Wait for a commit on this thread, the end of the hold, or shutdown.
        let woke = tokio::select! {
            _ = state.shutdown.cancelled() => false,
            _ = tokio::time::sleep_until(deadline) => false,
            woke = next_commit(commits, tenant, &thread) => woke,
        };
        if woke {
            // The pair may have been paused or revoked while the request waited.
            Puller::of(&state, &caller, &headers).await?;
        } else {
            return Ok(json_text(
                StatusCode::OK,
                json!({
                    "object": "sync_changes",
                    "thread": thread,
                    "records": [],
                    "next_cursor": since_text,
                    "has_more": false,
                })
                .to_string(),
            ));
        }
    }
}

/// Waits for a commit of `thread`; `true` also when announcements were lost (read again).
async fn next_commit(
    commits: &mut tokio::sync::broadcast::Receiver<syncropel_store::Committed>,
    tenant: &str,
    thread: &str,
) -> bool {
    loop {
        match commits.recv().await {
            Ok(c) if c.tenant == tenant && c.record.thread == thread => return true,
            Ok(_) => continue,
            Err(RecvError::Lagged(_)) => return true,
            Err(RecvError::Closed) => return false,
        }
    }
}

struct Page {
    /// Each item as JSON text.
    items: Vec<String>,
    /// The sequence of the last record looked at (served or filtered out): the next cursor.
    last_seq: Option<i64>,
    has_more: bool,
}

async fn render_page(
    state: &AppState,
    caller: &Caller,
    puller: &Puller,
    target: &str,
    grants: &mut Grants,
    mut rows: Vec<syncropel_store::StoredRecord>,
    limit: u32,
) -> ApiResult<Page> {
    let mut has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let mut items = Vec::with_capacity(rows.len());
    let mut last_seq = None;
    let mut bytes = 0;
    let traced = syncropel_telemetry::propagation::tracing_on();
    for row in rows {
        if bytes > MAX_PAGE_BYTES {
            has_more = true;
            break;
        }
        last_seq = Some(row.seq);
        // The common case, a record of the namespace asked for, is rendered as text directly.
        // Without tracing no trace was noted: no lookup (and no lock) per row.
        let trace = traced
            .then(|| state.federation.traces.get(&row.id))
            .flatten();
        if let Some(item) = sync_item_text(&row.json).filter(|i| i.namespace == target) {
            let text = match trace {
                Some(trace) => item_with_traceparent(&item.text, &trace),
                None => item.text,
            };
            bytes += text.len();
            items.push(text);
            continue;
        }
        let stored: Value = serde_json::from_str(&row.json).map_err(|e| {
            ApiError::internal(format!("stored record {} is malformed: {e}", row.id))
        })?;
        if let Some(item) = deliver(state, caller, puller, target, grants, &stored).await? {
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

/// One record as this puller may see it: whole, as a redacted stub, or not at all (§6.2).
async fn deliver(
    state: &AppState,
    caller: &Caller,
    puller: &Puller,
    target: &str,
    grants: &mut Grants,
    stored: &Value,
) -> ApiResult<Option<Value>> {
    let namespace = stored
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_NAMESPACE);
    if namespace == target {
        return Ok(sync_item(stored));
    }
    let thread = stored.get("thread").and_then(Value::as_str).unwrap_or("");
    let grants = grants.load(state, &caller.tenant.id).await?;
    match grants.decide(namespace, target, &puller.did, thread) {
        Delivery::Full => Ok(sync_item(stored)),
        Delivery::Omit => Ok(None),
        Delivery::Redacted { grant_id, levels } => {
            let id = stored.get("id").and_then(Value::as_str).unwrap_or("");
            let envelope = Envelope::from_value(stored.clone())
                .map_err(|e| ApiError::internal(format!("stored record {id} is invalid: {e}")))?;
            Ok(Some(syncropel_protocol::consent::redacted_item(
                &envelope, id, &grant_id, &levels,
            )))
        }
    }
}

/// Most ids one fetch may name.
const MAX_FETCH_IDS: usize = 1000;

/// `POST /v1/sync/records {"ids": [...]}`: specific records (missing parents), filtered like a
/// page. Unknown ids and ids on threads never served are left out.
pub async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Params,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let puller = Puller::of(&state, &caller, &headers).await?;
    let target = params
        .str("target_namespace")
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_string();
    puller.check_target(&target)?;
    let Some(Value::Array(ids)) = body.get("ids") else {
        return Err(ApiError::validation("'ids' must be an array of record ids"));
    };
    if ids.len() > MAX_FETCH_IDS {
        return Err(ApiError::validation(format!(
            "at most {MAX_FETCH_IDS} ids per request"
        )));
    }
    let mut grants = Grants::lazy();
    let mut items = Vec::new();
    for id in ids {
        let Some(id) = id.as_str() else {
            return Err(ApiError::validation("every id must be a string"));
        };
        let Some(row) = state.store.get(&caller.tenant.id, id).await? else {
            continue;
        };
        if never_served(&row.thread) {
            continue;
        }
        let stored: Value = serde_json::from_str(&row.json)
            .map_err(|e| ApiError::internal(format!("stored record {id} is malformed: {e}")))?;
        if let Some(item) = deliver(&state, &caller, &puller, &target, &mut grants, &stored).await?
        {
            items.push(item);
        }
    }
    Ok(json_text(
        StatusCode::OK,
        json!({"object": "sync_records", "records": items}).to_string(),
    ))
}
