//! One-thread sync pairs, the older token-based sync: `/v1/sync/pairs`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use syncropel_api::{List, ListPage, SyncPair as SyncPairView, SyncTrace};
use syncropel_federation::quarantine;
use syncropel_federation::sync_pairs::{self, SyncPair, SyncPairRequest};
use syncropel_federation::sync_trace::EVENTS_PER_SOURCE;
use syncropel_federation::Federation;
use syncropel_tenant::Scope;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::JsonBody;
use crate::routes::{Params, PathParam};
use crate::state::AppState;

/// A sync pair with the state of its job: running and failing come from the job's health.
fn view(fed: &Federation, tenant: &str, pair: &SyncPair) -> SyncPairView {
    let health = fed.jobs.health(tenant, &pair.pair_id).into_iter().next();
    let status = match (pair.recorded.as_str(), &health) {
        ("paused" | "stopped", _) => pair.recorded.clone(),
        (_, Some(h)) if h.status == "ok" => "running".into(),
        (_, Some(h)) if h.status == "failing" => "failing".into(),
        _ => "starting".into(),
    };
    SyncPairView {
        pair_id: pair.pair_id.clone(),
        peer_did: pair.peer_did.clone(),
        peer_url: pair.peer_url.clone(),
        thread_id: pair.thread_id.clone(),
        state: status,
        retries: health.as_ref().map(|h| h.retries).unwrap_or(0),
        poll_interval_secs: fed.jobs.interval().as_secs(),
        last_success_at: health.as_ref().and_then(|h| h.last_success_at),
        next_attempt_at: health.as_ref().and_then(|h| h.next_attempt_at),
        last_error: health.as_ref().and_then(|h| h.last_error.clone()),
        backoff_ceiling_ms: health.as_ref().map(|h| h.backoff_ceiling_ms).unwrap_or(0),
        pulled: health.as_ref().map(|h| h.pulled).unwrap_or(0),
        warning: None,
    }
}

/// `POST /v1/sync/pairs {peer_did, peer_url, thread_id, peer_token?}`
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let field = |k: &str| -> ApiResult<String> {
        match body.get(k) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(ApiError::validation(format!(
                "'{k}' must be a non-empty string"
            ))),
        }
    };
    let (peer_did, peer_url, thread_id) =
        (field("peer_did")?, field("peer_url")?, field("thread_id")?);
    let peer_token = match body.get("peer_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(ApiError::validation("'peer_token' must be a string")),
    };
    let request = SyncPairRequest {
        peer_did,
        peer_url,
        thread_id,
        peer_token,
    };
    let fed = &state.federation;
    let (pair, uncredentialed) = sync_pairs::create(fed, &caller.tenant, request).await?;
    let mut answer = view(fed, &caller.tenant.id, &pair);
    let mut warnings = Vec::new();
    if uncredentialed {
        warnings.push("no peer_token and no record-bound pair with this peer: pulls will be refused until one exists".to_string());
    }
    if state.loopback_only && !sync_pairs::is_loopback_url(&pair.peer_url) {
        warnings.push(format!(
            "this steward listens on loopback only, where the peer at {} cannot reach it: \
             serve on an address the peer can reach (`spl serve --host 0.0.0.0`)",
            pair.peer_url
        ));
    }
    if !warnings.is_empty() {
        answer.warning = Some(warnings.join("; "));
    }
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let fed = &state.federation;
    let registry = sync_pairs::registry(fed, &caller.tenant.id).await?;
    let data = registry
        .values()
        .filter(|p| p.recorded != "stopped")
        .map(|p| view(fed, &caller.tenant.id, p))
        .collect();
    Ok(Json(List { data }).into_response())
}

pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let fed = &state.federation;
    let pair = sync_pairs::find(fed, &caller.tenant.id, &id).await?;
    Ok(Json(view(fed, &caller.tenant.id, &pair)).into_response())
}

pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let fed = &state.federation;
    let pair = sync_pairs::remove(fed, &caller.tenant, &id).await?;
    Ok(Json(view(fed, &caller.tenant.id, &pair)).into_response())
}

pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let fed = &state.federation;
    let pair = sync_pairs::pause(fed, &caller.tenant, &id).await?;
    Ok(Json(view(fed, &caller.tenant.id, &pair)).into_response())
}

pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let fed = &state.federation;
    let pair = sync_pairs::resume(fed, &caller.tenant, &id).await?;
    Ok(Json(view(fed, &caller.tenant.id, &pair)).into_response())
}

pub async fn kick(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let fed = &state.federation;
    let pair = sync_pairs::find(fed, &caller.tenant.id, &id).await?;
    fed.jobs.kick(&caller.tenant.id, &id);
    Ok(Json(view(fed, &caller.tenant.id, &pair)).into_response())
}

/// `GET /v1/sync/health` (`federation:manage`): the tenant's sync at a glance, from this
/// replica's memory (federation-protocol.md §5.9): pairs by state, jobs by status, records pulled
/// in the last hour, and the jobs failing most.
pub async fn health(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let fed = &state.federation;
    let tenant = &caller.tenant;
    let pairs = syncropel_federation::pairs::load(fed, tenant).await?;
    let mut pairs_by_state = serde_json::Map::new();
    for pair in pairs.values() {
        let count = pairs_by_state
            .entry(pair.state.as_str())
            .or_insert(serde_json::json!(0));
        *count = serde_json::json!(count.as_u64().unwrap_or(0) + 1);
    }
    let legacy = sync_pairs::registry(fed, &tenant.id)
        .await?
        .values()
        .filter(|p| p.recorded != "stopped")
        .count();
    let jobs = fed.jobs.all_health(&tenant.id);
    let mut jobs_by_status = serde_json::Map::new();
    for job in &jobs {
        let count = jobs_by_status
            .entry(job.status.clone())
            .or_insert(serde_json::json!(0));
        *count = serde_json::json!(count.as_u64().unwrap_or(0) + 1);
    }
    let mut failing: Vec<_> = jobs.iter().filter(|j| j.status == "failing").collect();
    failing.sort_by_key(|j| std::cmp::Reverse(j.retries));
    let most_errored: Vec<Value> = failing
        .iter()
        .take(5)
        .map(|j| {
            serde_json::json!({"source": j.source, "thread": j.thread, "retries": j.retries,
                               "last_error": j.last_error})
        })
        .collect();
    let pulled: u64 = fed.jobs.pulled_last_hour(&tenant.id).values().sum();
    Ok(Json(serde_json::json!({
        "object": "sync_health",
        "window_secs": 3600,
        "pairs_total": pairs.len(),
        "pairs_by_state": pairs_by_state,
        "legacy_pairs_total": legacy,
        "jobs_total": jobs.len(),
        "jobs_by_status": jobs_by_status,
        "records_pulled_last_hour": pulled,
        "most_errored_pairs": most_errored,
    }))
    .into_response())
}

/// `GET /v1/sync/pairs/{id}/stats` (`federation:manage`): one pair's jobs (a record-bound pair's
/// or a legacy pair's) and what they pulled, in all and in the last hour, on this replica.
pub async fn stats(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let fed = &state.federation;
    let tenant = &caller.tenant;
    let pair_id = any_pair_id(&state, &caller, &id).await?;
    let jobs = fed.jobs.health(&tenant.id, &pair_id);
    let last_hour = fed
        .jobs
        .pulled_last_hour(&tenant.id)
        .get(&pair_id)
        .copied()
        .unwrap_or(0);
    Ok(Json(serde_json::json!({
        "object": "sync_pair_stats",
        "pair_id": pair_id,
        "window_secs": 3600,
        "records_pulled_last_hour": last_hour,
        "pulled_total": jobs.iter().map(|j| j.pulled).sum::<u64>(),
        "jobs": jobs,
    }))
    .into_response())
}

/// The id of a legacy pair (`sp_…`) or of a pair (its id or its peer's DID): `404` unless known.
async fn any_pair_id(state: &AppState, caller: &Caller, id: &str) -> ApiResult<String> {
    let fed = &state.federation;
    Ok(if id.starts_with("sp_") {
        sync_pairs::find(fed, &caller.tenant.id, id).await?.pair_id
    } else {
        syncropel_federation::pairs::find(fed, &caller.tenant, id)
            .await?
            .pair_id
    })
}

/// `GET /v1/sync/pairs/{id}/trace?limit=N`: the pair's recent sync events, newest first (at
/// most 100, kept in this replica's memory).
pub async fn trace(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
    params: Params,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let pair_id = any_pair_id(&state, &caller, &id).await?;
    let kept = EVENTS_PER_SOURCE as u32;
    let limit = params.limit(kept, kept)? as usize;
    let events = state
        .federation
        .jobs
        .trace
        .recent(&caller.tenant.id, &pair_id, limit);
    Ok(Json(SyncTrace { pair_id, events }).into_response())
}

/// Longest `pair` or `cursor` accepted: ids and cursors are far shorter, and the store would
/// compare a longer one with every key.
const MAX_PARAM_CHARS: usize = 512;

/// `GET /v1/sync/quarantine?pair=ID&limit=N&cursor=C` (`federation:manage`): the records peers
/// sent that are held in quarantine (federation-protocol.md §5.9), in key order (by pair, then
/// record id), at most `limit` (default 50, at most 500) and `max_page_bytes` a page. `pair` is
/// an entry's `source` as shown, or a pair's peer DID.
pub async fn quarantine(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let limit = params.limit(50, 500)?;
    let source = match bounded(&params, "pair")? {
        Some(did) if did.starts_with("did:") => Some(any_pair_id(&state, &caller, did).await?),
        other => other.map(str::to_string),
    };
    let after = bounded(&params, "cursor")?
        .map(|c| quarantine::decode_cursor(c).ok_or_else(|| ApiError::validation("invalid cursor")))
        .transpose()?;
    let page = quarantine::page(
        &state.federation,
        &caller.tenant.id,
        source.as_deref(),
        after.as_deref(),
        limit,
        state.limits.max_page_bytes,
    )
    .await?;
    Ok(Json(ListPage {
        data: page.entries,
        has_more: page.next_cursor.is_some(),
        next_cursor: page.next_cursor,
    })
    .into_response())
}

/// A query parameter of at most [`MAX_PARAM_CHARS`]; empty counts as absent.
fn bounded<'a>(params: &'a Params, name: &str) -> ApiResult<Option<&'a str>> {
    match params.str(name) {
        None | Some("") => Ok(None),
        Some(v) if v.len() > MAX_PARAM_CHARS => Err(ApiError::validation(format!(
            "'{name}' is longer than {MAX_PARAM_CHARS} characters"
        ))),
        Some(v) => Ok(Some(v)),
    }
}
