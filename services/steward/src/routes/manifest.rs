//! `GET /.well-known/syncropel`: the tenant's signed federation manifest (federation-protocol.md §2.1). Open
//! and CORS-enabled like the rest of discovery.

use std::time::SystemTime;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::tenant::{CurrentTenant, Tenancy};
use syncropel_federation::manifest;

pub async fn well_known(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
) -> ApiResult<Json<Value>> {
    let manifest = match &state.tenancy {
        Tenancy::Hosted(platform) => platform.manifest(&tenant).await?,
        // The address the steward bound: a caller's Host header must not get the home's key to
        // vouch for an origin of the caller's choosing.
        Tenancy::Single(_) => {
            let url = tenant
                .url
                .as_deref()
                .ok_or_else(|| ApiError::internal("the local tenant has no URL"))?;
            let identity = &tenant.identity;
            manifest::sign(&identity.key, &identity.did, url, SystemTime::now())
        }
    };
    Ok(Json(json!({ "federation_manifest": manifest })))
}
