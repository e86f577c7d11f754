//! `GET /v1/config` and `POST /v1/config/{topic}` (protocol.md §10.2, §13): the engine
//! configuration in force, and a new policy for one topic written as a LEARN record on
//! `th_engine_config` (the same record a client may write itself with `config:write`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use syncropel_protocol::Act;
use syncropel_store::Appended;
use syncropel_tenant::{config, sealed_own, Scope};

use super::records::reload_config;
use super::{json_text, JsonBody, PathParam};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The configuration in force and the store's size, which `store_bounds` is measured against.
pub async fn show(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Scope::ConfigRead)?;
    let stored_bytes = state.store.stored_bytes(&caller.tenant.id).await?;
    let answer = json!({
        "object": "engine_config",
        "config": &*caller.tenant.config(),
        "stored_bytes": stored_bytes,
    });
    Ok(json_text(StatusCode::OK, answer.to_string()))
}

/// The body is the topic's whole new policy (`{"max_total_bytes": …}` for `store_bounds`).
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(topic): PathParam,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::ConfigWrite)?;
    caller.tenant.require_writable()?;
    let Value::Object(mut body) = body else {
        return Err(ApiError::validation("a policy is a JSON object"));
    };
    if topic.is_empty()
        || topic.len() > 64
        || !topic.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        return Err(ApiError::validation("a topic is 1-64 of a-z and _"));
    }
    body.insert("topic".into(), json!(topic));
    config::check(&body).map_err(ApiError::validation)?;
    let record = sealed_own(&caller.tenant.identity, Act::Learn, config::THREAD, body);
    let stored = match state.store.append(&caller.tenant.id, record).await? {
        Appended::Inserted(stored) | Appended::Existing(stored) => stored,
    };
    reload_config(&state, &caller.tenant).await?;
    Ok(json_text(StatusCode::CREATED, stored.json))
}
