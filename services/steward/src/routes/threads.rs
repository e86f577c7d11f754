//! `GET /v1/threads` and `GET /v1/threads/{id}/records` (protocol.md §11.4-11.5), and opening
//! and closing threads (`threads:write`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};
use syncropel_api::{ListPage, ThreadSummary};
use syncropel_protocol::DEFAULT_NAMESPACE;
use syncropel_store::{encode_cursor, ListFilter};

use super::{checked_thread, JsonBody, Params, PathParam};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::records::page;
use crate::state::AppState;
use syncropel_tenant::{threads, Scope};

/// Threads, most recently written first.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Json<ListPage<ThreadSummary>>> {
    caller.require(Scope::RecordsRead)?;
    let limit = params.limit(100, 1000)?;
    let before = match params.cursor()? {
        0 => None,
        seq => Some(seq),
    };
    let mut threads = state
        .store
        .threads(&caller.tenant.id, before, limit + 1)
        .await?;
    let next_cursor = if threads.len() > limit as usize {
        threads.truncate(limit as usize);
        threads.last().map(|t| encode_cursor(t.last_seq))
    } else {
        None
    };
    let data = threads
        .into_iter()
        .map(|t| ThreadSummary {
            id: t.id,
            namespace: t.namespace,
            record_count: t.record_count,
            last_clock: t.last_clock,
        })
        .collect();
    Ok(Json(ListPage {
        data,
        has_more: next_cursor.is_some(),
        next_cursor,
    }))
}

/// A thread's records in ascending sequence; an unknown thread is an empty list.
pub async fn records(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(thread): PathParam,
    params: Params,
) -> ApiResult<Response> {
    checked_thread(&thread)?;
    caller.require_thread_read(&thread)?;
    let filter = ListFilter {
        thread: Some(thread),
        actor: params.str("actor").map(str::to_string),
        since_clock: params.int("since")?,
        after_seq: params.cursor()?,
        limit: params.limit(100, 1000)?,
        max_bytes: None,
    };
    page(&state, &caller.tenant.id, filter).await
}

/// `POST /v1/threads` (`threads:write`): `{id?, title?, namespace?}` opens a thread, its first
/// record the steward's `core.thread.opened.v1`; `201` with that record.
pub async fn open(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Scope::ThreadsWrite)?;
    caller.tenant.require_writable()?;
    let text = |name: &str| -> ApiResult<Option<String>> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) if text.len() <= 1_000 => Ok(Some(text.clone())),
            Some(_) => Err(ApiError::validation(format!(
                "'{name}' must be a string of at most 1000 bytes"
            ))),
        }
    };
    if !body.is_object() {
        return Err(ApiError::validation("the body must be a JSON object"));
    }
    let namespace = text("namespace")?.unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    state
        .namespaces
        .check_writable(state.store.as_ref(), &caller.tenant.id, &namespace)
        .await?;
    let sa = caller.grant.as_ref().map(|g| g.sa_id.as_str());
    let opened = threads::open(
        state.store.as_ref(),
        &caller.tenant,
        text("id")?,
        text("title")?,
        &namespace,
        sa,
    )
    .await?;
    let record: Value = serde_json::from_str(&opened.json).map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// `DELETE /v1/threads/{id}` (`threads:write`): closes the thread. Records are immutable, so it
/// is not erased: it takes no new client records, and says so in a `core.thread.closed.v1`.
pub async fn close(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(thread): PathParam,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::ThreadsWrite)?;
    checked_thread(&thread)?;
    let sa = caller.grant.as_ref().map(|g| g.sa_id.as_str());
    let closed = threads::close(state.store.as_ref(), &caller.tenant, &thread, sa).await?;
    Ok(Json(json!({
        "object": "thread",
        "id": thread,
        "closed": true,
        "already_closed": closed.is_none(),
        "record": closed.map(|r| r.id),
    })))
}
