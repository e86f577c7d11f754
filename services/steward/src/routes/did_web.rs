//! The did:web document of the tenant's identity (federation-protocol.md §1.3): `GET
//! /.well-known/did.json` for a domain-form did:web, `GET /<path>/did.json` for the path form. A
//! steward with no did:web for this address answers 404 (a did:key needs no document).

use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use syncropel_api::DidDocument;
use syncropel_protocol::did_doc::{did_web_document, did_web_url};

use crate::error::ApiError;
use crate::tenant::CurrentTenant;

/// Routes that match no other: a did:web document if the path names one, else 404.
pub async fn fallback(
    method: Method,
    uri: Uri,
    tenant: Result<CurrentTenant, ApiError>,
) -> Response {
    if method != Method::GET || !uri.path().ends_with("/did.json") {
        return super::not_found().await.into_response();
    }
    match tenant {
        Ok(CurrentTenant(tenant)) => document(&tenant, uri.path()).into_response(),
        Err(e) => e.into_response(),
    }
}

fn document(tenant: &crate::tenant::Tenant, path: &str) -> Result<Json<DidDocument>, ApiError> {
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
    let document = did_web_document(
        &did_web.did,
        &did_web.keys,
        &did_web.current,
        did_web.endpoint.as_deref().or(tenant.url.as_deref()),
        &did_web.also_known_as,
    );
    // The protocol builds the document as JSON; it must read as the contract's type.
    let document = serde_json::from_value(document)
        .map_err(|e| ApiError::internal(format!("the did:web document is malformed: {e}")))?;
    Ok(Json(document))
}
