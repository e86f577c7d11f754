//! Record-bound pairs: the operator's view and controls, the peer's revoke notice and token
//! refresh, and one-shot pulls.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use syncropel_api::{FederationPair, List, PairRefreshed, PairRevoked, PullResult, SyncHealth};
use syncropel_federation::pairs::{self, PullRequest};
use syncropel_federation::puller::PullError;
use syncropel_federation::{renewal, Federation};
use syncropel_protocol::pair::{PairView, UpdateOp};
use syncropel_protocol::{ErrorCode, PairState};
use syncropel_tenant::Scope;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::PathParam;
use crate::routes::{optional_json, JsonBody, LimitedBody};
use crate::state::AppState;
use crate::tenant::CurrentTenant;

/// A pair as the operator sees it: its fold and the health of its pull jobs.
pub fn view(fed: &Federation, tenant: &str, pair: PairView) -> FederationPair {
    let jobs = fed.jobs.health(tenant, &pair.pair_id);
    let failing = jobs.iter().find(|h| h.status == "failing");
    let sync_health = SyncHealth {
        status: if failing.is_some() { "failing" } else { "ok" }.into(),
        last_error: failing.and_then(|h| h.last_error.clone()),
        jobs,
    };
    FederationPair::new(pair, sync_health)
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let fed = &state.federation;
    let pairs = pairs::load(fed, &caller.tenant).await?;
    let data = pairs
        .into_values()
        .map(|p| view(fed, &caller.tenant.id, p))
        .collect();
    Ok(Json(List { data }).into_response())
}

pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(key): PathParam,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let pair = pairs::find(&state.federation, &caller.tenant, &key).await?;
    Ok(Json(view(&state.federation, &caller.tenant.id, pair)).into_response())
}

async fn operate(
    state: AppState,
    caller: Caller,
    key: String,
    bytes: &[u8],
    op: UpdateOp,
    to: PairState,
) -> ApiResult<Response> {
    let body = optional_json(&state, bytes)?;
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let fed = &state.federation;
    let pair = pairs::operate(fed, &caller.tenant, &key, op, to, &body).await?;
    Ok(Json(view(fed, &caller.tenant.id, pair)).into_response())
}

/// `POST /v1/federation/pairs/{id}/config` (`federation:manage`): what the pair's peer is
/// served, `{thread_allow_add?, thread_allow_remove?, thread_rule?, reason?}`.
pub async fn config(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(key): PathParam,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let fed = &state.federation;
    let pair = pairs::configure(fed, &caller.tenant, &key, &body).await?;
    Ok(Json(view(fed, &caller.tenant.id, pair)).into_response())
}

/// `POST /v1/federation/pairs/{id}/push {"thread", "target_namespace"?}`: sends the pair's
/// peer the records of `thread` its pull would be served (federation-protocol.md §5.3); the
/// peer takes them only for a thread it pulls from us.
pub async fn push(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(key): PathParam,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let fed = &state.federation;
    let thread = body
        .get("thread")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation("'thread' is required"))?;
    syncropel_protocol::validate_thread(thread).map_err(|e| ApiError::validation(e.to_string()))?;
    let target = match body.get("target_namespace") {
        None | Some(Value::Null) => syncropel_protocol::DEFAULT_NAMESPACE,
        Some(Value::String(ns)) => ns.as_str(),
        Some(_) => return Err(ApiError::validation("'target_namespace' must be a string")),
    };
    let pair = pairs::find(fed, &caller.tenant, &key).await?;
    let sent = syncropel_federation::push::send(fed, &caller.tenant, &pair, thread, target)
        .await
        .map_err(|e| peer_failure(e, "the peer refused the push or failed"))?;
    Ok(Json(sent).into_response())
}

pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(key): PathParam,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult<Response> {
    operate(
        state,
        caller,
        key,
        &bytes,
        UpdateOp::Pause,
        PairState::Paused,
    )
    .await
}

pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(key): PathParam,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult<Response> {
    operate(
        state,
        caller,
        key,
        &bytes,
        UpdateOp::Resume,
        PairState::Active,
    )
    .await
}

pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(key): PathParam,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let body = optional_json(&state, &bytes)?;
    let reason = pairs::reason_of(&body)?.unwrap_or_else(|| "operator".into());
    let fed = &state.federation;
    let pair = pairs::revoke(fed, &caller.tenant, &key, &reason).await?;
    Ok(Json(view(fed, &caller.tenant.id, pair)).into_response())
}

/// `POST /v1/federation/pair/notify-revoke`: the peer revoked; we revoke symmetrically. The
/// caller is the peer, by its pair token, and signs the notice.
pub async fn notify_revoke(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let grant = caller
        .grant
        .as_ref()
        .ok_or_else(|| ApiError::new(ErrorCode::AuthRequired, "a pair token is required"))?;
    let pair =
        pairs::notified_revoke(&state.federation, &caller.tenant, &grant.sa_id, &body).await?;
    Ok(Json(PairRevoked {
        pair_id: pair.pair_id,
    })
    .into_response())
}

/// `POST /v1/federation/pair/refresh`: the peer renews, authenticated by its identity signature
/// (also without the bearer being renewed, which a peer that restored its pairs lacks).
pub async fn refresh(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    tenant.require_writable()?;
    let request = body
        .as_object()
        .ok_or_else(|| ApiError::validation("the refresh must be a JSON object"))?;
    let refreshed = renewal::refresh(&state.federation, &tenant, request).await?;
    Ok(Json(PairRefreshed {
        pair_id: refreshed.pair_id,
        issued_token: refreshed.issued_token,
        token_expires_at: refreshed.token_expires_at,
    })
    .into_response())
}

/// `POST /v1/federation/pairs/{id}/refresh`: the operator renews now.
pub async fn refresh_now(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(key): PathParam,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let fed = &state.federation;
    let pair = renewal::refresh_now(fed, &caller.tenant, &key).await?;
    Ok(Json(view(fed, &caller.tenant.id, pair)).into_response())
}

/// `POST /v1/federation/pairs/{id}/url {"url"}`: where the peer lives now, taken once that URL
/// serves a manifest of the peer's DID (`spl federation refresh <peer> --url`).
pub async fn set_url(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(key): PathParam,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let url = body["url"]
        .as_str()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .ok_or_else(|| ApiError::validation("`url` (http or https) is required"))?;
    let fed = &state.federation;
    let pair = pairs::set_url(fed, &caller.tenant, &key, url).await?;
    Ok(Json(view(fed, &caller.tenant.id, pair)).into_response())
}

/// `POST /v1/sync/pull {thread, peer, peer_token?, namespace?}` (`spl sync T from PEER`).
pub async fn pull(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let text = |k: &str| body.get(k).and_then(Value::as_str);
    let thread = text("thread").ok_or_else(|| ApiError::validation("'thread' is required"))?;
    let peer = text("peer").ok_or_else(|| ApiError::validation("'peer' is required"))?;
    let namespace = match body.get("namespace") {
        None | Some(Value::Null) => None,
        Some(Value::String(ns)) => Some(ns.as_str()),
        Some(_) => return Err(ApiError::validation("'namespace' must be a string")),
    };
    let request = PullRequest {
        thread,
        peer,
        peer_token: text("peer_token"),
        namespace,
    };
    let total = pairs::pull(&state.federation, &caller.tenant, request)
        .await
        .map_err(pull_error)?;
    Ok(Json(PullResult {
        thread: thread.to_string(),
        peer: peer.to_string(),
        pulled: total.pulled as u64,
        duplicates: total.duplicates as u64,
        quarantined: total.quarantined as u64,
        cursor: total.cursor,
    })
    .into_response())
}

/// A failed one-shot pull, as an answer to the operator.
fn pull_error(e: PullError) -> ApiError {
    peer_failure(e, "the peer could not be pulled from")
}

/// A failed pull or push (`what` failed at the peer), as an answer to the operator.
fn peer_failure(e: PullError, what: &str) -> ApiError {
    match e {
        PullError::Parked(refusal) => refusal.into(),
        PullError::Local(e) => e.into(),
        PullError::Peer(e) => ApiError::new(
            ErrorCode::PeerUnreachable,
            format!("{what}: {e} ({})", e.code()),
        )
        .with_extra("peer_error", e.code()),
    }
}
