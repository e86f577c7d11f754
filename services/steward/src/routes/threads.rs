//! `GET /v1/threads` and `GET /v1/threads/{id}/records` (protocol.md §11.4-11.5).

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use syncropel_api::{ListPage, ThreadSummary};
use syncropel_store::{encode_cursor, ListFilter};

use super::{checked_thread, Params, PathParam};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::routes::records::page;
use crate::state::AppState;
use syncropel_tenant::Scope;

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
