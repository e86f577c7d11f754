//! Invites and members (protocol.md §11.11, the SDK's `ClientMembership`): thin HTTP over
//! `syncropel_tenant::membership`, which writes every act's records before these answer.
//! Answers are always JSON objects (the SDK parses every 2xx body).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use syncropel_tenant::membership::{
    AgentRequest, Asker, InviteRequest, Membership, Redemption, PRESETS,
};
use syncropel_tenant::Scope;

use super::{JsonBody, LimitedBody, PathPair, PathParam};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::tenant::{CurrentTenant, Tenant};

fn membership<'a>(state: &'a AppState, tenant: &'a Tenant) -> Membership<'a> {
    Membership {
        store: state.store.as_ref(),
        tenant: &tenant.id,
        identity: &tenant.identity,
        env: &state.env,
    }
}

fn asker(caller: &Caller) -> Asker {
    Asker {
        admin: caller.require(Scope::Admin).is_ok(),
        sa_id: caller.grant.as_ref().map(|g| g.sa_id.clone()),
        grant_id: caller.grant.as_ref().and_then(|g| g.grant_id.clone()),
    }
}

/// `GET /v1/scope_presets` (open): what each invite preset grants.
pub async fn presets() -> Json<Value> {
    let data: Vec<Value> = PRESETS
        .iter()
        .map(|(preset, scopes)| json!({"preset": preset, "scopes": scopes}))
        .collect();
    Json(json!({"object": "list", "data": data, "next_cursor": null, "has_more": false}))
}

/// `POST /v1/invites` (admin).
pub async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Scope::Admin)?;
    caller.tenant.require_writable()?;
    let request = InviteRequest::parse(&body)?;
    let (invite_id, invite, record_id) = membership(&state, &caller.tenant).issue(request).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "object": "invite",
            "invite_id": invite_id,
            "record_id": record_id,
            "issuer_did": invite.issuer_did,
            "issued_at": invite.issued_at,
            "expires_at": invite.expires_at,
            "max_uses": invite.max_uses,
            "uses_remaining": invite.max_uses,
            "scopes": invite.scopes,
            "membership": invite.membership,
        })),
    ))
}

/// `GET /v1/invites/{id}` (open): what redeeming it would give.
pub async fn preview(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    PathParam(id): PathParam,
) -> ApiResult<Json<Value>> {
    Ok(Json(membership(&state, &tenant).preview(&id).await?))
}

/// `DELETE /v1/invites/{id}` (admin).
pub async fn revoke_invite(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Admin)?;
    let invite = membership(&state, &caller.tenant)
        .revoke_invite(&id)
        .await?;
    Ok(Json(json!({
        "object": "invite",
        "invite_id": id,
        "revoked": true,
        "revoked_at": invite.revoked_at,
    })))
}

/// `POST /v1/invites/{id}/redeem` (open: the id is the credential).
pub async fn redeem(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    PathParam(id): PathParam,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    tenant.require_writable()?;
    let redemption = Redemption::parse(&body)?;
    let redeemed = membership(&state, &tenant).redeem(&id, redemption).await?;
    // A renewal closed the member's old grant.
    state.tokens.evict_chains(&tenant.id);
    Ok((StatusCode::CREATED, Json(json!(redeemed))))
}

/// `GET /v1/members`: every row for an admin, the caller's own otherwise.
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(Scope::RecordsRead)?;
    let rows = membership(&state, &caller.tenant)
        .list(&asker(&caller))
        .await?;
    Ok(Json(
        json!({"object": "list", "data": rows, "next_cursor": null, "has_more": false}),
    ))
}

/// `POST /v1/members/adopt` (admin): idempotent.
pub async fn adopt(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Scope::Admin)?;
    caller.tenant.require_writable()?;
    let label = body
        .get("label")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation("'label' must be a string"))?;
    let sa_id = match body.get("sa_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.as_str()),
        Some(_) => return Err(ApiError::validation("'sa_id' must be a string")),
    };
    let ttl = match body.get("ttl_seconds") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| ApiError::validation("'ttl_seconds' must be an integer"))?,
        ),
    };
    let (member, created) = membership(&state, &caller.tenant)
        .adopt(label, sa_id, ttl)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(member.row())))
}

/// `DELETE /v1/members/{label}` (admin or the member), an optional `{note}` body.
pub async fn revoke_member(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(label): PathParam,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::RecordsWrite)?;
    let note = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let body = syncropel_protocol::parse_json(&bytes, state.limits.max_json_depth)?;
        match body.get("note") {
            None | Some(Value::Null) => None,
            Some(Value::String(note)) if note.len() <= 1_000 => Some(note.clone()),
            Some(_) => {
                return Err(ApiError::validation(
                    "'note' must be a string of at most 1000 bytes",
                ))
            }
        }
    };
    let revoked = membership(&state, &caller.tenant)
        .revoke_member(&label, &asker(&caller), note.as_deref())
        .await?;
    state.tokens.evict_chains(&caller.tenant.id);
    Ok(Json(json!(revoked)))
}

/// `POST /v1/members/{label}/grants` (admin or the member): an agent sub-grant and its bearer.
pub async fn mint_agent(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(label): PathParam,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.tenant.require_writable()?;
    let request = AgentRequest::parse(&body)?;
    let (grant, token) = membership(&state, &caller.tenant)
        .mint_agent(&label, &asker(&caller), request)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "object": "grant",
            "grant_id": grant.grant_id,
            "parent_grant_id": grant.parent,
            "member": grant.member,
            "aud": grant.aud,
            "scopes": grant.scopes,
            "caveats": grant.caveats,
            "expires_at": grant.expires_at,
            "bearer": token.token,
            "token_id": token.token_id,
            "sa_id": token.sa_id,
        })),
    ))
}

/// `DELETE /v1/members/{label}/grants/{grant_id}` (admin or the member).
pub async fn revoke_agent(
    State(state): State<AppState>,
    caller: Caller,
    PathPair(label, grant_id): PathPair,
) -> ApiResult<Json<Value>> {
    let revoked = membership(&state, &caller.tenant)
        .revoke_agent(&label, &grant_id, &asker(&caller))
        .await?;
    state.tokens.evict_chains(&caller.tenant.id);
    Ok(Json(json!(revoked)))
}
