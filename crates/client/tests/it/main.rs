//! The client crate's integration tests, one binary: the client against a scripted HTTP server,
//! what it sends and how it reads what comes back.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use serde_json::{json, Value};
use syncropel_api::{PairReason, StartPair, WatchEvent};
use syncropel_client::{Client, ClientError, Emitted, Pairing, WatchStart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the server saw it: its request line and headers, lower-cased names.
#[derive(Clone, Debug)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Answers the `n`th request with `answers[n]` (status, content type, body) and closes.
async fn server(answers: Vec<(u16, &'static str, String)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        for (status, content_type, body) in answers {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            let head_end = loop {
                let n = stream.read(&mut buf).await.unwrap();
                raw.extend_from_slice(&buf[..n]);
                if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
            };
            let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
            let mut lines = head.lines();
            let line = lines.next().unwrap_or_default().to_owned();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            while raw.len() < head_end + length {
                let n = stream.read(&mut buf).await.unwrap();
                raw.extend_from_slice(&buf[..n]);
            }
            log.lock().unwrap().push(Seen {
                line,
                headers,
                body: raw[head_end..head_end + length].to_vec(),
            });
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).await.unwrap();
            stream.shutdown().await.unwrap();
        }
    });
    (url, seen)
}

fn json_answer(status: u16, body: Value) -> (u16, &'static str, String) {
    (status, "application/json", body.to_string())
}

#[tokio::test]
async fn emit_tells_a_new_record_from_a_replay_and_reads_errors() {
    let record = json!({"id": "abc", "thread": "th_x", "clock": 1});
    let (url, seen) = server(vec![
        json_answer(201, record.clone()),
        json_answer(200, record.clone()),
        json_answer(
            400,
            json!({"object": "error", "type": "invalid_request_error", "code": "INGEST_FAILED",
                   "message": "DuplicateClock", "hint": "bump the clock"}),
        ),
    ])
    .await;
    let client = Client::new(&url, Some("tok".into()))
        .unwrap()
        .acting_as("did:key:z6MkActor")
        .unwrap();
    let envelope = json!({"act": "DO", "thread": "th_x"});
    let first: Emitted = client.emit(&envelope).await.unwrap();
    assert_eq!((first.record, first.created), (record.clone(), true));
    let again: Emitted = client.emit(&envelope).await.unwrap();
    assert!(!again.created);
    match client.emit::<Value>(&envelope).await {
        Err(ClientError::Api {
            status, code, hint, ..
        }) => {
            assert_eq!((status, code.as_str()), (400, "INGEST_FAILED"));
            assert_eq!(hint.as_deref(), Some("bump the clock"));
        }
        other => panic!("{other:?}"),
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].line, "POST /v1/records HTTP/1.1");
    assert_eq!(seen[0].header("authorization"), Some("Bearer tok"));
    assert_eq!(
        seen[0].header("x-syncropel-actor"),
        Some("did:key:z6MkActor")
    );
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(
        serde_json::from_slice::<Value>(&seen[0].body).unwrap(),
        envelope
    );
}

#[tokio::test]
async fn pairing_is_pending_on_202_and_paired_otherwise() {
    let pending = json!({"object": "pair_handshake", "status": "pending", "pair_id": "fed_1",
                         "poll_after_ms": 50});
    let pair = json!({"object": "federation_pair", "pair_id": "fed_1", "peer_did": "did:web:b",
                      "role": "initiator", "state": "active"});
    let (url, seen) = server(vec![
        json_answer(202, pending.clone()),
        json_answer(200, pair),
    ])
    .await;
    let client = Client::new(&url, None).unwrap();
    let started = client
        .start_pairing(&StartPair {
            peer_url: "https://b.example".into(),
            ..StartPair::default()
        })
        .await
        .unwrap();
    assert_eq!(started.json(), &pending);
    let Pairing::Pending(waiting) = &*started else {
        panic!("{started:?}");
    };
    assert_eq!(waiting.poll_after_ms, 50);
    let polled = client.continue_pairing(&waiting.pair_id).await.unwrap();
    assert!(matches!(&*polled, Pairing::Paired(pair) if pair.peer_did == "did:web:b"));
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[1].line,
        "POST /v1/federation/pairs/fed_1/poll HTTP/1.1"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&seen[1].body).unwrap(),
        serde_json::to_value(PairReason::default()).unwrap()
    );
}

#[tokio::test]
async fn an_empty_answer_reads_as_none() {
    let (url, seen) = server(vec![(200, "application/json", String::new())]).await;
    let removed = Client::new(&url, None)
        .unwrap()
        .remove_sync_pair("sp/1")
        .await
        .unwrap();
    assert_eq!(*removed, None);
    assert_eq!(removed.json(), &Value::Null);
    assert_eq!(
        seen.lock().unwrap()[0].line,
        "DELETE /v1/sync/pairs/sp%2F1 HTTP/1.1"
    );
}

#[tokio::test]
async fn a_watch_stream_reads_events_until_the_steward_ends_it() {
    let frames = "event: heartbeat\ndata: {\"ts\":5}\n\n\
                  : comment\n\n\
                  event: record.created\nid: 7\ndata: {\"id\":\"a\",\"record\":{\"id\":\"a\"}}\n\n\
                  event: server_shutdown\ndata: {\"retry_after_ms\":1500}\n\n";
    let (url, seen) = server(vec![(200, "text/event-stream", frames.to_owned())]).await;
    let client = Client::new(&url, Some("tok".into())).unwrap();
    let events: Vec<WatchEvent> = client
        .watch("th x", WatchStart::AfterSeq(3))
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(matches!(events[1], WatchEvent::Record { seq: 7, .. }));
    assert!(matches!(events[2], WatchEvent::ServerShutdown(_)));
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].line, "GET /v1/threads/th%20x/watch HTTP/1.1");
    assert_eq!(seen[0].header("last-event-id"), Some("3"));
}
