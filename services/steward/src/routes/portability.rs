//! Moving a tenant (federation-protocol.md §8.3–8.5): `POST /v1/portability/export` streams
//! its bundle (admin scope; `"intent": "leave"` also puts it in `leaving`; `"threads": [...]`
//! makes it a snapshot of those threads, §3.6), `POST
//! /v1/portability/import` takes one into an empty hosted tenant, identity included, `POST
//! /v1/portability/fence` takes its new home's signed notice (no bearer: the notice is signed by
//! the tenant's own identity key), after which [`moved_gate`] answers every `/v1` route with
//! `410 INSTANCE_MOVED` and the notice, for peers to follow.

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde_json::{json, Value};
use syncropel_portability::{audit, departure, ExportOptions, ExportSource, ImportOptions};
use syncropel_protocol::did_doc::did_web_document;
use syncropel_protocol::did_sync::LoggedOp;
use syncropel_protocol::{unix_now, ErrorCode};
use syncropel_tenant::{Departure, Scope, Tenant};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::rate_limit::ClientAddress;
use crate::routes::{JsonBody, Params};
use crate::state::{AppState, Tenancy};
use crate::tenant::CurrentTenant;

/// Shorter passphrases are refused: the sealed key is only as strong as this.
const MIN_PASSPHRASE: usize = 12;

/// Where an import's passphrase goes: not in the URL, which logs keep.
const PASSPHRASE_HEADER: &str = "x-bundle-passphrase";

/// How long an export to leave lets writes already accepted land before it reads the store.
const LEAVE_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// The route a moved tenant still answers: its new home may fence it again (a later move).
const FENCE_PATH: &str = "/portability/fence";

pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    address: Option<Extension<ClientAddress>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::Admin)?;
    let mut options = export_options(&body)?;
    // Every replica's cached tenant has expired, and its writes in flight have landed.
    options.settle = state.tenancy.staleness() + LEAVE_SETTLE;
    // One export at a time per tenant and token: each reads the whole store.
    let slot = state.exports.acquire(
        &caller.tenant.id,
        caller.token_id(),
        address.map(|Extension(ClientAddress(ip))| ip),
    )?;
    // Counted once it may run: a refusal for concurrency costs the tenant nothing.
    state.rate_limits.check_export(&caller.tenant.id)?;
    let tenant = caller.tenant.clone();
    if options.intent.as_deref() == Some("leave") {
        // The export stores it before it reads a record; requests here see it at once.
        tenant.require_writable()?;
        tenant.set_departure(Departure::Leaving);
    }
    let document = did_document(&tenant);
    let did_operations = did_operations(&state, &tenant.identity.did).await;
    let (chunks, bytes) = tokio::sync::mpsc::channel(4);
    let store = state.store.clone();
    let task_tenant = tenant.clone();
    let (failed, failure) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _slot = slot;
        let source = ExportSource {
            store,
            tenant: &task_tenant.id,
            identity: &task_tenant.identity,
            did_document: &document,
            did_operations,
        };
        match syncropel_portability::export(source, &options, chunks).await {
            Ok(summary) => tracing::info!(
                tenant = %task_tenant.id,
                records = summary.records,
                bundle = %summary.bundle_sha256,
                "exported"
            ),
            Err(e) => {
                tracing::warn!(tenant = %task_tenant.id, error = %e, "export failed");
                let _ = failed.send(e.to_string());
            }
        }
    });
    let mut response = Body::from_stream(bundle_stream(bytes, failure)).into_response();
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

/// A did:sync's operation log from the directories this steward resolves through (checked);
/// `None` for other DIDs and, logged, when none answers: an export does not depend on it.
async fn did_operations(state: &AppState, did: &str) -> Option<Vec<LoggedOp>> {
    if !did.starts_with("did:sync:") {
        return None;
    }
    match state.federation.resolver().sync_log(did).await {
        Ok(log) => Some(log),
        Err(e) => {
            tracing::warn!(%did, error = %e, "the bundle goes without the DID's log");
            None
        }
    }
}

/// The chunks of an export as a body. An export that fails midway ends it with an error, so the
/// connection is cut (no clean end of a chunked body): a client sees a failed download, not a
/// short file that only a check would catch.
fn bundle_stream(
    chunks: tokio::sync::mpsc::Receiver<Vec<u8>>,
    failure: tokio::sync::oneshot::Receiver<String>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(
        (chunks, Some(failure)),
        |(mut chunks, failure)| async move {
            if let Some(chunk) = chunks.recv().await {
                return Some((Ok(Bytes::from(chunk)), (chunks, failure)));
            }
            // The export is over: the failure, once, if it failed.
            let why = failure?.await.ok()?;
            Some((Err(std::io::Error::other(why)), (chunks, None)))
        },
    )
}

/// `POST /v1/portability/import` (hosted): a bundle (`application/zstd` body, passphrase in
/// `x-bundle-passphrase`) taken into this tenant, which must hold nothing of its own yet; its
/// identity becomes the tenant's. `?dry_run=true` counts and writes nothing.
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    address: Option<Extension<ClientAddress>>,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    caller.require(Scope::Admin)?;
    let Tenancy::Hosted(platform) = &state.tenancy else {
        return Err(ApiError::new(
            ErrorCode::NotImplemented,
            "a local home imports with `spl import` while its steward is stopped",
        ));
    };
    let tenant = caller.tenant.clone();
    tenant.require_writable()?;
    let dry_run = params.str("dry_run") == Some("true");
    let _slot = state.exports.acquire(
        &tenant.id,
        caller.token_id(),
        address.map(|Extension(ClientAddress(ip))| ip),
    )?;
    let passphrase = headers
        .get(PASSPHRASE_HEADER)
        .map(|v| v.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| ApiError::validation(format!("`{PASSPHRASE_HEADER}` must be text")))?;
    let file = received(body, state.limits.max_import_bytes).await?;
    let path = file.path().to_path_buf();
    // Unpacked, a bundle may not hold more than the tenant may store: a zstd bomb stops there.
    let limits = syncropel_bundle::Limits {
        max_total: state.federation.config.store_ceiling,
        ..syncropel_bundle::Limits::default()
    };
    let opened = tokio::task::spawn_blocking(move || {
        syncropel_portability::open(&path, passphrase.as_deref(), &limits)
    })
    .await
    .map_err(ApiError::internal)??;
    let options = ImportOptions {
        dry_run,
        limits,
        ..ImportOptions::default()
    };
    let mut summary =
        syncropel_portability::import(state.store.clone(), &tenant.id, &opened, &options).await?;
    drop(file);
    if dry_run {
        return Ok(Json(summary).into_response());
    }
    let label = platform
        .store()
        .tenant_label(&tenant.id)
        .await?
        .ok_or_else(|| ApiError::not_found("the tenant is gone"))?;
    match &opened.key {
        Some(key) => {
            platform
                .install_identity(&tenant.id, &label, opened.did(), key)
                .await?;
            summary.identity_restored = true;
        }
        None => {
            summary.identity_note = Some(
                "the bundle carries no identity: its records keep their DID, the tenant keeps \
                 its own"
                    .into(),
            )
        }
    }
    let now = platform
        .tenant(&label)
        .await?
        .ok_or_else(|| ApiError::not_found("the tenant is gone"))?;
    let fields = json!({
        "source_did": summary.source_did,
        "bundle_sha256": summary.bundle_sha256,
        "records_inserted": summary.records_inserted,
        "identity_restored": summary.identity_restored,
    });
    audit::record(
        state.store.as_ref(),
        &now.id,
        &now.identity,
        (audit::THREAD, "import"),
        fields,
        Vec::new(),
    )
    .await?;
    Ok(Json(summary).into_response())
}

/// The request body, written to a temporary file (the bundle is read twice: checked whole,
/// then taken in); refused past `limit` bytes.
async fn received(body: Body, limit: u64) -> ApiResult<tempfile::NamedTempFile> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let file = tempfile::NamedTempFile::new().map_err(ApiError::internal)?;
    let mut out = tokio::fs::File::from_std(file.reopen().map_err(ApiError::internal)?);
    let mut stream = body.into_data_stream();
    let mut held = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::validation(format!("reading the body: {e}")))?;
        held += chunk.len() as u64;
        if held > limit {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("a bundle to import holds at most {limit} bytes"),
            ));
        }
        out.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    out.flush().await.map_err(ApiError::internal)?;
    Ok(file)
}

fn export_options(body: &Value) -> ApiResult<ExportOptions> {
    // A snapshot of threads (`spl thread snapshot`) never carries the identity.
    let threads = match &body["threads"] {
        Value::Null => None,
        Value::Array(threads) => Some(
            threads
                .iter()
                .map(|t| t.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| ApiError::validation("`threads` is an array of thread ids"))?,
        ),
        _ => return Err(ApiError::validation("`threads` is an array of thread ids")),
    };
    let no_identity = threads.is_some() || body["no_identity"].as_bool().unwrap_or(false);
    let passphrase = match (&body["passphrase"], no_identity) {
        (Value::String(_), true) if threads.is_some() => {
            return Err(ApiError::validation(
                "a snapshot of threads never carries the identity: leave out `passphrase`",
            ))
        }
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
    let options = ExportOptions {
        passphrase,
        carry_tokens: body["carry_tokens"].as_bool().unwrap_or(false),
        intent,
        threads,
        ..ExportOptions::default()
    };
    options.check().map_err(ApiError::validation)?;
    Ok(options)
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
    let fields = json!({"moved_to": checked.moved_to});
    let stored = vec![departure::save(&moved)];
    audit::record(
        state.store.as_ref(),
        &tenant.id,
        &tenant.identity,
        (audit::THREAD, "fenced"),
        fields,
        stored,
    )
    .await?;
    tenant.set_departure(moved);
    // Its pull and outbox jobs stop here; other replicas' at their next turn.
    state.federation.jobs.stop_tenant(&tenant.id);
    let published = publish_endpoint(&state, &checked.did, &checked.moved_to).await;
    Ok(Json(json!({
        "object": "fence",
        "did": checked.did,
        "moved_to": checked.moved_to,
        "endpoint_published": published,
    }))
    .into_response())
}

/// Step 3 of a move (federation-protocol.md §8.5), done by the steward left, which holds the
/// rotation key: a did:sync is pointed at its new home, so that peers re-resolving it find it
/// there; the identity-signed fence is the consent. `{"ok": true, "head"}`, or why not (the fence
/// holds regardless: rerun it, or publish with the recovery key). A did:key or did:web has
/// nothing here to publish (`null`).
async fn publish_endpoint(state: &AppState, did: &str, moved_to: &str) -> Value {
    if !did.starts_with("did:sync:") {
        return Value::Null;
    }
    let Some(publisher) = &state.did_publisher else {
        return json!({"ok": false, "error": "this steward holds no rotation key of the DID"});
    };
    let client = state.federation.directory_client();
    match publisher.publish_endpoint(client, did, moved_to).await {
        Ok(head) => json!({"ok": true, "head": head}),
        Err(e) => {
            tracing::warn!(%did, error = %e, "publishing the new endpoint failed");
            json!({"ok": false, "error": e.to_string()})
        }
    }
}

/// Answers every `/v1` route of a moved tenant with `410 INSTANCE_MOVED`, `moved_to` and the
/// signed notice, before authentication: its tokens no longer open anything here.
pub async fn moved_gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let tenant = CurrentTenant::from_request_parts(&mut parts, &state)
        .await
        .ok();
    if let Some(CurrentTenant(tenant)) = &tenant {
        if let Departure::Moved { moved_to, notice } = tenant.departure() {
            if !parts.uri.path().ends_with(FENCE_PATH) {
                return ApiError::moved(moved_to, notice).into_response();
            }
        }
    }
    // One gate for both: a refusal of a tenant's route is recorded on its way out.
    let asked = crate::refusals::Asked::of(&parts);
    let response = next.run(Request::from_parts(parts, body)).await;
    match tenant {
        Some(CurrentTenant(tenant)) => {
            crate::refusals::recorded(&state, &tenant, asked, response).await
        }
        None => response,
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::bundle_stream;

    #[tokio::test]
    async fn a_failed_export_ends_its_body_with_an_error_and_a_whole_one_cleanly() {
        for fails in [true, false] {
            let (chunks, read) = tokio::sync::mpsc::channel(4);
            let (failed, failure) = tokio::sync::oneshot::channel();
            chunks.send(b"first".to_vec()).await.unwrap();
            drop(chunks);
            if fails {
                failed.send("the store went away".to_string()).unwrap();
            } else {
                drop(failed);
            }
            let items: Vec<_> = bundle_stream(read, failure).collect().await;
            assert_eq!(items[0].as_ref().unwrap().as_ref(), b"first");
            assert_eq!(items.len(), if fails { 2 } else { 1 });
            if fails {
                assert!(items[1].is_err());
            }
        }
    }
}
