//! Service-account and token administration (`admin` scope), and the one-time bootstrap route.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::Value;
use syncropel_api::{Bootstrapped, ListPage, MintedToken, ServiceAccount, TokenRevoked};
use syncropel_protocol::ErrorCode;

use super::PathParam;
use crate::auth::{Caller, BOOTSTRAP_COMMAND};
use crate::error::{ApiError, ApiResult};
use crate::routes::JsonBody;
use crate::state::{AppState, BootstrapDoor};
use crate::tenant::{CurrentTenant, Tenant};
use subtle::ConstantTimeEq;
use syncropel_store::StoreError;
use syncropel_tenant::membership::Membership;
use syncropel_tenant::{
    self as accounts, create_service_account, create_service_account_with_id, mint,
    mint_under_grant, revoke as revoke_token, Scope, TenantError,
};

fn strings(body: &Value, name: &str) -> ApiResult<Vec<String>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    ApiError::validation(format!("'{name}' must be an array of strings"))
                })
            })
            .collect(),
        Some(_) => Err(ApiError::validation(format!(
            "'{name}' must be an array of strings"
        ))),
    }
}

fn account_request(body: &Value) -> ApiResult<(String, Vec<String>, Vec<String>)> {
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation("'name' must be a string"))?;
    Ok((
        name.to_string(),
        strings(body, "scopes")?,
        strings(body, "allowed_actors")?,
    ))
}

fn account(sa: syncropel_store::ServiceAccount) -> ServiceAccount {
    ServiceAccount {
        id: sa.id,
        name: sa.name,
        scopes: sa.scopes,
        allowed_actors: sa.allowed_actors,
        created_at: sa.created_at,
    }
}

fn minted(token: accounts::MintedToken) -> MintedToken {
    MintedToken {
        token: token.token,
        token_id: token.token_id,
        sa_id: token.sa_id,
        expires_at: token.expires_at,
    }
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<ServiceAccount>)> {
    caller.require(Scope::Admin)?;
    caller.tenant.require_writable()?;
    let (name, scopes, actors) = account_request(&body)?;
    let sa = create_service_account(
        state.store.as_ref(),
        &caller.tenant.id,
        &caller.tenant.identity,
        &name,
        scopes,
        actors,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(account(sa))))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<ListPage<ServiceAccount>>> {
    caller.require(Scope::Admin)?;
    let accounts = state.store.service_accounts(&caller.tenant.id).await?;
    Ok(Json(ListPage::whole(
        accounts.into_iter().map(account).collect(),
    )))
}

pub async fn mint_for(
    state: &AppState,
    tenant: &Tenant,
    sa_id: &str,
    body: &Value,
) -> ApiResult<accounts::MintedToken> {
    let ttl = match body.get("ttl_seconds") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| ApiError::validation("'ttl_seconds' must be an integer"))?,
        ),
    };
    let membership = Membership {
        store: state.store.as_ref(),
        tenant: &tenant.id,
        identity: &tenant.identity,
        env: &state.env,
    };
    // A member's account gets tokens under the member's grant: they end with the membership.
    let minted = match membership.grant_of_account(sa_id).await? {
        Some(grant_id) => {
            mint_under_grant(
                state.store.as_ref(),
                &tenant.id,
                &tenant.identity,
                &state.env,
                sa_id,
                ttl,
                &grant_id,
            )
            .await
        }
        None => {
            mint(
                state.store.as_ref(),
                &tenant.id,
                &tenant.identity,
                &state.env,
                sa_id,
                ttl,
            )
            .await
        }
    };
    minted.map_err(ApiError::from)
}

pub async fn mint_route(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(sa_id): PathParam,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<MintedToken>)> {
    caller.require(Scope::Admin)?;
    caller.tenant.require_writable()?;
    let token = mint_for(&state, &caller.tenant, &sa_id, &body).await?;
    Ok((StatusCode::CREATED, Json(minted(token))))
}

pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(token_id): PathParam,
) -> ApiResult<Json<TokenRevoked>> {
    caller.require(Scope::Admin)?;
    let revoked = revoke_token(
        state.store.as_ref(),
        &caller.tenant.id,
        &caller.tenant.identity,
        &token_id,
    )
    .await?;
    // Evict before answering so this steward refuses the token from now on.
    state.tokens.evict(&caller.tenant.id, &token_id);
    if !revoked {
        return Err(ApiError::not_found(format!(
            "no live token with id '{token_id}'"
        )));
    }
    Ok(Json(TokenRevoked {
        token_id,
        revoked: true,
    }))
}

/// The id of the account made through the bootstrap route: one id, so that of two concurrent
/// bootstraps the store takes exactly one.
const BOOTSTRAP_ACCOUNT_ID: &str = "sa_bootstrap";

/// `POST /v1/bootstrap/service-account`: open until the first account exists, then 409; only
/// where [`BootstrapDoor`] lets the caller in.
pub async fn bootstrap(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Bootstrapped>)> {
    let presented = headers
        .get("x-bootstrap-secret")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    match &state.bootstrap {
        BootstrapDoor::Open => {}
        BootstrapDoor::Secret(secret) if bool::from(secret.as_bytes().ct_eq(presented)) => {}
        BootstrapDoor::Secret(_) => {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "this steward's bootstrap needs its secret in x-bootstrap-secret",
            ))
        }
        BootstrapDoor::Closed => {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "bootstrap over HTTP is off on a steward that listens beyond loopback",
            )
            .with_hint(format!(
            "run `{BOOTSTRAP_COMMAND}` where the steward runs, or start it with --bootstrap-secret"
        )))
        }
    }
    let closed = || {
        ApiError::new(
            ErrorCode::BootstrapClosed,
            "this steward already has a service account",
        )
    };
    if state.store.has_service_accounts(&tenant.id).await? {
        return Err(closed());
    }
    let (name, scopes, actors) = account_request(&body)?;
    let sa = match create_service_account_with_id(
        state.store.as_ref(),
        &tenant.id,
        &tenant.identity,
        BOOTSTRAP_ACCOUNT_ID.to_string(),
        &name,
        scopes,
        actors,
    )
    .await
    {
        Err(TenantError::Store(StoreError::ServiceAccountExists(_))) => return Err(closed()),
        created => created?,
    };
    tenant.mark_bootstrapped();
    let token = mint_for(&state, &tenant, &sa.id, &body).await?;
    Ok((
        StatusCode::CREATED,
        Json(Bootstrapped {
            service_account: account(sa),
            token: minted(token),
        }),
    ))
}
