//! Record builders and one harness per backend. A scenario is an `async fn(Arc<dyn RecordStore>)`;
//! `on_sqlite` and `on_postgres` give it a fresh store, close the store afterwards and clean up
//! (the Postgres database is dropped even when the scenario panics).

use std::future::Future;
use std::sync::Arc;

use syncropel_store::testing::TestDb;
use syncropel_store::{NewRecord, RecordStore, SqliteStore};

pub fn record(thread: &str, actor: &str, clock: i64, text: &str) -> NewRecord {
    let id = format!("{thread}-{actor}-{clock}-{text}");
    let body = serde_json::json!({ "text": text }).to_string();
    record_with_body(&id, thread, actor, clock, &body)
}

/// A record whose `body` is the given JSON text.
pub fn record_with_body(id: &str, thread: &str, actor: &str, clock: i64, body: &str) -> NewRecord {
    let json = format!(
        "{{\"id\":{},\"thread\":{},\"clock\":{clock},\"body\":{body}}}",
        serde_json::Value::from(id),
        serde_json::Value::from(thread),
    );
    serde_json::from_str::<serde_json::Value>(&json).expect("test record JSON");
    NewRecord {
        id: id.into(),
        thread: thread.into(),
        actor: actor.into(),
        clock,
        act: "DO".into(),
        data_type: "SCALAR".into(),
        namespace: "default".into(),
        created_at: 1,
        json,
    }
}

/// Runs a scenario on a fresh SQLite database file.
pub async fn on_sqlite<F, Fut>(scenario: F)
where
    F: FnOnce(Arc<dyn RecordStore>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn RecordStore> = Arc::new(
        SqliteStore::open_file(&dir.path().join("hub.db"))
            .await
            .unwrap(),
    );
    let outcome = tokio::spawn(scenario(store.clone())).await;
    store.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Runs a scenario on a fresh Postgres database, opened through `syncropel_store::open` (so the
/// URL dispatch is exercised too).
pub async fn on_postgres<F, Fut>(scenario: F)
where
    F: FnOnce(Arc<dyn RecordStore>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = TestDb::create().await;
    let store = syncropel_store::open(&db.url).await.unwrap();
    let outcome = tokio::spawn(scenario(store.clone())).await;
    store.close().await;
    drop(store);
    db.drop().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
