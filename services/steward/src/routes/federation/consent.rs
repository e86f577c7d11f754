//! Consent grants between namespaces: `POST/GET /v1/consent/grants` (a grant, a public grant
//! with `"public": true`, or an L0 acceptance with `"op": "accept"`), `DELETE
//! /v1/consent/grants/{id}`, and those bound to a pair's peer: `POST
//! /v1/federation/pairs/{id}/grants`, `DELETE /v1/federation/pairs/{id}/grants/{grant_id}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use syncropel_api::{ConsentGrant, GrantRevoked, List};
use syncropel_federation::consent::{
    self, AcceptRequest, GrantRequest, PairGrantRequest, PublicGrantRequest,
};
use syncropel_protocol::consent::{Acceptance, Consent, Grant, HashLevel, PUBLIC_LEVELS};
use syncropel_protocol::{
    unix_from_rfc3339, unix_now, validate_namespace_id, validate_thread, DEFAULT_NAMESPACE,
};
use syncropel_tenant::Scope;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::JsonBody;
use crate::routes::{Params, PathPair, PathParam};
use crate::state::AppState;

fn view(grant: &Grant) -> ConsentGrant {
    ConsentGrant::new(grant, grant.is_active(unix_now()))
}

fn accepted_view(acceptance: &Acceptance) -> ConsentGrant {
    let active = acceptance.expires_at.is_none_or(|at| at > unix_now());
    ConsentGrant::accepted(acceptance, active)
}

/// A string member of the body, `None` when absent or null.
fn text(body: &Value, key: &str) -> ApiResult<Option<String>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::validation(format!("'{key}' must be a string"))),
    }
}

/// `expires_at` as unix seconds, `None` when not given.
fn expires_at(body: &Value) -> ApiResult<Option<i64>> {
    text(body, "expires_at")?
        .map(|t| {
            unix_from_rfc3339(&t).ok_or_else(|| {
                ApiError::validation(
                    "'expires_at' must be an RFC 3339 time such as 2026-12-01T00:00:00Z",
                )
            })
        })
        .transpose()
}

/// Members a request of one kind may not carry.
fn refuse_members(body: &Value, members: &[&str], what: &str) -> ApiResult<()> {
    match members.iter().find(|m| body.get(**m).is_some()) {
        Some(member) => Err(ApiError::validation(format!(
            "{what} does not take '{member}'"
        ))),
        None => Ok(()),
    }
}

/// The body's `hash_levels`, `None` when it names none.
fn hash_levels(body: &Value) -> ApiResult<Option<Vec<HashLevel>>> {
    match body.get("hash_levels") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().and_then(HashLevel::parse))
            .collect::<Option<Vec<_>>>()
            .filter(|l| !l.is_empty())
            .map(Some)
            .ok_or_else(|| ApiError::validation("'hash_levels' must list L0, L1, L2 or L3")),
        Some(_) => Err(ApiError::validation("'hash_levels' must be an array")),
    }
}

/// Who a grant is recorded as made by: the caller's service account, else the steward.
fn granted_by(caller: &Caller) -> String {
    caller
        .grant
        .as_ref()
        .map(|g| g.sa_id.clone())
        .unwrap_or_else(|| caller.tenant.identity.did.to_string())
}

/// `POST /v1/consent/grants`: a grant between namespaces; with `"public": true` a public grant
/// of one thread; with `"op": "accept"` an L0 acceptance (federation-protocol.md §6.1, §6.4).
pub async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let fed = &state.federation;
    let created = |view: ConsentGrant| (StatusCode::CREATED, Json(view)).into_response();
    match (body.get("public"), body.get("op")) {
        (None | Some(Value::Bool(false)), None) => {}
        (None | Some(Value::Bool(false)), Some(op)) if op == "grant" => {}
        (Some(Value::Bool(true)), None) => {
            let request = public_grant(&body, granted_by(&caller))?;
            let grant = consent::grant_public(fed, &caller.tenant, request).await?;
            return Ok(created(view(&grant)));
        }
        (None, Some(op)) if op == "accept" => {
            let request = acceptance(&body, granted_by(&caller))?;
            let acceptance = consent::accept(fed, &caller.tenant, request).await?;
            return Ok(created(accepted_view(&acceptance)));
        }
        _ => {
            return Err(ApiError::validation(
                "'public' must be a boolean and 'op' \"grant\" or \"accept\" (not both)",
            ))
        }
    }
    let source = text(&body, "source_namespace")?.unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    let target = text(&body, "target_namespace")?
        .ok_or_else(|| ApiError::validation("'target_namespace' is required"))?;
    validate_namespace_id(&source)?;
    validate_namespace_id(&target)?;
    let hash_levels = hash_levels(&body)?.unwrap_or_else(|| HashLevel::ALL.to_vec());
    let threads = match body.get("threads") {
        None | Some(Value::Null) => None,
        Some(Value::String(all)) if all == "*" => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ApiError::validation("'threads' must be thread ids"))?,
        ),
        Some(_) => return Err(ApiError::validation("'threads' must be an array or \"*\"")),
    };
    let request = GrantRequest {
        source_namespace: source,
        target_namespace: target,
        hash_levels,
        peer_did: text(&body, "peer_did")?,
        threads,
        purpose: text(&body, "purpose")?,
        expires_at: expires_at(&body)?,
        granted_by: granted_by(&caller),
    };
    let grant = consent::grant(fed, &caller.tenant, request).await?;
    Ok(created(view(&grant)))
}

/// `{"public": true, "thread", "granted_level": "L0"|"L2", "expires_at"?, "purpose"?}`: a
/// public grant names no namespaces, peer, threads or levels of its own.
fn public_grant(body: &Value, granted_by: String) -> ApiResult<PublicGrantRequest> {
    refuse_members(
        body,
        &[
            "source_namespace",
            "target_namespace",
            "peer_did",
            "threads",
            "hash_levels",
        ],
        "a public grant",
    )?;
    let thread =
        text(body, "thread")?.ok_or_else(|| ApiError::validation("'thread' is required"))?;
    validate_thread(&thread)?;
    let level = text(body, "granted_level")?
        .as_deref()
        .and_then(HashLevel::parse)
        .filter(|l| PUBLIC_LEVELS.contains(l))
        .ok_or_else(|| ApiError::validation("'granted_level' must be \"L0\" or \"L2\""))?;
    Ok(PublicGrantRequest {
        thread,
        level,
        expires_at: expires_at(body)?,
        purpose: text(body, "purpose")?,
        granted_by,
    })
}

/// `{"op": "accept", "peer_did", "source_namespace", "target_namespace", "expires_at"?}`; its
/// levels, if named, are `["L0"]`.
fn acceptance(body: &Value, accepted_by: String) -> ApiResult<AcceptRequest> {
    refuse_members(body, &["threads", "purpose", "public"], "an acceptance")?;
    if hash_levels(body)?.is_some_and(|levels| levels != [HashLevel::L0]) {
        return Err(ApiError::validation("an acceptance accepts [\"L0\"] only"));
    }
    let required = |key: &str| {
        text(body, key)?.ok_or_else(|| ApiError::validation(format!("'{key}' is required")))
    };
    let peer_did = required("peer_did")?;
    if !peer_did.starts_with("did:") {
        return Err(ApiError::validation("'peer_did' must be the source's DID"));
    }
    Ok(AcceptRequest {
        peer_did,
        source_namespace: required("source_namespace")?,
        target_namespace: required("target_namespace")?,
        expires_at: expires_at(body)?,
        accepted_by,
    })
}

/// `GET /v1/consent/grants[?namespace=NS]`: grants and acceptances whose source or target is NS
/// (public grants, whose namespaces are `*`, only unnarrowed).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let namespace = params.str("namespace");
    let data = consent::entries(&state.federation, &caller.tenant.id)
        .await?
        .iter()
        .map(|entry| match entry {
            Consent::Grant(grant) => view(grant),
            Consent::Accept(acceptance) => accepted_view(acceptance),
        })
        .filter(|g| namespace.is_none_or(|ns| g.source_namespace == ns || g.target_namespace == ns))
        .collect();
    Ok(Json(List { data }).into_response())
}

/// `DELETE /v1/consent/grants/{id}[?reason=…]`: effective from the next pull.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(grant_id): PathParam,
    params: Params,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let reason = params.str("reason").unwrap_or("operator");
    consent::revoke(&state.federation, &caller.tenant, &grant_id, reason).await?;
    Ok(Json(GrantRevoked {
        grant_id,
        revoked: true,
    })
    .into_response())
}

/// `POST /v1/federation/pairs/{id}/grants {namespace, maps?, hash_levels?}`: consent grants
/// bound to the pair's peer, one per namespace in `maps` (else `namespace` itself), at `L1`
/// unless `hash_levels` says otherwise.
pub async fn grant_to_pair(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(key): PathParam,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let namespace = match body.get("namespace") {
        Some(Value::String(ns)) => ns.clone(),
        _ => return Err(ApiError::validation("'namespace' must be a string")),
    };
    let maps = match body.get("maps") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= consent::MAX_PAIR_GRANT_MAPS => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::validation("'maps' must be namespace names"))?,
        Some(_) => {
            return Err(ApiError::validation(format!(
                "'maps' must be an array of at most {} namespaces",
                consent::MAX_PAIR_GRANT_MAPS
            )))
        }
    };
    let request = PairGrantRequest {
        namespace,
        maps,
        hash_levels: hash_levels(&body)?,
        granted_by: granted_by(&caller),
    };
    let grants = consent::grant_to_pair(&state.federation, &caller.tenant, &key, request).await?;
    let data = grants.iter().map(view).collect();
    Ok((StatusCode::CREATED, Json(List { data })).into_response())
}

/// `DELETE /v1/federation/pairs/{id}/grants/{grant_id}[?reason=…]`: revokes a grant only if it
/// is bound to the pair's peer (`404` otherwise).
pub async fn revoke_pair_grant(
    State(state): State<AppState>,
    caller: Caller,
    PathPair(key, grant_id): PathPair,
    params: Params,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let reason = params.str("reason").unwrap_or("operator");
    consent::revoke_pair_grant(&state.federation, &caller.tenant, &key, &grant_id, reason).await?;
    Ok(Json(GrantRevoked {
        grant_id,
        revoked: true,
    })
    .into_response())
}
