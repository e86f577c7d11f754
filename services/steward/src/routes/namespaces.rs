//! `GET|POST /v1/namespaces`, `GET|DELETE /v1/namespaces/{id}` (protocol.md §12.2). Every change is
//! a LEARN record on `th_namespace_registry`; the registry is its fold.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};
use syncropel_api::{ListPage, Namespace};
use syncropel_protocol::{validate_namespace_id, Act, DEFAULT_NAMESPACE};

use super::PathParam;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::JsonBody;
use crate::state::AppState;
use crate::tenant::Tenant;
use syncropel_tenant::sealed_own;
use syncropel_tenant::Scope;
use syncropel_tenant::{parent, NamespaceEntry, NamespaceState, ENTRY_TOPIC, REGISTRY_THREAD};

fn namespace(entry: NamespaceEntry) -> Namespace {
    use syncropel_api::NamespaceState as Wire;
    Namespace {
        id: entry.id,
        state: match entry.state {
            NamespaceState::Active => Wire::Active,
            NamespaceState::Archived => Wire::Archived,
            NamespaceState::Deleted => Wire::Deleted,
        },
        description: entry.description,
        record: entry.record,
    }
}

async fn find(state: &AppState, tenant: &str, id: &str) -> ApiResult<Option<NamespaceEntry>> {
    let entries = state
        .namespaces
        .entries(state.store.as_ref(), tenant)
        .await?;
    Ok(entries.into_iter().find(|e| e.id == id))
}

/// Writes a registry entry record and returns the entry as the fold now sees it.
async fn write_entry(
    state: &AppState,
    tenant: &Tenant,
    id: &str,
    new_state: NamespaceState,
    description: Option<&str>,
) -> ApiResult<NamespaceEntry> {
    let mut body = Map::new();
    body.insert("topic".into(), json!(ENTRY_TOPIC));
    body.insert("id".into(), json!(id));
    body.insert("state".into(), json!(new_state));
    if let Some(d) = description {
        body.insert("description".into(), json!(d));
    }
    let record = sealed_own(&tenant.identity, Act::Learn, REGISTRY_THREAD, body);
    state.store.append(&tenant.id, record).await?;
    find(state, &tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::internal("a registry entry just written is missing from the fold"))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<ListPage<Namespace>>> {
    caller.require(Scope::RecordsRead)?;
    let entries = state
        .namespaces
        .entries(state.store.as_ref(), &caller.tenant.id)
        .await?;
    Ok(Json(ListPage::whole(
        entries.into_iter().map(namespace).collect(),
    )))
}

/// Creates (or re-activates) a namespace. Its parent must exist and be active first.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Namespace>)> {
    caller.require(Scope::ConfigWrite)?;
    caller.tenant.require_writable()?;
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation("'id' must be a string"))?;
    validate_namespace_id(id)?;
    if id == DEFAULT_NAMESPACE {
        return Err(ApiError::validation(
            "'default' is the implicit root and always exists",
        ));
    }
    let description = match body.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.as_str()),
        Some(_) => return Err(ApiError::validation("'description' must be a string")),
    };
    if let Some(parent) = parent(id) {
        state
            .namespaces
            .check_writable(state.store.as_ref(), &caller.tenant.id, parent)
            .await?;
    }
    if let Some(existing) = find(&state, &caller.tenant.id, id).await? {
        if existing.state == NamespaceState::Active {
            return Ok((StatusCode::OK, Json(namespace(existing))));
        }
    }
    let entry = write_entry(
        &state,
        &caller.tenant,
        id,
        NamespaceState::Active,
        description,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(namespace(entry))))
}

pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Json<Namespace>> {
    caller.require(Scope::RecordsRead)?;
    match find(&state, &caller.tenant.id, &id).await? {
        Some(entry) => Ok(Json(namespace(entry))),
        None => Err(ApiError::not_found(format!("no namespace '{id}'"))),
    }
}

/// Archives a namespace: its subtree takes no new writes; its records stay readable.
pub async fn archive(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Json<Namespace>> {
    caller.require(Scope::ConfigWrite)?;
    caller.tenant.require_writable()?;
    let Some(existing) = find(&state, &caller.tenant.id, &id).await? else {
        return Err(ApiError::not_found(format!("no namespace '{id}'")));
    };
    if existing.state == NamespaceState::Archived {
        return Ok(Json(namespace(existing)));
    }
    let entry = write_entry(
        &state,
        &caller.tenant,
        &id,
        NamespaceState::Archived,
        existing.description.as_deref(),
    )
    .await?;
    Ok(Json(namespace(entry)))
}
