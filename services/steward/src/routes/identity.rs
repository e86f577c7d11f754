//! The tenant's identity (federation-protocol.md §1): `GET /v1/identity` shows the DID it is known
//! by, the key that signs and the keys peers accept; `POST /v1/identity/upgrade` registers a hosted
//! did:key tenant's did:sync at the platform's directory (locally, `spl identity upgrade` does it
//! on the home).

use axum::extract::State;
use axum::Json;
use serde_json::Value;
use syncropel_api::{Identity, IdentityUpgraded};
use syncropel_protocol::{public_key_from_did_key, ErrorCode, PairState};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::{optional_json, LimitedBody};
use crate::state::AppState;
use crate::state::Tenancy;
use syncropel_tenant::Scope;

pub async fn show(caller: Caller) -> ApiResult<Json<Identity>> {
    caller.require(Scope::ConfigRead)?;
    let identity = &caller.tenant.identity;
    let method = identity.did.split(':').nth(1).unwrap_or_default();
    Ok(Json(Identity {
        did: identity.did.to_string(),
        method: method.to_owned(),
        signer: identity.signer.to_string(),
        keys: identity.keys.to_vec(),
        did_web: identity.did_web.as_ref().map(|web| web.did.clone()),
    }))
}

pub async fn upgrade(
    State(state): State<AppState>,
    caller: Caller,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult<Json<IdentityUpgraded>> {
    caller.require(Scope::Admin)?;
    let tenant = &caller.tenant;
    tenant.require_writable()?;
    let Tenancy::Hosted(platform) = &state.tenancy else {
        return Err(ApiError::new(
            ErrorCode::NotImplemented,
            "a local steward's identity is upgraded on its home",
        )
        .with_hint(
            "run `spl identity upgrade --method sync|web` where the steward runs, then restart it",
        ));
    };
    let body = optional_json(&state, &bytes)?;
    if !(body.is_null() || body.is_object()) {
        return Err(ApiError::validation("the body must be a JSON object"));
    }
    if let Some(other) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "recovery_key"))
    {
        return Err(ApiError::validation(format!("unknown field '{other}'")));
    }
    let recovery_key = match body.get("recovery_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) if public_key_from_did_key(key).is_ok() => Some(key.as_str()),
        Some(_) => {
            return Err(ApiError::validation(
                "'recovery_key' must be an Ed25519 did:key",
            ))
        }
    };
    let live = syncropel_federation::pairs::load(&state.federation, tenant)
        .await?
        .into_values()
        .filter(|pair| pair.state != PairState::Revoked)
        .count();
    if live > 0 {
        return Err(ApiError::new(
            ErrorCode::PairsExist,
            format!("{live} pairs were made with {}", tenant.identity.did),
        )
        .with_hint("revoke them first; pair again once the tenant is known by its did:sync"));
    }
    let did = platform
        .upgrade_identity(state.federation.directory_client(), tenant, recovery_key)
        .await?;
    Ok(Json(IdentityUpgraded {
        did: did.to_string(),
        method: "sync".to_owned(),
    }))
}
