//! `GET /.well-known/syncropel`: the tenant's signed federation manifest (FEDERATION §2.1). Open
//! and CORS-enabled like the rest of discovery.

use std::time::SystemTime;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::error::ApiResult;
use crate::manifest;
use crate::tenant::{CurrentTenant, Tenancy};

pub async fn well_known(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let manifest = match &state.tenancy {
        Tenancy::Hosted(platform) => platform.manifest(&tenant).await?,
        // A local steward is whatever host it was asked by (loopback, a LAN name).
        Tenancy::Single(_) => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1");
            let identity = &tenant.identity;
            manifest::sign(
                &identity.key,
                &identity.did,
                &format!("http://{host}"),
                SystemTime::now(),
            )
        }
    };
    Ok(Json(json!({ "federation_manifest": manifest })))
}
