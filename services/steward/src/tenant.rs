//! Which tenant a request belongs to: a local steward's one tenant, or the hosted tenant the
//! request was addressed to (see [`crate::hosted::addressing`]).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::hosted::addressing::Addressed;
use crate::state::{AppState, Tenancy};
pub use syncropel_tenant::{Tenant, TenantStatus};

/// The tenant of the current request.
pub struct CurrentTenant(pub Arc<Tenant>);

impl FromRequestParts<AppState> for CurrentTenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<CurrentTenant, ApiError> {
        match &state.tenancy {
            Tenancy::Single(tenant) => Ok(CurrentTenant(tenant.clone())),
            Tenancy::Hosted(platform) => match parts.extensions.get::<Addressed>() {
                Some(Addressed::Tenant(label)) => match platform.tenant(label).await? {
                    Some(tenant) => Ok(CurrentTenant(tenant)),
                    None => Err(ApiError::not_found(format!("no tenant '{label}' here"))),
                },
                _ => Err(ApiError::not_found(
                    "no tenant at this address; tenant routes live at <label>.<base-domain>",
                )),
            },
        }
    }
}
