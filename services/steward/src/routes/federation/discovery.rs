//! Discovery over HTTP: the mDNS roster (`GET /v1/discovery/mdns`) and transitive introductions
//! (`GET /v1/federation/peers` for paired peers, `GET /v1/federation/introductions?via=` to ask
//! one of them, `POST /v1/federation/pairs/{id}/introducible` to allow it).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use syncropel_api::{MdnsRoster, PairIntroducible};
use syncropel_federation::discovery;
use syncropel_tenant::Scope;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::JsonBody;
use crate::routes::{Params, PathParam};
use crate::state::AppState;

/// `GET /v1/discovery/mdns`: the stewards this one has heard on the LAN, unverified.
pub async fn mdns_roster(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Scope::ConfigRead)?;
    let peers = discovery::roster(&state.federation);
    Ok(Json(MdnsRoster { peers }).into_response())
}

/// `POST /v1/federation/pairs/{id}/introducible` `{"introducible": bool}`: whether this pair's
/// peer may be introduced to our other peers.
pub async fn set_introducible(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(key): PathParam,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let introducible = body["introducible"]
        .as_bool()
        .ok_or_else(|| ApiError::validation("`introducible` must be true or false"))?;
    let pair =
        discovery::set_introducible(&state.federation, &caller.tenant, &key, introducible).await?;
    Ok(Json(PairIntroducible {
        pair_id: pair.pair_id,
        peer_did: pair.peer_did,
        introducible,
    })
    .into_response())
}

/// `GET /v1/federation/peers` with a pair bearer: the peers this steward's operator agreed to
/// introduce, never the caller. 404 unless introductions are on.
pub async fn introductions_for_peer(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Response> {
    let sa_id = caller.grant.as_ref().map(|g| g.sa_id.as_str());
    let found = discovery::introductions_for_peer(&state.federation, &caller.tenant, sa_id).await?;
    Ok(Json(found).into_response())
}

/// `GET /v1/federation/introductions?via=<did>`: asks the paired peer `via` whom it introduces.
pub async fn introductions_via(
    State(state): State<AppState>,
    caller: Caller,
    Params(params): Params,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let via = params
        .get("via")
        .ok_or_else(|| ApiError::validation("`via` (a paired peer's DID) is required"))?;
    let found = discovery::introductions_via(&state.federation, &caller.tenant, via).await?;
    Ok(Json(found).into_response())
}
