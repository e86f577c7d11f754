//! The SQLite backend: the embedded default of `spl serve`.
//!
//! One writer connection owned by a task does every write ([`writer`]); concurrent appends queue on
//! a channel and the writer commits whatever has queued in one transaction (group commit), so
//! durable commits (WAL, `synchronous=FULL`) are shared. Readers use a separate pool and never
//! block the writer. Search ([`search`]) is an FTS5 index the writer keeps up to date.

mod search;
mod sql;
mod writer;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{broadcast, mpsc, Mutex};
use tokio::task::JoinHandle;

use crate::query::Column;
use crate::shared::writer::{submit, Answer, Queued, WriteOp};
use crate::shared::{EVENT_CAPACITY, QUEUE_DEPTH};
use crate::{
    Appended, AuthChange, Committed, ListFilter, NewRecord, RecordStore, Result, ServiceAccount,
    StateChange, StoreError, StoredRecord, ThreadSummary, TokenGrant,
};

/// The migrations of this backend, applied at open and checked by readiness.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

const READ_CONNECTIONS: u32 = 4;
/// How long a connection waits for a lock another holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the WAL is copied back into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);
/// Past this much WAL content the writer, between two commits, checkpoints the rest and waits for
/// readers to let go, so its next commit starts the WAL over (`RESTART`). A checkpointer asking
/// for the write lock itself starves behind a busy writer and the WAL grows by hundreds of MiB.
const WAL_RESTART_BYTES: i64 = 16 * 1024 * 1024;
/// A WAL file is cut back to this size when it starts over. Larger than the restart point, so
/// under sustained writes the same file pages are written again instead of freed and allocated
/// (and zeroed by the kernel) anew.
const WAL_FILE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// The tenant's newest sequence, newest first by rowid: the first row of the tenant ends the
/// scan (an aggregate would visit every row). NOT INDEXED: left to itself, SQLite reads the
/// tenant's whole thread index and sorts it (20 ms at 200k records), and the changes feed asks
/// this on every request.
const HEAD_SEQ: &str = "SELECT coalesce((SELECT seq FROM records NOT INDEXED WHERE tenant = ? \
                        ORDER BY seq DESC LIMIT 1), 0)";

pub struct SqliteStore {
    reader: SqlitePool,
    writes: mpsc::Sender<Queued<search::IndexSearch>>,
    events: broadcast::Sender<Committed>,
    writer: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Option<Checkpointer>,
}

/// The checkpointing task and its connection, which `close` uses for the last checkpoint.
struct Checkpointer {
    task: JoinHandle<()>,
    conn: Arc<Mutex<SqliteConnection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and applies pending migrations.
    pub async fn open(url: &str) -> Result<SqliteStore> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        SqliteStore::open_with(SqliteConnectOptions::from_str(url)?, in_memory).await
    }

    /// Opens (creating if needed) a database file: WAL, durable commits.
    pub async fn open_file(path: &std::path::Path) -> Result<SqliteStore> {
        SqliteStore::open_with(SqliteConnectOptions::new().filename(path), false).await
    }

    /// A private in-memory database, gone when the store is dropped.
    pub async fn open_in_memory() -> Result<SqliteStore> {
        SqliteStore::open_with(SqliteConnectOptions::from_str("sqlite::memory:")?, true).await
    }

    async fn open_with(base: SqliteConnectOptions, in_memory: bool) -> Result<SqliteStore> {
        let base = base
            .create_if_missing(true)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(false);
        let options = if in_memory {
            base.journal_mode(SqliteJournalMode::Memory)
                .synchronous(SqliteSynchronous::Off)
        } else {
            base.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
        };

        // Checkpoints run beside the writer (below), not inside one of its commits.
        let options = if in_memory {
            options
        } else {
            options
                .pragma("wal_autocheckpoint", "0")
                .pragma("journal_size_limit", WAL_FILE_LIMIT_BYTES.to_string())
        };
        // The writer's page cache holds a whole ingested page's dirty index pages: with
        // SQLite's 2 MiB default, a 1000-record transaction spills pages to the WAL mid-way and
        // writes many of them twice. Memory is taken only as pages are touched.
        let writer = options.clone().pragma("cache_size", "-16384");
        let writer = open_migrated(&writer).await?;
        let restart_wanted = Arc::new(AtomicBool::new(false));
        let checkpointer = if in_memory {
            None
        } else {
            let conn = Arc::new(Mutex::new(SqliteConnection::connect_with(&options).await?));
            Some(Checkpointer {
                task: tokio::spawn(run_checkpointer(conn.clone(), restart_wanted.clone())),
                conn,
            })
        };

        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .min_connections(1)
            .connect_with(options)
            .await?;

        let (writes, queue) = mpsc::channel(QUEUE_DEPTH);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let task = tokio::spawn(writer::run_writer(
            writer,
            queue,
            events.clone(),
            restart_wanted,
        ));
        Ok(SqliteStore {
            reader,
            writes,
            events,
            writer: Mutex::new(Some(task)),
            checkpointer,
        })
    }

    async fn submit<T>(&self, (op, answer): (WriteOp, Answer<T>)) -> Result<T> {
        submit(&self.writes, op, answer).await
    }
}

/// The writer's connection, the migrations applied. Two processes opening a new home at once
/// (a `spl` command while `spl serve` makes its store) contend for it: switching the new file to
/// WAL answers `SQLITE_BUSY` at once, and the second to run a migration fails on what the first
/// made. Each migration commits whole, so trying again a moment later goes on where the other
/// left off.
async fn open_migrated(options: &SqliteConnectOptions) -> Result<SqliteConnection> {
    const ATTEMPTS: u32 = 10;
    let mut attempt = 1;
    loop {
        let opened = async {
            let mut conn = SqliteConnection::connect_with(options).await?;
            MIGRATOR.run(&mut conn).await?;
            Ok::<_, StoreError>(conn)
        }
        .await;
        match opened {
            Err(e) if attempt < ATTEMPTS && contended(&e) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            opened => return opened,
        }
    }
}

/// Whether opening failed because another connection was making the same store.
fn contended(e: &StoreError) -> bool {
    use sqlx::migrate::MigrateError;
    match e {
        StoreError::Database(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("5" | "6"))
        }
        StoreError::Migrate(MigrateError::Execute(_) | MigrateError::ExecuteMigration(..)) => true,
        _ => false,
    }
}

#[async_trait]
impl RecordStore for SqliteStore {
    #[tracing::instrument(level = "debug", name = "store.append", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn append(&self, tenant: &str, record: NewRecord) -> Result<Appended> {
        self.submit(WriteOp::append(tenant, record)).await
    }

    #[tracing::instrument(level = "debug", name = "store.apply_auth_change", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn apply_auth_change(
        &self,
        tenant: &str,
        change: AuthChange,
        audit: NewRecord,
    ) -> Result<bool> {
        self.submit(WriteOp::auth(tenant, change, audit)).await
    }

    #[tracing::instrument(level = "debug", name = "store.write", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn write(
        &self,
        tenant: &str,
        records: Vec<NewRecord>,
        state: Vec<StateChange>,
    ) -> Result<Vec<Result<Appended>>> {
        self.submit(WriteOp::write(tenant, records, state)).await
    }

    #[tracing::instrument(level = "debug", name = "store.state_get", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn state_get(&self, tenant: &str, kind: &str, key: &str) -> Result<Option<String>> {
        sql::state_get(&self.reader, tenant, kind, key).await
    }

    #[tracing::instrument(level = "debug", name = "store.state_list", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn state_list(&self, tenant: &str, kind: &str) -> Result<Vec<(String, String)>> {
        sql::state_list(&self.reader, tenant, kind).await
    }

    async fn state_page(
        &self,
        tenant: &str,
        kind: &str,
        prefix: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(String, String)>> {
        sql::state_page(&self.reader, tenant, kind, prefix, after, limit).await
    }

    async fn state_count(&self, tenant: &str, kind: &str) -> Result<u64> {
        sql::state_count(&self.reader, tenant, kind).await
    }

    async fn stored_bytes(&self, _tenant: &str) -> Result<u64> {
        let bytes: i64 = sqlx::query_scalar(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    #[tracing::instrument(level = "debug", name = "store.head_seq", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn head_seq(&self, tenant: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(HEAD_SEQ)
            .bind(tenant)
            .fetch_one(&self.reader)
            .await?)
    }

    #[tracing::instrument(level = "debug", name = "store.get", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<StoredRecord>> {
        sql::get(&self.reader, tenant, id).await
    }

    #[tracing::instrument(level = "debug", name = "store.list", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn list(&self, tenant: &str, filter: &ListFilter) -> Result<Vec<StoredRecord>> {
        sql::list(&self.reader, tenant, filter).await
    }

    #[tracing::instrument(level = "debug", name = "store.threads", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn threads(
        &self,
        tenant: &str,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ThreadSummary>> {
        sql::threads(&self.reader, tenant, before_seq, limit).await
    }

    #[tracing::instrument(level = "debug", name = "store.scan", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn scan(
        &self,
        tenant: &str,
        equalities: &[(Column, String)],
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredRecord>> {
        sql::scan(&self.reader, tenant, equalities, after_seq, limit).await
    }

    #[tracing::instrument(level = "debug", name = "store.search", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn search(
        &self,
        tenant: &str,
        words: &[String],
        limit: u32,
    ) -> Result<Vec<(f64, StoredRecord)>> {
        search::search(self, tenant, words, limit).await
    }

    async fn check_ready(&self) -> Result<()> {
        sql::check_ready(&self.reader, &MIGRATOR).await
    }

    async fn has_service_accounts(&self, tenant: &str) -> Result<bool> {
        sql::has_service_accounts(&self.reader, tenant).await
    }

    async fn service_accounts(&self, tenant: &str) -> Result<Vec<ServiceAccount>> {
        sql::service_accounts(&self.reader, tenant).await
    }

    async fn service_account(&self, tenant: &str, id: &str) -> Result<Option<ServiceAccount>> {
        sql::service_account(&self.reader, tenant, id).await
    }

    #[tracing::instrument(level = "debug", name = "store.token", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn token(&self, tenant: &str, token_id: &str) -> Result<Option<TokenGrant>> {
        let row = sqlx::query(
            "SELECT t.token_id, t.sa_id, t.scopes, s.allowed_actors, t.created_at, t.expires_at, \
             t.revoked_at, t.grant_id FROM tokens t JOIN service_accounts s ON s.tenant = t.tenant AND s.id = t.sa_id \
             WHERE t.tenant = ? AND t.token_id = ?",
        )
        .bind(tenant)
        .bind(token_id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(sql::token_from_row).transpose()
    }

    fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.events.subscribe()
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn close(&self) {
        let task = self.writer.lock().await.take();
        if let Some(task) = task {
            if self.writes.send(Queued::Close).await.is_ok() {
                let _ = task.await;
            }
        }
        self.reader.close().await;
        // Everything is written and nobody reads: the WAL goes into the database file and the
        // file is emptied, so a clean stop leaves no WAL behind.
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.task.abort();
            let mut conn = checkpointer.conn.lock().await;
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut *conn)
                .await
            {
                tracing::warn!(error = %e, "the last WAL checkpoint failed");
            }
        }
    }
}

/// Copies committed WAL frames into the database file on its own connection. PASSIVE never waits
/// for the writer or readers, so commits do not pay for checkpoints; the WAL restarts from its
/// beginning once a checkpoint has caught up and no reader holds an older snapshot. When the WAL
/// has grown past [`WAL_RESTART_BYTES`] anyway (a writer that never pauses, readers always
/// busy), it asks the writer to restart it between two commits.
async fn run_checkpointer(conn: Arc<Mutex<SqliteConnection>>, restart_wanted: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
    loop {
        tick.tick().await;
        let mut conn = conn.lock().await;
        match checkpoint(&mut conn).await {
            Ok(wal_bytes) if wal_bytes > WAL_RESTART_BYTES => {
                restart_wanted.store(true, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; will retry"),
        }
    }
}

/// A passive checkpoint; answers how many bytes of frames the WAL holds.
async fn checkpoint(conn: &mut SqliteConnection) -> Result<i64> {
    // (busy, frames in the WAL, frames checkpointed)
    let (_, frames, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut *conn)
        .await?;
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut *conn)
        .await?;
    Ok(frames.saturating_mul(page_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head of a tenant is read without sorting anything, however large the store.
    #[tokio::test]
    async fn the_head_sequence_is_read_without_a_sort() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {HEAD_SEQ}"))
                .bind("t")
                .fetch_all(&store.reader)
                .await
                .unwrap();
        let details: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
        assert!(details.contains(&"SCAN records"), "{details:?}");
        assert!(!details.iter().any(|d| d.contains("B-TREE")), "{details:?}");
    }
}
