//! The pairing handshake (FEDERATION §4): three round trips authenticated by identity-key
//! signatures and a single-use nonce, never by a bearer (the handshake is what mints bearers).
//!
//! Responder: `POST /v1/federation/pair` (init) queues the request for the operator (or approves
//! it at once when the peer's DID is on this steward's own allow-list), `/poll` answers the
//! decision, `/confirm` completes the exchange. Initiator: `POST /v1/federation/pairs` (the
//! operator's `spl federation pair <url>`) fetches and verifies the peer's manifest, sends init,
//! and on approval verifies the genesis, stores it verbatim, mints the peer's credential and
//! confirms; `POST /v1/federation/pairs/{id}/poll` continues a pending one.

use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use syncropel_protocol::pair::{
    activate_fields, audit_body, genesis_body, init_body, outbound_secret_handle, update_body,
    AuditChange, GenesisMap, GenesisParams, InitParams, IssuedToken, NamespaceMap, PairAudit,
    UpdateOp,
};
use syncropel_protocol::signed::verify_object;
use syncropel_protocol::sync::{sync_item, PeerItem};
use syncropel_protocol::{
    pair_id, sha256_hex, ErrorCode, PairState, PAIRS_AUDIT_THREAD, PAIRS_THREAD,
};
use syncropel_store::{NewRecord, ServiceAccount, StateChange};

use super::pairs::{self, find, transition};
use super::state::{self as fstate, HANDSHAKE};
use crate::app::{AppState, JsonBody};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::manifest;
use crate::routes::PathParam;
use crate::tenant::{CurrentTenant, Tenant};
use syncropel_protocol::unix_now;
use syncropel_tenant::stored_form;
use syncropel_tenant::Scope;
use syncropel_tenant::{self as accounts, MintedToken};

/// Scopes of the account a pair's peer gets: the peer-facing grains only (§4.6).
const PAIR_SCOPES: [&str; 3] = [
    "federation:sync_pull",
    "federation:sync_push",
    "federation:subscribe",
];
/// Names of the service accounts made for pairs start so.
pub const PAIR_ACCOUNT_PREFIX: &str = "pair ";
/// Pair tokens live 90 days; renewal opens 7 days before the end.
const TOKEN_TTL_SECS: i64 = 90 * 24 * 3600;
const RENEW_AFTER_SECS: i64 = 83 * 24 * 3600;
/// A pending request and an unconfirmed approval expire after a day.
const PENDING_TTL_SECS: i64 = 24 * 3600;
/// The approved token stays retrievable by poll this long, for a lost poll answer.
const TOKEN_RETRIEVABLE_SECS: i64 = 600;
/// Clocks of the two sides may disagree by this much.
const FRESHNESS_MS: i64 = 60_000;
/// Most requests waiting for the operator at once.
const MAX_PENDING: usize = 20;

/// One handshake in flight, on either side, keyed by the nonce's SHA-256.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Handshake {
    role: String,
    pair_id: String,
    generation: u64,
    peer_did: String,
    peer_url: String,
    /// `pending`, `approved`, `rejected` or `confirmed`.
    status: String,
    created_at: i64,
    expires_at: i64,
    namespaces: Vec<String>,
    maps: Vec<NamespaceMap>,
    /// Responder: the signed init as received (a replay must match it), the genesis item,
    /// when the token was issued, and the confirm accepted.
    init: Option<Value>,
    genesis: Option<Value>,
    token_issued_at: Option<i64>,
    token_expires_at: Option<i64>,
    confirm: Option<Value>,
    /// Initiator: the nonce itself and where the responder takes handshake calls.
    nonce: Option<String>,
    endpoint: Option<String>,
    peer_manifest_sha256: Option<String>,
}

fn token_handle(nonce_sha256: &str) -> String {
    format!("handshake/{nonce_sha256}")
}

async fn handshakes(state: &AppState, tenant: &str) -> ApiResult<Vec<(String, Handshake)>> {
    state
        .store
        .state_list(tenant, HANDSHAKE)
        .await?
        .into_iter()
        .map(|(key, text)| Ok((key, fstate::parse(&text)?)))
        .collect()
}

async fn handshake(state: &AppState, tenant: &str, key: &str) -> ApiResult<Option<Handshake>> {
    match state.store.state_get(tenant, HANDSHAKE, key).await? {
        Some(text) => Ok(Some(fstate::parse(&text)?)),
        None => Ok(None),
    }
}

fn put(key: &str, row: &Handshake) -> StateChange {
    StateChange::put(HANDSHAKE, key, fstate::to_text(row))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn unauthenticated(why: impl Into<String>) -> ApiError {
    ApiError::new(
        ErrorCode::UnauthenticatedInitiator,
        format!(
            "pair_handshake_rejected: unauthenticated_initiator: {}",
            why.into()
        ),
    )
}

fn text_field(body: &Value, name: &str) -> ApiResult<String> {
    match body.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(ApiError::validation(format!(
            "'{name}' must be a non-empty string"
        ))),
    }
}

fn nonce_field(body: &Value) -> ApiResult<String> {
    let nonce = text_field(body, "nonce")?;
    if nonce.len() != 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::validation(
            "'nonce' must be 32 bytes as 64 hex characters",
        ));
    }
    Ok(nonce.to_ascii_lowercase())
}

pub(super) fn check_freshness(body: &Value) -> ApiResult<()> {
    let issued = body
        .get("issued_at_ms")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::validation("'issued_at_ms' must be an integer"))?;
    if (now_ms() - issued).abs() > FRESHNESS_MS {
        return Err(ApiError::new(
            ErrorCode::FreshnessViolation,
            "issued_at_ms is more than 60 s away from this steward's clock",
        )
        .with_hint("fix the clock of one of the two machines"));
    }
    Ok(())
}

fn maps_field(body: &Value) -> ApiResult<Vec<NamespaceMap>> {
    match body.get("maps") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(maps) => serde_json::from_value(maps.clone())
            .map_err(|_| ApiError::validation("'maps' must be a list of {\"local\", \"peer\"}")),
    }
}

/// The namespaces a pair shares under their own names; none named (absent, null or an empty
/// list) means `default`.
fn namespaces_field(body: &Value, name: &str) -> ApiResult<Vec<String>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(vec![syncropel_protocol::DEFAULT_NAMESPACE.into()]),
        Some(Value::Array(list)) if list.is_empty() => {
            Ok(vec![syncropel_protocol::DEFAULT_NAMESPACE.into()])
        }
        Some(Value::String(ns)) => Ok(vec![ns.clone()]),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| ApiError::validation(format!("'{name}' must be a list of namespaces"))),
        Some(_) => Err(ApiError::validation(format!(
            "'{name}' must be a list of namespaces"
        ))),
    }
}

/// Fetches a peer's manifest and checks it is signed by the DID it names and still fresh.
async fn verified_manifest(state: &AppState, url: &str) -> ApiResult<(Value, String)> {
    let document = state.federation.client().manifest(url).await.map_err(|e| {
        ApiError::new(
            ErrorCode::PeerUnreachable,
            format!("could not fetch the manifest of {url}: {e}"),
        )
    })?;
    let manifest = document
        .get("federation_manifest")
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::PeerUnreachable,
                format!("{url} has no `federation_manifest` key"),
            )
            .with_hint("create an identity on the peer (`spl init`) first")
        })?;
    let did = manifest::daemon_did(&manifest)
        .unwrap_or_default()
        .to_string();
    let keys = state.federation.keys_of(&did).await?;
    manifest::verify(&manifest, &keys).map_err(|e| {
        ApiError::new(
            ErrorCode::UnauthenticatedInitiator,
            format!("the manifest of {url} does not verify: {e}"),
        )
    })?;
    if manifest::expires_before(&manifest, SystemTime::now() - Duration::from_secs(300)) {
        return Err(ApiError::new(
            ErrorCode::UnauthenticatedInitiator,
            format!("the manifest of {url} has expired"),
        ));
    }
    Ok((manifest, did))
}

fn manifest_sha(manifest: &Value) -> String {
    sha256_hex(syncropel_protocol::canonical_string(manifest).as_bytes())
}

fn pending_answer(row: &Handshake, nonce: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({
            "object": "pair_handshake", "state": "establishing", "status": "pending",
            "pair_id": row.pair_id, "nonce": nonce, "poll_after_ms": 2000,
            "expires_at": syncropel_protocol::rfc3339_from_unix(row.expires_at),
        })),
    )
        .into_response()
}

/// `POST /v1/federation/pair` (and `/init`): a peer asks to pair with us.
pub async fn init(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    tenant.require_writable()?;
    let initiator = text_field(&body, "actor_did")?;
    let peer_url = text_field(&body, "peer_url")?;
    let nonce = nonce_field(&body)?;
    let namespaces = namespaces_field(&body, "namespace")?;
    let maps = maps_field(&body)?;
    check_freshness(&body)?;
    if text_field(&body, "responder_did")? != *tenant.identity.did {
        return Err(unauthenticated(
            "the request is addressed to another steward",
        ));
    }
    let object = body
        .as_object()
        .expect("a JSON object, since fields were read");
    let signer = verify_object(object).map_err(|e| unauthenticated(e.to_string()))?;
    if !state.federation.signs_for(&initiator, &signer).await {
        return Err(unauthenticated("the request is not signed by actor_did"));
    }

    let key = sha256_hex(nonce.as_bytes());
    if let Some(row) = handshake(&state, &tenant.id, &key).await? {
        if row.init.as_ref() != Some(&body) {
            return Err(ApiError::new(
                ErrorCode::NonceConflict,
                "this nonce came with another request",
            ));
        }
        return match row.status.as_str() {
            "confirmed" => Err(
                ApiError::new(ErrorCode::NonceReused, "this nonce has been used")
                    .with_hint("run `spl federation pair` again (it makes a new nonce)"),
            ),
            _ => decision_answer(&state, &tenant, &key, &row, &nonce).await,
        };
    }
    let id = pair_id(&tenant.identity.did, &initiator);
    let existing = pairs::load(&state, &tenant).await?.remove(&id);
    if let Some(pair) = existing.as_ref().filter(|p| p.state != PairState::Revoked) {
        if pair.state == PairState::Active {
            // Pairing is idempotent: the pair stands, no new tokens.
            return Ok(Json(json!({
                "object": "pair_handshake", "state": "active", "status": "active", "pair_id": id,
            }))
            .into_response());
        }
    }
    // The URL must be the initiator's own: its manifest there names the same DID.
    let (_, manifest_did) = verified_manifest(&state, &peer_url)
        .await
        .map_err(|e| unauthenticated(e.message))?;
    if manifest_did != initiator {
        return Err(unauthenticated(format!(
            "{peer_url} is the steward of {manifest_did}, not of {initiator}"
        )));
    }
    let waiting = handshakes(&state, &tenant.id)
        .await?
        .iter()
        .filter(|(_, r)| {
            r.role == "responder" && r.status == "pending" && r.expires_at > unix_now()
        })
        .count();
    if waiting >= MAX_PENDING {
        return Err(ApiError::new(
            ErrorCode::PairRateLimited,
            "too many pair requests are waiting for the operator",
        ));
    }
    let generation = match &existing {
        Some(pair) if pair.state == PairState::Revoked => pair.generation + 1,
        Some(pair) => pair.generation.max(1),
        None => 1,
    };
    let now = unix_now();
    let row = Handshake {
        role: "responder".into(),
        pair_id: id,
        generation,
        peer_did: initiator.clone(),
        peer_url,
        status: "pending".into(),
        created_at: now,
        expires_at: now + PENDING_TTL_SECS,
        namespaces,
        maps,
        init: Some(body.clone()),
        genesis: None,
        token_issued_at: None,
        token_expires_at: None,
        confirm: None,
        nonce: None,
        endpoint: None,
        peer_manifest_sha256: None,
    };
    state
        .store
        .write(&tenant.id, Vec::new(), vec![put(&key, &row)])
        .await?;
    if state.federation.config.auto_approve.contains(&initiator) {
        let row = approve_row(&state, &tenant, &key, row, "policy:auto_approve_dids").await?;
        return decision_answer(&state, &tenant, &key, &row, &nonce).await;
    }
    Ok(pending_answer(&row, &nonce))
}

/// The answer to init or poll for a request in `row`'s state.
async fn decision_answer(
    state: &AppState,
    tenant: &Tenant,
    key: &str,
    row: &Handshake,
    nonce: &str,
) -> ApiResult<Response> {
    match row.status.as_str() {
        "pending" if row.expires_at <= unix_now() => Err(ApiError::new(
            ErrorCode::NonceExpired,
            "this pair request expired before it was approved",
        )),
        "pending" => Ok(pending_answer(row, nonce)),
        "rejected" => Err(ApiError::new(
            ErrorCode::PairRejected,
            "the operator rejected this pair request",
        )),
        _ => {
            let fresh = row.status == "approved"
                && row
                    .token_issued_at
                    .is_some_and(|at| unix_now() - at < TOKEN_RETRIEVABLE_SECS);
            let token = if fresh {
                fstate::open_secret(
                    state.store.as_ref(),
                    &tenant.id,
                    &tenant.identity.key,
                    &token_handle(key),
                )
                .await?
            } else {
                None
            };
            let url = tenant.url.clone().unwrap_or_default();
            let manifest = manifest::sign(
                &tenant.identity.key,
                &tenant.identity.did,
                &url,
                SystemTime::now(),
            );
            Ok(Json(json!({
                "object": "pair_handshake", "state": "establishing", "status": "approved",
                "pair_id": row.pair_id, "issued_token": token,
                "token_expires_at": row.token_expires_at.map(syncropel_protocol::rfc3339_from_unix),
                "responder_manifest": manifest, "mls_welcome": null, "genesis": row.genesis,
            }))
            .into_response())
        }
    }
}

/// Approves a pending request: the peer's account and token, then genesis, its audit and the
/// handshake row in one transaction.
async fn approve_row(
    state: &AppState,
    tenant: &Tenant,
    key: &str,
    mut row: Handshake,
    approved_by: &str,
) -> ApiResult<Handshake> {
    let store = state.store.as_ref();
    let identity = &tenant.identity;
    let (sa, minted) = pair_credential(state, tenant, &row.peer_did).await?;
    let expires_at = minted.expires_at.unwrap_or_default();
    let issued = IssuedToken {
        token_id: minted.token_id.clone(),
        sa_id: sa.id.clone(),
        bound_did: row.peer_did.clone(),
        expires_at,
    };
    let scopes: Vec<String> = PAIR_SCOPES.iter().map(|s| s.to_string()).collect();
    let maps: Vec<GenesisMap> = row
        .maps
        .iter()
        .map(|m| GenesisMap {
            initiator: m.local.clone(),
            responder: m.peer.clone(),
        })
        .collect();
    let url = tenant.url.clone().unwrap_or_default();
    let own_manifest = manifest::sign(&identity.key, &identity.did, &url, SystemTime::now());
    let body = genesis_body(&GenesisParams {
        pair_id: &row.pair_id,
        generation: row.generation,
        initiator_did: &row.peer_did,
        initiator_url: &row.peer_url,
        responder_did: &identity.did,
        responder_url: &url,
        nonce_sha256: key,
        approved_by,
        scopes: &scopes,
        namespaces: &row.namespaces,
        maps: &maps,
        mode: "polling",
        poll_interval_secs: state.federation.config.poll_interval.as_secs().max(1),
        responder_issued: &issued,
        token_ttl_secs: TOKEN_TTL_SECS as u64,
        renew_after_secs: RENEW_AFTER_SECS as u64,
        responder_manifest_sha256: &manifest_sha(&own_manifest),
        created_at: unix_now(),
    });
    let genesis = super::own_record(tenant, PAIRS_THREAD, body, Vec::new());
    let audit = audit_record(
        tenant,
        &row.pair_id,
        row.generation,
        &row.peer_did,
        None,
        PairState::Establishing,
        approved_by,
        &genesis.id,
    );
    row.status = "approved".into();
    row.genesis = Some(item_of(&genesis)?);
    row.token_issued_at = Some(unix_now());
    row.token_expires_at = Some(expires_at);
    let changes = vec![
        put(key, &row),
        fstate::seal_secret(&identity.key, &token_handle(key), &minted.token),
    ];
    for result in store
        .write(&tenant.id, vec![genesis, audit], changes)
        .await?
    {
        result.map_err(ApiError::from)?;
    }
    Ok(row)
}

/// The peer's side of a pair here: an account bound to its DID with the peer-facing grains
/// only, and its first token.
async fn pair_credential(
    state: &AppState,
    tenant: &Tenant,
    peer_did: &str,
) -> ApiResult<(ServiceAccount, MintedToken)> {
    let store = state.store.as_ref();
    let sa = accounts::create_service_account(
        store,
        &tenant.id,
        &tenant.identity,
        &format!("{PAIR_ACCOUNT_PREFIX}{peer_did}"),
        PAIR_SCOPES.iter().map(|s| s.to_string()).collect(),
        vec![peer_did.to_string()],
    )
    .await?;
    let minted = accounts::mint(
        store,
        &tenant.id,
        &tenant.identity,
        &state.env,
        &sa.id,
        Some(TOKEN_TTL_SECS),
    )
    .await?;
    Ok((sa, minted))
}

fn item_of(record: &NewRecord) -> ApiResult<Value> {
    let stored: Value = serde_json::from_str(&record.json).map_err(ApiError::internal)?;
    sync_item(&stored).ok_or_else(|| ApiError::internal("a sealed record renders as an item"))
}

#[allow(clippy::too_many_arguments)]
fn audit_record(
    tenant: &Tenant,
    pair_id: &str,
    generation: u64,
    peer_did: &str,
    from: Option<PairState>,
    to: PairState,
    reason: &str,
    cause: &str,
) -> NewRecord {
    let identity = &tenant.identity;
    let body = audit_body(&PairAudit {
        pair_id,
        generation,
        peer_did,
        change: AuditChange::Transition { from, to },
        reason: Some(reason),
        cause_record: cause,
        actor: &identity.did,
        timestamp: unix_now(),
    });
    super::own_record(tenant, PAIRS_AUDIT_THREAD, body, Vec::new())
}

/// `POST /v1/federation/pair/poll {"nonce"}`
pub async fn poll(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let nonce = nonce_field(&body)?;
    let key = sha256_hex(nonce.as_bytes());
    let row = handshake(&state, &tenant.id, &key)
        .await?
        .filter(|r| r.role == "responder")
        .ok_or_else(|| ApiError::not_found("no pair request with this nonce"))?;
    decision_answer(&state, &tenant, &key, &row, &nonce).await
}

/// Parses `spl_<env>_<sa_id>_<secret>` for its account id.
fn token_account(token: &str) -> Option<String> {
    let rest = token.strip_prefix("spl_")?;
    let (_, rest) = rest.split_once('_')?;
    let (sa_id, secret) = rest.rsplit_once('_')?;
    (!sa_id.is_empty() && !secret.is_empty()).then(|| sa_id.to_string())
}

/// `POST /v1/federation/pair/confirm`: the initiator's credential for us; the pair goes active.
pub async fn confirm(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    tenant.require_writable()?;
    let nonce = nonce_field(&body)?;
    let key = sha256_hex(nonce.as_bytes());
    let Some(mut row) = handshake(&state, &tenant.id, &key)
        .await?
        .filter(|r| r.role == "responder")
    else {
        return Err(ApiError::not_found("no pair request with this nonce"));
    };
    if row.status == "confirmed" {
        return if row.confirm.as_ref() == Some(&body) {
            Ok(Json(confirmed_answer(&state, &tenant, &row.pair_id).await?).into_response())
        } else {
            Err(ApiError::new(
                ErrorCode::NonceConflict,
                "this handshake was confirmed with another request",
            ))
        };
    }
    if row.status != "approved" {
        return decision_answer(&state, &tenant, &key, &row, &nonce).await;
    }
    check_freshness(&body)?;
    let object = body.as_object().expect("a JSON object");
    let signer = verify_object(object).map_err(|e| unauthenticated(e.to_string()))?;
    if !state.federation.signs_for(&row.peer_did, &signer).await {
        return Err(unauthenticated(
            "the confirm is not signed by the initiator",
        ));
    }
    let genesis_id = row
        .genesis
        .as_ref()
        .and_then(|g| g["id"].as_str())
        .unwrap_or_default();
    if text_field(&body, "pair_id")? != row.pair_id
        || text_field(&body, "genesis_id")? != genesis_id
    {
        return Err(ApiError::validation(
            "pair_id or genesis_id does not match this handshake",
        ));
    }
    let token = text_field(&body, "issued_token")?;
    let sa_id = token_account(&token)
        .ok_or_else(|| ApiError::validation("'issued_token' is not a steward token"))?;
    let expires_at = body
        .get("token_expires_at")
        .and_then(Value::as_str)
        .and_then(syncropel_protocol::unix_from_rfc3339)
        .unwrap_or(unix_now() + TOKEN_TTL_SECS);
    let pair = find(&state, &tenant, &row.pair_id).await?;
    let issued = IssuedToken {
        token_id: sha256_hex(token.as_bytes()),
        sa_id,
        bound_did: tenant.identity.did.to_string(),
        expires_at,
    };
    let record = activate_body(&row, &issued);
    row.status = "confirmed".into();
    row.confirm = Some(body.clone());
    let changes = vec![
        put(&key, &row),
        fstate::seal_secret(
            &tenant.identity.key,
            &outbound_secret_handle(&row.pair_id),
            &token,
        ),
        StateChange::delete(fstate::SECRET, &token_handle(&key)),
    ];
    transition(
        &state,
        &tenant,
        &pair,
        record,
        Some(PairState::Active),
        Some("confirm"),
        changes,
    )
    .await?;
    Ok(Json(confirmed_answer(&state, &tenant, &row.pair_id).await?).into_response())
}

async fn confirmed_answer(state: &AppState, tenant: &Tenant, pair_id: &str) -> ApiResult<Value> {
    let pair = find(state, tenant, pair_id).await?;
    Ok(json!({
        "object": "pair_handshake", "status": "active", "pair_id": pair_id,
        "activated_record_id": pair.next_parents.last(),
    }))
}

/// `GET /v1/federation/pending`: requests waiting for the operator.
pub async fn pending(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let now = unix_now();
    let data: Vec<Value> = handshakes(&state, &caller.tenant.id)
        .await?
        .into_iter()
        .filter(|(_, r)| r.role == "responder" && r.status == "pending" && r.expires_at > now)
        .map(|(_, r)| {
            json!({
                "object": "pair_pending", "pair_id": r.pair_id, "peer_did": r.peer_did,
                "peer_url": r.peer_url, "namespace": r.namespaces.first(), "maps": r.maps,
                "expires_at": syncropel_protocol::rfc3339_from_unix(r.expires_at),
            })
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data})).into_response())
}

async fn pending_row(
    state: &AppState,
    caller: &Caller,
    pair_id: &str,
) -> ApiResult<(String, Handshake)> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let now = unix_now();
    handshakes(state, &caller.tenant.id)
        .await?
        .into_iter()
        .find(|(_, r)| {
            r.role == "responder"
                && r.status == "pending"
                && r.pair_id == pair_id
                && r.expires_at > now
        })
        .ok_or_else(|| ApiError::not_found(format!("no pending pair request '{pair_id}'")))
}

/// `POST /v1/federation/pending/{pair_id}/approve`
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(pair_id): PathParam,
) -> ApiResult<Response> {
    let (key, row) = pending_row(&state, &caller, &pair_id).await?;
    let approved_by = format!(
        "operator:{}",
        caller
            .grant
            .as_ref()
            .map(|g| g.sa_id.as_str())
            .unwrap_or("local")
    );
    let row = approve_row(&state, &caller.tenant, &key, row, &approved_by).await?;
    Ok(Json(json!({"object": "pair_pending", "pair_id": row.pair_id, "peer_did": row.peer_did, "status": "approved"})).into_response())
}

/// `POST /v1/federation/pending/{pair_id}/reject`
pub async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(pair_id): PathParam,
) -> ApiResult<Response> {
    let (key, mut row) = pending_row(&state, &caller, &pair_id).await?;
    row.status = "rejected".into();
    state
        .store
        .write(&caller.tenant.id, Vec::new(), vec![put(&key, &row)])
        .await?;
    Ok(Json(json!({"object": "pair_pending", "pair_id": row.pair_id, "peer_did": row.peer_did, "status": "rejected"})).into_response())
}

/// The `activate` record that ends the handshake on either side, naming the token the
/// initiator minted for the responder.
fn activate_body(row: &Handshake, issued: &IssuedToken) -> serde_json::Map<String, Value> {
    update_body(
        &row.pair_id,
        row.generation,
        UpdateOp::Activate,
        None,
        activate_fields(issued),
        unix_now(),
    )
}

/// The responder's error answer, as ours (same code, its message).
fn peer_refusal(status: u16, body: &Value) -> ApiError {
    let code = body["code"]
        .as_str()
        .and_then(ErrorCode::from_wire)
        .unwrap_or(ErrorCode::PeerUnreachable);
    let message = body["message"].as_str().unwrap_or("the peer refused");
    ApiError::new(code, format!("the peer answered {status}: {message}"))
}

/// `POST /v1/federation/pairs {"peer_url", "maps"?, "namespaces"?}`: starts pairing as the
/// initiator (`spl federation pair <url>`).
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let tenant = caller.tenant.clone();
    let peer_url = text_field(&body, "peer_url")?
        .trim_end_matches('/')
        .to_string();
    let maps = maps_field(&body)?;
    let namespaces = namespaces_field(&body, "namespaces")?;
    let (manifest, responder) = verified_manifest(&state, &peer_url).await?;
    if responder == *tenant.identity.did {
        return Err(ApiError::validation("that URL is this steward itself"));
    }
    let id = pair_id(&tenant.identity.did, &responder);
    let existing = pairs::load(&state, &tenant).await?.remove(&id);
    if let Some(pair) = existing.as_ref().filter(|p| p.state == PairState::Active) {
        return Ok(Json(pairs::view(&state, &tenant.id, pair)).into_response());
    }
    let generation = match &existing {
        Some(pair) if pair.state == PairState::Revoked => pair.generation + 1,
        Some(pair) => pair.generation.max(1),
        None => 1,
    };
    let endpoint = manifest["federation"]["handshake_endpoint"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{peer_url}/v1/federation/pair"));
    let mut nonce = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut nonce);
    let nonce = hex::encode(nonce);
    let key = sha256_hex(nonce.as_bytes());
    let manifest_sha256 = manifest_sha(&manifest);
    let own_url = tenant.url.clone().unwrap_or_default();
    let now = unix_now();
    let row = Handshake {
        role: "initiator".into(),
        pair_id: id.clone(),
        generation,
        peer_did: responder.clone(),
        peer_url: peer_url.clone(),
        status: "pending".into(),
        created_at: now,
        expires_at: now + PENDING_TTL_SECS,
        namespaces: namespaces.clone(),
        maps: maps.clone(),
        init: None,
        genesis: None,
        token_issued_at: None,
        token_expires_at: None,
        confirm: None,
        nonce: Some(nonce.clone()),
        endpoint: Some(endpoint.clone()),
        peer_manifest_sha256: Some(manifest_sha256.clone()),
    };
    let init_record = init_body(&InitParams {
        pair_id: &id,
        generation,
        peer_did: &responder,
        peer_url: &peer_url,
        nonce_sha256: &key,
        peer_manifest_sha256: &manifest_sha256,
        maps: &maps,
        mode: "polling",
        created_at: now,
    });
    let identity = &tenant.identity;
    let init_sealed = super::own_record(&tenant, PAIRS_THREAD, init_record, Vec::new());
    let audit = audit_record(
        &tenant,
        &id,
        generation,
        &responder,
        None,
        PairState::Establishing,
        "init",
        &init_sealed.id,
    );
    for result in state
        .store
        .write(&tenant.id, vec![init_sealed, audit], vec![put(&key, &row)])
        .await?
    {
        result.map_err(ApiError::from)?;
    }

    let request = super::signed(
        json!({
            "actor_did": *identity.did, "peer_url": own_url, "labels": [], "namespace": namespaces,
            "nonce": nonce, "issued_at_ms": now_ms(), "responder_did": responder,
            "responder_manifest_sha256": manifest_sha256, "maps": maps, "mode": "polling", "mls": null,
        }),
        &identity.key,
    );
    let (status, answer) = state
        .federation
        .client()
        .post_json(&endpoint, &request, None, None)
        .await
        .map_err(|e| ApiError::new(ErrorCode::PeerUnreachable, format!("init failed: {e}")))?;
    handle_decision(&state, &tenant, &key, row, status, answer).await
}

/// `POST /v1/federation/pairs/{id}/poll`: asks the responder again about a pending request.
pub async fn continue_pairing(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(pair_id): PathParam,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let tenant = caller.tenant.clone();
    let (key, row) = handshakes(&state, &tenant.id)
        .await?
        .into_iter()
        .filter(|(_, r)| r.role == "initiator" && r.pair_id == pair_id && r.status == "pending")
        .max_by_key(|(_, r)| r.created_at)
        .ok_or_else(|| ApiError::not_found(format!("no pairing in progress with '{pair_id}'")))?;
    let endpoint = row.endpoint.clone().unwrap_or_default();
    let nonce = row.nonce.clone().unwrap_or_default();
    let (status, answer) = state
        .federation
        .client()
        .post_json(
            &format!("{endpoint}/poll"),
            &json!({"nonce": nonce}),
            None,
            None,
        )
        .await
        .map_err(|e| ApiError::new(ErrorCode::PeerUnreachable, format!("poll failed: {e}")))?;
    handle_decision(&state, &tenant, &key, row, status, answer).await
}

/// The initiator's reaction to the responder's answer to init or poll.
async fn handle_decision(
    state: &AppState,
    tenant: &Tenant,
    key: &str,
    mut row: Handshake,
    status: u16,
    answer: Value,
) -> ApiResult<Response> {
    match (status, answer["status"].as_str()) {
        (202, _) => Ok(pending_answer(&row, "")),
        (200, Some("approved")) => complete(state, tenant, key, row, answer).await,
        (200, Some("active")) => Err(ApiError::new(
            ErrorCode::PreconditionFailed,
            "the peer holds an active pair with us that this steward does not know",
        )
        .with_hint("ask the peer's operator to revoke it, then pair again")),
        (403 | 410, _) => {
            row.status = "rejected".into();
            state
                .store
                .write(&tenant.id, Vec::new(), vec![put(key, &row)])
                .await?;
            if let Ok(pair) = find(state, tenant, &row.pair_id).await {
                if pair.state == PairState::Establishing {
                    pairs::revoke_pair(state, tenant, &pair, "handshake_rejected", false).await?;
                }
            }
            Err(peer_refusal(status, &answer))
        }
        _ => Err(peer_refusal(status, &answer)),
    }
}

/// Approved: verify and store the genesis, keep the responder's token, mint ours, confirm.
async fn complete(
    state: &AppState,
    tenant: &Tenant,
    key: &str,
    mut row: Handshake,
    answer: Value,
) -> ApiResult<Response> {
    let bad = |why: &str| {
        ApiError::new(
            ErrorCode::PeerUnreachable,
            format!("the peer's approval is invalid: {why}"),
        )
    };
    let token = answer["issued_token"]
        .as_str()
        .ok_or_else(|| bad("no issued_token"))?
        .to_string();
    let item = PeerItem::from_value(answer["genesis"].clone()).map_err(|e| bad(&e))?;
    let body = &item.envelope.body;
    let genuine = state.federation.signed_by(&item, &row.peer_did).await
        && body.get("pair_id").and_then(Value::as_str) == Some(row.pair_id.as_str())
        && body.get("nonce_sha256").and_then(Value::as_str) == Some(key)
        && item.envelope.thread == PAIRS_THREAD;
    if !genuine {
        return Err(bad(
            "the genesis is not signed by the peer for this handshake",
        ));
    }
    // The responder numbers the generation: a pair it revoked while we did not hear of it
    // (ours still degraded or paused) goes on in its next generation, and ours follows.
    match body.get("generation").and_then(Value::as_u64) {
        Some(generation) if generation >= row.generation => row.generation = generation,
        _ => return Err(bad("the genesis names an earlier generation than ours")),
    }
    let genesis = stored_form(
        &item.envelope,
        &item.id,
        item.sig.as_deref(),
        item.signer.as_deref(),
        None,
    );
    for result in state
        .store
        .write(
            &tenant.id,
            vec![genesis],
            vec![fstate::seal_secret(
                &tenant.identity.key,
                &outbound_secret_handle(&row.pair_id),
                &token,
            )],
        )
        .await?
    {
        result.map_err(ApiError::from)?;
    }

    let identity = &tenant.identity;
    let (sa, minted) = pair_credential(state, tenant, &row.peer_did).await?;
    let expires_at = minted.expires_at.unwrap_or_default();
    let confirm = super::signed(
        json!({
            "nonce": row.nonce, "pair_id": row.pair_id, "issued_token": minted.token,
            "token_expires_at": syncropel_protocol::rfc3339_from_unix(expires_at),
            "genesis_id": item.id, "issued_at_ms": now_ms(),
        }),
        &identity.key,
    );
    let endpoint = row.endpoint.clone().unwrap_or_default();
    let (status, reply) = state
        .federation
        .client()
        .post_json(&format!("{endpoint}/confirm"), &confirm, None, None)
        .await
        .map_err(|e| ApiError::new(ErrorCode::PeerUnreachable, format!("confirm failed: {e}")))?;
    if status != 200 {
        return Err(peer_refusal(status, &reply));
    }
    let pair = find(state, tenant, &row.pair_id).await?;
    let issued = IssuedToken {
        token_id: minted.token_id,
        sa_id: sa.id,
        bound_did: row.peer_did.clone(),
        expires_at,
    };
    let record = activate_body(&row, &issued);
    row.status = "confirmed".into();
    row.nonce = None;
    let pair = transition(
        state,
        tenant,
        &pair,
        record,
        Some(PairState::Active),
        Some("confirm"),
        vec![put(key, &row)],
    )
    .await?;
    Ok(Json(pairs::view(state, &tenant.id, &pair)).into_response())
}
