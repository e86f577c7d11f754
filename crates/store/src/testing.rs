//! A Postgres database of its own for each test: created on the server of `DATABASE_URL` (default
//! the local `test` database's server), dropped afterwards. Used by the tests of this workspace.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor, PgConnection, Row};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const TEST_DB_PREFIX: &str = "store_test_";
/// Databases of runs that died without cleaning up are dropped once they are this old.
const STALE_AFTER_SECS: u64 = 3600;

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

/// Runs a scenario against the URL of a fresh database; the scenario opens (and closes) its own
/// connections. The database is dropped afterwards, also when the scenario panics.
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
