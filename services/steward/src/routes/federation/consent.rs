//! Consent grants between namespaces: `POST/GET /v1/consent/grants`, `DELETE
//! /v1/consent/grants/{id}`, and those bound to a pair's peer: `POST
//! /v1/federation/pairs/{id}/grants`, `DELETE /v1/federation/pairs/{id}/grants/{grant_id}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use syncropel_api::{ConsentGrant, GrantRevoked, List};
use syncropel_federation::consent::{self, GrantRequest, PairGrantRequest};
use syncropel_protocol::consent::{Grant, HashLevel};
use syncropel_protocol::{unix_from_rfc3339, unix_now, validate_namespace_id, DEFAULT_NAMESPACE};
use syncropel_tenant::Scope;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::JsonBody;
use crate::routes::{Params, PathPair, PathParam};
use crate::state::AppState;

fn view(grant: &Grant) -> ConsentGrant {
    ConsentGrant::new(grant, grant.is_active(unix_now()))
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

/// `POST /v1/consent/grants`
pub async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let text = |k: &str| -> ApiResult<Option<String>> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::validation(format!("'{k}' must be a string"))),
        }
    };
    let source = text("source_namespace")?.unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    let target = text("target_namespace")?
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
    let expires_at = match text("expires_at")? {
        None => None,
        Some(t) => Some(unix_from_rfc3339(&t).ok_or_else(|| {
            ApiError::validation(
                "'expires_at' must be an RFC 3339 time such as 2026-12-01T00:00:00Z",
            )
        })?),
    };
    let request = GrantRequest {
        source_namespace: source,
        target_namespace: target,
        hash_levels,
        peer_did: text("peer_did")?,
        threads,
        purpose: text("purpose")?,
        expires_at,
        granted_by: granted_by(&caller),
    };
    let grant = consent::grant(&state.federation, &caller.tenant, request).await?;
    Ok((StatusCode::CREATED, Json(view(&grant))).into_response())
}

/// `GET /v1/consent/grants[?namespace=NS]`: grants whose source or target is NS.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let namespace = params.str("namespace");
    let data = consent::current(&state.federation, &caller.tenant.id)
        .await?
        .iter()
        .filter(|g| namespace.is_none_or(|ns| g.source_namespace == ns || g.target_namespace == ns))
        .map(view)
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
