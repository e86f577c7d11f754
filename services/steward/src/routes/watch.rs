//! `GET /v1/threads/{id}/watch` (protocol.md §11.8): server-sent events.
//!
//! The stream subscribes to commits *before* it replays from the store, then skips live records it
//! already replayed, so replay and live join with no gap and no duplicate. Commits are announced in
//! sequence order by the store, which makes "skip what is not newer" exact.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use syncropel_api::watch::{self as sse, Heartbeat, ServerShutdown, WatchError};
use syncropel_protocol::ErrorCode;
use syncropel_store::{ListFilter, StoredRecord};
use tokio::sync::broadcast::error::RecvError;

use super::{checked_thread, Params, PathParam};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Replay pages are this large.
const REPLAY_PAGE: u32 = 1000;

/// Where a new stream starts.
enum Start {
    /// `Last-Event-ID`: records with a greater sequence.
    AfterSeq(i64),
    /// `since_clock` on a first connection: records with `clock >= C`.
    SinceClock(i64),
    LiveOnly,
}

pub async fn watch(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(thread): PathParam,
    headers: HeaderMap,
    params: Params,
) -> ApiResult<Response> {
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
        (None, None) => Start::LiveOnly,
    };
    let stream = events(state.clone(), caller.tenant.id.clone(), thread, start);
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
fn json_event(name: &str, data: &impl serde::Serialize) -> Event {
    // The data types are numbers and strings only; they always serialize.
    Event::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_default())
}

fn events(
    state: AppState,
    tenant: String,
    thread: String,
    start: Start,
) -> impl Stream<Item = Result<Event, Infallible>> {
    async_stream::stream! {
        let mut live = state.store.subscribe();
        let mut last_sent: i64 = 0;

        // Replay. A replay ordered by sequence means the last replayed sequence bounds what live
        // frames may repeat.
        let replay = match start {
            Start::AfterSeq(seq) => Some((seq, None)),
            Start::SinceClock(clock) => Some((0, Some(clock))),
            Start::LiveOnly => None,
        };
        if let Some((mut after_seq, since_clock)) = replay {
            last_sent = after_seq;
            loop {
                let filter = ListFilter {
                    thread: Some(thread.clone()),
                    actor: None,
                    since_clock,
                    after_seq,
                    limit: REPLAY_PAGE,
                };
                let page = match state.store.list(&tenant, &filter).await {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::error!(error = %e, "watch replay failed");
                        yield Ok(error_event("replay_failed", "could not read the thread; reconnect with Last-Event-ID"));
                        return;
                    }
                };
                for record in &page {
                    yield Ok(record_event(record));
                    last_sent = record.seq;
                }
                match page.last() {
                    Some(last) if page.len() == REPLAY_PAGE as usize => after_seq = last.seq,
                    _ => break,
                }
            }
        }

        let mut heartbeat = tokio::time::interval(state.heartbeat);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => {
                    yield Ok(shutdown_event());
                    return;
                }
                _ = heartbeat.tick() => {
                    yield Ok(json_event(sse::HEARTBEAT, &Heartbeat { ts: now_ms() }));
                }
                received = live.recv() => match received {
                    Ok(committed) => {
                        if committed.tenant == tenant && committed.record.thread == thread && committed.record.seq > last_sent {
                            last_sent = committed.record.seq;
                            yield Ok(record_event(&committed.record));
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

fn error_event(code: &str, message: &str) -> Event {
    json_event(
        sse::ERROR,
        &WatchError {
            code: code.to_owned(),
            message: message.to_owned(),
        },
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Tells a watcher to reconnect after `retry_after_ms`: one to three seconds, spread so that
/// the streams of a stopping replica do not all land on the others at once.
fn shutdown_event() -> Event {
    use rand::Rng;
    let retry_after_ms: u64 = rand::thread_rng().gen_range(1000..3000);
    json_event(sse::SERVER_SHUTDOWN, &ServerShutdown { retry_after_ms })
}
