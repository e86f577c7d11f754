//! What the store test binaries share: record builders and one harness per backend. A scenario is
//! an `async fn(Arc<dyn RecordStore>)`; `on_sqlite` and `on_postgres` give it a fresh store, close
//! the store afterwards and clean up (the Postgres database is dropped even when the scenario
//! panics).

#![allow(dead_code)] // each test binary uses part of this module

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor, PgConnection, Row};
use syncropel_store::{NewRecord, RecordStore, SqliteStore};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const TEST_DB_PREFIX: &str = "store_test_";
/// Databases of runs that died without cleaning up are dropped once they are this old.
const STALE_AFTER_SECS: u64 = 3600;

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
        hash_levels: ["a".into(), "b".into(), "c".into(), "d".into()],
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

/// A database of its own for one test, on the server of `DATABASE_URL`.
pub struct TestDb {
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let admin_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_string());
        let mut admin = admin(&admin_url).await;
        drop_stale_databases(&mut admin).await;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        // The creation time leads the name, so a later run can tell a stale database.
        let name = format!(
            "{TEST_DB_PREFIX}{}_{}_{}_{}",
            now.as_secs(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            now.subsec_nanos()
        );
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        let _ = admin.close().await;
        TestDb {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        }
    }

    pub async fn drop(self) {
        let mut admin = admin(&self.admin_url).await;
        if let Err(e) = admin
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
            .await
        {
            eprintln!("dropping test database {}: {e}", self.name);
        }
        let _ = admin.close().await;
    }
}

async fn admin(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap_or_else(|e| {
        panic!("Postgres tests need a server at DATABASE_URL (default {DEFAULT_DATABASE_URL}): {e}")
    })
}

/// Drops `store_test_*` databases older than an hour: left behind by runs that were killed.
async fn drop_stale_databases(admin: &mut PgConnection) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let rows = sqlx::query("SELECT datname FROM pg_database WHERE datname LIKE 'store\\_test\\_%'")
        .fetch_all(&mut *admin)
        .await
        .unwrap();
    for row in rows {
        let name: String = row.get(0);
        let created = name
            .strip_prefix(TEST_DB_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|c| now.saturating_sub(c) > STALE_AFTER_SECS) {
            let _ = admin
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await;
        }
    }
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// Runs a scenario against the URL of a fresh Postgres database; the scenario opens (and closes)
/// its own stores. The database is dropped afterwards, also when the scenario panics.
pub async fn with_test_database<F, Fut>(scenario: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = TestDb::create().await;
    let outcome = tokio::spawn(scenario(db.url.clone())).await;
    db.drop().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
