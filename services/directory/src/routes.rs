//! HTTP routes (federation-protocol.md §1.4).

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};
use syncropel_protocol::did_sync::{did_from_genesis, CheckedOp, OpType, DID_HASH_CHARS};
use syncropel_protocol::{parse_json, rfc3339_from_unix, validate_namespace_id};

use crate::store::Submission;
use crate::{AppState, DirectoryError, MAX_BODY_BYTES};

type Result<T, E = DirectoryError> = std::result::Result<T, E>;

/// Most ops one export page returns.
const MAX_EXPORT_COUNT: i64 = 1000;
/// Most peers one namespace page returns.
const MAX_PEERS_PAGE: i64 = 1000;
/// Ops carry no deep nesting; a small limit refuses pathological bodies cheaply.
const MAX_JSON_DEPTH: usize = 16;

/// The directory server: the `/directory/*` routes, probes, and its own 404 and telemetry.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(state.clone())
        .merge(routes(state))
        .fallback(|| async { DirectoryError::NotFound("no such route".into()) })
        .layer(syncropel_telemetry::http::RequestTelemetry)
}

/// The `/directory/*` routes alone, for a router of any state: a steward mounts them beside its
/// own (`spl serve --directory-enabled`), under its own fallback, probes and telemetry. Every
/// bound of the directory (body size, JSON depth, op and genesis rate limits) is enforced here,
/// so it holds wherever the routes are mounted.
pub fn routes<S: Clone + Send + Sync + 'static>(state: AppState) -> Router<S> {
    Router::new()
        .route("/directory/genesis", post(genesis))
        .route("/directory/update/{hash}", post(update))
        .route("/directory/revoke/{hash}", post(revoke))
        .route("/directory/{hash}/did.json", get(document))
        .route("/directory/{hash}/operations", get(operations))
        .route("/directory/handle/{handle}", get(handle))
        .route("/directory/export", get(export))
        .route("/directory/namespace/{namespace}/peers", get(peers))
        .route("/directory/resolve", get(resolve))
        .with_state(state)
}

/// Liveness.
async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// Readiness: not draining, the database answers, every migration applied.
async fn ready(State(state): State<AppState>) -> Result<Json<Value>> {
    if state.stopping.is_cancelled() {
        return Err(DirectoryError::ShuttingDown);
    }
    state.store.check_ready().await?;
    Ok(Json(json!({"status": "ready"})))
}

/// `axum::extract::Path` answering a malformed segment (say, percent-encoded invalid UTF-8) in
/// the error envelope.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(DirectoryError))]
struct Path<T>(T);

/// `axum::extract::Query`, likewise.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(DirectoryError))]
struct Query<T>(T);

/// Reads at most [`MAX_BODY_BYTES`], parses strict JSON (duplicate keys refused) and checks the
/// op on its own (size, members, signature), outside the per-DID serialization.
async fn read_op(body: Body, kind: OpType) -> Result<CheckedOp> {
    let bytes = to_bytes(body, MAX_BODY_BYTES).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            DirectoryError::PayloadTooLarge {
                max: MAX_BODY_BYTES,
            }
        } else {
            DirectoryError::Validation(format!("cannot read the request body: {e}"))
        }
    })?;
    let op = parse_json(&bytes, MAX_JSON_DEPTH)?;
    let expected = match kind {
        OpType::Genesis => "genesis",
        OpType::Update => "update",
        OpType::Tombstone => "tombstone",
    };
    if op.get("type").and_then(Value::as_str) != Some(expected) {
        return Err(DirectoryError::Validation(format!(
            "this route takes an operation object of type {expected:?}"
        )));
    }
    Ok(CheckedOp::new(&op)?)
}

/// The DID of a `{hash}` path segment; anything that cannot be a DID hash is simply unknown.
fn did_of(hash: &str) -> Result<String> {
    let valid = hash.len() == DID_HASH_CHARS
        && hash
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
    if valid {
        Ok(format!("did:sync:{hash}"))
    } else {
        Err(DirectoryError::NotFound(format!(
            "no DID with hash {hash:?}"
        )))
    }
}

async fn submit(state: &AppState, submission: Submission) -> Result<Response> {
    let is_genesis = submission.kind == OpType::Genesis;
    let outcome = state
        .store
        .submit(submission, state.clock.now(), state.rules)
        .await?;
    let status = if outcome.created && is_genesis {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = json!({
        "object": "did_operation",
        "did": outcome.did,
        "cid": outcome.cid,
        "received_at": outcome.received_at,
        "nullified": outcome.nullified,
    });
    Ok((status, Json(body)).into_response())
}

/// `POST /directory/genesis`: 201 with the new DID, 200 for a byte-identical retry. Each client
/// address makes a bounded number an hour.
async fn genesis(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Body,
) -> Result<Response> {
    if let Some(Extension(ConnectInfo(peer))) = peer {
        state
            .geneses
            .check(peer.ip())
            .map_err(|retry_after_secs| DirectoryError::RateLimited { retry_after_secs })?;
    }
    let op = read_op(body, OpType::Genesis).await?;
    let did = did_from_genesis(op.value());
    let hash = did.trim_start_matches("did:sync:").to_owned();
    let submission = Submission {
        did,
        hash,
        kind: OpType::Genesis,
        op,
    };
    submit(&state, submission).await
}

async fn update(
    State(state): State<AppState>,
    Path(hash): Path<String>,
    body: Body,
) -> Result<Response> {
    append(state, hash, body, OpType::Update).await
}

async fn revoke(
    State(state): State<AppState>,
    Path(hash): Path<String>,
    body: Body,
) -> Result<Response> {
    append(state, hash, body, OpType::Tombstone).await
}

async fn append(state: AppState, hash: String, body: Body, kind: OpType) -> Result<Response> {
    let did = did_of(&hash)?;
    let op = read_op(body, kind).await?;
    let submission = Submission {
        did,
        hash,
        kind,
        op,
    };
    submit(&state, submission).await
}

/// The stored document, served as stored: resolution is one indexed lookup.
async fn serve_document(state: &AppState, hash: &str) -> Result<Response> {
    let did = did_of(hash)?;
    match state.store.document(hash).await? {
        None => Err(DirectoryError::NotFound(format!("no DID {did}"))),
        Some((_, true)) => Err(DirectoryError::Deactivated(did)),
        Some((document, false)) => {
            Ok(([(header::CONTENT_TYPE, "application/json")], document).into_response())
        }
    }
}

async fn document(State(state): State<AppState>, Path(hash): Path<String>) -> Result<Response> {
    serve_document(&state, &hash).await
}

/// `GET /directory/resolve?did=did:sync:<hash>`.
async fn resolve(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response> {
    let did = query
        .get("did")
        .ok_or_else(|| DirectoryError::Validation("`did` query parameter is required".into()))?;
    let hash = did.strip_prefix("did:sync:").ok_or_else(|| {
        DirectoryError::Validation("this directory resolves did:sync DIDs only".into())
    })?;
    serve_document(&state, hash).await
}

/// The whole log, nullified ops included and in insertion order, so that a resolver can replay
/// it with `OpLog::apply`; served for deactivated DIDs too.
async fn operations(State(state): State<AppState>, Path(hash): Path<String>) -> Result<Response> {
    let did = did_of(&hash)?;
    let log = state.store.operations(&did).await?;
    if log.is_empty() {
        return Err(DirectoryError::NotFound(format!("no DID {did}")));
    }
    Ok(Json(json!({"object": "did_operations", "did": did, "operations": log})).into_response())
}

async fn handle(State(state): State<AppState>, Path(handle): Path<String>) -> Result<Response> {
    match state.store.handle(&handle).await? {
        Some(did) => Ok(Json(json!({"handle": handle, "did": did})).into_response()),
        None => Err(DirectoryError::NotFound(format!(
            "no DID holds handle {handle:?}"
        ))),
    }
}

fn int_param(query: &HashMap<String, String>, name: &str, default: i64) -> Result<i64> {
    match query.get(name) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| DirectoryError::Validation(format!("`{name}` must be an integer"))),
    }
}

/// `GET /directory/export?after=<seq>&count=<n>`: JSON lines of logged ops in global sequence
/// order, for mirrors; page on with the last line's `seq`.
async fn export(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response> {
    let after = int_param(&query, "after", 0)?;
    let count = int_param(&query, "count", MAX_EXPORT_COUNT)?;
    if !(1..=MAX_EXPORT_COUNT).contains(&count) {
        return Err(DirectoryError::Validation(format!(
            "`count` must be 1 to {MAX_EXPORT_COUNT}"
        )));
    }
    let mut lines = String::new();
    for row in state.store.export(after, count).await? {
        let line = json!({
            "seq": row.seq,
            "did": row.did,
            "cid": row.entry.cid,
            "op": row.entry.op,
            "received_at": row.entry.received_at,
            "nullified": row.entry.nullified,
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response())
}

/// `GET /directory/namespace/{ns}/peers`: live DIDs that listed the namespace.
/// `GET /directory/namespace/{ns}/peers?after=<did>&limit=<n>`: live DIDs that opted into the
/// namespace, in DID order, a page (at most [`MAX_PEERS_PAGE`]) at a time; page on with
/// `next_cursor` as `after`, so no DID is out of reach however many are listed.
async fn peers(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response> {
    validate_namespace_id(&namespace)?;
    let limit = int_param(&query, "limit", MAX_PEERS_PAGE)?;
    if !(1..=MAX_PEERS_PAGE).contains(&limit) {
        return Err(DirectoryError::Validation(format!(
            "`limit` must be 1 to {MAX_PEERS_PAGE}"
        )));
    }
    let after = query.get("after").map(String::as_str).unwrap_or("");
    let mut found = state.store.peers(&namespace, after, limit + 1).await?;
    let has_more = found.len() as i64 > limit;
    found.truncate(limit as usize);
    let next_cursor = has_more
        .then(|| found.last().map(|p| p.did.clone()))
        .flatten();
    let peers: Vec<Value> = found
        .into_iter()
        .map(|p| {
            json!({
                "did": p.did,
                "endpoint": p.endpoint,
                "handles": p.handles,
                "updated_at": rfc3339_from_unix(p.updated_at),
            })
        })
        .collect();
    Ok(Json(
        json!({"namespace": namespace, "peers": peers, "next_cursor": next_cursor,
        "has_more": has_more}),
    )
    .into_response())
}
