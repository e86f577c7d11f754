//! Record-bound pairs (FEDERATION §3): their state is a fold over `th_federation_pairs`, read
//! afresh for every decision (no replica caches a pair), and every transition is a record written
//! together with its audit record on `th_audit_federation_pairs` in one transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::FutureExt;
use serde_json::{json, Map, Value};
use syncropel_protocol::pair::{
    audit_body, fold_pairs, outbound_secret_handle, revoke_body, update_body, AuditChange,
    PairAudit, PairView, RevokeNotify, UpdateOp,
};
use syncropel_protocol::sync::{has_document, PeerItem};
use syncropel_protocol::{validate_thread, ErrorCode, PairState, PAIRS_AUDIT_THREAD, PAIRS_THREAD};
use syncropel_store::{ListFilter, StateChange};

use super::identities::signature_holds;
use super::puller::{pull_through, PullError, PullOutcome, Resolver, Source};
use super::state as fstate;
use crate::app::{optional_json, AppState, JsonBody, LimitedBody};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::PathParam;
use crate::tenant::Tenant;
use syncropel_protocol::unix_now;
use syncropel_tenant as accounts;
use syncropel_tenant::Scope;

/// A genesis counts only if it is signed for the responder it names: by the responder's key for
/// a did:key responder; for a responder with a DID document, by the key that was checked against
/// that document when the genesis was stored (only this steward writes the pair thread, §3).
/// Checking against today's document instead would make pairs vanish after a key rotation.
fn genesis_verifies(record: &Value) -> bool {
    let Ok(item) = PeerItem::from_value(json!({"id": record["id"], "record": record})) else {
        return false;
    };
    let responder = record["body"]["responder_did"].as_str().unwrap_or("");
    let signer = item.signer().unwrap_or(&item.envelope.actor);
    let for_responder = if has_document(responder) {
        item.envelope.actor == responder
    } else {
        signer == responder
    };
    for_responder && signature_holds(&item, signer)
}

/// Every pair of the tenant, by pair id. The fold is kept per tenant and reused while no record
/// has been added to `th_federation_pairs` since (one indexed read checks that), so every
/// replica still decides on the current log.
pub async fn load(state: &AppState, tenant: &Tenant) -> ApiResult<BTreeMap<String, PairView>> {
    let cached = state.federation.cached_pairs(&tenant.id);
    if let Some((seq, pairs)) = cached {
        let newer = ListFilter {
            thread: Some(PAIRS_THREAD.into()),
            actor: None,
            since_clock: None,
            after_seq: seq,
            limit: 1,
        };
        if state.store.list(&tenant.id, &newer).await?.is_empty() {
            return Ok(pairs);
        }
    }
    let (records, seq) = super::thread_records(state, &tenant.id, PAIRS_THREAD).await?;
    let pairs = fold_pairs(&records, &tenant.identity.did, genesis_verifies);
    state.federation.cache_pairs(&tenant.id, seq, pairs.clone());
    Ok(pairs)
}

/// A pair named by its id or its peer's DID.
pub async fn find(state: &AppState, tenant: &Tenant, key: &str) -> ApiResult<PairView> {
    let mut pairs = load(state, tenant).await?;
    if let Some(pair) = pairs.remove(key) {
        return Ok(pair);
    }
    pairs
        .into_values()
        .find(|p| p.peer_did == key || p.peer_url.as_deref() == Some(key.trim_end_matches('/')))
        .ok_or_else(|| {
            ApiError::new(ErrorCode::UnpairedPeer, format!("no pair with '{key}'"))
                .with_hint("pair first: `spl federation pair <peer-url>`")
        })
}

/// The pair whose inbound service account is `sa_id` (the pair behind a peer's token).
pub async fn by_inbound_account(
    state: &AppState,
    tenant: &Tenant,
    sa_id: &str,
) -> ApiResult<Option<PairView>> {
    Ok(load(state, tenant)
        .await?
        .into_values()
        .find(|p| p.tokens.inbound.as_ref().is_some_and(|t| t.sa_id == sa_id)))
}

/// How often a pull job records where it is (`cursor_checkpoint`, §3.2: at most once a minute;
/// the live cursor row is what the job reads).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// A pair whose peer has not answered a pull for this long degrades (`unreachable_24h`).
const UNREACHABLE_SECS: i64 = 24 * 3600;

/// What a pull says about its pair (§5.5): a 401 degrades an active pair at once (`auth_401`),
/// the next success recovers a degraded one, and the cursor is checkpointed as a record now and
/// then so that the fold can rebuild it after a restore.
pub async fn after_pull(
    state: &AppState,
    tenant: &Tenant,
    pair_id: &str,
    thread: &str,
    result: &Result<PullOutcome, PullError>,
    last_checkpoint: &mut Option<std::time::Instant>,
) -> ApiResult<()> {
    let pair = find(state, tenant, pair_id).await?;
    let now = unix_now();
    // A 401 degrades at once; any other failure once nothing has come through for 24 hours
    // (the cursor row keeps the last success, so this survives restarts).
    let cause = match result {
        Err(PullError::Peer(e)) if e.http_status() == Some(401) => Some("auth_401"),
        Err(PullError::Peer(_)) => {
            let cursor =
                super::state::pull_cursor(state.store.as_ref(), &tenant.id, pair_id, thread)
                    .await?;
            let last = cursor.and_then(|c| c.last_sync_at);
            last.is_some_and(|at| now - at > UNREACHABLE_SECS)
                .then_some("unreachable_24h")
        }
        _ => None,
    };
    match result {
        Err(_) => {
            if let Some(cause) = cause.filter(|_| pair.state == PairState::Active) {
                let mut fields = Map::new();
                fields.insert("cause".into(), json!(cause));
                let body = update_body(
                    &pair.pair_id,
                    pair.generation,
                    UpdateOp::Degrade,
                    Some(cause),
                    fields,
                    now,
                );
                transition(
                    state,
                    tenant,
                    &pair,
                    body,
                    Some(PairState::Degraded),
                    Some(cause),
                    Vec::new(),
                )
                .await?;
            }
        }
        Ok(outcome) => {
            let mut pair = pair;
            if pair.state == PairState::Degraded {
                let mut fields = Map::new();
                fields.insert("after".into(), json!(pair.degraded_cause));
                let body = update_body(
                    &pair.pair_id,
                    pair.generation,
                    UpdateOp::Recover,
                    None,
                    fields,
                    now,
                );
                pair = transition(
                    state,
                    tenant,
                    &pair,
                    body,
                    Some(PairState::Active),
                    Some("recovered"),
                    Vec::new(),
                )
                .await?;
            }
            let moved = pair.cursors.get(thread).map(|c| c.cursor.as_str())
                != Some(outcome.cursor.as_str());
            let due = last_checkpoint.is_none_or(|at| at.elapsed() >= CHECKPOINT_EVERY);
            if moved && due && !outcome.cursor.is_empty() {
                let mut fields = Map::new();
                fields.insert("thread".into(), json!(thread));
                fields.insert("cursor".into(), json!(outcome.cursor));
                let body = update_body(
                    &pair.pair_id,
                    pair.generation,
                    UpdateOp::CursorCheckpoint,
                    None,
                    fields,
                    now,
                );
                transition(state, tenant, &pair, body, None, None, Vec::new()).await?;
                *last_checkpoint = Some(std::time::Instant::now());
            }
        }
    }
    Ok(())
}

/// A pair serves its peer while active or degraded; paused answers `pair_paused`.
pub fn require_serving(pair: &PairView) -> ApiResult<()> {
    match pair.state {
        PairState::Active | PairState::Degraded => Ok(()),
        PairState::Paused => Err(ApiError::new(
            ErrorCode::PairPaused,
            format!("pair {} is paused", pair.pair_id),
        )
        .with_hint("the operator resumes it with `spl federation resume`")),
        PairState::Establishing | PairState::Revoked => Err(ApiError::new(
            ErrorCode::AuthInvalid,
            format!("pair {} is not active", pair.pair_id),
        )),
    }
}

/// The namespaces the peer may land our records in: the agreed same-name namespaces and the
/// peer side of each map.
pub fn target_namespaces(pair: &PairView) -> Vec<String> {
    let mut targets = pair.namespaces.clone();
    targets.extend(pair.maps.iter().map(|m| m.peer.clone()));
    if targets.is_empty() {
        targets.push(syncropel_protocol::DEFAULT_NAMESPACE.into());
    }
    targets
}

/// The bearer an active pair with `peer_did` holds for us at the peer.
pub async fn outbound_token_for_peer(
    state: &AppState,
    tenant: &Tenant,
    peer_did: &str,
) -> ApiResult<Option<String>> {
    let pair = load(state, tenant)
        .await?
        .into_values()
        .find(|p| p.peer_did == peer_did && p.state == PairState::Active);
    match pair {
        Some(pair) => outbound_token(state, tenant, &pair.pair_id).await,
        None => Ok(None),
    }
}

pub async fn outbound_token(
    state: &AppState,
    tenant: &Tenant,
    pair_id: &str,
) -> ApiResult<Option<String>> {
    fstate::open_secret(
        state.store.as_ref(),
        &tenant.id,
        &tenant.identity.key,
        &outbound_secret_handle(pair_id),
    )
    .await
}

/// Resolves a pair's pull source before each pull: only an active or degraded pair with a
/// credential is pulled from.
pub fn resolver() -> Resolver {
    Arc::new(|state: AppState, tenant: Arc<Tenant>, pair_id: String| {
        async move {
            let pair = find(&state, &tenant, &pair_id).await?;
            require_serving(&pair).map_err(PullError::Parked)?;
            let token = outbound_token(&state, &tenant, &pair_id)
                .await?
                .ok_or_else(|| {
                    PullError::Parked(ApiError::new(
                        ErrorCode::AuthInvalid,
                        format!("pair {pair_id} has no outbound credential"),
                    ))
                })?;
            Ok(Source {
                id: pair_id,
                peer_did: pair.peer_did.clone(),
                base_url: pair.peer_url.clone().unwrap_or_default(),
                token,
                actor: tenant.identity.did.to_string(),
                target_namespace: None,
            })
        }
        .boxed()
    })
}

/// Writes one update (or revoke) of a pair with its audit record, in one transaction, and
/// answers the pair as it now stands.
pub async fn transition(
    state: &AppState,
    tenant: &Tenant,
    pair: &PairView,
    body: Map<String, Value>,
    to: Option<PairState>,
    reason: Option<&str>,
    changes: Vec<StateChange>,
) -> ApiResult<PairView> {
    let identity = &tenant.identity;
    // The audit names the state record, whose id is known once it is sealed.
    let record = super::own_record(tenant, PAIRS_THREAD, body, pair.next_parents.clone());
    let change = match to {
        Some(to) => AuditChange::Transition {
            from: Some(pair.state),
            to,
        },
        None => AuditChange::Event("update"),
    };
    let audit = audit_body(&PairAudit {
        pair_id: &pair.pair_id,
        generation: pair.generation,
        peer_did: &pair.peer_did,
        change,
        reason,
        cause_record: &record.id,
        actor: &identity.did,
        timestamp: unix_now(),
    });
    let audit = super::own_record(tenant, PAIRS_AUDIT_THREAD, audit, Vec::new());
    for result in state
        .store
        .write(&tenant.id, vec![record, audit], changes)
        .await?
    {
        result.map_err(ApiError::from)?;
    }
    find(state, tenant, &pair.pair_id).await
}

pub fn view(state: &AppState, tenant: &str, pair: &PairView) -> Value {
    let mut value = serde_json::to_value(pair).unwrap_or_default();
    value["object"] = json!("federation_pair");
    let health = state.federation.jobs.health(tenant, &pair.pair_id);
    let failing = health.iter().find(|h| h.status == "failing");
    value["sync_health"] = json!({
        "status": if failing.is_some() { "failing" } else { "ok" },
        "last_error": failing.and_then(|h| h.last_error.clone()),
        "jobs": health,
    });
    value
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let pairs = load(&state, &caller.tenant).await?;
    let data: Vec<Value> = pairs
        .values()
        .map(|p| view(&state, &caller.tenant.id, p))
        .collect();
    Ok(Json(json!({"object": "list", "data": data})).into_response())
}

pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(key): PathParam,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let pair = find(&state, &caller.tenant, &key).await?;
    Ok(Json(view(&state, &caller.tenant.id, &pair)).into_response())
}

fn reason_of(body: &Value) -> ApiResult<Option<String>> {
    match body.get("reason") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(r)) => Ok(Some(r.clone())),
        Some(_) => Err(ApiError::validation("'reason' must be a string")),
    }
}

async fn operator_update(
    state: AppState,
    caller: Caller,
    key: String,
    body: Value,
    op: UpdateOp,
    to: PairState,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let pair = find(&state, &caller.tenant, &key).await?;
    if PairState::after(
        Some(pair.state),
        op.event().expect("an operator op is an event"),
    ) != Some(to)
    {
        return Err(ApiError::new(
            ErrorCode::PreconditionFailed,
            format!(
                "pair {} is {}; it cannot {}",
                pair.pair_id,
                pair.state.as_str(),
                op.as_str()
            ),
        ));
    }
    let reason = reason_of(&body)?;
    let record = update_body(
        &pair.pair_id,
        pair.generation,
        op,
        reason.as_deref(),
        Map::new(),
        unix_now(),
    );
    let pair = transition(
        &state,
        &caller.tenant,
        &pair,
        record,
        Some(to),
        reason.as_deref(),
        Vec::new(),
    )
    .await?;
    state.federation.jobs.kick(&caller.tenant.id, &pair.pair_id);
    Ok(Json(view(&state, &caller.tenant.id, &pair)).into_response())
}

pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(key): PathParam,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult<Response> {
    let body = optional_json(&state, &bytes)?;
    operator_update(state, caller, key, body, UpdateOp::Pause, PairState::Paused).await
}

pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(key): PathParam,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult<Response> {
    let body = optional_json(&state, &bytes)?;
    operator_update(
        state,
        caller,
        key,
        body,
        UpdateOp::Resume,
        PairState::Active,
    )
    .await
}

/// Revokes a pair on this side: the revoke record, the inbound tokens revoked and the outbound
/// secret deleted in one go; then a best-effort notice to the peer (§4.8).
pub async fn revoke_pair(
    state: &AppState,
    tenant: &Tenant,
    pair: &PairView,
    reason: &str,
    notify: bool,
) -> ApiResult<PairView> {
    let mut revoked = Vec::new();
    if let Some(inbound) = &pair.tokens.inbound {
        accounts::revoke(
            state.store.as_ref(),
            &tenant.id,
            &tenant.identity,
            &inbound.token_id,
        )
        .await?;
        state.tokens.evict(&tenant.id, &inbound.token_id);
        revoked.push(inbound.token_id.clone());
    }
    let mut outcome = RevokeNotify {
        attempted: false,
        ok: false,
    };
    if notify {
        let token: Option<String> = outbound_token(state, tenant, &pair.pair_id).await?;
        if let (Some(url), Some(token)) = (pair.peer_url.as_deref(), token) {
            outcome.attempted = true;
            let body = super::signed(
                json!({
                    "pair_id": pair.pair_id, "generation": pair.generation, "reason": reason,
                    "issued_at_ms": unix_now() * 1000,
                }),
                &tenant.identity.key,
            );
            let target = format!(
                "{}/v1/federation/pair/notify-revoke",
                url.trim_end_matches('/')
            );
            outcome.ok = matches!(
                state
                    .federation
                    .client()
                    .post_json(&target, &body, Some(&token), Some(&tenant.identity.did))
                    .await,
                Ok((200..=299, _))
            );
        }
    }
    let record = revoke_body(
        &pair.pair_id,
        pair.generation,
        reason,
        &revoked,
        outcome,
        unix_now(),
    );
    let changes = vec![StateChange::delete(
        fstate::SECRET,
        &outbound_secret_handle(&pair.pair_id),
    )];
    let pair = transition(
        state,
        tenant,
        pair,
        record,
        Some(PairState::Revoked),
        Some(reason),
        changes,
    )
    .await?;
    super::stop_jobs(state, &tenant.id, &pair.pair_id).await?;
    Ok(pair)
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
    let reason = reason_of(&body)?.unwrap_or_else(|| "operator".into());
    let pair = find(&state, &caller.tenant, &key).await?;
    if pair.state == PairState::Revoked {
        return Ok(Json(view(&state, &caller.tenant.id, &pair)).into_response());
    }
    let pair = revoke_pair(&state, &caller.tenant, &pair, &reason, true).await?;
    Ok(Json(view(&state, &caller.tenant.id, &pair)).into_response())
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
    let pair = by_inbound_account(&state, &caller.tenant, &grant.sa_id)
        .await?
        .ok_or_else(|| {
            ApiError::new(ErrorCode::PermissionDenied, "this token belongs to no pair")
        })?;
    let object = body
        .as_object()
        .ok_or_else(|| ApiError::validation("the notice must be a JSON object"))?;
    let signer = syncropel_protocol::signed::verify_object(object)?;
    super::handshake::check_freshness(&body)?;
    let signed_by_peer = state.federation.signs_for(&pair.peer_did, &signer).await;
    if body["generation"].as_u64() != Some(pair.generation) {
        return Err(ApiError::validation(
            "the notice is for another generation of this pair",
        ));
    }
    if !signed_by_peer || body["pair_id"].as_str() != Some(pair.pair_id.as_str()) {
        return Err(ApiError::new(
            ErrorCode::UnauthenticatedInitiator,
            "the notice is not signed by this pair's peer",
        ));
    }
    if pair.state != PairState::Revoked {
        revoke_pair(&state, &caller.tenant, &pair, "peer_notified", false).await?;
    }
    Ok((
        StatusCode::OK,
        Json(json!({"object": "pair_revoked", "pair_id": pair.pair_id})),
    )
        .into_response())
}

/// `POST /v1/sync/pull {thread, peer, peer_token?}` (`spl sync T from PEER`): a one-shot pull
/// that pages until the peer has nothing more. Through a pair it also leaves the pair's job
/// running for the thread; with `peer_token` and no pair it is the legacy one-shot path.
pub async fn pull(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let thread = text("thread").ok_or_else(|| ApiError::validation("'thread' is required"))?;
    validate_thread(&thread)?;
    refuse_unpullable(&thread)?;
    let peer = text("peer").ok_or_else(|| ApiError::validation("'peer' is required"))?;
    let tenant = caller.tenant.clone();
    let source = match find(&state, &tenant, &peer).await {
        Ok(pair) => {
            match pair.state {
                PairState::Paused => require_serving(&pair)?,
                // The operator's call is fine; the pair is what cannot carry a pull (a 401
                // here would read as the operator's own token being refused).
                PairState::Establishing | PairState::Revoked => {
                    return Err(ApiError::new(
                        ErrorCode::PreconditionFailed,
                        format!("pair {} is {}", pair.pair_id, pair.state.as_str()),
                    )
                    .with_hint("pair again: `spl federation pair <peer-url>`"))
                }
                PairState::Active | PairState::Degraded => {}
            }
            (resolver())(state.clone(), tenant.clone(), pair.pair_id.clone())
                .await
                .map_err(pull_error)?
        }
        Err(unpaired) => match text("peer_token") {
            Some(token) if peer.starts_with("http://") || peer.starts_with("https://") => Source {
                id: format!(
                    "once_{}",
                    &syncropel_protocol::sha256_hex(peer.as_bytes())[..16]
                ),
                peer_did: String::new(),
                base_url: peer.clone(),
                token,
                actor: tenant.identity.did.to_string(),
                target_namespace: None,
            },
            Some(_) => {
                return Err(ApiError::validation(
                    "with --peer-token, name the peer by its URL",
                ))
            }
            None => return Err(unpaired),
        },
    };
    let total = pull_through(&state, state.federation.client(), &tenant, &source, &thread)
        .await
        .map_err(pull_error)?;
    if !source.id.starts_with("once_") {
        super::start_job(&state, tenant.clone(), &source.id, &thread).await?;
    }
    Ok(Json(json!({
        "object": "sync_result",
        "thread": thread,
        "peer": peer,
        "pulled": total.pulled,
        "duplicates": total.duplicates,
        "quarantined": total.quarantined,
        "cursor": total.cursor,
    }))
    .into_response())
}

/// Threads no peer may fill (see [`super::puller::pullable_thread`]).
pub fn refuse_unpullable(thread: &str) -> ApiResult<()> {
    if super::puller::pullable_thread(thread) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::ThreadNotAllowed,
            format!("thread '{thread}' is this steward's own; it is never pulled from a peer"),
        ))
    }
}

/// A failed one-shot pull, as an answer to the operator.
fn pull_error(e: PullError) -> ApiError {
    match e {
        PullError::Parked(e) | PullError::Local(e) => e,
        PullError::Peer(e) => ApiError::new(
            ErrorCode::PeerUnreachable,
            format!("the peer could not be pulled from: {} ({})", e, e.code()),
        )
        .with_extra("peer_error", e.code()),
    }
}
