//! The did:web document of the tenant's identity (federation-protocol.md §1.3): `GET
//! /.well-known/did.json` for a domain-form did:web, `GET /<path>/did.json` for the path form. A
//! steward with no did:web for this address answers 404 (a did:key needs no document).

use axum::extract::State;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use syncropel_api::DidDocument;
use syncropel_protocol::did_doc::{add_relay_services, did_web_document, did_web_url};

use crate::error::ApiError;
use crate::state::AppState;
use crate::tenant::CurrentTenant;

/// Routes that match no other: a did:web document if the path names one, else 404.
pub async fn fallback(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    tenant: Result<CurrentTenant, ApiError>,
) -> Response {
    if method != Method::GET || !uri.path().ends_with("/did.json") {
        return super::not_found().await.into_response();
    }
    match tenant {
        Ok(CurrentTenant(tenant)) => {
            let relays = &state.federation.config.relay.urls;
            document(&tenant, uri.path(), relays).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// The document, naming this steward's relays as services (federation-protocol.md §7.2).
fn document(
    tenant: &crate::tenant::Tenant,
    path: &str,
    relays: &[String],
) -> Result<Json<DidDocument>, ApiError> {
    let no_document = || ApiError::not_found("no did:web document at this address");
    let did_web = tenant.identity.did_web.as_ref().ok_or_else(no_document)?;
    let served_at = did_web_url(&did_web.did).map_err(|_| no_document())?;
    let served_path = served_at
        .parse::<Uri>()
        .map(|u| u.path().to_string())
        .unwrap_or_default();
    if served_path != path {
        return Err(no_document());
    }
    let mut document = did_web_document(
        &did_web.did,
        &did_web.keys,
        &did_web.current,
        did_web.endpoint.as_deref().or(tenant.url.as_deref()),
        &did_web.also_known_as,
    );
    add_relay_services(&mut document, &did_web.did, relays);
    // The protocol builds the document as JSON; it must read as the contract's type.
    let document = serde_json::from_value(document)
        .map_err(|e| ApiError::internal(format!("the did:web document is malformed: {e}")))?;
    Ok(Json(document))
}
