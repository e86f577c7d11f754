//! Refusals are recorded (protocol.md §13.3): a `401` or `403` answered on a tenant's route is
//! written as a `core.security.refusal.v1` record on its `th_audit_security` before the answer
//! goes, and the answer names it (`audit_record`). A flood of refusals must not become a flood
//! of writes: each tenant has a bucket of records per second on each replica; past it, refusals
//! are counted, not recorded, and the next record says how many went unrecorded since the last
//! (`suppressed`). Its answer then has no `audit_record`. The buckets are
//! [`crate::rate_limit::RefusalLog`]; the `/v1` gate (`routes::portability::moved_gate`) hands
//! every answer here.

use std::net::IpAddr;

use axum::body::Body;
use axum::extract::OriginalUri;
use axum::http::header::{self, AUTHORIZATION};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Map, Value};
use syncropel_protocol::{sha256_hex, Act};
use syncropel_tenant::{sealed_own, Tenant};

use crate::auth::token_of;
use crate::rate_limit::ClientAddress;
use crate::state::AppState;

pub const THREAD: &str = "th_audit_security";
pub const KIND: &str = "core.security.refusal.v1";

/// An error body is read this far to be named; ours are far smaller.
const MAX_ERROR_BODY: usize = 64 << 10;
/// Request fields are cut to this many characters in the record.
const MAX_FIELD: usize = 200;

/// What of a request its refusal record names, taken before the request is handed on: cheap
/// clones of its method, URI and a few headers; nothing is computed unless it is refused.
pub struct Asked {
    method: Method,
    uri: Uri,
    authorization: Option<HeaderValue>,
    api_key: Option<HeaderValue>,
    actor: Option<HeaderValue>,
    address: Option<IpAddr>,
}

impl Asked {
    pub fn of(parts: &Parts) -> Asked {
        let header = |name: &str| parts.headers.get(name).cloned();
        Asked {
            authorization: header(AUTHORIZATION.as_str()),
            api_key: header("x-api-key"),
            actor: header("x-syncropel-actor"),
            method: parts.method.clone(),
            // Nested under `/v1`, the request's own URI has lost its prefix.
            uri: parts
                .extensions
                .get::<OriginalUri>()
                .map_or_else(|| parts.uri.clone(), |OriginalUri(uri)| uri.clone()),
            address: parts
                .extensions
                .get::<ClientAddress>()
                .map(|ClientAddress(ip)| *ip),
        }
    }
}

/// `response` as it goes to a request `asked` of `tenant`: recorded first if it is a refusal
/// (401, 403).
pub async fn recorded(
    state: &AppState,
    tenant: &Tenant,
    asked: Asked,
    response: Response,
) -> Response {
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        record(state, tenant, asked, response).await
    } else {
        response
    }
}

/// Writes the refusal's record (when the tenant's bucket admits it) and names it in the answer.
async fn record(state: &AppState, tenant: &Tenant, asked: Asked, response: Response) -> Response {
    let Some(suppressed) = state.refusals.admit(&tenant.id) else {
        return response;
    };
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let mut answer: Map<String, Value> = match serde_json::from_slice(&bytes) {
        Ok(Value::Object(answer)) => answer,
        _ => return Response::from_parts(parts, Body::from(bytes)),
    };
    let mut fields = json!({
        "kind": KIND,
        "status": parts.status.as_u16(),
        "code": answer.get("code"),
        "message": answer.get("message").and_then(Value::as_str).map(cut),
        "method": asked.method.as_str(),
        "path": cut(asked.uri.path()),
        "token_id": token_of(asked.authorization.as_ref(), asked.api_key.as_ref())
            .map(|t| sha256_hex(t.as_bytes())),
        "actor": asked.actor.as_ref().and_then(|v| v.to_str().ok()).map(cut),
        "address": asked.address.map(|ip| ip.to_string()),
        "suppressed": suppressed,
    });
    let body = fields
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let sealed = sealed_own(&tenant.identity, Act::Know, THREAD, body);
    let id = sealed.id.clone();
    tracing::info!(
        tenant = %tenant.id,
        status = parts.status.as_u16(),
        code = answer.get("code").and_then(serde_json::Value::as_str).unwrap_or_default(),
        method = %asked.method,
        uri = %asked.uri,
        record = %id,
        "refused"
    );
    match state
        .store
        .write(&tenant.id, vec![sealed], Vec::new())
        .await
    {
        Ok(written) if written.iter().all(Result::is_ok) => {
            answer.insert("audit_record".into(), json!(id));
        }
        Ok(_) | Err(_) => tracing::warn!(tenant = %tenant.id, "a refusal could not be recorded"),
    }
    let text = Value::Object(answer).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(text))
}

fn cut(text: &str) -> String {
    text.chars().take(MAX_FIELD).collect()
}
