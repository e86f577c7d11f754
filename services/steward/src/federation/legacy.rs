//! Legacy sync pairs (FEDERATION §5.7): one-way, one-thread subscriptions made on the puller
//! (`POST /v1/sync/pairs`, `spl fleet sync add`). Their lifecycle is LEARN records on
//! `th_sync_control` (`topic: pair_state` per transition, `pair_removed` at the end), folded
//! into the registry at every read; running/failing come from the job's health.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::FutureExt;
use serde_json::{json, Map, Value};
use syncropel_protocol::{validate_thread, ErrorCode};

use super::puller::{PullError, Resolver, Source};
use super::{pairs, state as fstate, write_own};
use crate::app::{AppState, JsonBody};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::PathParam;
use crate::tenant::Tenant;
use syncropel_protocol::unix_now;
use syncropel_tenant::Scope;

pub const CONTROL_THREAD: &str = "th_sync_control";
const KIND: &str = "syncropel.sync.pair_state.v1";

/// One legacy pair, as folded from its records.
#[derive(Clone, Debug)]
pub struct LegacyPair {
    pub pair_id: String,
    pub peer_did: String,
    pub peer_url: String,
    pub thread_id: String,
    /// `starting`, `paused` or `stopped` as recorded; `running`/`failing` come from the job.
    pub recorded: String,
}

/// The registry: a fold over `th_sync_control`, last record per pair wins.
pub async fn registry(state: &AppState, tenant: &str) -> ApiResult<BTreeMap<String, LegacyPair>> {
    let mut pairs = BTreeMap::new();
    let (records, _) = super::thread_records(state, tenant, CONTROL_THREAD).await?;
    for record in &records {
        let body = &record["body"];
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        let Some(id) = text("pair_id") else { continue };
        match text("topic").as_deref() {
            Some("pair_removed") => {
                if let Some(p) = pairs.get_mut(&id) {
                    let p: &mut LegacyPair = p;
                    p.recorded = "stopped".into();
                }
            }
            Some("pair_state") => {
                let new_state = text("state").unwrap_or_else(|| "starting".into());
                let fresh = || LegacyPair {
                    pair_id: id.clone(),
                    peer_did: text("peer_did").unwrap_or_default(),
                    peer_url: text("peer_url").unwrap_or_default(),
                    thread_id: text("thread_id").unwrap_or_default(),
                    recorded: "starting".into(),
                };
                let entry = pairs.entry(id.clone()).or_insert_with(fresh);
                if entry.recorded != "stopped" {
                    entry.recorded = new_state;
                } else if new_state == "starting" {
                    // A removed pair added again (same peer and thread, so the same id):
                    // only `create` writes `starting` for a pair the API no longer shows.
                    *entry = fresh();
                }
            }
            _ => {}
        }
    }
    Ok(pairs)
}

fn secret_handle(pair_id: &str) -> String {
    format!("legacy/{pair_id}")
}

/// Resolves a legacy pair's source: its peer's URL, and the outbound token of an active
/// record-bound pair with the same peer if there is one, else its own token.
pub fn resolver() -> Resolver {
    Arc::new(|state: AppState, tenant: Arc<Tenant>, id: String| {
        async move {
            let parked = |m: String| PullError::Parked(ApiError::new(ErrorCode::PairPaused, m));
            let registry = registry(&state, &tenant.id).await?;
            let pair = registry
                .get(&id)
                .ok_or_else(|| parked(format!("no legacy pair {id}")))?;
            match pair.recorded.as_str() {
                "paused" => return Err(parked(format!("{id} is paused"))),
                "stopped" => return Err(parked(format!("{id} was removed"))),
                _ => {}
            }
            let token =
                match pairs::outbound_token_for_peer(&state, &tenant, &pair.peer_did).await? {
                    Some(token) => token,
                    None => fstate::open_secret(
                        state.store.as_ref(),
                        &tenant.id,
                        &tenant.identity.key,
                        &secret_handle(&id),
                    )
                    .await?
                    .unwrap_or_default(),
                };
            Ok(Source {
                id,
                peer_did: pair.peer_did.clone(),
                base_url: pair.peer_url.clone(),
                token,
                actor: tenant.identity.did.to_string(),
                target_namespace: None,
            })
        }
        .boxed()
    })
}

fn view(state: &AppState, tenant: &str, pair: &LegacyPair) -> Value {
    let health = state
        .federation
        .jobs
        .health(tenant, &pair.pair_id)
        .into_iter()
        .next();
    let status = match (pair.recorded.as_str(), &health) {
        ("paused" | "stopped", _) => pair.recorded.clone(),
        (_, Some(h)) if h.status == "ok" => "running".into(),
        (_, Some(h)) if h.status == "failing" => "failing".into(),
        _ => "starting".into(),
    };
    json!({
        "object": "sync_pair",
        "pair_id": pair.pair_id,
        "peer_did": pair.peer_did,
        "peer_url": pair.peer_url,
        "thread_id": pair.thread_id,
        "state": status,
        "retries": health.as_ref().map(|h| h.retries).unwrap_or(0),
        "poll_interval_secs": state.federation.jobs.interval().as_secs(),
        "last_success_at": health.as_ref().and_then(|h| h.last_success_at),
        "next_attempt_at": health.as_ref().and_then(|h| h.next_attempt_at),
        "last_error": health.as_ref().and_then(|h| h.last_error.clone()),
        "backoff_ceiling_ms": health.as_ref().map(|h| h.backoff_ceiling_ms).unwrap_or(0),
        "pulled": health.as_ref().map(|h| h.pulled).unwrap_or(0),
    })
}

async fn record_state(
    state: &AppState,
    tenant: &Tenant,
    pair: &LegacyPair,
    topic: &str,
    new_state: &str,
) -> ApiResult<()> {
    let body = json!({
        "kind": KIND, "topic": topic, "pair_id": pair.pair_id, "peer_did": pair.peer_did,
        "peer_url": pair.peer_url, "thread_id": pair.thread_id, "state": new_state, "at": unix_now(),
    });
    write_own(
        state,
        tenant,
        vec![(CONTROL_THREAD, object(body), Vec::new())],
        Vec::new(),
    )
    .await?;
    Ok(())
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
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
    validate_thread(&thread_id)?;
    super::pairs::refuse_unpullable(&thread_id)?;
    if !(peer_url.starts_with("http://") || peer_url.starts_with("https://")) {
        return Err(ApiError::validation("peer_url must be an http(s) URL"));
    }
    let peer_token = match body.get("peer_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(ApiError::validation("'peer_token' must be a string")),
    };
    let pair_id = format!(
        "sp_{}",
        &syncropel_protocol::sha256_hex(format!("{peer_did}\n{peer_url}\n{thread_id}").as_bytes())
            [..16]
    );
    let pair = LegacyPair {
        pair_id: pair_id.clone(),
        peer_did,
        peer_url,
        thread_id: thread_id.clone(),
        recorded: "starting".into(),
    };
    let tenant = caller.tenant.clone();
    let mut changes = Vec::new();
    if let Some(token) = &peer_token {
        changes.push(fstate::seal_secret(
            &tenant.identity.key,
            &secret_handle(&pair_id),
            token,
        ));
    }
    let body = json!({
        "kind": KIND, "topic": "pair_state", "pair_id": pair.pair_id, "peer_did": pair.peer_did,
        "peer_url": pair.peer_url, "thread_id": pair.thread_id, "state": "starting", "at": unix_now(),
    });
    write_own(
        &state,
        &tenant,
        vec![(CONTROL_THREAD, object(body), Vec::new())],
        changes,
    )
    .await?;
    super::start_job(&state, tenant.clone(), &pair_id, &thread_id).await?;
    let mut answer = view(&state, &tenant.id, &pair);
    if peer_token.is_none()
        && pairs::outbound_token_for_peer(&state, &tenant, &pair.peer_did)
            .await?
            .is_none()
    {
        answer["warning"] = json!("no peer_token and no record-bound pair with this peer: pulls will be refused until one exists");
    }
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let registry = registry(&state, &caller.tenant.id).await?;
    let data: Vec<Value> = registry
        .values()
        .filter(|p| p.recorded != "stopped")
        .map(|p| view(&state, &caller.tenant.id, p))
        .collect();
    Ok(Json(json!({"object": "list", "data": data})).into_response())
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> ApiResult<LegacyPair> {
    caller.require(Scope::FederationManage)?;
    registry(state, &caller.tenant.id)
        .await?
        .remove(id)
        .filter(|p| p.recorded != "stopped")
        .ok_or_else(|| ApiError::not_found(format!("no sync pair '{id}'")))
}

pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    let pair = find(&state, &caller, &id).await?;
    Ok(Json(view(&state, &caller.tenant.id, &pair)).into_response())
}

pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    let mut pair = find(&state, &caller, &id).await?;
    record_state(&state, &caller.tenant, &pair, "pair_removed", "stopped").await?;
    super::stop_jobs(&state, &caller.tenant.id, &id).await?;
    pair.recorded = "stopped".into();
    Ok(Json(view(&state, &caller.tenant.id, &pair)).into_response())
}

pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    let mut pair = find(&state, &caller, &id).await?;
    record_state(&state, &caller.tenant, &pair, "pair_state", "paused").await?;
    state.federation.jobs.kick(&caller.tenant.id, &id);
    pair.recorded = "paused".into();
    Ok(Json(view(&state, &caller.tenant.id, &pair)).into_response())
}

pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    let mut pair = find(&state, &caller, &id).await?;
    record_state(&state, &caller.tenant, &pair, "pair_state", "starting").await?;
    super::start_job(&state, caller.tenant.clone(), &id, &pair.thread_id).await?;
    state.federation.jobs.kick(&caller.tenant.id, &id);
    pair.recorded = "starting".into();
    Ok(Json(view(&state, &caller.tenant.id, &pair)).into_response())
}

pub async fn kick(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    let pair = find(&state, &caller, &id).await?;
    state.federation.jobs.kick(&caller.tenant.id, &id);
    Ok(Json(view(&state, &caller.tenant.id, &pair)).into_response())
}
