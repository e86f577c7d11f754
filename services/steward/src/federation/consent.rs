//! Consent between namespaces (FEDERATION §6): grants and revocations are records on
//! `th_consent` (each with an audit record on `th_audit_consent`, same transaction); the grants
//! in force are a fold over them, read afresh for every page that needs them, so a revocation
//! holds from the next pull on every replica.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::distributions::{Alphanumeric, DistString};
use serde_json::{json, Map, Value};
use syncropel_protocol::consent::{
    decide, fold_grants, grant_body, revoke_body, ConsentOp, Delivery, Grant, HashLevel,
    CONSENT_AUDIT_KIND, CONSENT_AUDIT_THREAD, CONSENT_THREAD,
};
use syncropel_protocol::{unix_from_rfc3339, validate_namespace_id, ErrorCode, DEFAULT_NAMESPACE};

use super::write_own;
use crate::app::{AppState, JsonBody};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::{Params, PathParam};
use syncropel_protocol::unix_now;
use syncropel_tenant::Scope;

/// The grants of one tenant, loaded the first time a page needs them.
pub struct Grants(Option<Vec<Grant>>);

impl Grants {
    pub fn lazy() -> Grants {
        Grants(None)
    }

    pub async fn load(&mut self, state: &AppState, tenant: &str) -> ApiResult<&Grants> {
        if self.0.is_none() {
            self.0 = Some(current(state, tenant).await?);
        }
        Ok(self)
    }

    pub fn decide(&self, record_ns: &str, target_ns: &str, caller: &str, thread: &str) -> Delivery {
        decide(
            self.0.as_deref().unwrap_or_default(),
            record_ns,
            target_ns,
            caller,
            thread,
            unix_now(),
        )
    }
}

/// Every consent body on `th_consent`, in log order.
async fn bodies(state: &AppState, tenant: &str) -> ApiResult<Vec<Map<String, Value>>> {
    let (records, _) = super::thread_records(state, tenant, CONSENT_THREAD).await?;
    Ok(records
        .into_iter()
        .filter_map(|mut record| match record.get_mut("body").map(Value::take) {
            Some(Value::Object(body)) => Some(body),
            _ => None,
        })
        .collect())
}

/// The grants not revoked (expired ones included; activity is decided at use).
pub async fn current(state: &AppState, tenant: &str) -> ApiResult<Vec<Grant>> {
    Ok(fold_grants(&bodies(state, tenant).await?))
}

fn view(grant: &Grant) -> Value {
    let mut value = Value::Object(grant_body(grant));
    value["object"] = json!("consent_grant");
    value["active"] = json!(grant.is_active(unix_now()));
    value
}

fn audit(grant_id: &str, op: &str, detail: Value) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("kind".into(), json!(CONSENT_AUDIT_KIND));
    body.insert("grant_id".into(), json!(grant_id));
    body.insert("op".into(), json!(op));
    body.insert("detail".into(), detail);
    body.insert("at".into(), json!(unix_now()));
    body
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
    let hash_levels = match body.get("hash_levels") {
        None | Some(Value::Null) => HashLevel::ALL.to_vec(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().and_then(HashLevel::parse))
            .collect::<Option<Vec<_>>>()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| ApiError::validation("'hash_levels' must list L0, L1, L2 or L3"))?,
        Some(_) => return Err(ApiError::validation("'hash_levels' must be an array")),
    };
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
    let grant = Grant {
        grant_id: format!(
            "cg_{}",
            Alphanumeric.sample_string(&mut rand::thread_rng(), 20)
        ),
        source_namespace: source,
        target_namespace: target,
        hash_levels,
        peer_did: text("peer_did")?,
        threads,
        purpose: text("purpose")?,
        expires_at,
        granted_by: Some(
            caller
                .grant
                .as_ref()
                .map(|g| g.sa_id.clone())
                .unwrap_or_else(|| caller.tenant.identity.did.to_string()),
        ),
    };
    let record = grant_body(&grant);
    // What the fold will read back must be what we wrote.
    if !matches!(ConsentOp::parse(&record), Ok(ConsentOp::Grant(_))) {
        return Err(ApiError::validation(
            "the grant does not form a valid consent record",
        ));
    }
    let audit = audit(&grant.grant_id, "grant", Value::Object(record.clone()));
    write_own(
        &state,
        &caller.tenant,
        vec![
            (CONSENT_THREAD, record, Vec::new()),
            (CONSENT_AUDIT_THREAD, audit, Vec::new()),
        ],
        Vec::new(),
    )
    .await?;
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
    let data: Vec<Value> = current(&state, &caller.tenant.id)
        .await?
        .iter()
        .filter(|g| namespace.is_none_or(|ns| g.source_namespace == ns || g.target_namespace == ns))
        .map(view)
        .collect();
    Ok(Json(json!({"object": "list", "data": data})).into_response())
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
    let grants = current(&state, &caller.tenant.id).await?;
    if !grants.iter().any(|g| g.grant_id == grant_id) {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no grant '{grant_id}' in force"),
        ));
    }
    let reason = params.str("reason").unwrap_or("operator");
    let record = revoke_body(&grant_id, reason);
    let audit = audit(&grant_id, "revoke", json!({"reason": reason}));
    write_own(
        &state,
        &caller.tenant,
        vec![
            (CONSENT_THREAD, record, Vec::new()),
            (CONSENT_AUDIT_THREAD, audit, Vec::new()),
        ],
        Vec::new(),
    )
    .await?;
    Ok(
        Json(json!({"object": "consent_grant", "grant_id": grant_id, "revoked": true}))
            .into_response(),
    )
}
