//! `GET /v1/threads/{id}/watch` (protocol.md §11.8, checklist 21-25) over real HTTP: frames are
//! read off the wire with a small SSE parser, and every wait on the stream is bounded by a timeout.

//! Records are written through the typed client; the streams are read raw, since the tests check
//! the bytes of every frame.

use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};
use syncropel_steward::state::Limits;
use syncropel_steward::streams::StreamLimits;
use syncropel_testkit::hosted::{Config, Replica};
use syncropel_testkit::{envelope, error_code, with_test_database, Node, Options, Sql};
use tokio::sync::oneshot;
use tokio::time::timeout;

/// How long any single wait on a stream may take before the test fails instead of hanging.
const WAIT: Duration = Duration::from_secs(5);

/// One server-sent event.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) event: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) data: String,
}

impl Frame {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("frame data is not JSON ({e}): {self:?}"))
    }

    /// The `id:` of a `record.created` frame as a sequence number.
    fn seq(&self) -> i64 {
        assert_eq!(self.event.as_deref(), Some("record.created"), "{self:?}");
        self.id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("record frame without a numeric id: {self:?}"))
    }
}

/// Reads frames (blank-line separated, per the SDK's parser rules) from a streaming response.
pub(crate) struct EventStream {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: Vec<u8>,
}

impl EventStream {
    pub(crate) fn new(response: reqwest::Response) -> EventStream {
        EventStream {
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
        }
    }

    /// The next frame, or `None` when the server ended the stream. Panics after [`WAIT`].
    pub(crate) async fn next(&mut self) -> Option<Frame> {
        timeout(WAIT, self.read_frame())
            .await
            .unwrap_or_else(|_| panic!("no SSE frame within {WAIT:?}"))
    }

    /// The next frame, which must exist.
    pub(crate) async fn frame(&mut self) -> Frame {
        self.next().await.expect("the stream ended early")
    }

    async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((end, separator)) = frame_end(&self.buffer) {
                let raw: Vec<u8> = self.buffer.drain(..end + separator).collect();
                if let Some(frame) = parse_frame(&raw[..end]) {
                    return Some(frame);
                }
                continue; // comment-only or empty frame
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => panic!("the stream failed: {e}"),
                None => {
                    assert!(
                        self.buffer.iter().all(u8::is_ascii_whitespace),
                        "the stream ended inside a frame: {:?}",
                        String::from_utf8_lossy(&self.buffer)
                    );
                    return None;
                }
            }
        }
    }
}

/// Where the first frame ends: (offset of the blank line, length of the separator).
fn frame_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let find = |needle: &[u8]| buffer.windows(needle.len()).position(|w| w == needle);
    let lf = find(b"\n\n").map(|at| (at, 2));
    let crlf = find(b"\r\n\r\n").map(|at| (at, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_frame(raw: &[u8]) -> Option<Frame> {
    let text = std::str::from_utf8(raw).expect("frames are UTF-8");
    let mut frame = Frame {
        event: None,
        id: None,
        data: String::new(),
    };
    let mut has_data = false;
    let mut has_field = false;
    for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        has_field = true;
        match name {
            "event" => frame.event = Some(value.to_string()),
            "id" => frame.id = Some(value.to_string()),
            "data" => {
                if has_data {
                    frame.data.push('\n');
                }
                frame.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    has_field.then_some(frame)
}

/// Opens a watch; `path` is everything after `/v1/threads/` (thread and query string).
async fn open(
    node: &Node,
    token: Option<&str>,
    path: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = node
        .steward
        .http
        .get(format!("{}/v1/threads/{path}", node.url()))
        .header("accept", "text/event-stream")
        .header("cache-control", "no-cache");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    timeout(WAIT, request.send())
        .await
        .expect("the watch did not answer in time")
        .unwrap()
}

/// Opens a watch that must succeed and returns its frame reader.
async fn watch(node: &Node, token: &str, path: &str, last_event_id: Option<&str>) -> EventStream {
    let response = open(node, Some(token), path, last_event_id).await;
    assert_eq!(response.status(), 200);
    EventStream::new(response)
}

/// Writes a record (`{"n": clock}`, which must be new) and returns it as stored.
async fn write(node: &Node, thread: &str, clock: i64) -> Value {
    node.write(&envelope(thread, clock, json!({"n": clock})))
        .await
}

async fn node() -> Node {
    Node::start(Options::default()).await
}

/// A steward sending heartbeats every 300 ms.
async fn beating() -> Node {
    Node::start(Options {
        heartbeat: Duration::from_millis(300),
        ..Options::default()
    })
    .await
}

fn seq(record: &Value) -> i64 {
    record["sequence"].as_i64().expect("sequence")
}

/// Asserts `frame` announces exactly `record`.
fn assert_announces(frame: &Frame, record: &Value) {
    assert_eq!(frame.seq(), seq(record), "{frame:?}");
    let data = frame.json();
    assert_eq!(data["id"], record["id"], "{frame:?}");
    assert_eq!(data["record"], *record, "{frame:?}");
}

#[tokio::test]
async fn live_records_arrive_within_a_second_on_their_own_thread_only() {
    let node = node().await;
    let token = node.token.clone();
    let response = open(&node, Some(&token), "th_live/watch", None).await;
    assert_eq!(response.status(), 200);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_string();
    assert!(
        header("content-type").starts_with("text/event-stream"),
        "{}",
        header("content-type")
    );
    assert_eq!(header("cache-control"), "no-cache");
    assert_eq!(header("x-accel-buffering"), "no");
    let mut events = EventStream::new(response);

    for clock in 1..=3 {
        // A record on another thread first: frames come in sequence order, so if it leaked it
        // would arrive before the watched thread's record.
        write(&node, "th_elsewhere", clock).await;
        let record = write(&node, "th_live", clock).await;
        let written = Instant::now();
        let frame = events.frame().await;
        assert!(
            written.elapsed() < Duration::from_secs(1),
            "frame took {:?}",
            written.elapsed()
        );
        assert_announces(&frame, &record);
        assert_eq!(frame.json()["record"]["id"], frame.json()["id"]);
    }
}

#[tokio::test]
async fn an_identical_replay_sends_no_event() {
    let node = node().await;
    let token = node.token.clone();
    let mut events = watch(&node, &token, "th_replay/watch", None).await;
    let first = write(&node, "th_replay", 1).await;
    assert_announces(&events.frame().await, &first);

    let replay = node
        .client
        .emit::<Value>(&envelope("th_replay", 1, json!({"n": 1})))
        .await
        .unwrap();
    assert!(!replay.created, "an identical re-POST is a replay");
    let second = write(&node, "th_replay", 2).await;
    assert_announces(&events.frame().await, &second);
}

#[tokio::test]
async fn last_event_id_replays_later_records_then_goes_live() {
    let node = node().await;
    let token = node.token.clone();
    let mut written = Vec::new();
    for clock in 1..=5 {
        written.push(write(&node, "th_resume", clock).await);
        write(&node, "th_noise", clock).await;
    }
    let cursor = seq(&written[1]).to_string();
    let mut events = watch(&node, &token, "th_resume/watch", Some(&cursor)).await;
    for record in &written[2..] {
        assert_announces(&events.frame().await, record);
    }
    // Live after the replay, with nothing repeated in between.
    for clock in 6..=7 {
        let record = write(&node, "th_resume", clock).await;
        assert_announces(&events.frame().await, &record);
    }
}

#[tokio::test]
async fn resuming_while_records_are_being_written_has_no_gap_or_duplicate() {
    const BEFORE: i64 = 20;
    const DURING: i64 = 200;
    let node = node().await;
    let token = node.token.clone();
    let mut before = Vec::new();
    for clock in 1..=BEFORE {
        before.push(seq(&write(&node, "th_busy", clock).await));
    }
    let cursor = before[9];

    // The writer keeps going while the stream opens, replays and turns live; a record on another
    // thread now and then puts gaps into the sequence that the stream must skip.
    let (started, mut started_rx) = oneshot::channel();
    let writer = {
        let client = node.client.clone();
        tokio::spawn(async move {
            let mut started = Some(started);
            let mut sequences = Vec::new();
            for clock in BEFORE + 1..=BEFORE + DURING {
                if clock % 10 == 0 {
                    let noise = envelope("th_quiet", clock, json!({}));
                    assert!(client.emit::<Value>(&noise).await.unwrap().created);
                }
                let busy = envelope("th_busy", clock, json!({"n": clock}));
                let emitted = client.emit::<Value>(&busy).await.unwrap();
                assert!(emitted.created);
                sequences.push(seq(&emitted.record));
                if clock == BEFORE + 50 {
                    started.take().unwrap().send(()).unwrap();
                }
            }
            sequences
        })
    };
    timeout(Duration::from_secs(60), &mut started_rx)
        .await
        .expect("the writer is too slow")
        .unwrap();

    let mut events = watch(&node, &token, "th_busy/watch", Some(&cursor.to_string())).await;
    let wanted = (BEFORE - 10 + DURING) as usize;
    let mut received = Vec::with_capacity(wanted);
    while received.len() < wanted {
        received.push(events.frame().await.seq());
    }
    let during = timeout(Duration::from_secs(60), writer)
        .await
        .expect("the writer did not finish")
        .unwrap();

    let mut expected: Vec<i64> = before[10..].to_vec();
    expected.extend(during);
    assert!(expected.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(received, expected);

    // Nothing else is queued: the next frame is the next record.
    let last = write(&node, "th_busy", 10_000).await;
    assert_announces(&events.frame().await, &last);
}

#[tokio::test]
async fn a_replay_longer_than_one_page_is_complete() {
    const COUNT: i64 = 1205; // the replay reads 1000 records at a time
    let node = node().await;
    let token = node.token.clone();
    futures_util::stream::iter(1..=COUNT)
        .for_each_concurrent(8, |clock| {
            let node = &node;
            async move {
                write(node, "th_long", clock).await;
            }
        })
        .await;
    let mut stored = Vec::new();
    let mut path = "/v1/threads/th_long/records?limit=1000".to_string();
    loop {
        let (status, page) = node.get(&path).await;
        assert_eq!(status, 200, "{page}");
        stored.extend(page["data"].as_array().unwrap().iter().map(seq));
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!("/v1/threads/th_long/records?limit=1000&cursor={cursor}")
            }
            None => break,
        }
    }
    assert_eq!(stored.len(), COUNT as usize);

    // Resume just after the first record: everything else comes back, in order.
    let cursor = stored[0].to_string();
    let mut events = watch(&node, &token, "th_long/watch", Some(&cursor)).await;
    let mut received = Vec::new();
    while received.len() < stored.len() - 1 {
        received.push(events.frame().await.seq());
    }
    assert_eq!(received, stored[1..]);
    let live = write(&node, "th_long", COUNT + 1).await;
    assert_announces(&events.frame().await, &live);
}

#[tokio::test]
async fn since_clock_replays_records_at_or_after_the_clock() {
    let node = node().await;
    let token = node.token.clone();
    let mut written = Vec::new();
    for clock in [5, 1, 9, 3, 7] {
        written.push(write(&node, "th_clock", clock).await);
    }
    let mut events = watch(&node, &token, "th_clock/watch?since_clock=5", None).await;
    // Sequence order, clock >= 5 inclusive: the records with clocks 5, 9 and 7.
    for index in [0, 2, 4] {
        assert_announces(&events.frame().await, &written[index]);
    }
    let live = write(&node, "th_clock", 11).await;
    assert_announces(&events.frame().await, &live);
}

#[tokio::test]
async fn last_event_id_wins_over_since_clock() {
    let node = node().await;
    let token = node.token.clone();
    let mut written = Vec::new();
    for clock in 1..=4 {
        written.push(write(&node, "th_both", clock).await);
    }
    let cursor = seq(&written[2]).to_string();
    let mut events = watch(&node, &token, "th_both/watch?since_clock=1", Some(&cursor)).await;
    assert_announces(&events.frame().await, &written[3]);
}

#[tokio::test]
async fn heartbeats_are_real_events_without_an_id() {
    let node = beating().await;
    let token = node.token.clone();
    let mut events = watch(&node, &token, "th_beat/watch", None).await;
    for _ in 0..2 {
        let frame = events.frame().await;
        assert_eq!(frame.event.as_deref(), Some("heartbeat"), "{frame:?}");
        assert_eq!(frame.id, None, "heartbeats must not move the SDK's cursor");
        assert!(frame.json().is_object(), "{frame:?}");
    }
}

#[tokio::test]
async fn shutdown_says_goodbye_and_ends_the_stream() {
    let node = node().await;
    let token = node.token.clone();
    let mut streams = Vec::new();
    for thread in ["th_bye", "th_ciao"] {
        let mut events = watch(&node, &token, &format!("{thread}/watch"), None).await;
        // The stream is live once a record comes through.
        let record = write(&node, thread, 1).await;
        assert_announces(&events.frame().await, &record);
        streams.push(events);
    }

    node.steward.state.shutdown.cancel();
    // Every open stream gets the goodbye, then ends cleanly.
    for events in &mut streams {
        let frame = events.frame().await;
        assert_eq!(frame.event.as_deref(), Some("server_shutdown"), "{frame:?}");
        assert_eq!(frame.id, None);
        let data = frame.json();
        assert!(data["retry_after_ms"].is_u64(), "{data}");
        assert!(events.next().await.is_none(), "the stream must end");
    }
}

#[tokio::test]
async fn watching_needs_a_read_credential() {
    let node = node().await;

    let response = open(&node, None, "th_auth/watch", None).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "AUTH_REQUIRED");

    let response = open(&node, Some("spl_test_sa_nobody_x"), "th_auth/watch", None).await;
    assert_eq!(response.status(), 401);

    let writer = node.steward.token(&["records:write"], &[]).await;
    let response = open(&node, Some(&writer), "th_auth/watch", None).await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "SCOPE_FORBIDDEN");

    // A thread read grain opens that thread's feed and no other.
    let grain = node.steward.token(&["thread:th_auth:read"], &[]).await;
    let response = open(&node, Some(&grain), "th_other/watch", None).await;
    assert_eq!(response.status(), 403);
    let mut events = watch(&node, &grain, "th_auth/watch", None).await;
    let record = write(&node, "th_auth", 1).await;
    assert_announces(&events.frame().await, &record);

    let reader = node.steward.token(&["records:read"], &[]).await;
    let mut events = watch(&node, &reader, "th_auth/watch", None).await;
    let record = write(&node, "th_auth", 2).await;
    assert_announces(&events.frame().await, &record);
}

#[tokio::test]
async fn an_unknown_thread_is_watched_and_gets_only_heartbeats() {
    let node = beating().await;
    let token = node.token.clone();
    let mut events = watch(&node, &token, "th_nobody_yet/watch", None).await;
    write(&node, "th_somebody", 1).await;
    let mut heartbeats = 0;
    while heartbeats < 3 {
        let frame = events.frame().await;
        assert_eq!(frame.event.as_deref(), Some("heartbeat"), "{frame:?}");
        heartbeats += 1;
        if heartbeats == 1 {
            write(&node, "th_somebody", 2).await;
        }
    }
}

#[tokio::test]
async fn a_malformed_cursor_is_a_validation_error() {
    let node = node().await;
    let token = node.token.clone();
    for (path, last_event_id) in [
        ("th_bad/watch", Some("not-a-number")),
        ("th_bad/watch", Some("12abc")),
        ("th_bad/watch?since_clock=yesterday", None),
    ] {
        let response = open(&node, Some(&token), path, last_event_id).await;
        assert_eq!(response.status(), 400, "{path} {last_event_id:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_code(&body), "VALIDATION_ERROR", "{body}");
    }
}

/// Each token, tenant and client address holds a bounded number of streams open; a stream that
/// ends gives its place back. Longpolls count with watches.
#[tokio::test]
async fn open_streams_are_capped_per_token_tenant_and_address() {
    let node = Node::start(Options {
        limits: Limits {
            streams: StreamLimits {
                per_token: 2,
                per_tenant: 5,
                per_address: 4,
            },
            ..Limits::default()
        },
        ..Options::default()
    })
    .await;
    let token = node
        .steward
        .token(&["records:read", "federation:manage"], &[])
        .await;
    let first = watch(&node, &token, "th_cap/watch", None).await;
    let _second = watch(&node, &token, "th_cap/watch", None).await;
    let refused = open(&node, Some(&token), "th_cap/watch", None).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
    // A longpoll with the same token is a third stream too.
    let (status, body) = node
        .steward
        .get(&token, "/v1/sync/changes?thread=th_cap&feed=longpoll")
        .await;
    assert_eq!((status, error_code(&body)), (429, "RATE_LIMITED"), "{body}");
    // A stream that ends gives its place back.
    drop(first);
    let reopened = async {
        loop {
            let response = open(&node, Some(&token), "th_cap/watch", None).await;
            if response.status() == 200 {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let _third = timeout(WAIT, reopened)
        .await
        .expect("a place was given back");
    // The address: two more streams of another token reach its limit of four.
    let other = node.steward.token(&["records:read"], &[]).await;
    let _fourth = watch(&node, &other, "th_cap/watch", None).await;
    let _fifth = watch(&node, &other, "th_cap/watch", None).await;
    let fresh = node.steward.token(&["records:read"], &[]).await;
    let refused = open(&node, Some(&fresh), "th_cap/watch", None).await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("this address"),
        "{body}"
    );
}

/// Revoking a token ends its open watch (with an `error` frame) and its waiting longpoll
/// (`401`) within a second or so, long before either would end by itself.
#[tokio::test]
async fn revocation_closes_open_streams() {
    let node = node().await;
    let token = node
        .steward
        .token(&["records:read", "federation:manage"], &[])
        .await;
    let mut events = watch(&node, &token, "th_revoked/watch", None).await;
    let record = write(&node, "th_revoked", 1).await;
    assert_announces(&events.frame().await, &record);
    let waiting = {
        let request = node
            .steward
            .http
            .get(format!(
                "{}/v1/sync/changes?thread=th_quiet&feed=longpoll",
                node.url()
            ))
            .bearer_auth(&token)
            .send();
        tokio::spawn(request)
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let revoked = node
        .client
        .revoke_token(&syncropel_protocol::sha256_hex(token.as_bytes()))
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);

    let frame = events.frame().await;
    assert_eq!(frame.event.as_deref(), Some("error"), "{frame:?}");
    assert_eq!(frame.json()["code"], "AUTH_INVALID", "{frame:?}");
    assert!(events.next().await.is_none(), "the stream must end");
    // The longpoll would hold 30 s; it is answered 401 instead.
    let answer = timeout(WAIT, waiting)
        .await
        .expect("the longpoll ended with its token")
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), 401);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(error_code(&body), "AUTH_INVALID", "{body}");
}

/// A hosted tenant's suspension ends its open watches; a suspended tenant opens none.
#[tokio::test]
async fn suspension_closes_a_hosted_tenants_watches() {
    with_test_database(|url| async move {
        let replica = Replica::start(&url, Config::default()).await;
        let token = replica.new_tenant("owner", "watched").await;
        let request = replica
            .tenant_request("watched", reqwest::Method::GET, "/v1/threads/th_w/watch")
            .bearer_auth(&token)
            .header("accept", "text/event-stream");
        let response = timeout(WAIT, request.send()).await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        let mut events = EventStream::new(response);
        let (status, _) = replica.write("watched", &token, "th_w", 1).await;
        assert_eq!(status, 201);
        assert_eq!(
            events.frame().await.event.as_deref(),
            Some("record.created")
        );

        let id: String = Sql::of(replica.platform().store())
            .scalar(
                "SELECT instance_id FROM provisions WHERE label = 'watched'",
                &[],
            )
            .await;
        let platform = replica.platform_client("owner");
        let suspended = platform.suspend_tenant(&id).await.unwrap();
        assert_eq!(suspended.status(), 200);
        let frame = events.frame().await;
        assert_eq!(frame.event.as_deref(), Some("error"), "{frame:?}");
        assert_eq!(frame.json()["code"], "TENANT_SUSPENDED", "{frame:?}");
        assert!(events.next().await.is_none(), "the stream must end");
        replica.stop().await;
    })
    .await;
}

/// A watcher that stops reading pins nothing: announcements carry no records, and once more
/// commits than the announcement channel holds (16,384) have passed it by, it is told `lagged`
/// (after what its connection had buffered) and the stream ends, to be resumed from its last id.
#[tokio::test]
async fn a_watcher_that_stops_reading_is_told_it_lagged() {
    let node = node().await;
    let mut stream = watch(&node, &node.token, "th_lag/watch", None).await;
    // Large records on the watched thread fill the connection's buffers while nobody reads.
    let big = "x".repeat(60 * 1024);
    for batch in 0..20 {
        let records: Vec<Value> = (0..15)
            .map(|i| envelope("th_lag", batch * 15 + i, json!({"pad": big})))
            .collect();
        let (status, answer) = node
            .post("/v1/records/batch", &json!({"records": records}))
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    // Then more commits than the channel holds, elsewhere.
    for batch in 0..34 {
        let records: Vec<Value> = (0..500)
            .map(|i| envelope("th_elsewhere", batch * 500 + i, json!({})))
            .collect();
        let (status, answer) = node
            .post("/v1/records/batch", &json!({"records": records}))
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let mut records = 0;
    let last = loop {
        let frame = stream.frame().await;
        match frame.event.as_deref() {
            Some("record.created") => records += 1,
            Some("heartbeat") => {}
            _ => break frame,
        }
    };
    assert_eq!(last.event.as_deref(), Some("error"), "{last:?}");
    assert_eq!(last.json()["code"], "lagged", "{last:?}");
    assert!(
        records < 300,
        "the watcher fell behind ({records} records sent)"
    );
    assert!(stream.next().await.is_none(), "the stream ends");
}
