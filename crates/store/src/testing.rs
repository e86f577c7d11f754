//! A Postgres database of its own for each test: created on the server of `DATABASE_URL` (default
//! the local `test` database's server), dropped afterwards; and [`Sql`], for the statements of a
//! test's own on it. Used by the tests of this workspace (the `testing` feature).

// A test helper fails its test with a panic when the database is not there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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

/// A parameter of a statement run by [`Sql`].
#[derive(Clone, Copy, Debug)]
pub enum Param<'a> {
    Text(&'a str),
    Int(i64),
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(text: &'a str) -> Param<'a> {
        Param::Text(text)
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(text: &'a String) -> Param<'a> {
        Param::Text(text)
    }
}

impl From<i64> for Param<'_> {
    fn from(n: i64) -> Self {
        Param::Int(n)
    }
}

/// Statements of a test's own on the database of a platform store: to check what was stored
/// and to arrange states that no API reaches (a provisioning cut short, a dead replica's
/// leases). Every failure panics, naming the statement.
pub struct Sql {
    pool: sqlx::PgPool,
}

impl Sql {
    /// On the connections of `store` (closed with the record store it came from).
    pub fn of(store: &crate::platform::PlatformStore) -> Sql {
        Sql {
            pool: store.pool.clone(),
        }
    }

    fn query<'q>(
        sql: &'q str,
        params: &[Param<'q>],
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        params
            .iter()
            .fold(sqlx::query(sql), |query, param| match *param {
                Param::Text(text) => query.bind(text),
                Param::Int(n) => query.bind(n),
            })
    }

    /// Runs a statement; returns how many rows it affected.
    pub async fn execute(&self, sql: &str, params: &[Param<'_>]) -> u64 {
        Sql::query(sql, params)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected()
    }

    /// The first column of the one row a query answers.
    pub async fn scalar<T>(&self, sql: &str, params: &[Param<'_>]) -> T
    where
        T: sqlx::Type<sqlx::Postgres> + for<'r> sqlx::Decode<'r, sqlx::Postgres> + Send + Unpin,
    {
        let row = Sql::query(sql, params)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        row.try_get(0).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The row a query answers, if any, as a tuple of its columns.
    pub async fn row<T>(&self, sql: &str, params: &[Param<'_>]) -> Option<T>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        let row = Sql::query(sql, params)
            .fetch_optional(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))?;
        Some(T::from_row(&row).unwrap_or_else(|e| panic!("{sql}: {e}")))
    }
}
