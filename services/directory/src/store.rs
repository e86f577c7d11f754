//! Storage: SQLite (the default, one writer) or Postgres (hosted, any number of replicas),
//! chosen by the URL scheme.
//!
//! Ops arrive already checked on their own ([`CheckedOp`], done concurrently by the handlers).
//! Writes for one DID are serialized, then checked with [`apply_checked`] against the
//! stored log, then the op, the nullified marks, the handles, the namespace index and the
//! precomputed document are written in one transaction. SQLite serializes by having one writer
//! task (which commits whatever has queued in one transaction, each op in its own savepoint, and
//! keeps an in-memory copy of the documents it wrote);
//! Postgres by a transaction-scoped advisory lock on the DID, so replicas can share a database;
//! each replica keeps documents in memory for [`DOCUMENT_LIFETIME`].

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Executor};
use syncropel_protocol::did_sync::{self, apply_checked, CheckedOp, DidState, LoggedOp, OpType};
use tokio::sync::{mpsc, oneshot};

use crate::{DirectoryError, Rules};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/directory/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/directory/postgres");

/// Most ops one SQLite transaction takes: enough to share an fsync across a burst, few enough
/// that the first op of a batch is not held long.
const MAX_BATCH: usize = 256;
const QUEUE_DEPTH: usize = 4096;
const SQLITE_READERS: u32 = 4;
const POSTGRES_CONNECTIONS: u32 = 16;
/// Documents a store keeps in memory; beyond this, resolves read the database.
const CACHED_DOCUMENTS: usize = 100_000;
/// How long a Postgres replica serves a document from memory. Resolvers cache did:sync documents
/// for minutes anyway, so serving one up to a second old after another replica's write changes
/// nothing they can observe; the replica that made the write updates its own entry after commit.
pub const DOCUMENT_LIFETIME: Duration = Duration::from_secs(1);

type Result<T, E = DirectoryError> = std::result::Result<T, E>;

/// An op to store, checked on its own and addressed to its DID.
pub(crate) struct Submission {
    pub did: String,
    pub hash: String,
    /// The op type the route takes (genesis, update or tombstone).
    pub kind: OpType,
    pub op: CheckedOp,
}

/// What a successful submission did.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub did: String,
    pub cid: String,
    pub received_at: i64,
    /// False when a byte-identical genesis was already stored (an idempotent retry).
    pub created: bool,
    pub nullified: Vec<String>,
    /// The DID's new stored document and whether it is deactivated (none for a retry).
    document: Option<(String, bool)>,
}

/// One line of the export feed.
pub struct Exported {
    pub seq: i64,
    pub did: String,
    pub entry: LoggedOp,
}

/// One row of a namespace's peer listing.
pub struct Peer {
    pub did: String,
    pub endpoint: Option<String>,
    pub handles: Vec<String>,
    pub updated_at: i64,
}

/// The directory's database.
pub struct Store(Backend);

enum Backend {
    Sqlite {
        reader: SqlitePool,
        writes: mpsc::Sender<Job>,
        cache: Arc<DocumentCache>,
    },
    Postgres {
        pool: PgPool,
        cache: DocumentCache,
    },
}

struct Job {
    submission: Submission,
    now: i64,
    rules: Rules,
    reply: oneshot::Sender<Result<Outcome>>,
}

impl Store {
    /// Connects to `url` (`sqlite:` or `postgres:`/`postgresql:`) and applies pending migrations
    /// (on Postgres serialized across replicas by sqlx's advisory lock).
    pub async fn open(url: &str) -> Result<Store> {
        Store::open_with_document_lifetime(url, DOCUMENT_LIFETIME).await
    }

    /// [`Store::open`] keeping Postgres documents in memory for `lifetime` instead of
    /// [`DOCUMENT_LIFETIME`], so that tests can see both sides of it without waiting.
    pub async fn open_with_document_lifetime(url: &str, lifetime: Duration) -> Result<Store> {
        if is_postgres(url) {
            let pool = PgPoolOptions::new()
                .max_connections(POSTGRES_CONNECTIONS)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(PgConnectOptions::from_str(url)?)
                .await?;
            POSTGRES_MIGRATIONS.run(&pool).await?;
            return Ok(Store(Backend::Postgres {
                pool,
                cache: DocumentCache::new(Some(lifetime)),
            }));
        }
        Store::open_sqlite(sqlite_options(url)?).await
    }

    /// A SQLite store in the file at `path`, created if missing: the path is used as it is, never
    /// read as a URL (a home directory may hold `?`, `#` or `%`).
    pub async fn open_file(path: &Path) -> Result<Store> {
        Store::open_sqlite(durable(SqliteConnectOptions::new().filename(path))).await
    }

    async fn open_sqlite(options: SqliteConnectOptions) -> Result<Store> {
        migrate_sqlite(&options).await?;
        let writer = SqliteConnection::connect_with(&options).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(SQLITE_READERS)
            .min_connections(1)
            .connect_with(options.read_only(true))
            .await?;
        let (writes, queue) = mpsc::channel(QUEUE_DEPTH);
        let cache = Arc::new(DocumentCache::new(None));
        // A thread of its own: as a task among the request tasks, the writer would wait for a
        // turn at each of its statements and become the bottleneck under load.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DirectoryError::Internal(format!("writer runtime: {e}")))?;
        let writer_cache = cache.clone();
        std::thread::Builder::new()
            .name("directory-writer".into())
            .spawn(move || runtime.block_on(run_sqlite_writer(writer, queue, writer_cache)))
            .map_err(|e| DirectoryError::Internal(format!("writer thread: {e}")))?;
        Ok(Store(Backend::Sqlite {
            reader,
            writes,
            cache,
        }))
    }

    /// Applies pending migrations and disconnects (`directory migrate`).
    pub async fn migrate(url: &str) -> Result<()> {
        // One-connection pools rather than connections: `Migrator::run` on a `&mut` connection
        // makes the caller's future not `Send`.
        if is_postgres(url) {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(PgConnectOptions::from_str(url)?)
                .await?;
            POSTGRES_MIGRATIONS.run(&pool).await?;
            pool.close().await;
        } else {
            migrate_sqlite(&sqlite_options(url)?).await?;
        }
        Ok(())
    }

    /// Checks `submission` against its DID's log and stores it, with `now` as receipt time.
    pub(crate) async fn submit(
        &self,
        submission: Submission,
        now: i64,
        rules: Rules,
    ) -> Result<Outcome> {
        match &self.0 {
            Backend::Sqlite { writes, .. } => {
                let (reply, answer) = oneshot::channel();
                let job = Job {
                    submission,
                    now,
                    rules,
                    reply,
                };
                let stopped = || DirectoryError::Internal("the SQLite writer stopped".into());
                writes.send(job).await.map_err(|_| stopped())?;
                answer.await.map_err(|_| stopped())?
            }
            Backend::Postgres { pool, cache } => {
                let mut tx = pool.begin().await?;
                // Two replicas must not both extend the same head.
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                    .bind(&submission.did)
                    .execute(&mut *tx)
                    .await?;
                let mut outcome = write_postgres(&mut tx, &submission, now, rules).await?;
                tx.commit().await?;
                if let Some(document) = outcome.document.take() {
                    cache.put(&submission.hash, document);
                }
                Ok(outcome)
            }
        }
    }

    /// The stored document of the DID with this hash and whether it is deactivated.
    pub async fn document(&self, hash: &str) -> Result<Option<(String, bool)>> {
        const SQL: &str = "SELECT document, deactivated FROM dids WHERE hash = $1";
        let cache = self.cache();
        if let Some(hit) = cache.get(hash) {
            return Ok(Some(hit));
        }
        let row: Option<(String, bool)> = match &self.0 {
            Backend::Sqlite { reader, .. } => {
                sqlx::query_as(SQL)
                    .bind(hash)
                    .fetch_optional(reader)
                    .await?
            }
            Backend::Postgres { pool, .. } => {
                sqlx::query_as(SQL).bind(hash).fetch_optional(pool).await?
            }
        };
        if let Some(row) = &row {
            cache.fill(hash, row);
        }
        Ok(row)
    }

    fn cache(&self) -> &DocumentCache {
        match &self.0 {
            Backend::Sqlite { cache, .. } => cache,
            Backend::Postgres { cache, .. } => cache,
        }
    }

    /// The full log of `did` in insertion order, nullified ops included.
    pub async fn operations(&self, did: &str) -> Result<Vec<LoggedOp>> {
        match &self.0 {
            Backend::Sqlite { reader, .. } => {
                let mut conn = reader.acquire().await?;
                load_log_sqlite(&mut conn, did).await
            }
            Backend::Postgres { pool, .. } => {
                let mut conn = pool.acquire().await?;
                load_log_postgres(&mut conn, did).await
            }
        }
    }

    /// The DID holding `handle`.
    pub async fn handle(&self, handle: &str) -> Result<Option<String>> {
        const SQL: &str = "SELECT did FROM handles WHERE handle = $1";
        Ok(match &self.0 {
            Backend::Sqlite { reader, .. } => {
                sqlx::query_scalar(SQL)
                    .bind(handle)
                    .fetch_optional(reader)
                    .await?
            }
            Backend::Postgres { pool, .. } => {
                sqlx::query_scalar(SQL)
                    .bind(handle)
                    .fetch_optional(pool)
                    .await?
            }
        })
    }

    /// Up to `count` logged ops with a global sequence above `after`, in sequence order.
    ///
    /// On Postgres a sequence number is drawn at insert but visible at commit, so concurrent
    /// writes can commit out of order and a mirror that paged past a number may miss a lower one
    /// committed later; mirrors should re-read a short overlap. Making seqs commit in order with
    /// one global lock held to the commit cut op throughput to about a third, so it is not done.
    pub async fn export(&self, after: i64, count: i64) -> Result<Vec<Exported>> {
        const SQL: &str = "SELECT seq, did, cid, op, received_at, nullified FROM ops \
                           WHERE seq > $1 ORDER BY seq LIMIT $2";
        let rows: Vec<(i64, String, String, String, i64, bool)> = match &self.0 {
            Backend::Sqlite { reader, .. } => {
                sqlx::query_as(SQL)
                    .bind(after)
                    .bind(count)
                    .fetch_all(reader)
                    .await?
            }
            Backend::Postgres { pool, .. } => {
                sqlx::query_as(SQL)
                    .bind(after)
                    .bind(count)
                    .fetch_all(pool)
                    .await?
            }
        };
        rows.into_iter()
            .map(|(seq, did, cid, op, received_at, nullified)| {
                Ok(Exported {
                    seq,
                    did,
                    entry: logged(cid, &op, received_at, nullified)?,
                })
            })
            .collect()
    }

    /// Live DIDs that opted into `namespace`, in DID order after `after`, at most `limit`.
    pub async fn peers(&self, namespace: &str, after: &str, limit: i64) -> Result<Vec<Peer>> {
        const SQL: &str = "SELECT d.did, d.endpoint, d.handles, d.updated_at \
                           FROM namespaces n JOIN dids d ON d.did = n.did \
                           WHERE n.namespace = $1 AND n.did > $2 AND NOT d.deactivated \
                           ORDER BY d.did LIMIT $3";
        let rows: Vec<(String, Option<String>, String, i64)> = match &self.0 {
            Backend::Sqlite { reader, .. } => {
                sqlx::query_as(SQL)
                    .bind(namespace)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(reader)
                    .await?
            }
            Backend::Postgres { pool, .. } => {
                sqlx::query_as(SQL)
                    .bind(namespace)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }
        };
        rows.into_iter()
            .map(|(did, endpoint, handles, updated_at)| {
                Ok(Peer {
                    did,
                    endpoint,
                    handles: serde_json::from_str(&handles)
                        .map_err(|e| DirectoryError::Internal(format!("stored handles: {e}")))?,
                    updated_at,
                })
            })
            .collect()
    }

    /// Readiness: the database answers and holds every migration of this build (a database
    /// a newer release migrated is fine).
    pub async fn check_ready(&self) -> Result<()> {
        const APPLIED: &str = "SELECT MAX(version) FROM _sqlx_migrations WHERE success";
        let (applied, migrator): (Option<i64>, &Migrator) = match &self.0 {
            Backend::Sqlite { reader, .. } => (
                sqlx::query_scalar(APPLIED).fetch_one(reader).await?,
                &SQLITE_MIGRATIONS,
            ),
            Backend::Postgres { pool, .. } => (
                sqlx::query_scalar(APPLIED).fetch_one(pool).await?,
                &POSTGRES_MIGRATIONS,
            ),
        };
        let needed = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        let applied = applied.unwrap_or(0);
        if applied < needed {
            return Err(DirectoryError::NotReady(format!(
                "the database has migrations up to {applied}; this build needs {needed}"
            )));
        }
        Ok(())
    }

    pub async fn close(&self) {
        match &self.0 {
            Backend::Sqlite { reader, .. } => reader.close().await,
            Backend::Postgres { pool, .. } => pool.close().await,
        }
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

async fn migrate_sqlite(options: &SqliteConnectOptions) -> Result<()> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await?;
    SQLITE_MIGRATIONS.run(&pool).await?;
    pool.close().await;
    Ok(())
}

fn sqlite_options(url: &str) -> Result<SqliteConnectOptions> {
    Ok(durable(SqliteConnectOptions::from_str(url)?))
}

/// WAL with durable commits, as the record store uses: readers never block the writer.
fn durable(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .create_if_missing(true)
        .busy_timeout(Duration::from_secs(10))
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
}

fn logged(cid: String, op: &str, received_at: i64, nullified: bool) -> Result<LoggedOp> {
    let op = syncropel_protocol::parse_json(op.as_bytes(), syncropel_protocol::DEFAULT_MAX_DEPTH)
        .map_err(|e| DirectoryError::Internal(format!("stored op {cid}: {e}")))?;
    Ok(LoggedOp {
        cid,
        op,
        received_at,
        nullified,
    })
}

/// Refuses the op if the DID already took its quota in the last hour or day; the wait is until
/// enough of those ops age out.
fn check_rate(rules: Rules, log: &[LoggedOp], now: i64) -> Result<()> {
    let mut wait = 0;
    for (limit, window) in [(rules.ops_per_hour, 3600), (rules.ops_per_day, 86_400)] {
        let mut recent: Vec<i64> = log
            .iter()
            .map(|e| e.received_at)
            .filter(|&t| now - t < window)
            .collect();
        if recent.len() >= limit.max(1) {
            recent.sort_unstable();
            wait = wait.max(recent[recent.len() - limit.max(1)] + window - now);
        }
    }
    if wait > 0 {
        Err(DirectoryError::RateLimited {
            retry_after_secs: wait as u64,
        })
    } else {
        Ok(())
    }
}

/// A unique violation on `handles` is another DID taking the handle concurrently (Postgres).
fn handle_conflict(e: sqlx::Error, handle: &str) -> DirectoryError {
    match e.as_database_error() {
        Some(db) if db.is_unique_violation() => DirectoryError::HandleTaken(handle.to_owned()),
        _ => DirectoryError::Database(e),
    }
}

fn internal(what: &str) -> DirectoryError {
    DirectoryError::Internal(what.to_owned())
}

/// The load and write steps for one backend; the SQL is shared (`$n` placeholders work in
/// both), only the connection type differs.
macro_rules! backend {
    ($load:ident, $write:ident, $conn:ty) => {
        async fn $load(conn: &mut $conn, did: &str) -> Result<Vec<LoggedOp>> {
            let rows: Vec<(String, String, i64, bool)> = sqlx::query_as(
                "SELECT cid, op, received_at, nullified FROM ops WHERE did = $1 ORDER BY seq",
            )
            .bind(did)
            .fetch_all(&mut *conn)
            .await?;
            rows.into_iter()
                .map(|(cid, op, received_at, nullified)| logged(cid, &op, received_at, nullified))
                .collect()
        }

        async fn $write(
            conn: &mut $conn,
            sub: &Submission,
            now: i64,
            rules: Rules,
        ) -> Result<Outcome> {
            let mut log = $load(conn, &sub.did).await?;
            if sub.kind != OpType::Genesis && log.is_empty() {
                return Err(DirectoryError::NotFound(format!("no DID {}", sub.did)));
            }
            // A byte-identical op again (a retry after a lost answer), genesis or not, is
            // answered as it was taken: `200`, nothing new.
            let cid = sub.op.cid().to_owned();
            if let Some(taken) = log.iter().find(|entry| entry.cid == cid) {
                return Ok(Outcome {
                    did: sub.did.clone(),
                    cid,
                    received_at: taken.received_at,
                    created: false,
                    nullified: Vec::new(),
                    document: None,
                });
            }
            if did_sync::current(&log).is_some_and(|state| state.deactivated) {
                return Err(DirectoryError::Deactivated(sub.did.clone()));
            }
            let applied = apply_checked(&log, &sub.op, now, rules.recovery_window_secs)?;
            // An op that displaces others is signed by a key outranking all of them (or
            // `apply_checked` refuses it), so the ops of a lower-priority key must not use up the
            // quota and hold the owner's recovery off until they are final.
            if applied.nullified.is_empty() {
                check_rate(rules, &log, now)?;
            }
            let before: Option<DidState> = did_sync::current(&log);
            for entry in &mut log {
                if applied.nullified.contains(&entry.cid) {
                    entry.nullified = true;
                }
            }
            log.push(applied.entry.clone());
            let state = did_sync::current(&log).ok_or_else(|| internal("log without genesis"))?;
            let entry = &applied.entry;

            let handles_changed = before.as_ref().map(|b| &b.handles) != Some(&state.handles);
            if handles_changed {
                for handle in &state.handles {
                    let holder: Option<String> =
                        sqlx::query_scalar("SELECT did FROM handles WHERE handle = $1")
                            .bind(handle)
                            .fetch_optional(&mut *conn)
                            .await?;
                    if holder.is_some_and(|holder| holder != sub.did) {
                        return Err(DirectoryError::HandleTaken(handle.clone()));
                    }
                }
                sqlx::query("DELETE FROM handles WHERE did = $1")
                    .bind(&sub.did)
                    .execute(&mut *conn)
                    .await?;
                for handle in &state.handles {
                    sqlx::query("INSERT INTO handles (handle, did) VALUES ($1, $2)")
                        .bind(handle)
                        .bind(&sub.did)
                        .execute(&mut *conn)
                        .await
                        .map_err(|e| handle_conflict(e, handle))?;
                }
            }

            sqlx::query(
                "INSERT INTO ops (did, cid, op, received_at, nullified) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&sub.did)
            .bind(&entry.cid)
            .bind(syncropel_protocol::canonical_string(&entry.op))
            .bind(now)
            .bind(false)
            .execute(&mut *conn)
            .await?;
            for cid in &applied.nullified {
                sqlx::query("UPDATE ops SET nullified = $1 WHERE cid = $2")
                    .bind(true)
                    .bind(cid)
                    .execute(&mut *conn)
                    .await?;
            }

            if before.as_ref().map(|b| &b.namespaces) != Some(&state.namespaces) {
                sqlx::query("DELETE FROM namespaces WHERE did = $1")
                    .bind(&sub.did)
                    .execute(&mut *conn)
                    .await?;
                for namespace in &state.namespaces {
                    sqlx::query("INSERT INTO namespaces (namespace, did) VALUES ($1, $2)")
                        .bind(namespace)
                        .bind(&sub.did)
                        .execute(&mut *conn)
                        .await?;
                }
            }

            let document = did_sync::document(&state).to_string();
            let endpoint = state.services.get("syncropel").map(|s| s.endpoint.clone());
            let handles = serde_json::to_string(&state.handles)
                .map_err(|e| DirectoryError::Internal(e.to_string()))?;
            sqlx::query(
                "INSERT INTO dids \
                 (hash, did, head, document, deactivated, endpoint, handles, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (hash) DO UPDATE SET head = excluded.head, \
                 document = excluded.document, deactivated = excluded.deactivated, \
                 endpoint = excluded.endpoint, handles = excluded.handles, \
                 updated_at = excluded.updated_at",
            )
            .bind(&sub.hash)
            .bind(&sub.did)
            .bind(&state.head)
            .bind(&document)
            .bind(state.deactivated)
            .bind(endpoint)
            .bind(handles)
            .bind(now)
            .execute(&mut *conn)
            .await?;

            Ok(Outcome {
                did: sub.did.clone(),
                cid: entry.cid.clone(),
                received_at: now,
                created: true,
                nullified: applied.nullified,
                document: Some((document, state.deactivated)),
            })
        }
    };
}

backend!(load_log_sqlite, write_sqlite, SqliteConnection);
backend!(load_log_postgres, write_postgres, PgConnection);

/// The only SQLite writer: takes what has queued, applies each op in a savepoint (a refused op
/// leaves nothing behind) and commits the batch once, answering only after the commit.
async fn run_sqlite_writer(
    mut conn: SqliteConnection,
    mut queue: mpsc::Receiver<Job>,
    cache: Arc<DocumentCache>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcomes = match write_batch(&mut conn, &batch).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::error!(error = %e, "SQLite write batch failed");
                let _ = conn.execute("ROLLBACK").await;
                batch
                    .iter()
                    .map(|_| Err(internal("the write transaction failed")))
                    .collect()
            }
        };
        for (job, mut outcome) in batch.into_iter().zip(outcomes) {
            if let Ok(Outcome {
                document: Some(document),
                ..
            }) = &mut outcome
            {
                cache.put(&job.submission.hash, std::mem::take(document));
            }
            let _ = job.reply.send(outcome);
        }
    }
}

async fn write_batch(conn: &mut SqliteConnection, batch: &[Job]) -> Result<Vec<Result<Outcome>>> {
    conn.execute("BEGIN IMMEDIATE").await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        conn.execute("SAVEPOINT op").await?;
        let outcome = write_sqlite(conn, &job.submission, job.now, job.rules).await;
        if outcome.is_err() {
            conn.execute("ROLLBACK TO op").await?;
        }
        conn.execute("RELEASE op").await?;
        outcomes.push(outcome);
    }
    conn.execute("COMMIT").await?;
    Ok(outcomes)
}

/// A cached document with deactivation flag, and when it was stored.
type Entry = (Instant, (String, bool));

/// Documents in memory, by DID hash. The writer of this process updates an entry after each
/// commit, before answering; a read only fills an absent or expired entry, so a document read
/// before a commit cannot overwrite the committed one. With SQLite (one process owns the file)
/// entries never expire; with Postgres another replica's write shows once the entry expires.
struct DocumentCache {
    entries: RwLock<HashMap<String, Entry>>,
    lifetime: Option<Duration>,
}

impl DocumentCache {
    fn new(lifetime: Option<Duration>) -> DocumentCache {
        DocumentCache {
            entries: RwLock::default(),
            lifetime,
        }
    }

    fn fresh(&self, stored: Instant) -> bool {
        self.lifetime
            .is_none_or(|lifetime| stored.elapsed() < lifetime)
    }

    fn get(&self, hash: &str) -> Option<(String, bool)> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(hash)
            .filter(|(stored, _)| self.fresh(*stored))
            .map(|(_, document)| document.clone())
    }

    fn fill(&self, hash: &str, document: &(String, bool)) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries
            .get(hash)
            .is_some_and(|(stored, _)| self.fresh(*stored))
        {
            return;
        }
        self.make_room(&mut entries);
        if entries.len() < CACHED_DOCUMENTS || entries.contains_key(hash) {
            entries.insert(hash.to_owned(), (Instant::now(), document.clone()));
        }
    }

    /// From the writer, after the commit that stored `document`.
    fn put(&self, hash: &str, document: (String, bool)) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.make_room(&mut entries);
        if entries.len() < CACHED_DOCUMENTS || entries.contains_key(hash) {
            entries.insert(hash.to_owned(), (Instant::now(), document));
        }
    }

    /// A full cache drops its expired entries (none without a lifetime); if all are fresh, new
    /// documents are read from the database until some expire.
    fn make_room(&self, entries: &mut HashMap<String, Entry>) {
        if entries.len() >= CACHED_DOCUMENTS && self.lifetime.is_some() {
            entries.retain(|_, (stored, _)| self.fresh(*stored));
        }
    }
}
