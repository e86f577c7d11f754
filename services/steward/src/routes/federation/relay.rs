//! The relay side of this steward for its operator (federation-protocol.md §7.6): `GET
//! /v1/federation/relay` (its relays, each asked for its health, and the outbox), `GET
//! /v1/federation/relay/queues?peer=&thread=`, `POST /v1/federation/relay/kick` and `POST
//! /v1/federation/relay/purge {"peer"}`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use syncropel_api::RelayKicked;
use syncropel_federation::relay::operate;
use syncropel_tenant::Scope;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::{JsonBody, Params};
use crate::state::AppState;

pub async fn status(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Scope::ConfigRead)?;
    let status = operate::status(&state.federation, &caller.tenant).await?;
    Ok(Json(status).into_response())
}

pub async fn queues(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Response> {
    caller.require(Scope::ConfigRead)?;
    let listed = operate::queues(
        &state.federation,
        &caller.tenant,
        params.str("peer"),
        params.str("thread"),
    )
    .await?;
    Ok(Json(listed).into_response())
}

pub async fn kick(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let rows = operate::kick(&state.federation, &caller.tenant).await?;
    Ok(Json(RelayKicked {
        object: "relay_kick".into(),
        rows,
    })
    .into_response())
}

pub async fn purge(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let peer = body["peer"]
        .as_str()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::validation("`peer` (a DID or a pair id) is required"))?;
    let rows = operate::purge(&state.federation, &caller.tenant, peer).await?;
    Ok(Json(RelayKicked {
        object: "relay_purge".into(),
        rows,
    })
    .into_response())
}
