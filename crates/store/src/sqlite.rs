//! The SQLite backend: the embedded default of `spl serve`.
//!
//! One writer connection owned by a task does every write; concurrent appends queue on a channel and
//! the writer commits whatever has queued in one transaction (group commit), so durable commits
//! (WAL, `synchronous=FULL`) are shared. Readers use a separate pool and never block the writer.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection};
use tokio::sync::{broadcast, mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

use crate::query::Column;
use crate::{
    with_sequence, Appended, AuthChange, Committed, ListFilter, NewRecord, RecordStore, Result,
    ServiceAccount, StateChange, StoreError, StoredRecord, ThreadSummary, TokenGrant,
};

/// Most writes one transaction takes. Large enough to amortise an fsync over a burst, small enough
/// that the first waiter of a batch is not held long.
/// The migrations of this backend, applied at open and checked by readiness.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

const MAX_BATCH: usize = 1024;
/// Queue depth in front of the writer; callers wait (backpressure) when it is full.
const QUEUE_DEPTH: usize = 8192;
/// Watchers that fall further behind than this are told to reconnect.
const EVENT_CAPACITY: usize = 16384;
const READ_CONNECTIONS: u32 = 4;

pub struct SqliteStore {
    reader: SqlitePool,
    writes: mpsc::Sender<WriteOp>,
    events: broadcast::Sender<Committed>,
    writer: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Option<JoinHandle<()>>,
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

enum WriteOp {
    Append {
        tenant: String,
        record: NewRecord,
        reply: oneshot::Sender<Result<Appended>>,
    },
    Auth {
        tenant: String,
        change: AuthChange,
        audit: NewRecord,
        reply: oneshot::Sender<Result<bool>>,
    },
    Write {
        tenant: String,
        records: Vec<NewRecord>,
        state: Vec<StateChange>,
        reply: oneshot::Sender<Result<Vec<Result<Appended>>>>,
    },
    /// Bring the full-text index up to date with every committed record.
    IndexSearch { reply: oneshot::Sender<Result<()>> },
    /// Commit what is queued, then stop.
    Close,
}

/// The writer indexes for search after this many appends even when nobody searches, so a search
/// never has a large backlog to wait for.
const SEARCH_INDEX_EVERY: usize = 4096;

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
            .busy_timeout(Duration::from_secs(10))
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
            options.pragma("wal_autocheckpoint", "0")
        };
        // The writer's page cache holds a whole ingested page's dirty index pages: with
        // SQLite's 2 MiB default, a 1000-record transaction spills pages to the WAL mid-way and
        // writes many of them twice. Memory is taken only as pages are touched.
        let mut writer =
            SqliteConnection::connect_with(&options.clone().pragma("cache_size", "-16384")).await?;
        MIGRATOR.run(&mut writer).await?;
        let checkpointer = if in_memory {
            None
        } else {
            let conn = SqliteConnection::connect_with(&options).await?;
            Some(tokio::spawn(run_checkpointer(conn)))
        };

        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .min_connections(1)
            .connect_with(options)
            .await?;

        let (writes, queue) = mpsc::channel(QUEUE_DEPTH);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let task = tokio::spawn(run_writer(writer, queue, events.clone()));
        Ok(SqliteStore {
            reader,
            writes,
            events,
            writer: Mutex::new(Some(task)),
            checkpointer,
        })
    }

    async fn submit<T>(&self, op: WriteOp, reply: oneshot::Receiver<Result<T>>) -> Result<T> {
        self.writes
            .send(op)
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        reply.await.map_err(|_| StoreError::WriterStopped)?
    }
}

#[async_trait]
impl RecordStore for SqliteStore {
    #[tracing::instrument(level = "debug", name = "store.append", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn append(&self, tenant: &str, record: NewRecord) -> Result<Appended> {
        let (reply, rx) = oneshot::channel();
        let op = WriteOp::Append {
            tenant: tenant.to_string(),
            record,
            reply,
        };
        self.submit(op, rx).await
    }

    #[tracing::instrument(level = "debug", name = "store.apply_auth_change", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn apply_auth_change(
        &self,
        tenant: &str,
        change: AuthChange,
        audit: NewRecord,
    ) -> Result<bool> {
        let (reply, rx) = oneshot::channel();
        let op = WriteOp::Auth {
            tenant: tenant.to_string(),
            change,
            audit,
            reply,
        };
        self.submit(op, rx).await
    }

    #[tracing::instrument(level = "debug", name = "store.write", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn write(
        &self,
        tenant: &str,
        records: Vec<NewRecord>,
        state: Vec<StateChange>,
    ) -> Result<Vec<Result<Appended>>> {
        let (reply, rx) = oneshot::channel();
        let op = WriteOp::Write {
            tenant: tenant.to_string(),
            records,
            state,
            reply,
        };
        self.submit(op, rx).await
    }

    #[tracing::instrument(level = "debug", name = "store.state_get", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn state_get(&self, tenant: &str, kind: &str, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT value FROM federation_state WHERE tenant = ? AND kind = ? AND key = ?",
        )
        .bind(tenant)
        .bind(kind)
        .bind(key)
        .fetch_optional(&self.reader)
        .await?)
    }

    #[tracing::instrument(level = "debug", name = "store.state_list", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn state_list(&self, tenant: &str, kind: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT key, value FROM federation_state WHERE tenant = ? AND kind = ? ORDER BY key",
        )
        .bind(tenant)
        .bind(kind)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("key"), r.get("value")))
            .collect())
    }

    #[tracing::instrument(level = "debug", name = "store.head_seq", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn head_seq(&self, tenant: &str) -> Result<i64> {
        Ok(
            // Newest first by rowid: the first row of the tenant ends the scan (an aggregate
            // would visit every row).
            sqlx::query_scalar(
                "SELECT coalesce((SELECT seq FROM records WHERE tenant = ? ORDER BY seq DESC LIMIT 1), 0)",
            )
                .bind(tenant)
                .fetch_one(&self.reader)
                .await?,
        )
    }

    #[tracing::instrument(level = "debug", name = "store.get", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<StoredRecord>> {
        let row = sqlx::query(
            "SELECT seq, id, thread, record_json FROM records WHERE tenant = ? AND id = ?",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|r| stored_from_row(&r)))
    }

    #[tracing::instrument(level = "debug", name = "store.list", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn list(&self, tenant: &str, filter: &ListFilter) -> Result<Vec<StoredRecord>> {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "SELECT seq, id, thread, record_json FROM records WHERE tenant = ",
        );
        sql.push_bind(tenant);
        sql.push(" AND seq > ").push_bind(filter.after_seq);
        if let Some(thread) = &filter.thread {
            sql.push(" AND thread = ").push_bind(thread);
        }
        if let Some(actor) = &filter.actor {
            sql.push(" AND actor = ").push_bind(actor);
        }
        if let Some(since) = filter.since_clock {
            sql.push(" AND clock >= ").push_bind(since);
        }
        sql.push(" ORDER BY seq LIMIT ")
            .push_bind(i64::from(filter.limit));
        let rows = sql.build().fetch_all(&self.reader).await?;
        Ok(rows.iter().map(stored_from_row).collect())
    }

    #[tracing::instrument(level = "debug", name = "store.threads", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn threads(
        &self,
        tenant: &str,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ThreadSummary>> {
        let rows = sqlx::query(
            "SELECT thread, namespace, record_count, last_clock, last_seq FROM threads \
             WHERE tenant = ? AND last_seq < ? ORDER BY last_seq DESC LIMIT ?",
        )
        .bind(tenant)
        .bind(before_seq.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|r| ThreadSummary {
                id: r.get("thread"),
                namespace: r.get("namespace"),
                record_count: r.get("record_count"),
                last_clock: r.get("last_clock"),
                last_seq: r.get("last_seq"),
            })
            .collect())
    }

    #[tracing::instrument(level = "debug", name = "store.scan", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn scan(
        &self,
        tenant: &str,
        equalities: &[(Column, String)],
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredRecord>> {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "SELECT seq, id, thread, record_json FROM records WHERE tenant = ",
        );
        sql.push_bind(tenant);
        sql.push(" AND seq > ").push_bind(after_seq);
        for (column, value) in equalities {
            let Some(name) = text_column(*column) else {
                continue;
            };
            sql.push(format_args!(" AND {name} = ")).push_bind(value);
        }
        sql.push(" ORDER BY seq LIMIT ").push_bind(i64::from(limit));
        let rows = sql.build().fetch_all(&self.reader).await?;
        Ok(rows.iter().map(stored_from_row).collect())
    }

    #[tracing::instrument(level = "debug", name = "store.search", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn search(
        &self,
        tenant: &str,
        words: &[String],
        limit: u32,
    ) -> Result<Vec<(f64, StoredRecord)>> {
        let Some(expression) = fts_expression(words) else {
            return Ok(Vec::new());
        };
        // Read-your-writes: everything committed before this search is indexed first.
        let (reply, rx) = oneshot::channel();
        self.submit(WriteOp::IndexSearch { reply }, rx).await?;
        let rows = sqlx::query(
            "SELECT r.seq, r.id, r.thread, r.record_json, -records_fts.rank AS score \
             FROM records_fts JOIN records r ON r.seq = records_fts.rowid \
             WHERE records_fts MATCH ? AND r.tenant = ? ORDER BY records_fts.rank LIMIT ?",
        )
        .bind(expression)
        .bind(tenant)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<f64, _>("score").max(0.0), stored_from_row(r)))
            .collect())
    }

    async fn check_ready(&self) -> Result<()> {
        let applied: Option<i64> = sqlx::query_scalar(crate::APPLIED_MIGRATION)
            .fetch_one(&self.reader)
            .await?;
        crate::migrations_ready(&MIGRATOR, applied)
    }

    async fn has_service_accounts(&self, tenant: &str) -> Result<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM service_accounts WHERE tenant = ? LIMIT 1")
                .bind(tenant)
                .fetch_optional(&self.reader)
                .await?;
        Ok(found.is_some())
    }

    async fn service_accounts(&self, tenant: &str) -> Result<Vec<ServiceAccount>> {
        let rows = sqlx::query(
            "SELECT id, name, scopes, allowed_actors, created_at FROM service_accounts \
             WHERE tenant = ? ORDER BY created_at, id",
        )
        .bind(tenant)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(service_account_from_row).collect()
    }

    async fn service_account(&self, tenant: &str, id: &str) -> Result<Option<ServiceAccount>> {
        let row = sqlx::query(
            "SELECT id, name, scopes, allowed_actors, created_at FROM service_accounts \
             WHERE tenant = ? AND id = ?",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(service_account_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", name = "store.token", skip_all, fields(otel.kind = "client", db.system = "sqlite"))]
    async fn token(&self, tenant: &str, token_id: &str) -> Result<Option<TokenGrant>> {
        let row = sqlx::query(
            "SELECT t.token_id, t.sa_id, t.scopes, s.allowed_actors, t.created_at, t.expires_at, \
             t.revoked_at FROM tokens t JOIN service_accounts s ON s.tenant = t.tenant AND s.id = t.sa_id \
             WHERE t.tenant = ? AND t.token_id = ?",
        )
        .bind(tenant)
        .bind(token_id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|r| {
            Ok(TokenGrant {
                token_id: r.get("token_id"),
                sa_id: r.get("sa_id"),
                scopes: json_strings(r.get("scopes"))?,
                allowed_actors: json_strings(r.get("allowed_actors"))?,
                created_at: r.get("created_at"),
                expires_at: r.get("expires_at"),
                revoked_at: r.get("revoked_at"),
            })
        })
        .transpose()
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
            if self.writes.send(WriteOp::Close).await.is_ok() {
                let _ = task.await;
            }
        }
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.abort();
        }
        self.reader.close().await;
    }
}

/// Copies committed WAL frames into the database file on its own connection. PASSIVE never waits
/// for the writer or readers, so commits do not pay for checkpoints; the WAL restarts from its
/// beginning once a checkpoint has caught up.
async fn run_checkpointer(mut conn: SqliteConnection) {
    let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
    loop {
        tick.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut conn)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
        }
    }
}

/// Only text columns can take a pushed-down string equality.
fn text_column(column: Column) -> Option<&'static str> {
    match column {
        Column::Id => Some("id"),
        Column::Thread => Some("thread"),
        Column::Actor => Some("actor"),
        Column::Act => Some("act"),
        Column::DataType => Some("data_type"),
        Column::Namespace => Some("namespace"),
        Column::Clock | Column::CreatedAt => None,
    }
}

/// Plain words become quoted FTS5 strings joined by OR, so no query text is FTS syntax. FTS5 reads
/// the expression as a C string, so NULs go too.
fn fts_expression(words: &[String]) -> Option<String> {
    let quoted: Vec<String> = words
        .iter()
        .flat_map(|w| w.split(|c: char| c.is_whitespace() || c == '\0'))
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    (!quoted.is_empty()).then(|| quoted.join(" OR "))
}

fn stored_from_row(row: &sqlx::sqlite::SqliteRow) -> StoredRecord {
    let seq: i64 = row.get("seq");
    StoredRecord {
        seq,
        id: row.get("id"),
        thread: row.get("thread"),
        json: with_sequence(row.get("record_json"), seq),
    }
}

fn json_strings(text: String) -> Result<Vec<String>> {
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn service_account_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<ServiceAccount> {
    Ok(ServiceAccount {
        id: row.get("id"),
        name: row.get("name"),
        scopes: json_strings(row.get("scopes"))?,
        allowed_actors: json_strings(row.get("allowed_actors"))?,
        created_at: row.get("created_at"),
    })
}

/// The writer task: takes everything queued (up to [`MAX_BATCH`]) and commits it as one transaction.
async fn run_writer(
    mut conn: SqliteConnection,
    mut queue: mpsc::Receiver<WriteOp>,
    events: broadcast::Sender<Committed>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut unindexed = 0;
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut closing = false;
        let mut index_waiters = Vec::new();
        let mut writes = Vec::with_capacity(batch.len());
        for op in batch.drain(..) {
            match op {
                WriteOp::Close => closing = true,
                WriteOp::IndexSearch { reply } => index_waiters.push(reply),
                write => writes.push(write),
            }
        }
        if !writes.is_empty() {
            unindexed += writes
                .iter()
                .map(|op| match op {
                    WriteOp::Write { records, .. } => records.len(),
                    _ => 1,
                })
                .sum::<usize>();
            commit_batch(&mut conn, &mut writes, &events).await;
        }
        if !index_waiters.is_empty() || unindexed >= SEARCH_INDEX_EVERY {
            let indexed = index_for_search(&mut conn).await;
            if indexed.is_ok() {
                unindexed = 0;
            }
            for waiter in index_waiters {
                let _ = waiter.send(match &indexed {
                    Ok(()) => Ok(()),
                    Err(e) => Err(StoreError::WriteFailed(e.to_string())),
                });
            }
        }
        if closing {
            break;
        }
    }
    // Leave a tidy database file behind: everything copied back, the WAL emptied.
    let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
}

/// Adds every record committed since the last run to the full-text index, in one transaction with
/// the watermark, so a crash never leaves a record indexed twice or skipped.
async fn index_for_search(conn: &mut SqliteConnection) -> Result<()> {
    let result = async {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        sqlx::query(
            "INSERT INTO records_fts (rowid, text) \
             SELECT seq, (SELECT coalesce(group_concat(value, ' '), '') \
                          FROM json_tree(record_json, '$.body') WHERE type = 'text') \
             FROM records WHERE seq > (SELECT indexed_seq FROM search_index_state)",
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "UPDATE search_index_state SET indexed_seq = (SELECT coalesce(max(seq), 0) FROM records)",
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        Ok::<_, sqlx::Error>(())
    }
    .await;
    if let Err(e) = result {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        tracing::error!(error = %e, "indexing for search failed; will retry");
        return Err(e.into());
    }
    Ok(())
}

/// Outcome of one op inside a batch; the outer `Result` of the batch carries database failures.
enum OpOutcome {
    Append(Result<Appended>),
    Auth(Result<bool>, Option<StoredRecord>),
    Write(Vec<Result<Appended>>),
}

async fn commit_batch(
    conn: &mut SqliteConnection,
    batch: &mut Vec<WriteOp>,
    events: &broadcast::Sender<Committed>,
) {
    let result = write_batch(conn, batch).await;
    if result.is_err() {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    match result {
        Ok(outcomes) => {
            let mut committed = Vec::new();
            for (op, outcome) in batch.drain(..).zip(outcomes) {
                match (op, outcome) {
                    (WriteOp::Append { tenant, reply, .. }, OpOutcome::Append(result)) => {
                        if let Ok(Appended::Inserted(record)) = &result {
                            committed.push(Committed {
                                tenant,
                                record: record.clone(),
                            });
                        }
                        let _ = reply.send(result);
                    }
                    (WriteOp::Auth { tenant, reply, .. }, OpOutcome::Auth(result, audit)) => {
                        if let Some(record) = audit {
                            committed.push(Committed { tenant, record });
                        }
                        let _ = reply.send(result);
                    }
                    (WriteOp::Write { tenant, reply, .. }, OpOutcome::Write(results)) => {
                        for result in &results {
                            if let Ok(Appended::Inserted(record)) = result {
                                committed.push(Committed {
                                    tenant: tenant.clone(),
                                    record: record.clone(),
                                });
                            }
                        }
                        let _ = reply.send(Ok(results));
                    }
                    _ => {}
                }
            }
            // Watchers rely on announcements in sequence order.
            committed.sort_by_key(|c| c.record.seq);
            for c in committed {
                let _ = events.send(c);
            }
        }
        Err(e) => {
            let message = e.to_string();
            tracing::error!(error = %message, ops = batch.len(), "write batch failed, rolled back");
            for op in batch.drain(..) {
                let failed = || StoreError::WriteFailed(message.clone());
                match op {
                    WriteOp::Append { reply, .. } => {
                        let _ = reply.send(Err(failed()));
                    }
                    WriteOp::Auth { reply, .. } => {
                        let _ = reply.send(Err(failed()));
                    }
                    WriteOp::Write { reply, .. } => {
                        let _ = reply.send(Err(failed()));
                    }
                    WriteOp::IndexSearch { reply } => {
                        let _ = reply.send(Err(failed()));
                    }
                    WriteOp::Close => {}
                }
            }
        }
    }
}

async fn write_batch(conn: &mut SqliteConnection, batch: &[WriteOp]) -> Result<Vec<OpOutcome>> {
    let appends: Vec<(&str, &NewRecord)> = batch
        .iter()
        .filter_map(|op| match op {
            WriteOp::Append { tenant, record, .. } => Some((tenant.as_str(), record)),
            _ => None,
        })
        .collect();
    // A batch of appends that fits one statement commits as that statement; anything more (auth
    // changes with their audit records, or several statements) gets an explicit transaction.
    let explicit = appends.len() > INSERT_CHUNK || appends.len() < batch.len();
    if explicit {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    }
    let mut appended = insert_records(conn, &appends, false).await?.into_iter();

    let mut outcomes = Vec::with_capacity(batch.len());
    for op in batch {
        let outcome = match op {
            WriteOp::Append { .. } => OpOutcome::Append(
                appended
                    .next()
                    .ok_or_else(|| StoreError::WriteFailed("append outcome missing".into()))?,
            ),
            WriteOp::Auth {
                tenant,
                change,
                audit,
                ..
            } => match apply_change(conn, tenant, change).await? {
                Ok(true) => {
                    let stored = insert_records(conn, &[(tenant, audit)], false).await?;
                    let audit = match stored.into_iter().next() {
                        Some(Ok(Appended::Inserted(record))) => Some(record),
                        _ => None,
                    };
                    OpOutcome::Auth(Ok(true), audit)
                }
                other => OpOutcome::Auth(other, None),
            },
            WriteOp::Write {
                tenant,
                records,
                state,
                ..
            } => {
                let records: Vec<(&str, &NewRecord)> =
                    records.iter().map(|r| (tenant.as_str(), r)).collect();
                // Peers' records: a full record may replace a consent stub of the same id.
                let results = insert_records(conn, &records, true).await?;
                for change in state {
                    apply_state(conn, tenant, change).await?;
                }
                OpOutcome::Write(results)
            }
            WriteOp::IndexSearch { .. } | WriteOp::Close => continue,
        };
        outcomes.push(outcome);
    }
    if explicit {
        sqlx::query("COMMIT").execute(&mut *conn).await?;
    }
    Ok(outcomes)
}

/// Records per multi-row INSERT; 15 columns each stays far below SQLite's 32766 parameters.
const INSERT_CHUNK: usize = 512;

/// Inserts records, or finds why one could not be: same id (an idempotent replay) or another
/// record on the same `(thread, actor, clock)`. SQLite numbers the inserted rows in input order.
async fn insert_records(
    conn: &mut SqliteConnection,
    records: &[(&str, &NewRecord)],
    upgrade_stubs: bool,
) -> Result<Vec<Result<Appended>>> {
    let mut outcomes = Vec::with_capacity(records.len());
    for chunk in records.chunks(INSERT_CHUNK) {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "INSERT INTO records (tenant, id, thread, actor, clock, act, data_type, namespace, \
             created_at, l0, l1, l2, l3, record_json) ",
        );
        sql.push_values(chunk, |mut row, (tenant, record)| {
            row.push_bind(*tenant)
                .push_bind(&record.id)
                .push_bind(&record.thread)
                .push_bind(&record.actor)
                .push_bind(record.clock)
                .push_bind(&record.act)
                .push_bind(&record.data_type)
                .push_bind(&record.namespace)
                .push_bind(record.created_at)
                .push_bind(&record.hash_levels[0])
                .push_bind(&record.hash_levels[1])
                .push_bind(&record.hash_levels[2])
                .push_bind(&record.hash_levels[3])
                .push_bind(&record.json);
        });
        sql.push(" ON CONFLICT DO NOTHING RETURNING seq, tenant, id");
        let mut inserted: HashMap<(String, String), i64> = sql
            .build()
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| ((row.get("tenant"), row.get("id")), row.get("seq")))
            .collect();
        for (tenant, record) in chunk {
            // `remove`: a second copy of the same record in this batch is a replay of the first.
            let outcome = match inserted.remove(&(tenant.to_string(), record.id.clone())) {
                Some(seq) => Ok(Appended::Inserted(StoredRecord {
                    seq,
                    id: record.id.clone(),
                    thread: record.thread.clone(),
                    json: with_sequence(&record.json, seq),
                })),
                None => explain_conflict(conn, tenant, record, upgrade_stubs).await?,
            };
            outcomes.push(outcome);
        }
    }
    Ok(outcomes)
}

/// A record the INSERT skipped: either its id is stored (replay) or its clock is taken.
async fn explain_conflict(
    conn: &mut SqliteConnection,
    tenant: &str,
    record: &NewRecord,
    upgrade_stubs: bool,
) -> Result<Result<Appended>> {
    let existing =
        sqlx::query("SELECT seq, id, thread, record_json FROM records WHERE tenant = ? AND id = ?")
            .bind(tenant)
            .bind(&record.id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match existing {
        Some(row) => {
            let stored = stored_from_row(&row);
            if upgrade_stubs && crate::replaces_stub(&stored.json, &record.json) {
                replace_stub(conn, tenant, record, stored.seq).await?;
                Ok(Appended::Existing(StoredRecord {
                    json: with_sequence(&record.json, stored.seq),
                    ..stored
                }))
            } else {
                Ok(Appended::Existing(stored))
            }
        }
        None => Err(StoreError::DuplicateClock {
            thread: record.thread.clone(),
            actor: record.actor.clone(),
            clock: record.clock,
        }),
    })
}

/// Puts the full record in place of its stub (same id, same sequence). A stub's body has no
/// text, so if the stub was already indexed for search, the full body's text is added now.
async fn replace_stub(
    conn: &mut SqliteConnection,
    tenant: &str,
    record: &NewRecord,
    seq: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE records SET record_json = ?, namespace = ?, l0 = ?, l1 = ?, l2 = ?, l3 = ? WHERE tenant = ? AND seq = ?",
    )
    .bind(&record.json)
    .bind(&record.namespace)
    .bind(&record.hash_levels[0])
    .bind(&record.hash_levels[1])
    .bind(&record.hash_levels[2])
    .bind(&record.hash_levels[3])
    .bind(tenant)
    .bind(seq)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO records_fts (rowid, text) \
         SELECT seq, (SELECT coalesce(group_concat(value, ' '), '') \
                      FROM json_tree(record_json, '$.body') WHERE type = 'text') \
         FROM records WHERE seq = ? AND seq <= (SELECT indexed_seq FROM search_index_state)",
    )
    .bind(seq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn apply_change(
    conn: &mut SqliteConnection,
    tenant: &str,
    change: &AuthChange,
) -> Result<Result<bool>> {
    Ok(match change {
        AuthChange::CreateServiceAccount(sa) => {
            let done = sqlx::query(
                "INSERT INTO service_accounts (tenant, id, name, scopes, allowed_actors, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(tenant)
            .bind(&sa.id)
            .bind(&sa.name)
            .bind(to_json(&sa.scopes))
            .bind(to_json(&sa.allowed_actors))
            .bind(sa.created_at)
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() == 1 {
                Ok(true)
            } else {
                Err(StoreError::ServiceAccountExists(sa.id.clone()))
            }
        }
        AuthChange::MintToken {
            token_id,
            sa_id,
            created_at,
            expires_at,
        } => {
            // The token snapshots the account's scopes at mint time.
            let done = sqlx::query(
                "INSERT INTO tokens (tenant, token_id, sa_id, scopes, created_at, expires_at) \
                 SELECT tenant, ?, id, scopes, ?, ? FROM service_accounts WHERE tenant = ? AND id = ? \
                 ON CONFLICT DO NOTHING",
            )
            .bind(token_id)
            .bind(created_at)
            .bind(expires_at)
            .bind(tenant)
            .bind(sa_id)
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() == 1 {
                Ok(true)
            } else {
                // A failed change must not fail the other writes of its batch: it is refused alone.
                let exists: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM tokens WHERE tenant = ? AND token_id = ?")
                        .bind(tenant)
                        .bind(token_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                Err(match exists {
                    Some(_) => StoreError::TokenExists(token_id.clone()),
                    None => StoreError::UnknownServiceAccount(sa_id.clone()),
                })
            }
        }
        AuthChange::RevokeToken {
            token_id,
            revoked_at,
        } => {
            let done = sqlx::query(
                "UPDATE tokens SET revoked_at = ? WHERE tenant = ? AND token_id = ? AND revoked_at IS NULL",
            )
            .bind(revoked_at)
            .bind(tenant)
            .bind(token_id)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() == 1)
        }
    })
}

async fn apply_state(
    conn: &mut SqliteConnection,
    tenant: &str,
    change: &StateChange,
) -> Result<(), sqlx::Error> {
    let now = crate::unix_now();
    match change {
        StateChange::Put { kind, key, value } | StateChange::PutIfAbsent { kind, key, value } => {
            let keep = matches!(change, StateChange::PutIfAbsent { .. });
            let sql = if keep {
                "INSERT INTO federation_state (tenant, kind, key, value, updated_at) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
            } else {
                "INSERT INTO federation_state (tenant, kind, key, value, updated_at) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, kind, key) \
                 DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
            };
            sqlx::query(sql)
                .bind(tenant)
                .bind(kind)
                .bind(key)
                .bind(value)
                .bind(now)
                .execute(&mut *conn)
                .await?;
        }
        StateChange::Delete { kind, key } => {
            sqlx::query("DELETE FROM federation_state WHERE tenant = ? AND kind = ? AND key = ?")
                .bind(tenant)
                .bind(kind)
                .bind(key)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

fn to_json(values: &[String]) -> String {
    serde_json::Value::from(values.to_vec()).to_string()
}

#[cfg(test)]
mod tests {
    use super::fts_expression;

    #[test]
    fn search_words_are_quoted_and_nuls_split_words() {
        let words = |ws: &[&str]| ws.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert_eq!(
            fts_expression(&words(&["a\"b", "NEAR("])).as_deref(),
            Some("\"a\"\"b\" OR \"NEAR(\"")
        );
        assert_eq!(
            fts_expression(&words(&["ze\0bra"])).as_deref(),
            Some("\"ze\" OR \"bra\"")
        );
        assert_eq!(fts_expression(&words(&["\0", " "])), None);
    }
}
