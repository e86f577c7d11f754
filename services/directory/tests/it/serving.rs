//! Export, concurrent writers, probes, and replicas sharing one database.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use syncropel_directory::Store;
use syncropel_protocol::did_sync::{self, sign_operation, LoggedOp};
use syncropel_protocol::ErrorCode;

use crate::ident::{with_endpoint, Ident};
use crate::server::{assert_error, hash_of, Server};

pub async fn export_paging(db: String) {
    let s = Server::start(&db).await;
    let mut expected = Vec::new();
    for seed in 1..=3 {
        let id = Ident::new(seed, &format!("user-{seed}"));
        let genesis = id.genesis();
        let hash = s.create(&genesis).await;
        let op = with_endpoint(id.update(&did_sync::cid(&genesis)), "https://b.example");
        let cid = s.update(&hash, &sign_operation(&op, &id.host)).await;
        expected.push(did_sync::cid(&genesis));
        expected.push(cid);
    }
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let (status, text) = s
            .get_text(&format!("/directory/export?after={after}&count=4"))
            .await;
        assert_eq!(status, StatusCode::OK);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(lines.len() <= 4);
        if lines.is_empty() {
            break;
        }
        for line in &lines {
            let seq = line["seq"].as_i64().unwrap();
            assert!(seq > after);
            after = seq;
            let entry: LoggedOp = serde_json::from_value(json!({
                "cid": line["cid"],
                "op": line["op"],
                "received_at": line["received_at"],
                "nullified": line["nullified"],
            }))
            .unwrap();
            assert_eq!(entry.cid, did_sync::cid(&entry.op));
            assert!(line["did"].as_str().unwrap().starts_with("did:sync:"));
            seen.push(entry.cid);
        }
    }
    assert_eq!(seen, expected);
    for bad in ["count=0", "count=1001", "after=x"] {
        let (status, body) = s.get(&format!("/directory/export?{bad}")).await;
        assert_error(&(status, body), ErrorCode::ValidationError);
    }
}

/// Racing writers: one head, one handle holder, one genesis.
pub async fn concurrent_writes_are_serialized(db: String) {
    let s = Arc::new(Server::start(&db).await);
    let (alice, g, hash) = s.create_alice().await;
    let path = format!("/directory/update/{hash}");
    let mut racers = Vec::new();
    for i in 0..6 {
        let op = with_endpoint(alice.update(&g), &format!("https://r{i}.example"));
        let op = sign_operation(&op, &alice.host);
        let (s, path) = (s.clone(), path.clone());
        racers.push(tokio::spawn(async move { s.post(&path, &op).await }));
    }
    let mut statuses = Vec::new();
    for racer in racers {
        let answer = racer.await.unwrap();
        if answer.0 != StatusCode::OK {
            assert_error(&answer, ErrorCode::PrevMismatch);
        }
        statuses.push(answer.0);
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1);
    assert_eq!(s.operations(&hash).await.len(), 2);

    // Two DIDs claiming one handle, each genesis posted twice.
    let mut racers = Vec::new();
    for seed in [2, 3, 2, 3] {
        let genesis = Ident::new(seed, "shared").genesis();
        let s = s.clone();
        racers.push(tokio::spawn(async move {
            s.post("/directory/genesis", &genesis).await
        }));
    }
    let mut created = 0;
    for racer in racers {
        let answer = racer.await.unwrap();
        match answer.0 {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            _ => assert_error(&answer, ErrorCode::HandleTaken),
        }
    }
    assert_eq!(created, 1);
    let (_, body) = s.get("/directory/handle/shared").await;
    let holder = hash_of(body["did"].as_str().unwrap());
    assert_eq!(s.operations(&holder).await.len(), 1);
    assert_eq!(s.export_all().await.len(), 3);
}

/// `/health` always answers; `/ready` only while the database holds every migration and the
/// server is not draining (Kubernetes' readiness probe).
pub async fn probes_follow_the_database_and_the_drain(db: String) {
    let server = Server::start(&db).await;
    let (status, body) = server.get("/health").await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("ok")));
    let (status, body) = server.get("/ready").await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &json!("ready")),
        "{body}"
    );

    // Draining: not ready, but still answering requests.
    server.stopping.cancel();
    assert_error(&server.get("/ready").await, ErrorCode::ShuttingDown);
    assert_eq!(
        server.get("/directory/handle/nobody").await.0,
        StatusCode::NOT_FOUND
    );

    // A database missing this build's newest migration is not ready; liveness is unmoved.
    let server = Server::start(&db).await;
    let forget = "DELETE FROM _sqlx_migrations \
                  WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)";
    if db.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&db).await.unwrap();
        sqlx::query(forget).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
        sqlx::query(forget).execute(&pool).await.unwrap();
        pool.close().await;
    }
    assert_error(&server.get("/ready").await, ErrorCode::NotReady);
    assert_eq!(server.get("/health").await.0, StatusCode::OK);
}

/// Replicas over one Postgres database: each serves a document from memory for its lifetime,
/// and the replica that wrote serves its own write at once.
#[tokio::test]
async fn postgres_replicas_share_documents() {
    syncropel_store::testing::with_test_database(|db: String| async move {
        let lasting = Duration::from_secs(3600);
        let writer = Store::open_with_document_lifetime(&db, lasting)
            .await
            .unwrap();
        let a = Server::with_store(writer).await;
        let b = Server::with_store(
            Store::open_with_document_lifetime(&db, lasting)
                .await
                .unwrap(),
        )
        .await;
        let c = Server::with_store(
            Store::open_with_document_lifetime(&db, Duration::ZERO)
                .await
                .unwrap(),
        )
        .await;
        let (alice, g, hash) = a.create_alice().await;
        let endpoint = |doc: Value| doc["service"][0]["serviceEndpoint"].clone();
        for s in [&a, &b, &c] {
            assert_eq!(endpoint(s.document(&hash).await), "https://alice.example");
        }

        let op = with_endpoint(alice.update(&g), "https://moved.example");
        a.update(&hash, &sign_operation(&op, &alice.host)).await;
        assert_eq!(endpoint(a.document(&hash).await), "https://moved.example");
        assert_eq!(endpoint(c.document(&hash).await), "https://moved.example");
        // Within its lifetime, b's entry still holds the document it read.
        assert_eq!(endpoint(b.document(&hash).await), "https://alice.example");
    })
    .await;
}
