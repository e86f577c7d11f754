//! `GET /.well-known/syncropel`: what the steward can do and the tenant's signed federation
//! manifest (federation-protocol.md §2.1); `GET /v1/capabilities`: the first alone. Open and
//! CORS-enabled like the rest of discovery.

use axum::extract::State;
use axum::Json;
use syncropel_api::{Capabilities, CapabilityFlags, WellKnown};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::state::Tenancy;
use crate::tenant::CurrentTenant;
use syncropel_federation::manifest;
use syncropel_tenant::Departure;

pub async fn well_known(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
) -> ApiResult<Json<WellKnown>> {
    let manifest = match &state.tenancy {
        Tenancy::Hosted(platform) => platform.manifest(&tenant).await?,
        // The address the steward bound: a caller's Host header must not get the home's key to
        // vouch for an origin of the caller's choosing.
        Tenancy::Single(_) => {
            if tenant.url.is_none() {
                return Err(ApiError::internal("the local tenant has no URL"));
            }
            state.federation.own_manifest(&tenant)
        }
    };
    // A fenced steward points to its new home, under its own signature.
    let manifest = match tenant.departure() {
        Departure::Moved { moved_to, .. } => {
            manifest::moved(manifest, &moved_to, &tenant.identity.key)
        }
        _ => manifest,
    };
    // The manifest is built (and, hosted, stored) as JSON; it must read as the contract's type.
    let federation_manifest = serde_json::from_value(manifest)
        .map_err(|e| ApiError::internal(format!("the signed manifest is malformed: {e}")))?;
    Ok(Json(WellKnown {
        capabilities_manifest: capabilities(&state),
        federation_manifest,
    }))
}

/// `GET /v1/capabilities` (open).
pub async fn show_capabilities(State(state): State<AppState>) -> Json<Capabilities> {
    Json(capabilities(&state))
}

/// The flags say what this steward serves now, never what the protocol could.
fn capabilities(state: &AppState) -> Capabilities {
    Capabilities {
        manifest_version: "2".into(),
        kernel_version: crate::routes::health::VERSION.into(),
        tier: match state.tenancy {
            Tenancy::Single(_) => "local",
            Tenancy::Hosted(_) => "hosted",
        }
        .into(),
        capabilities: CapabilityFlags {
            records: true,
            batch: true,
            rich_query: true,
            search: state.search_enabled,
            watch: true,
            namespaces: true,
            membership: true,
            secrets: true,
            config_records: true,
            federation: true,
            sync_feeds: vec!["normal".into(), "longpoll".into(), "continuous".into()],
            sync_push: true,
            thread_rules: true,
            consent: true,
            relay: !state.federation.config.relay.urls.is_empty(),
            portability: true,
            data_plane: false,
            mls: false,
        },
    }
}
