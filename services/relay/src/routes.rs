//! The relay's HTTP routes (federation-protocol.md §7.3). Every queue route authenticates its
//! caller first ([`crate::auth`]) and then checks the caller's part: only a queue's source
//! deposits, only its destination pulls and acks, either opens, reads and deletes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, OriginalUri, Path, Query, Request, State,
};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use syncropel_protocol::didsig::Signed;
use syncropel_protocol::relay::EnvelopeError;
use syncropel_protocol::sync::{CursorError, SyncCursor};
use syncropel_protocol::ErrorCode;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::{Authenticator, Caller};
use crate::limits::Limiters;
use crate::store::{QueueRow, RelayStore, Role, Through};
use crate::{metrics, RelayError};
use syncropel_protocol::relay::{Envelope, Queue, MAX_BYTES};

/// Items of a page unless the caller asks for fewer or more, and the most it may ask for.
const DEFAULT_ITEMS: i64 = 1000;
const MAX_ITEMS: i64 = 10_000;
/// Longest a pull may wait for a deposit (`wait`, seconds).
const MAX_WAIT_SECS: u64 = 25;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<RelayStore>,
    pub auth: Arc<Authenticator>,
    /// The relay's secret for its cursors (each queue's cursors are keyed apart).
    pub cursor_key: Arc<str>,
    /// Unix milliseconds now (tests move it).
    pub clock: fn() -> i64,
    pub limits: Arc<Limiters>,
    /// Cancelled when the relay begins to stop: not ready any more, held pulls answer.
    pub stopping: CancellationToken,
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/v1/relay/queues", get(list))
        .route(
            "/v1/relay/queues/{queue_id}",
            put(open).get(status).delete(delete),
        )
        .route("/v1/relay/queues/{queue_id}/deposit", post(deposit))
        .route("/v1/relay/queues/{queue_id}/changes", get(changes))
        .route("/v1/relay/queues/{queue_id}/ack", post(ack))
        // An envelope at its largest, and the headers around it.
        .layer(DefaultBodyLimit::max(MAX_BYTES + 64 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            address_limit,
        ))
        .with_state(state)
}

/// Every request counts against its client address first, before any signature is checked.
async fn address_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    if let Some(Err(refused)) = address.map(|ip| state.limits.check_address(ip)) {
        return refused.into_response();
    }
    next.run(request).await
}

/// `GET /ready`: `200` while the relay is not stopping and the database answers with every
/// migration of this build.
async fn ready(State(state): State<AppState>) -> Response {
    if state.stopping.is_cancelled() {
        let body = ErrorCode::NotReady.envelope("the relay is stopping", None);
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    if state.store.ready().await {
        Json(json!({"status": "ready"})).into_response()
    } else {
        let body = ErrorCode::NotReady.envelope("the relay's database is not ready", None);
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// What every queue route receives: the call, as its signature covers it. Extracted last, as it
/// takes the body.
struct Call {
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for Call {
    type Rejection = RelayError;

    async fn from_request(request: Request, state: &S) -> Result<Call, RelayError> {
        let uri = match request.extensions().get::<OriginalUri>() {
            Some(OriginalUri(uri)) => uri.clone(),
            None => request.uri().clone(),
        };
        let (method, headers) = (request.method().clone(), request.headers().clone());
        let body =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => RelayError::TooLarge(rejection.body_text()),
                    _ => RelayError::Invalid(rejection.body_text()),
                })?;
        Ok(Call {
            method,
            headers,
            uri,
            body,
        })
    }
}

impl Call {
    async fn caller(&self, state: &AppState) -> Result<Caller, RelayError> {
        let host = self
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let target = format!("{host}{path}");
        let authorization = self
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok());
        let request = Signed {
            method: self.method.as_str(),
            target: &target,
            body: &self.body,
        };
        let caller = state
            .auth
            .caller(&state.store, authorization, request, (state.clock)())
            .await;
        if let Err(e) = &caller {
            metrics::auth_failure(e.code().as_str());
        }
        let caller = caller?;
        state.limits.check_did(&caller.did)?;
        Ok(caller)
    }
}

/// The queue and the caller's part in it.
async fn queue_of(state: &AppState, queue_id: &str) -> Result<QueueRow, RelayError> {
    state
        .store
        .queue(queue_id)
        .await?
        .ok_or(RelayError::NotFound)
}

/// Axum answers a bad query string in plain text; this puts it in the envelope.
fn invalid_query(rejection: QueryRejection) -> RelayError {
    RelayError::Invalid(rejection.body_text())
}

fn forbidden(what: &str) -> RelayError {
    RelayError::Forbidden(format!("only the queue's {what}"))
}

fn cursor_key(state: &AppState, queue_id: &str) -> Vec<u8> {
    format!("{}\n{queue_id}", state.cursor_key).into_bytes()
}

fn status_body(queue_id: &str, row: &QueueRow) -> Value {
    json!({
        "object": "relay_queue", "queue_id": queue_id, "queue": row.queue,
        "opened_by": row.opened_by, "ttl_seconds": row.ttl_secs, "closed": row.closed,
        "envelopes": row.envelopes, "items": row.items, "bytes": row.bytes,
        "head_sseq": row.head_sseq, "expired_items": row.expired_items,
        "expired_through_sseq": row.expired_through_sseq,
        "acked_through_sseq": row.acked_through_sseq, "last_deposit_at": row.last_deposit_at,
        "since": row.since,
    })
}

#[derive(Deserialize)]
struct OpenQueue {
    queue: Queue,
    ttl_seconds: Option<i64>,
    /// From a destination: the source cursor it holds.
    since: Option<String>,
}

/// `PUT /v1/relay/queues/{queue_id}`: opens (or, from its destination, reopens) a queue.
async fn open(
    State(state): State<AppState>,
    Path(queue_id): Path<String>,
    call: Call,
) -> Result<Response, RelayError> {
    let caller = call.caller(&state).await?;
    let request: OpenQueue = serde_json::from_slice(&call.body)
        .map_err(|e| RelayError::Invalid(format!("body: {e}")))?;
    if request.queue.id() != queue_id {
        return Err(RelayError::Invalid(
            "the queue is not the one its id names".into(),
        ));
    }
    if caller.did != request.queue.source_did && caller.did != request.queue.dest_did {
        return Err(forbidden("source or destination may open it"));
    }
    state
        .store
        .open_queue(
            &request.queue,
            &caller.did,
            request.ttl_seconds,
            request.since.as_deref(),
        )
        .await?;
    let row = queue_of(&state, &queue_id).await?;
    Ok(Json(status_body(&queue_id, &row)).into_response())
}

/// `POST /v1/relay/queues/{queue_id}/deposit`: the source queues a signed envelope.
async fn deposit(
    State(state): State<AppState>,
    Path(queue_id): Path<String>,
    call: Call,
) -> Result<Response, RelayError> {
    let caller = call.caller(&state).await?;
    // The envelope must be signed by the key that signed the call, a current key of its DID.
    let checked = Envelope::check(call.body.to_vec(), &queue_id, &caller.key);
    if let Err(EnvelopeError::TooLarge(_)) = &checked {
        metrics::limit_hit("payload_too_large");
    }
    let envelope = checked.inspect_err(|_| metrics::deposit("refused"))?;
    if envelope.queue.source_did != caller.did {
        metrics::deposit("refused");
        return Err(forbidden("source deposits"));
    }
    let deposited = state
        .store
        .deposit(&envelope, (state.clock)() / 1000)
        .await
        .inspect_err(|e| {
            if let RelayError::QueueFull { .. } = e {
                metrics::limit_hit("queue_full");
            }
            metrics::deposit("refused");
        })?;
    metrics::deposit(if deposited.duplicate {
        "duplicate"
    } else {
        "created"
    });
    let status = if deposited.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let queued = state.store.queue(&queue_id).await?;
    let body = json!({"object": "relay_deposit", "envelope_id": deposited.envelope_id,
                      "duplicate": deposited.duplicate,
                      "status": queued.map(|row| status_body(&queue_id, &row))});
    Ok((status, Json(body)).into_response())
}

#[derive(Deserialize)]
struct ChangesQuery {
    since: Option<String>,
    limit: Option<i64>,
    /// Seconds to hold an empty page open for a deposit (at most [`MAX_WAIT_SECS`]).
    wait: Option<u64>,
}

/// `GET /v1/relay/queues/{queue_id}/changes`: the destination pulls, after its relay cursor.
async fn changes(
    State(state): State<AppState>,
    Path(queue_id): Path<String>,
    query: Result<Query<ChangesQuery>, QueryRejection>,
    call: Call,
) -> Result<Response, RelayError> {
    let Query(query) = query.map_err(invalid_query)?;
    let caller = call.caller(&state).await?;
    let row = queue_of(&state, &queue_id).await?;
    if caller.did != row.queue.dest_did {
        return Err(forbidden("destination pulls"));
    }
    let key = cursor_key(&state, &queue_id);
    let since = decode(query.since.as_deref().unwrap_or(""), &key, &row.incarnation)?;
    let limit = query.limit.unwrap_or(DEFAULT_ITEMS).clamp(1, MAX_ITEMS);
    let wait = Duration::from_secs(query.wait.unwrap_or(0).min(MAX_WAIT_SECS));
    // A pull that may wait holds one of its DID's places for open pulls meanwhile.
    let _slot = match wait.is_zero() {
        true => None,
        false => Some(state.limits.wait_slot(&caller.did)?),
    };
    // Subscribed before the first read, so no deposit slips between the read and the wait.
    let mut deposits = state.store.deposits();
    let deadline = Instant::now() + wait;
    let page = loop {
        let page = state
            .store
            .changes(&queue_id, since, limit, MAX_BYTES as i64)
            .await?;
        if !page.is_empty() || wait.is_zero() {
            break page;
        }
        let woken = tokio::time::timeout_at(deadline, deposit_to(&mut deposits, &queue_id));
        let woken = tokio::select! {
            woken = woken => matches!(woken, Ok(true)),
            _ = state.stopping.cancelled() => false,
        };
        if !woken {
            break page;
        }
    };
    metrics::pull();
    let next = page.last().map_or(since, |q| q.rseq);
    let has_more = !state.store.changes(&queue_id, next, 1, 1).await?.is_empty();
    let mut envelopes = Vec::with_capacity(page.len());
    for queued in page {
        // Stored as the source sent it, and checked then: embedded as those bytes, not parsed
        // into a tree and written out again.
        let envelope = String::from_utf8(queued.body)
            .map_err(|e| RelayError::Invalid(format!("a stored envelope: {e}")))
            .and_then(|text| {
                RawValue::from_string(text)
                    .map_err(|e| RelayError::Invalid(format!("a stored envelope: {e}")))
            })?;
        envelopes.push(PageEnvelope {
            envelope_id: queued.envelope_id,
            envelope,
        });
    }
    let cursor = SyncCursor {
        epoch: row.incarnation.clone(),
        seq: next,
    };
    Ok(Json(ChangesPage {
        object: "relay_changes",
        queue_id,
        envelopes,
        next_cursor: cursor.encode(&key),
        has_more,
    })
    .into_response())
}

/// A `relay_changes` page, serialized as is: a `json!` tree would parse every envelope again.
#[derive(serde::Serialize)]
struct ChangesPage {
    object: &'static str,
    queue_id: String,
    envelopes: Vec<PageEnvelope>,
    next_cursor: String,
    has_more: bool,
}

/// One envelope of a `relay_changes` page.
#[derive(serde::Serialize)]
struct PageEnvelope {
    envelope_id: String,
    envelope: Box<RawValue>,
}

/// Waits for a deposit to `queue_id` (or for news that announcements were missed: look again);
/// `false` when the relay is stopping.
async fn deposit_to(deposits: &mut broadcast::Receiver<String>, queue_id: &str) -> bool {
    loop {
        match deposits.recv().await {
            Ok(queue) if queue == queue_id || queue.is_empty() => return true,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return true,
            Err(broadcast::error::RecvError::Closed) => return false,
        }
    }
}

fn decode(cursor: &str, key: &[u8], incarnation: &str) -> Result<i64, RelayError> {
    SyncCursor::decode(cursor, key, incarnation)
        .map(|c| c.seq)
        .map_err(|e| match e {
            CursorError::Invalid => RelayError::InvalidCursor,
            CursorError::EpochMismatch => RelayError::CursorEpochMismatch,
        })
}

/// The destination acks by relay cursor; the source trims by its own sequence.
#[derive(Deserialize)]
#[serde(untagged)]
enum AckBody {
    Destination {
        through: String,
    },
    Source {
        source_epoch: String,
        through_sseq: i64,
    },
}

/// `POST /v1/relay/queues/{queue_id}/ack`: the destination confirms what it ingested, or the
/// source trims what the destination confirmed by pulling it directly.
async fn ack(
    State(state): State<AppState>,
    Path(queue_id): Path<String>,
    call: Call,
) -> Result<Response, RelayError> {
    let caller = call.caller(&state).await?;
    let row = queue_of(&state, &queue_id).await?;
    let request: AckBody = serde_json::from_slice(&call.body).map_err(|_| {
        RelayError::Invalid(
            "body: {\"through\": <relay cursor>} or {\"source_epoch\", \"through_sseq\"}".into(),
        )
    })?;
    let (acked, by) = match &request {
        AckBody::Destination { through } if caller.did == row.queue.dest_did => {
            let key = cursor_key(&state, &queue_id);
            let rseq = decode(through, &key, &row.incarnation)?;
            let acked = state
                .store
                .ack_through(&queue_id, Through::Rseq(rseq))
                .await?;
            (acked, "destination")
        }
        AckBody::Source {
            source_epoch,
            through_sseq,
        } if caller.did == row.queue.source_did => {
            let through = Through::SourceSeq {
                epoch: source_epoch,
                sseq: *through_sseq,
            };
            (state.store.ack_through(&queue_id, through).await?, "source")
        }
        AckBody::Destination { .. } => return Err(forbidden("destination acks by cursor")),
        AckBody::Source { .. } => return Err(forbidden("source trims")),
    };
    metrics::ack(by);
    let queued = state.store.queue(&queue_id).await?;
    Ok(Json(
        json!({"object": "relay_ack", "deleted_envelopes": acked.envelopes,
                   "deleted_items": acked.items,
                   "status": queued.map(|row| status_body(&queue_id, &row))}),
    )
    .into_response())
}

/// Queues a list page holds, at most.
const LIST_PAGE: i64 = 100;

#[derive(Deserialize)]
struct ListQuery {
    role: Role,
    /// The last queue id of the page before.
    cursor: Option<String>,
}

/// `GET /v1/relay/queues?role=source|destination`: the caller's queues, a page at a time.
async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
    call: Call,
) -> Result<Response, RelayError> {
    let Query(query) = query.map_err(invalid_query)?;
    let caller = call.caller(&state).await?;
    let after = query.cursor.unwrap_or_default();
    let mut ids = state
        .store
        .queue_ids(&caller.did, query.role, &after, LIST_PAGE + 1)
        .await?;
    let has_more = ids.len() as i64 > LIST_PAGE;
    ids.truncate(LIST_PAGE as usize);
    let mut data = Vec::with_capacity(ids.len());
    for id in &ids {
        // A queue deleted since it was listed is left out.
        if let Some(row) = state.store.queue(id).await? {
            data.push(status_body(id, &row));
        }
    }
    let next_cursor = if has_more { ids.last().cloned() } else { None };
    Ok(Json(
        json!({"object": "list", "data": data, "next_cursor": next_cursor,
                   "has_more": has_more}),
    )
    .into_response())
}

/// `GET /v1/relay/queues/{queue_id}`: either side reads how the queue stands.
async fn status(
    State(state): State<AppState>,
    Path(queue_id): Path<String>,
    call: Call,
) -> Result<Response, RelayError> {
    let caller = call.caller(&state).await?;
    let row = queue_of(&state, &queue_id).await?;
    if caller.did != row.queue.source_did && caller.did != row.queue.dest_did {
        return Err(forbidden("source or destination reads it"));
    }
    Ok(Json(status_body(&queue_id, &row)).into_response())
}

/// `DELETE /v1/relay/queues/{queue_id}`: either side empties it; the destination also closes it.
async fn delete(
    State(state): State<AppState>,
    Path(queue_id): Path<String>,
    call: Call,
) -> Result<Response, RelayError> {
    let caller = call.caller(&state).await?;
    let row = queue_of(&state, &queue_id).await?;
    let by_destination = caller.did == row.queue.dest_did;
    if !by_destination && caller.did != row.queue.source_did {
        return Err(forbidden("source or destination deletes it"));
    }
    let deleted = state
        .store
        .delete_queue(&queue_id, by_destination, (state.clock)() / 1000)
        .await?;
    Ok(Json(json!({"deleted_items": deleted.items})).into_response())
}
