//! Which tenant a request belongs to: a local steward's one tenant, or the hosted tenant the
//! request was addressed to (see [`crate::hosted::addressing`]).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::hosted::addressing::Addressed;
use crate::state::{AppState, Tenancy};
pub use syncropel_tenant::{Tenant, TenantStatus};

/// The tenant of the current request, resolved once per request (the first extractor keeps it
/// in the request's extensions for the others: the moved gate, `Caller`, the handler).
#[derive(Clone)]
pub struct CurrentTenant(pub Arc<Tenant>);

impl FromRequestParts<AppState> for CurrentTenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<CurrentTenant, ApiError> {
        if let Some(resolved) = parts.extensions.get::<CurrentTenant>() {
            return Ok(resolved.clone());
        }
        let resolved = match &state.tenancy {
            Tenancy::Single(tenant) => CurrentTenant(tenant.clone()),
            Tenancy::Hosted(platform) => match parts.extensions.get::<Addressed>() {
                Some(Addressed::Tenant(label)) => match platform.tenant(label).await? {
                    Some(tenant) => CurrentTenant(tenant),
                    None => return Err(ApiError::not_found(format!("no tenant '{label}' here"))),
                },
                _ => {
                    return Err(ApiError::not_found(
                        "no tenant at this address; tenant routes live at <label>.<base-domain>",
                    ))
                }
            },
        };
        parts.extensions.insert(resolved.clone());
        Ok(resolved)
    }
}
