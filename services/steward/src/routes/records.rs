//! `POST /v1/records`, `GET /v1/records`, `GET /v1/records/{id}` (PROTOCOL §11.1-11.3).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use syncropel_protocol::{is_config_thread, is_server_only_thread, Envelope, ErrorCode};
use syncropel_store::{encode_cursor, Appended, ListFilter};

use super::{json_text, record_list, Params, PathParam};
use crate::app::AppState;
use crate::app::LimitedBody;
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, ApiResult};
use crate::ingest::seal;

/// Ingest order of PROTOCOL §9: auth, parse and validate, claim and thread rules, id, sign, store
/// (idempotency and DuplicateClock are decided atomically by the store's writer).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult<Response> {
    let envelope = Envelope::parse(&bytes, state.limits.max_json_depth)?;
    caller.require_record_write(&envelope.thread, envelope.namespace())?;
    if let Some(claimed) = headers
        .get("x-syncropel-actor")
        .and_then(|v| v.to_str().ok())
    {
        if claimed != envelope.actor {
            return Err(ApiError::new(
                ErrorCode::DidClaimDenied,
                format!(
                    "X-Syncropel-Actor '{claimed}' does not match the record's actor '{}'",
                    envelope.actor
                ),
            ));
        }
    }
    caller.require_actor(&envelope.actor)?;
    if is_server_only_thread(&envelope.thread) {
        return Err(ApiError::new(
            ErrorCode::ReservedThread,
            format!(
                "thread '{}' is written by the steward only",
                envelope.thread
            ),
        ));
    }
    if is_config_thread(&envelope.thread) {
        caller.require_config_write()?;
    }
    state
        .namespaces
        .check_writable(state.store.as_ref(), &caller.tenant, envelope.namespace())
        .await?;
    let record = seal(&envelope, &state.identity.key, &state.identity.did);
    match state.store.append(&caller.tenant, record).await? {
        Appended::Inserted(stored) => Ok(json_text(StatusCode::CREATED, stored.json)),
        Appended::Existing(stored) => Ok(json_text(StatusCode::OK, stored.json)),
    }
}

pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    caller.require(Scope::RecordsRead)?;
    match state.store.get(&caller.tenant, &id).await? {
        Some(stored) => Ok(json_text(StatusCode::OK, stored.json)),
        None => Err(ApiError::not_found(format!("no record with id '{id}'"))),
    }
}

/// Unfiltered listing is allowed (the SDK's kind-only `query()` sends no filter).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Response> {
    let thread = params.str("thread").map(str::to_string);
    match &thread {
        Some(t) => caller.require_thread_read(t)?,
        None => caller.require(Scope::RecordsRead)?,
    }
    let filter = ListFilter {
        thread,
        actor: params.str("actor").map(str::to_string),
        since_clock: params.int("since")?,
        after_seq: params.cursor()?,
        limit: params.limit(100, 1000)?,
    };
    page(&state, &caller.tenant, filter).await
}

/// One page of a listing: asks for one extra row to learn whether there is more.
pub async fn page(state: &AppState, tenant: &str, mut filter: ListFilter) -> ApiResult<Response> {
    let limit = filter.limit as usize;
    filter.limit += 1;
    let mut records = state.store.list(tenant, &filter).await?;
    let next_cursor = if records.len() > limit {
        records.truncate(limit);
        records.last().map(|r| encode_cursor(r.seq))
    } else {
        None
    };
    Ok(record_list(&records, next_cursor))
}
