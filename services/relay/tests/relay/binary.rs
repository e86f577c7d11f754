//! The `relay` binary as it is run: migrations, then serving on its own database.

use std::process::Command;

use syncropel_store::testing::TestDb;

use crate::process::{migrate, RelayProcess, RELAY};

#[tokio::test]
async fn the_binary_migrates_then_serves() {
    let db = TestDb::create().await;
    assert!(migrate(&db).success());

    let refused = Command::new(RELAY)
        .env("DATABASE_URL", &db.url)
        .env("RELAY_LISTEN", "127.0.0.1:0")
        .env("RELAY_CURSOR_KEY", "short")
        .output()
        .unwrap();
    assert!(!refused.status.success(), "a short cursor key is refused");

    let relay = RelayProcess::start(&db, "127.0.0.1:0", &[("RELAY_RATE_LIMIT_PER_ADDRESS", "2")]);
    let addr = relay.addr.clone();
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
    drop(relay);
    db.drop().await;
}
