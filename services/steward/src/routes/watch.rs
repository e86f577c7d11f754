//! `GET /v1/threads/{id}/watch` (protocol.md §11.8): server-sent events.
//!
//! The stream subscribes to commit announcements *before* it replays from the store; at each
//! announcement of a newer record of its thread it reads what follows the last record it sent, so
//! replay and live join with no gap and no duplicate. A stream counts against its token's, tenant's
//! and address's limits while open, and ends when its token is revoked or expires or its tenant is
//! suspended or deleted (see [`crate::streams`]).

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::Stream;
use syncropel_api::watch::{self as sse, Heartbeat, ServerShutdown, WatchError};
use syncropel_protocol::ErrorCode;
use syncropel_store::{Committed, ListFilter, StoredRecord};
use tokio::sync::broadcast::{self, error::RecvError};

use super::{checked_thread, Params, PathParam};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::rate_limit::ClientAddress;
use crate::state::AppState;
use crate::streams::{StreamSlot, RECHECK};

/// Records read from the store at a time (replay and live), at most.
const READ_PAGE: u32 = 1000;

/// Where a new stream starts.
enum Start {
    /// `Last-Event-ID`: records with a greater sequence.
    AfterSeq(i64),
    /// `since_clock` on a first connection: records with `clock >= C`.
    SinceClock(i64),
    /// Records committed from now on: after this head (read before subscribing, so a record
    /// committed in between is read once and sent too).
    LiveOnly(i64),
}

pub async fn watch(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(thread): PathParam,
    headers: HeaderMap,
    address: Option<Extension<ClientAddress>>,
    params: Params,
) -> ApiResult<Response> {
    let address = address.map(|Extension(address)| address);
    checked_thread(&thread)?;
    caller.require_thread_read(&thread)?;
    // A draining replica starts no stream (it would only replay and say `server_shutdown`
    // again): the SDK retries any status >= 400 after a short jittered wait, on a new
    // connection, which the load balancer sends to another replica.
    if state.shutdown.is_cancelled() {
        use rand::Rng;
        let retry_after_ms: u64 = rand::thread_rng().gen_range(100..500);
        return Err(ApiError::new(
            ErrorCode::ShuttingDown,
            "this server is shutting down; reconnect with Last-Event-ID",
        )
        .with_extra("retry_after_ms", retry_after_ms));
    }
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let start = match (last_event_id, params.int("since_clock")?) {
        (Some(id), _) => Start::AfterSeq(id.parse().map_err(|_| {
            ApiError::validation("Last-Event-ID must be a sequence number from this stream")
        })?),
        (None, Some(clock)) => Start::SinceClock(clock),
        (None, None) => Start::LiveOnly(state.store.head_seq(&caller.tenant.id).await?),
    };
    // A suspended or deleted tenant can still be read and exported, but holds nothing open.
    caller.tenant.status.require_active("watched")?;
    let slot = state.streams.acquire(
        &caller.tenant.id,
        caller.token_id(),
        address.map(|ClientAddress(ip)| ip),
    )?;
    // Subscribed here, before the answer's headers go out: a record written once the client
    // sees them is announced to this stream.
    let live = state.store.subscribe();
    let stream = events(state.clone(), caller, slot, live, thread, start);
    let mut response = Sse::new(stream).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn record_event(record: &StoredRecord) -> Event {
    Event::default()
        .event(sse::RECORD_CREATED)
        .id(record.seq.to_string())
        .data(syncropel_api::splice::record_created(
            &record.id,
            &record.json,
        ))
}

/// An event whose data is `data` as JSON.
pub(crate) fn json_event(name: &str, data: &impl serde::Serialize) -> Event {
    // The data types are numbers and strings only; they always serialize.
    Event::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_default())
}

fn events(
    state: AppState,
    caller: Caller,
    slot: StreamSlot,
    mut live: broadcast::Receiver<Committed>,
    thread: String,
    start: Start,
) -> impl Stream<Item = Result<Event, Infallible>> {
    async_stream::stream! {
        // Held for the life of the stream: its place in the per-token, tenant and address counts.
        let _slot = slot;
        let tenant = caller.tenant.id.clone();
        let mut last_sent: i64 = 0;

        // What is still to be read from the store: after a sequence, from a clock on. The replay
        // first; then, at each announcement of a newer record of this thread, what follows the
        // last one sent. Announcements carry no records, so a watcher reads its own, a page (cut
        // at the byte budget) at a time, and everything goes out in sequence order exactly once.
        let mut unread = match start {
            Start::AfterSeq(seq) => {
                last_sent = seq;
                Some((seq, None))
            }
            Start::SinceClock(clock) => Some((0, Some(clock))),
            Start::LiveOnly(head) => {
                last_sent = head;
                Some((head, None))
            }
        };
        let mut heartbeat = tokio::time::interval(state.heartbeat);
        heartbeat.tick().await;
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.tick().await;
        loop {
            if let Some((after_seq, since_clock)) = unread.take() {
                let filter = ListFilter {
                    thread: Some(thread.clone()),
                    actor: None,
                    since_clock,
                    after_seq,
                    limit: READ_PAGE,
                    max_bytes: Some(state.limits.max_page_bytes),
                };
                let page = match state.store.list(&tenant, &filter).await {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::error!(error = %e, "watch read failed");
                        yield Ok(error_event("replay_failed", "could not read the thread; reconnect with Last-Event-ID"));
                        return;
                    }
                };
                for record in &page {
                    if record.seq > last_sent {
                        yield Ok(record_event(record));
                        last_sent = record.seq;
                    }
                }
                if page.len() == READ_PAGE as usize || filter.cut_by_bytes(&page) {
                    unread = Some((last_sent, since_clock));
                    continue;
                }
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => {
                    yield Ok(shutdown_event());
                    return;
                }
                _ = heartbeat.tick() => {
                    yield Ok(json_event(sse::HEARTBEAT, &Heartbeat { ts: now_ms() }));
                }
                _ = recheck.tick() => {
                    if let Err(refused) = caller.still_allowed(&state).await {
                        yield Ok(error_event(refused.code.as_str(), &refused.message));
                        return;
                    }
                }
                received = live.recv() => match received {
                    Ok(committed) => {
                        if committed.tenant == tenant && committed.thread == thread && committed.seq > last_sent {
                            unread = Some((last_sent, None));
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        yield Ok(error_event("lagged", "subscriber fell behind; reconnect with Last-Event-ID"));
                        return;
                    }
                    Err(RecvError::Closed) => {
                        yield Ok(shutdown_event());
                        return;
                    }
                }
            }
        }
    }
}

pub(crate) fn error_event(code: &str, message: &str) -> Event {
    json_event(
        sse::ERROR,
        &WatchError {
            code: code.to_owned(),
            message: message.to_owned(),
        },
    )
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Tells a watcher to reconnect after `retry_after_ms`: one to three seconds, spread so that
/// the streams of a stopping replica do not all land on the others at once.
pub(crate) fn shutdown_event() -> Event {
    use rand::Rng;
    let retry_after_ms: u64 = rand::thread_rng().gen_range(1000..3000);
    json_event(sse::SERVER_SHUTDOWN, &ServerShutdown { retry_after_ms })
}
