//! The pairing handshake over HTTP: the peer-facing init, poll and confirm (authenticated by the
//! signatures they carry, not by a bearer), and the operator's side: starting a pairing,
//! continuing it, and deciding pending requests.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use syncropel_api::{
    HandshakeActive, HandshakeApproved, HandshakeConfirmed, HandshakePending, List,
    PendingDecision, PendingPair,
};
use syncropel_federation::handshake::{initiator, responder, Answer, POLL_AFTER_MS};
use syncropel_federation::{Federation, Reach};
use syncropel_protocol::rfc3339_from_unix;
use syncropel_tenant::Scope;

use super::pairs::view;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::rate_limit::{address_key, ClientAddress};
use crate::routes::JsonBody;
use crate::routes::{object, PathParam};
use crate::state::AppState;
use crate::tenant::CurrentTenant;

/// How a handshake answer goes on the wire: 202 while pending, else 200.
fn render(fed: &Federation, tenant: &str, answer: Answer) -> ApiResult<Response> {
    Ok(match answer {
        Answer::Pending {
            pair_id,
            nonce,
            expires_at,
        } => {
            let pending = HandshakePending {
                poll_after_ms: POLL_AFTER_MS,
                ..HandshakePending::new(&pair_id, &nonce, rfc3339_from_unix(expires_at))
            };
            (StatusCode::ACCEPTED, Json(pending)).into_response()
        }
        Answer::Approved {
            pair_id,
            issued_token,
            token_expires_at,
            responder_manifest,
            genesis,
        } => Json(HandshakeApproved {
            state: "establishing".into(),
            status: "approved".into(),
            pair_id,
            issued_token,
            token_expires_at: token_expires_at.map(rfc3339_from_unix),
            responder_manifest: serde_json::from_value(responder_manifest)
                .map_err(ApiError::internal)?,
            mls_welcome: None,
            genesis,
        })
        .into_response(),
        Answer::Active { pair_id } => Json(HandshakeActive {
            state: "active".into(),
            status: "active".into(),
            pair_id,
        })
        .into_response(),
        Answer::Confirmed {
            pair_id,
            activated_record_id,
        } => Json(HandshakeConfirmed {
            status: "active".into(),
            pair_id,
            activated_record_id,
        })
        .into_response(),
        Answer::Paired(pair) => Json(view(fed, tenant, *pair)).into_response(),
    })
}

/// `POST /v1/federation/pair` (and `/init`): a peer asks to pair with us. Anyone may ask, so
/// each address asks at most ten times a minute and holds few requests pending, and a caller on
/// a public address makes us fetch from public addresses only.
pub async fn init(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    address: Option<Extension<ClientAddress>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let address = address.map(|Extension(ClientAddress(ip))| ip);
    let from = address.map(address_key);
    if let Some(from) = from {
        state.rate_limits.check_pair_init(from)?;
    }
    tenant.require_writable()?;
    let fed = &state.federation;
    let from = from.map(|ip| ip.to_string());
    let reach = Reach::of_caller(address);
    let answer = responder::init(fed, &tenant, &object(body), from.as_deref(), reach).await?;
    render(fed, &tenant.id, answer)
}

/// `POST /v1/federation/pair/poll {"nonce"}`
pub async fn poll(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let fed = &state.federation;
    let answer = responder::poll(fed, &tenant, &object(body)).await?;
    render(fed, &tenant.id, answer)
}

/// `POST /v1/federation/pair/confirm`: the initiator's credential for us; the pair goes active.
pub async fn confirm(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    address: Option<Extension<ClientAddress>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    tenant.require_writable()?;
    let fed = &state.federation;
    let reach = Reach::of_caller(address.map(|Extension(ClientAddress(ip))| ip));
    let answer = responder::confirm(fed, &tenant, &object(body), reach).await?;
    render(fed, &tenant.id, answer)
}

/// `GET /v1/federation/pending`: requests waiting for the operator.
pub async fn pending(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let data = responder::pending(&state.federation, &caller.tenant)
        .await?
        .into_iter()
        .map(|r| PendingPair {
            namespace: r.namespaces.first().cloned(),
            namespaces: r.namespaces,
            pair_id: r.pair_id,
            peer_did: r.peer_did,
            peer_url: r.peer_url,
            maps: r.maps,
            expires_at: rfc3339_from_unix(r.expires_at),
        })
        .collect();
    Ok(Json(List { data }).into_response())
}

/// `POST /v1/federation/pending/{pair_id}/approve`
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(pair_id): PathParam,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let approved_by = format!(
        "operator:{}",
        caller
            .grant
            .as_ref()
            .map(|g| g.sa_id.as_str())
            .unwrap_or("local")
    );
    let peer_did =
        responder::approve(&state.federation, &caller.tenant, &pair_id, &approved_by).await?;
    Ok(Json(PendingDecision {
        pair_id,
        peer_did,
        status: "approved".into(),
    })
    .into_response())
}

/// `POST /v1/federation/pending/{pair_id}/reject`
pub async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(pair_id): PathParam,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let peer_did = responder::reject(&state.federation, &caller.tenant, &pair_id).await?;
    Ok(Json(PendingDecision {
        pair_id,
        peer_did,
        status: "rejected".into(),
    })
    .into_response())
}

/// `POST /v1/federation/pairs {"peer_url", "maps"?, "namespaces"?}`: starts pairing as the
/// initiator (`spl federation pair <url>`).
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let fed = &state.federation;
    let answer = initiator::start(fed, &caller.tenant, &object(body)).await?;
    render(fed, &caller.tenant.id, answer)
}

/// `POST /v1/federation/pairs/{id}/poll`: asks the responder again about a pending request.
pub async fn continue_pairing(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(pair_id): PathParam,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let fed = &state.federation;
    let answer = initiator::continue_pairing(fed, &caller.tenant, &pair_id).await?;
    render(fed, &caller.tenant.id, answer)
}
