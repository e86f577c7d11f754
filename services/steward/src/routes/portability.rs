//! Moving a tenant (federation-protocol.md §8.3, §8.5): `POST /v1/portability/export` streams
//! its bundle (admin scope; `"intent": "leave"` also puts it in `leaving`), `POST
//! /v1/portability/fence` takes its new home's signed notice (no bearer: the notice is signed by
//! the tenant's own identity key), after which [`moved_gate`] answers every `/v1` route with
//! `410 INSTANCE_MOVED` and the notice, for peers to follow.

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde_json::{json, Value};
use syncropel_portability::{audit, departure, ExportOptions, ExportSource, PortabilityError};
use syncropel_protocol::did_doc::did_web_document;
use syncropel_protocol::{unix_now, ErrorCode};
use syncropel_tenant::{Departure, Scope, Tenant};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::rate_limit::ClientAddress;
use crate::routes::JsonBody;
use crate::state::AppState;
use crate::tenant::CurrentTenant;

/// Shorter passphrases are refused: the sealed key is only as strong as this.
const MIN_PASSPHRASE: usize = 12;

/// The route a moved tenant still answers: its new home may fence it again (a later move).
const FENCE_PATH: &str = "/portability/fence";

pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    address: Option<Extension<ClientAddress>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::Admin)?;
    let options = export_options(&body)?;
    // One export at a time per tenant and token: each reads the whole store.
    let slot = state.exports.acquire(
        &caller.tenant.id,
        caller.token_id(),
        address.map(|Extension(ClientAddress(ip))| ip),
    )?;
    let tenant = caller.tenant.clone();
    if options.intent.as_deref() == Some("leave") {
        // The export stores it before it reads a record; requests here see it at once.
        tenant.require_writable()?;
        tenant.set_departure(Departure::Leaving);
    }
    let document = did_document(&tenant);
    let (chunks, bytes) = tokio::sync::mpsc::channel(4);
    let store = state.store.clone();
    let task_tenant = tenant.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let source = ExportSource {
            store,
            tenant: &task_tenant.id,
            identity: &task_tenant.identity,
            did_document: &document,
        };
        match syncropel_portability::export(source, &options, chunks).await {
            Ok(summary) => tracing::info!(
                tenant = %task_tenant.id,
                records = summary.records,
                bundle = %summary.bundle_sha256,
                "exported"
            ),
            // The body ends cut short: the bundle does not verify, so nobody mistakes it.
            Err(e) => tracing::warn!(tenant = %task_tenant.id, error = %e, "export failed"),
        }
    });
    let stream = futures_util::stream::unfold(bytes, |mut bytes| async move {
        let chunk = bytes.recv().await?;
        Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), bytes))
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zstd"),
    );
    let name = format!(
        "attachment; filename=\"{}.tar.zst\"",
        tenant
            .id
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "-")
    );
    if let Ok(value) = HeaderValue::from_str(&name) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

fn export_options(body: &Value) -> ApiResult<ExportOptions> {
    let no_identity = body["no_identity"].as_bool().unwrap_or(false);
    let passphrase = match (&body["passphrase"], no_identity) {
        (_, true) => None,
        (Value::String(p), false) if p.chars().count() >= MIN_PASSPHRASE => Some(p.clone()),
        (Value::String(_), false) => {
            return Err(ApiError::validation(format!(
                "`passphrase` must have {MIN_PASSPHRASE} characters or more"
            )))
        }
        _ => {
            return Err(ApiError::validation(
                "`passphrase` (the identity key is sealed under it) is required, or \
                 `no_identity: true` to leave the key, and so the DID, behind",
            ))
        }
    };
    let intent = match &body["intent"] {
        Value::Null => None,
        Value::String(intent) if intent == "leave" => Some(intent.clone()),
        _ => return Err(ApiError::validation("`intent` is \"leave\" or absent")),
    };
    Ok(ExportOptions {
        passphrase,
        carry_tokens: body["carry_tokens"].as_bool().unwrap_or(false),
        intent,
    })
}

/// The DID document of a tenant's identity: its keys, current first.
fn did_document(tenant: &Tenant) -> Value {
    let keys: Vec<(String, String)> = tenant
        .identity
        .keys
        .iter()
        .enumerate()
        .map(|(n, key)| {
            let multibase = key.trim_start_matches("did:key:").to_string();
            (format!("key-{}", n + 1), multibase)
        })
        .collect();
    did_web_document(
        &tenant.identity.did,
        &keys,
        &["key-1".into()],
        tenant.url.as_deref(),
        &[],
    )
}

pub async fn fence(
    State(state): State<AppState>,
    CurrentTenant(tenant): CurrentTenant,
    JsonBody(notice): JsonBody,
) -> ApiResult<Response> {
    let checked = departure::check_fence(&tenant.identity, &notice, unix_now())
        .map_err(|e| ApiError::new(ErrorCode::SignatureInvalid, format!("fence refused: {e}")))?;
    if let Departure::Moved { notice: held, .. } = tenant.departure() {
        let held_at = syncropel_protocol::moved::check_moved(&held).map(|n| n.at);
        if held_at.is_ok_and(|at| at > checked.at) {
            return Err(ApiError::new(
                ErrorCode::InstanceMoved,
                "a later fence already holds this steward",
            ));
        }
    }
    let moved = Departure::Moved {
        moved_to: checked.moved_to.clone(),
        notice: notice.clone(),
    };
    state
        .store
        .write(&tenant.id, Vec::new(), vec![departure::save(&moved)])
        .await?;
    let fields = json!({"moved_to": checked.moved_to});
    audit::record(
        state.store.as_ref(),
        &tenant.id,
        &tenant.identity,
        "fenced",
        fields,
    )
    .await
    .map_err(portability_error)?;
    tenant.set_departure(moved);
    // Its pull and outbox jobs stop here; other replicas' at their next turn.
    state.federation.jobs.stop_tenant(&tenant.id);
    Ok(Json(json!({
        "object": "fence",
        "did": checked.did,
        "moved_to": checked.moved_to,
    }))
    .into_response())
}

fn portability_error(e: PortabilityError) -> ApiError {
    match e {
        PortabilityError::Store(e) => e.into(),
        PortabilityError::Federation(e) => e.into(),
        other => ApiError::internal(other),
    }
}

/// Answers every `/v1` route of a moved tenant with `410 INSTANCE_MOVED`, `moved_to` and the
/// signed notice, before authentication: its tokens no longer open anything here.
pub async fn moved_gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path().ends_with(FENCE_PATH) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    if let Ok(CurrentTenant(tenant)) = CurrentTenant::from_request_parts(&mut parts, &state).await {
        if let Departure::Moved { moved_to, notice } = tenant.departure() {
            return moved_error(moved_to, notice).into_response();
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

/// `410 INSTANCE_MOVED` with `moved_to` and the new home's signed notice.
pub fn moved_error(moved_to: String, notice: Value) -> ApiError {
    ApiError::new(
        ErrorCode::InstanceMoved,
        format!("this steward has moved to {moved_to}"),
    )
    .with_hint("follow `moved_to`: the notice is signed by the steward's DID")
    .with_extra("moved_to", moved_to)
    .with_extra("notice", notice)
}
