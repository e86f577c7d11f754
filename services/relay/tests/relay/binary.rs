//! The `relay` binary as it is run: migrations, then serving on its own database.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use syncropel_store::testing::TestDb;

const RELAY: &str = env!("CARGO_BIN_EXE_relay");

#[tokio::test]
async fn the_binary_migrates_then_serves() {
    let db = TestDb::create().await;
    let migrated = Command::new(RELAY)
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .status()
        .unwrap();
    assert!(migrated.success());

    let refused = Command::new(RELAY)
        .env("DATABASE_URL", &db.url)
        .env("RELAY_LISTEN", "127.0.0.1:0")
        .env("RELAY_CURSOR_KEY", "short")
        .output()
        .unwrap();
    assert!(!refused.status.success(), "a short cursor key is refused");

    let mut relay = Command::new(RELAY)
        .env("DATABASE_URL", &db.url)
        .env("RELAY_LISTEN", "127.0.0.1:0")
        .env("RELAY_CURSOR_KEY", "a cursor key long enough for a relay")
        .env("RELAY_RATE_LIMIT_PER_ADDRESS", "2")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(relay.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        assert!(Instant::now() < deadline, "the relay did not start");
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    for probe in ["health", "ready"] {
        let answer = reqwest::get(format!("http://{addr}/{probe}"))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{probe}");
    }
    let unsigned = reqwest::get(format!("http://{addr}/v1/relay/queues/rq_x"))
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    // Past its address's burst (4), a client is refused before anything is checked.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let answer = reqwest::get(format!("http://{addr}/health")).await.unwrap();
        statuses.push(answer.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    relay.kill().unwrap();
    relay.wait().unwrap();
    db.drop().await;
}
