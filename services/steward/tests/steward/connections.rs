//! What one client can hold of a listener: a slowloris client (connections that trickle their
//! headers or bodies, or sit idle) holds only its own address's share, each of its connections
//! only until a deadline, and everyone else is served meanwhile. The honest client connects
//! from 127.0.0.2, another address on the loopback network.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;
use syncropel_telemetry::connections::ConnectionLimits;
use syncropel_testkit::{Options, TestSteward};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PER_ADDRESS: usize = 8;
/// How long the test waits, at most, for the steward to close a connection it should close.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

async fn steward() -> TestSteward {
    TestSteward::start_with(Options {
        connections: ConnectionLimits {
            max_connections: 64,
            max_connections_per_address: PER_ADDRESS,
            header_read_timeout: Duration::from_secs(1),
            body_read_timeout: Duration::from_secs(1),
        },
        ..Options::default()
    })
    .await
}

fn addr(steward: &TestSteward) -> String {
    steward.url.trim_start_matches("http://").to_string()
}

/// A client from another address than the attacker's.
fn honest_client() -> reqwest::Client {
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    reqwest::Client::builder()
        .local_address(other)
        .build()
        .unwrap()
}

/// A connection that has sent part of a request's headers and keeps adding a byte at a time.
async fn trickling(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    stream
}

/// Whether the steward closes `stream` (end of stream or reset) within [`CLOSE_WITHIN`], while
/// the client goes on trickling a byte every 200 ms.
async fn closed_by_the_steward(stream: &mut TcpStream) -> bool {
    let deadline = tokio::time::Instant::now() + CLOSE_WITHIN;
    let mut buf = [0u8; 1024];
    while tokio::time::Instant::now() < deadline {
        if stream.write_all(b"a").await.is_err() {
            return true;
        }
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    false
}

#[tokio::test]
async fn a_slowloris_address_holds_only_its_share_and_others_are_served() {
    let steward = steward().await;
    let token = steward.admin().await;
    let addr = addr(&steward);
    let mut held = Vec::new();
    for _ in 0..PER_ADDRESS {
        held.push(trickling(&addr).await);
    }
    // The slots are taken once the steward has accepted the connections.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut one_more = trickling(&addr).await;
    let mut buf = [0u8; 64];
    let refused = tokio::time::timeout(CLOSE_WITHIN, one_more.read(&mut buf)).await;
    assert!(
        matches!(refused, Ok(Ok(0)) | Ok(Err(_))),
        "a connection past the address's cap is closed as it arrives: {refused:?}"
    );

    let honest = honest_client();
    for _ in 0..20 {
        let health = honest
            .get(format!("{}/health", steward.url))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
    }
    let listed = honest
        .get(format!("{}/v1/records?limit=1", steward.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);

    // The attacker's connections end at the header deadline, and its address is served again.
    for stream in &mut held {
        assert!(closed_by_the_steward(stream).await, "a trickled header");
    }
    drop(held);
    let (status, _) = steward.get(&token, "/v1/records?limit=1").await;
    assert_eq!(status, 200, "the address's slots came back");
}

#[tokio::test]
async fn idle_connections_and_trickled_bodies_are_closed_at_their_deadlines() {
    let steward = steward().await;
    let token = steward.admin().await;
    let addr = addr(&steward);

    // Idle after a whole request: closed once the header deadline passes with no next request.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let read = idle.read(&mut answer).await.unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..read]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..read])
    );
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(CLOSE_WITHIN, idle.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "an idle keep-alive connection is closed");

    // A body that stops arriving: the request fails, the connection ends, nothing is stored.
    let before = steward.record_count(&token).await;
    let record = json!({"thread": "slow", "body": {"text": "never finished"}}).to_string();
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        record.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&record.as_bytes()[..10]).await.unwrap();
    let mut answer = Vec::new();
    let ended = tokio::time::timeout(CLOSE_WITHIN, slow.read_to_end(&mut answer)).await;
    assert!(ended.is_ok(), "a stalled body ends its request");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "a stalled body is refused: {answer}"
    );
    assert_eq!(steward.record_count(&token).await, before);
}
