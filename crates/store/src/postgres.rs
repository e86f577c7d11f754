//! The Postgres backend: the hosted store, many tenants and any number of steward replicas over one
//! database (schema and the reasons for it: `migrations/postgres`).
//!
//! Writes: one writer task per store commits whatever has queued in one transaction (group commit),
//! like the SQLite writer. Inside it, each tenant's counter row in `tenant_counters` is locked first
//! (in tenant order, so two replicas never deadlock); holding it, the batch looks up which of its
//! records are replays or clock clashes, numbers only the rows it will insert, inserts them with one
//! multi-row statement, and advances the counters. The row lock serializes a tenant's committers
//! across every replica, so a tenant's sequences commit in increasing order with no gaps, and a
//! reader holding cursor N never later sees a smaller sequence commit.
//!
//! Announcements: the inserting transaction `NOTIFY`s `records` with `<tenant> <first> <last>`;
//! Postgres delivers it at commit to every replica's listener, which reads the committed rows of
//! that tenant after the last one it announced and broadcasts them in sequence order.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use tokio::sync::{broadcast, mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

use crate::query::Column;
use crate::{
    with_sequence, Appended, AuthChange, Committed, ListFilter, NewRecord, RecordStore, Result,
    ServiceAccount, StateChange, StoreError, StoredRecord, ThreadSummary, TokenGrant,
};

/// Most writes one transaction takes (see the SQLite backend).
/// The migrations of this backend, applied at open and checked by readiness.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

const MAX_BATCH: usize = 1024;
/// Queue depth in front of the writer; callers wait (backpressure) when it is full.
const QUEUE_DEPTH: usize = 8192;
/// Watchers that fall further behind than this are told to reconnect.
const EVENT_CAPACITY: usize = 16384;
/// Writer tasks per store. A tenant always goes to the same writer (its records commit in order);
/// different tenants' batches commit in parallel, overlapping one batch's fsync with the next
/// one's work.
const WRITERS: usize = 4;
/// Connections of each of the two reading pools; with the writers' and the listener's, a replica
/// opens at most `2 × POOL_CONNECTIONS + WRITERS + 1`.
const POOL_CONNECTIONS: u32 = 8;
/// The NOTIFY channel of committed records.
const CHANNEL: &str = "records";
/// Rows the listener reads per query when it catches a tenant up.
const ANNOUNCE_PAGE: i64 = 1000;
/// Body text indexed for search per record. A tsvector holds at most 1 MiB; records are far
/// smaller in practice, and the cap keeps one odd record from failing its whole batch.
const MAX_SEARCH_TEXT: usize = 256 * 1024;

pub struct PgStore {
    /// Everything but `records`: small tables keyed by tenant, where cached plans are right.
    pool: PgPool,
    /// Reads of `records` (and the listener's), planned per execution (see [`PgStore::open_with`]).
    records_pool: PgPool,
    /// The writer tasks' connections (cached plans).
    writer_pool: PgPool,
    /// One queue per writer task; a tenant's writes always take the same one.
    writes: Vec<mpsc::Sender<WriteOp>>,
    events: broadcast::Sender<Committed>,
    writers: Mutex<Vec<JoinHandle<()>>>,
    listener: JoinHandle<()>,
    /// Token lookups, answered in batches by [`run_token_lookups`].
    token_lookups: mpsc::Sender<TokenLookup>,
}

/// One token lookup waiting for the next batch.
struct TokenLookup {
    tenant: String,
    token_id: String,
    reply: oneshot::Sender<Result<Option<TokenGrant>>>,
}

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
    /// Commit what is queued, then stop.
    Close,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://` or `postgresql://`) and applies pending
    /// migrations (serialized across replicas by sqlx's advisory lock).
    pub async fn open(url: &str) -> Result<PgStore> {
        PgStore::open_with(PgConnectOptions::from_str(url)?).await
    }

    pub async fn open_with(options: PgConnectOptions) -> Result<PgStore> {
        // Statements are prepared once per connection and the tenant is a parameter. After a few
        // runs Postgres may switch a statement to a generic plan, chosen once from the statistics
        // of that moment: for `records`, a plan picked while the tables were nearly empty then
        // keeps scanning every partition as they grow. Reads of `records` therefore plan per
        // execution, which always prunes to the tenant's partition and follows current
        // statistics. Everything else keeps cached plans: the small tables' key lookups plan
        // the same either way, and planning them per request would cost more than the lookup.
        // The writers' one lookup in `records` asks for custom plans itself.
        let connect = |connections: u32, options: PgConnectOptions| {
            PgPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
        };
        let writer_pool = connect(WRITERS as u32, options.clone()).await?;
        let pool = connect(POOL_CONNECTIONS, options.clone()).await?;
        let records_pool = connect(
            POOL_CONNECTIONS,
            options.options([("plan_cache_mode", "force_custom_plan")]),
        )
        .await?;
        MIGRATOR.run(&pool).await?;

        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        // Listening before `open` returns: a write made after it is announced to subscribers.
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.eager_reconnect(true);
        listener.listen(CHANNEL).await?;
        let listener = tokio::spawn(run_listener(listener, records_pool.clone(), events.clone()));

        let (writes, tasks) = (0..WRITERS)
            .map(|_| {
                let (sender, queue) = mpsc::channel(QUEUE_DEPTH);
                (sender, tokio::spawn(run_writer(writer_pool.clone(), queue)))
            })
            .unzip();
        let (token_lookups, lookups) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run_token_lookups(pool.clone(), lookups));
        Ok(PgStore {
            token_lookups,
            pool,
            records_pool,
            writer_pool,
            writes,
            events,
            writers: Mutex::new(tasks),
            listener,
        })
    }

    /// The hosted platform's own tables (tenants, provisionings, pull leases), on this store's
    /// pool of small-table connections.
    pub fn platform(&self) -> crate::platform::PlatformStore {
        crate::platform::PlatformStore {
            pool: self.pool.clone(),
        }
    }

    /// `EXPLAIN (FORMAT JSON)` of the exact query [`RecordStore::list`] runs, for tests and
    /// operators: the plan must touch exactly one `records_p*` partition. With `generic_plan` the
    /// query is planned as a cached statement is after a few executions: once, with the tenant
    /// a parameter (pruned at executor start, "Subplans Removed"); otherwise with its values.
    pub async fn explain_list(
        &self,
        tenant: &str,
        filter: &ListFilter,
        generic_plan: bool,
    ) -> Result<String> {
        let mut pooled = self.records_pool.acquire().await?;
        let conn: &mut PgConnection = &mut pooled;
        let mut list = QueryBuilder::<Postgres>::new("");
        push_list_query(&mut list, tenant, filter);
        let row = if generic_plan {
            sqlx::query("SET plan_cache_mode = force_generic_plan")
                .execute(&mut *conn)
                .await?;
            let prepare = format!("PREPARE explain_list AS {}", list.sql());
            // Simple protocol: its `$n` are the prepared statement's own parameters.
            sqlx::Executor::execute(&mut *conn, prepare.as_str()).await?;
            // The same arguments, in the order `push_list_query` binds them. EXECUTE under
            // EXPLAIN takes no bound parameters, so they are literals here (text quoted the
            // standard way: `standard_conforming_strings` is on since Postgres 9.1).
            let text = |s: &str| format!("'{}'", s.replace('\'', "''"));
            let mut args = vec![text(tenant), filter.after_seq.to_string()];
            args.extend(filter.thread.as_deref().map(text));
            args.extend(filter.actor.as_deref().map(text));
            args.extend(filter.since_clock.map(|c| c.to_string()));
            args.push(filter.limit.to_string());
            let explain = format!(
                "EXPLAIN (FORMAT JSON) EXECUTE explain_list({})",
                args.join(", ")
            );
            let row = sqlx::query(&explain).fetch_one(&mut *conn).await;
            for reset in ["DEALLOCATE explain_list", "RESET plan_cache_mode"] {
                sqlx::query(reset).execute(&mut *conn).await?;
            }
            row?
        } else {
            let mut explain = QueryBuilder::<Postgres>::new("EXPLAIN (FORMAT JSON) ");
            push_list_query(&mut explain, tenant, filter);
            explain.build().fetch_one(&mut *conn).await?
        };
        // The plan column is `json`; its wire form is the text itself.
        Ok(row.try_get_unchecked::<String, _>(0)?)
    }

    async fn submit<T>(
        &self,
        tenant: &str,
        op: WriteOp,
        reply: oneshot::Receiver<Result<T>>,
    ) -> Result<T> {
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(tenant, &mut hasher);
        let writer = std::hash::Hasher::finish(&hasher) as usize % self.writes.len();
        self.writes[writer]
            .send(op)
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        reply.await.map_err(|_| StoreError::WriterStopped)?
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The writer stops by itself once its queue's senders are gone; the listener would not.
        self.listener.abort();
    }
}

#[async_trait]
impl RecordStore for PgStore {
    #[tracing::instrument(level = "debug", name = "store.append", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn append(&self, tenant: &str, record: NewRecord) -> Result<Appended> {
        refuse_nul(tenant, &record)?;
        let (reply, rx) = oneshot::channel();
        let op = WriteOp::Append {
            tenant: tenant.to_string(),
            record,
            reply,
        };
        self.submit(tenant, op, rx).await
    }

    #[tracing::instrument(level = "debug", name = "store.apply_auth_change", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn apply_auth_change(
        &self,
        tenant: &str,
        change: AuthChange,
        audit: NewRecord,
    ) -> Result<bool> {
        refuse_nul(tenant, &audit)?;
        let texts: Vec<&str> = match &change {
            AuthChange::CreateServiceAccount(sa) => [&sa.id, &sa.name]
                .into_iter()
                .chain(&sa.scopes)
                .chain(&sa.allowed_actors)
                .map(String::as_str)
                .collect(),
            AuthChange::MintToken {
                token_id, sa_id, ..
            } => vec![token_id, sa_id],
            AuthChange::RevokeToken { token_id, .. } => vec![token_id],
        };
        if texts.iter().any(|t| t.contains('\0')) {
            return Err(nul_error());
        }
        let (reply, rx) = oneshot::channel();
        let op = WriteOp::Auth {
            tenant: tenant.to_string(),
            change,
            audit,
            reply,
        };
        self.submit(tenant, op, rx).await
    }

    #[tracing::instrument(level = "debug", name = "store.write", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn write(
        &self,
        tenant: &str,
        records: Vec<NewRecord>,
        state: Vec<StateChange>,
    ) -> Result<Vec<Result<Appended>>> {
        for record in &records {
            refuse_nul(tenant, record)?;
        }
        let state_texts = state.iter().flat_map(|change| match change {
            StateChange::Put { kind, key, value }
            | StateChange::PutIfAbsent { kind, key, value } => {
                vec![
                    Some(kind.as_str()),
                    Some(key.as_str()),
                    Some(value.as_str()),
                ]
            }
            StateChange::Delete { kind, key } => vec![Some(kind.as_str()), Some(key.as_str())],
        });
        if has_nul(state_texts) {
            return Err(nul_error());
        }
        let (reply, rx) = oneshot::channel();
        let op = WriteOp::Write {
            tenant: tenant.to_string(),
            records,
            state,
            reply,
        };
        self.submit(tenant, op, rx).await
    }

    #[tracing::instrument(level = "debug", name = "store.state_get", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn state_get(&self, tenant: &str, kind: &str, key: &str) -> Result<Option<String>> {
        if has_nul([Some(tenant), Some(kind), Some(key)]) {
            return Ok(None);
        }
        Ok(sqlx::query_scalar(
            "SELECT value FROM federation_state WHERE tenant = $1 AND kind = $2 AND key = $3",
        )
        .bind(tenant)
        .bind(kind)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }

    #[tracing::instrument(level = "debug", name = "store.state_list", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn state_list(&self, tenant: &str, kind: &str) -> Result<Vec<(String, String)>> {
        if has_nul([Some(tenant), Some(kind)]) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT key, value FROM federation_state WHERE tenant = $1 AND kind = $2 ORDER BY key",
        )
        .bind(tenant)
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("key"), r.get("value")))
            .collect())
    }

    #[tracing::instrument(level = "debug", name = "store.head_seq", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn head_seq(&self, tenant: &str) -> Result<i64> {
        if tenant.contains('\0') {
            return Ok(0);
        }
        let last: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM tenant_counters WHERE tenant = $1")
                .bind(tenant)
                .fetch_optional(&self.pool)
                .await?;
        Ok(last.unwrap_or(0))
    }

    #[tracing::instrument(level = "debug", name = "store.get", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<StoredRecord>> {
        if tenant.contains('\0') || id.contains('\0') {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT seq, id, thread, record_json FROM records WHERE tenant = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.records_pool)
        .await?;
        Ok(row.map(|r| stored_from_row(&r)))
    }

    #[tracing::instrument(level = "debug", name = "store.list", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn list(&self, tenant: &str, filter: &ListFilter) -> Result<Vec<StoredRecord>> {
        if has_nul([
            Some(tenant),
            filter.thread.as_deref(),
            filter.actor.as_deref(),
        ]) {
            return Ok(Vec::new());
        }
        let mut sql = QueryBuilder::<Postgres>::new("");
        push_list_query(&mut sql, tenant, filter);
        let rows = sql.build().fetch_all(&self.records_pool).await?;
        Ok(rows.iter().map(stored_from_row).collect())
    }

    #[tracing::instrument(level = "debug", name = "store.threads", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn threads(
        &self,
        tenant: &str,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ThreadSummary>> {
        if tenant.contains('\0') {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT thread, namespace, record_count, last_clock, last_seq FROM threads \
             WHERE tenant = $1 AND last_seq < $2 ORDER BY last_seq DESC LIMIT $3",
        )
        .bind(tenant)
        .bind(before_seq.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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

    #[tracing::instrument(level = "debug", name = "store.scan", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn scan(
        &self,
        tenant: &str,
        equalities: &[(Column, String)],
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredRecord>> {
        // Postgres text cannot hold NUL, so no stored value equals one that has it.
        if tenant.contains('\0')
            || equalities
                .iter()
                .any(|(c, v)| text_column(*c).is_some() && v.contains('\0'))
        {
            return Ok(Vec::new());
        }
        let mut sql = QueryBuilder::<Postgres>::new(
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
        let rows = sql.build().fetch_all(&self.records_pool).await?;
        Ok(rows.iter().map(stored_from_row).collect())
    }

    #[tracing::instrument(level = "debug", name = "store.search", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn search(
        &self,
        tenant: &str,
        words: &[String],
        limit: u32,
    ) -> Result<Vec<(f64, StoredRecord)>> {
        let Some(expression) = tsquery_expression(words) else {
            return Ok(Vec::new());
        };
        if tenant.contains('\0') {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT seq, id, thread, record_json, ts_rank(search, q)::float8 AS score \
             FROM records, to_tsquery('simple', $2) AS q \
             WHERE tenant = $1 AND search @@ q ORDER BY score DESC, seq LIMIT $3",
        )
        .bind(tenant)
        .bind(expression)
        .bind(i64::from(limit))
        .fetch_all(&self.records_pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<f64, _>("score").max(0.0), stored_from_row(r)))
            .collect())
    }

    async fn check_ready(&self) -> Result<()> {
        let applied: Option<i64> = sqlx::query_scalar(crate::APPLIED_MIGRATION)
            .fetch_one(&self.pool)
            .await?;
        crate::migrations_ready(&MIGRATOR, applied)
    }

    async fn has_service_accounts(&self, tenant: &str) -> Result<bool> {
        if tenant.contains('\0') {
            return Ok(false);
        }
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM service_accounts WHERE tenant = $1 LIMIT 1")
                .bind(tenant)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn service_accounts(&self, tenant: &str) -> Result<Vec<ServiceAccount>> {
        if tenant.contains('\0') {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT id, name, scopes, allowed_actors, created_at FROM service_accounts \
             WHERE tenant = $1 ORDER BY created_at, id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(service_account_from_row).collect())
    }

    async fn service_account(&self, tenant: &str, id: &str) -> Result<Option<ServiceAccount>> {
        if tenant.contains('\0') || id.contains('\0') {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT id, name, scopes, allowed_actors, created_at FROM service_accounts \
             WHERE tenant = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(service_account_from_row))
    }

    /// Looked up fresh on every call (a revocation holds at once on every replica); concurrent
    /// lookups share one query.
    #[tracing::instrument(level = "debug", name = "store.token", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn token(&self, tenant: &str, token_id: &str) -> Result<Option<TokenGrant>> {
        if tenant.contains('\0') || token_id.contains('\0') {
            return Ok(None);
        }
        let (reply, answer) = oneshot::channel();
        let lookup = TokenLookup {
            tenant: tenant.to_string(),
            token_id: token_id.to_string(),
            reply,
        };
        self.token_lookups
            .send(lookup)
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.events.subscribe()
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn close(&self) {
        let tasks = std::mem::take(&mut *self.writers.lock().await);
        for (writes, task) in self.writes.iter().zip(tasks) {
            if writes.send(WriteOp::Close).await.is_ok() {
                let _ = task.await;
            }
        }
        self.listener.abort();
        self.writer_pool.close().await;
        self.records_pool.close().await;
        self.pool.close().await;
    }
}

fn push_list_query(sql: &mut QueryBuilder<'_, Postgres>, tenant: &str, filter: &ListFilter) {
    sql.push("SELECT seq, id, thread, record_json FROM records WHERE tenant = ");
    sql.push_bind(tenant.to_string());
    sql.push(" AND seq > ").push_bind(filter.after_seq);
    if let Some(thread) = &filter.thread {
        sql.push(" AND thread = ").push_bind(thread.clone());
    }
    if let Some(actor) = &filter.actor {
        sql.push(" AND actor = ").push_bind(actor.clone());
    }
    if let Some(since) = filter.since_clock {
        sql.push(" AND clock >= ").push_bind(since);
    }
    sql.push(" ORDER BY seq LIMIT ")
        .push_bind(i64::from(filter.limit));
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

fn has_nul<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> bool {
    values.into_iter().flatten().any(|v| v.contains('\0'))
}

fn nul_error() -> StoreError {
    StoreError::WriteFailed("text contains a NUL character, which Postgres cannot store".into())
}

/// Postgres text cannot hold NUL. Refused before queueing, so it never fails a shared batch.
fn refuse_nul(tenant: &str, record: &NewRecord) -> Result<()> {
    let texts: [&str; 8] = [
        tenant,
        &record.id,
        &record.thread,
        &record.actor,
        &record.act,
        &record.data_type,
        &record.namespace,
        &record.json,
    ];
    if has_nul(
        texts
            .into_iter()
            .chain(record.hash_levels.iter().map(String::as_str))
            .map(Some),
    ) {
        return Err(nul_error());
    }
    Ok(())
}

/// Plain words become quoted tsquery lexemes joined by `|` (OR), so no query text is tsquery
/// syntax: inside quotes only `'` (doubled) and `\` (escaped) are special. Words split at
/// whitespace and NUL (which Postgres text cannot hold).
fn tsquery_expression(words: &[String]) -> Option<String> {
    let quoted: Vec<String> = words
        .iter()
        .flat_map(|w| w.split(|c: char| c.is_whitespace() || c == '\0'))
        .filter(|w| !w.is_empty())
        .map(|w| format!("'{}'", w.replace('\\', "\\\\").replace('\'', "''")))
        .collect();
    (!quoted.is_empty()).then(|| quoted.join(" | "))
}

/// The text indexed for search: every string value of the record's body, joined by spaces (the
/// SQLite backend indexes the same values).
fn search_text(json: &str) -> String {
    fn collect(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::String(s) => {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(s);
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            serde_json::Value::Object(members) => members.values().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    if let Ok(serde_json::Value::Object(record)) = serde_json::from_str(json) {
        if let Some(body) = record.get("body") {
            collect(body, &mut out);
        }
    }
    if out.contains('\0') {
        out = out.replace('\0', " ");
    }
    if out.len() > MAX_SEARCH_TEXT {
        let mut end = MAX_SEARCH_TEXT;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

fn stored_from_row(row: &PgRow) -> StoredRecord {
    let seq: i64 = row.get("seq");
    StoredRecord {
        seq,
        id: row.get("id"),
        thread: row.get("thread"),
        json: with_sequence(row.get("record_json"), seq),
    }
}

fn service_account_from_row(row: &PgRow) -> ServiceAccount {
    ServiceAccount {
        id: row.get("id"),
        name: row.get("name"),
        scopes: row.get("scopes"),
        allowed_actors: row.get("allowed_actors"),
        created_at: row.get("created_at"),
    }
}

// ---------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------

/// The writer task: takes everything queued (up to [`MAX_BATCH`]) and commits it as one transaction.
/// Answers token lookups in batches: whatever queued while the previous query ran goes into the
/// next one (every request looks its token up, so under load this saves most round trips).
async fn run_token_lookups(pool: PgPool, mut queue: mpsc::Receiver<TokenLookup>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let tenants: Vec<&str> = batch.iter().map(|l| l.tenant.as_str()).collect();
        let ids: Vec<&str> = batch.iter().map(|l| l.token_id.as_str()).collect();
        let rows = sqlx::query(
            "SELECT t.tenant, t.token_id, t.sa_id, t.scopes, s.allowed_actors, t.created_at, \
                    t.expires_at, t.revoked_at \
             FROM UNNEST($1::text[], $2::text[]) AS k(tenant, token_id) \
             JOIN tokens t ON t.tenant = k.tenant AND t.token_id = k.token_id \
             JOIN service_accounts s ON s.tenant = t.tenant AND s.id = t.sa_id",
        )
        .bind(&tenants)
        .bind(&ids)
        .fetch_all(&pool)
        .await;
        match rows {
            Ok(rows) => {
                let found: HashMap<(String, String), TokenGrant> = rows
                    .iter()
                    .map(|r| {
                        let grant = TokenGrant {
                            token_id: r.get("token_id"),
                            sa_id: r.get("sa_id"),
                            scopes: r.get("scopes"),
                            allowed_actors: r.get("allowed_actors"),
                            created_at: r.get("created_at"),
                            expires_at: r.get("expires_at"),
                            revoked_at: r.get("revoked_at"),
                        };
                        ((r.get("tenant"), grant.token_id.clone()), grant)
                    })
                    .collect();
                for lookup in batch.drain(..) {
                    // The same token may be asked for twice in one batch: both get it.
                    let grant = found.get(&(lookup.tenant, lookup.token_id)).cloned();
                    let _ = lookup.reply.send(Ok(grant));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for lookup in batch.drain(..) {
                    let _ = lookup
                        .reply
                        .send(Err(StoreError::ReadFailed(message.clone())));
                }
            }
        }
    }
}

async fn run_writer(pool: PgPool, mut queue: mpsc::Receiver<WriteOp>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut closing = false;
        let mut writes = Vec::with_capacity(batch.len());
        for op in batch.drain(..) {
            match op {
                WriteOp::Close => closing = true,
                write => writes.push(write),
            }
        }
        if !writes.is_empty() {
            commit_batch(&pool, writes).await;
        }
        if closing {
            break;
        }
    }
}

/// Outcome of one op inside a batch; the outer `Result` of the batch carries database failures.
enum OpOutcome {
    Append(Result<Appended>),
    Auth(Result<bool>),
    Write(Vec<Result<Appended>>),
}

async fn commit_batch(pool: &PgPool, batch: Vec<WriteOp>) {
    let attempt = |checked: bool| {
        let batch = &batch;
        async move {
            let mut tx = pool.begin().await?;
            if checked {
                sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
                    .execute(&mut *tx)
                    .await?;
            }
            let outcomes = write_batch(&mut tx, batch, checked).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(outcomes)
        }
    };
    // Most batches are all new records: insert them straight away. If any of them turns out to be
    // a replay or a clock clash, that transaction rolls back and the batch is decided row by row.
    let result = match attempt(false).await {
        Err(StoreError::Conflicted) => attempt(true).await,
        other => other,
    };
    // Watchers are told by the listener, from the NOTIFY this transaction sent at its commit.
    match result {
        Ok(outcomes) => {
            for (op, outcome) in batch.into_iter().zip(outcomes) {
                match (op, outcome) {
                    (WriteOp::Append { reply, .. }, OpOutcome::Append(result)) => {
                        let _ = reply.send(result);
                    }
                    (WriteOp::Auth { reply, .. }, OpOutcome::Auth(result)) => {
                        let _ = reply.send(result);
                    }
                    (WriteOp::Write { reply, .. }, OpOutcome::Write(results)) => {
                        let _ = reply.send(Ok(results));
                    }
                    _ => {}
                }
            }
        }
        Err(e) => {
            let message = e.to_string();
            tracing::error!(error = %message, ops = batch.len(), "write batch failed, rolled back");
            for op in batch {
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
                    WriteOp::Close => {}
                }
            }
        }
    }
}

/// Rows this transaction will insert, numbered, plus what conflict checks need to know of them.
#[derive(Default)]
struct Pending<'a> {
    /// Last sequence handed out per tenant: locked from the database, advanced here.
    counters: HashMap<String, i64>,
    /// First sequence handed out per tenant in this transaction, for the NOTIFY.
    first: HashMap<String, i64>,
    rows: Vec<(&'a str, &'a NewRecord, i64)>,
    by_id: HashMap<(&'a str, &'a str), StoredRecord>,
    clocks: HashSet<(&'a str, &'a str, &'a str, i64)>,
}

/// Writes a batch under its tenants' counter locks. Unchecked, only the batch itself is looked at
/// for replays and clock clashes (the unique indexes catch the rest, and [`flush`] then reports
/// [`StoreError::Conflicted`]); checked, every record is first looked up in the store.
async fn write_batch(
    conn: &mut PgConnection,
    batch: &[WriteOp],
    checked: bool,
) -> Result<Vec<OpOutcome>> {
    // Lock every tenant this batch writes, in one order for every replica (no deadlocks). The
    // `+ 0` update takes the row lock and reads the counter; it is advanced once at the end.
    let mut tenants: Vec<&str> = batch
        .iter()
        .filter_map(|op| match op {
            WriteOp::Append { tenant, .. }
            | WriteOp::Auth { tenant, .. }
            | WriteOp::Write { tenant, .. } => Some(tenant.as_str()),
            WriteOp::Close => None,
        })
        .collect();
    tenants.sort_unstable();
    tenants.dedup();
    let mut pending = Pending::default();
    let rows = sqlx::query(
        "INSERT INTO tenant_counters (tenant, last_seq) \
         SELECT t, 0 FROM UNNEST($1::text[]) WITH ORDINALITY AS u(t, n) ORDER BY n \
         ON CONFLICT (tenant) DO UPDATE SET last_seq = tenant_counters.last_seq \
         RETURNING tenant, last_seq",
    )
    .bind(&tenants)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        pending
            .counters
            .insert(row.get("tenant"), row.get("last_seq"));
    }

    let appends: Vec<(&str, &NewRecord)> = batch
        .iter()
        .filter_map(|op| match op {
            WriteOp::Append { tenant, record, .. } => Some((tenant.as_str(), record)),
            _ => None,
        })
        .collect();
    let mut appended = resolve(conn, &appends, &mut pending, checked, false)
        .await?
        .into_iter();

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
            } => {
                let result = apply_change(conn, tenant, change).await?;
                if let Ok(true) = result {
                    // As in SQLite: the change stands even if its audit record were a replay.
                    resolve(
                        conn,
                        &[(tenant.as_str(), audit)],
                        &mut pending,
                        checked,
                        false,
                    )
                    .await?;
                }
                OpOutcome::Auth(result)
            }
            WriteOp::Write {
                tenant,
                records,
                state,
                ..
            } => {
                let records: Vec<(&str, &NewRecord)> =
                    records.iter().map(|r| (tenant.as_str(), r)).collect();
                // Peers' records: a full record may replace a consent stub of the same id.
                let results = resolve(conn, &records, &mut pending, checked, true).await?;
                for change in state {
                    apply_state(conn, tenant, change).await?;
                }
                OpOutcome::Write(results)
            }
            WriteOp::Close => continue,
        };
        outcomes.push(outcome);
    }
    flush(conn, &pending, checked).await?;
    Ok(outcomes)
}

/// Decides, under the tenants' counter locks, what each record does: a stored (or earlier in this
/// batch) id is a replay, a taken `(thread, actor, clock)` is a clash, anything else is numbered
/// and queued for insert. Only inserted rows get sequences, so a tenant's sequence has no gaps.
/// Unchecked, the store is not consulted (see [`write_batch`]).
async fn resolve<'a>(
    conn: &mut PgConnection,
    records: &[(&'a str, &'a NewRecord)],
    pending: &mut Pending<'a>,
    checked: bool,
    upgrade_stubs: bool,
) -> Result<Vec<Result<Appended>>> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let mut stored_ids: HashMap<(String, String), StoredRecord> = HashMap::new();
    let mut stored_clocks: HashSet<(String, String, String, i64)> = HashSet::new();
    if checked {
        lookup(conn, records, &mut stored_ids, &mut stored_clocks).await?;
    }
    let mut outcomes = Vec::with_capacity(records.len());
    for &(tenant, record) in records {
        let key = (tenant.to_string(), record.id.clone());
        if let Some(stored) = stored_ids.get(&key) {
            if upgrade_stubs && crate::replaces_stub(&stored.json, &record.json) {
                replace_stub(conn, tenant, record, stored.seq).await?;
                outcomes.push(Ok(Appended::Existing(StoredRecord {
                    json: with_sequence(&record.json, stored.seq),
                    ..stored.clone()
                })));
            } else {
                outcomes.push(Ok(Appended::Existing(stored.clone())));
            }
            continue;
        }
        if let Some(stored) = pending.by_id.get(&(tenant, record.id.as_str())) {
            outcomes.push(Ok(Appended::Existing(stored.clone())));
            continue;
        }
        let clock_key = (
            tenant.to_string(),
            record.thread.clone(),
            record.actor.clone(),
            record.clock,
        );
        let pending_clock = (
            tenant,
            record.thread.as_str(),
            record.actor.as_str(),
            record.clock,
        );
        if stored_clocks.contains(&clock_key) || pending.clocks.contains(&pending_clock) {
            outcomes.push(Err(StoreError::DuplicateClock {
                thread: record.thread.clone(),
                actor: record.actor.clone(),
                clock: record.clock,
            }));
            continue;
        }
        let counter = pending
            .counters
            .get_mut(tenant)
            .ok_or_else(|| StoreError::WriteFailed(format!("tenant '{tenant}' not locked")))?;
        *counter += 1;
        let seq = *counter;
        pending.first.entry(tenant.to_string()).or_insert(seq);
        let stored = StoredRecord {
            seq,
            id: record.id.clone(),
            thread: record.thread.clone(),
            json: with_sequence(&record.json, seq),
        };
        pending.clocks.insert(pending_clock);
        pending
            .by_id
            .insert((tenant, record.id.as_str()), stored.clone());
        pending.rows.push((tenant, record, seq));
        outcomes.push(Ok(Appended::Inserted(stored)));
    }
    Ok(outcomes)
}

/// The stored records that share an id or a `(thread, actor, clock)` with `records`. The join
/// cannot prune partitions (the tenants come from an array), which is why only checked batches
/// run it.
async fn lookup(
    conn: &mut PgConnection,
    records: &[(&str, &NewRecord)],
    stored_ids: &mut HashMap<(String, String), StoredRecord>,
    stored_clocks: &mut HashSet<(String, String, String, i64)>,
) -> Result<()> {
    // One pair of branches per tenant, each with the tenant as its own parameter: planned per
    // execution (the checked path asks for custom plans), every branch prunes to that tenant's
    // partition, so a batch that met a stored record never scans the others.
    let mut by_tenant: Vec<(&str, Vec<&NewRecord>)> = Vec::new();
    for &(tenant, record) in records {
        match by_tenant.iter_mut().find(|(t, _)| *t == tenant) {
            Some((_, group)) => group.push(record),
            None => by_tenant.push((tenant, vec![record])),
        }
    }
    let mut sql = QueryBuilder::<Postgres>::new("");
    for (n, (tenant, group)) in by_tenant.iter().enumerate() {
        if n > 0 {
            sql.push(" UNION ALL ");
        }
        let ids: Vec<&str> = group.iter().map(|r| r.id.as_str()).collect();
        let threads: Vec<&str> = group.iter().map(|r| r.thread.as_str()).collect();
        let actors: Vec<&str> = group.iter().map(|r| r.actor.as_str()).collect();
        let clocks: Vec<i64> = group.iter().map(|r| r.clock).collect();
        sql.push("(SELECT r.tenant, r.seq, r.id, r.thread, r.actor, r.clock, r.record_json FROM records r WHERE r.tenant = ")
            .push_bind(tenant.to_string())
            .push(" AND r.id = ANY(")
            .push_bind(ids)
            .push(")) UNION ALL (SELECT r.tenant, r.seq, r.id, r.thread, r.actor, r.clock, r.record_json FROM UNNEST(")
            .push_bind(threads)
            .push("::text[], ")
            .push_bind(actors)
            .push("::text[], ")
            .push_bind(clocks)
            .push("::int8[]) AS k(thread, actor, clock) JOIN records r ON r.tenant = ")
            .push_bind(tenant.to_string())
            .push(" AND r.thread = k.thread AND r.actor = k.actor AND r.clock = k.clock)");
    }
    let rows = sql.build().fetch_all(&mut *conn).await?;
    for row in &rows {
        let tenant: String = row.get("tenant");
        stored_clocks.insert((
            tenant.clone(),
            row.get("thread"),
            row.get("actor"),
            row.get("clock"),
        ));
        let record = stored_from_row(row);
        stored_ids.insert((tenant, record.id.clone()), record);
    }
    Ok(())
}

/// Inserts the numbered rows, updates the thread summaries and the counters, and queues one NOTIFY
/// per tenant (delivered when the transaction commits), all in one statement.
async fn flush(conn: &mut PgConnection, pending: &Pending<'_>, checked: bool) -> Result<()> {
    if pending.rows.is_empty() {
        return Ok(());
    }
    let rows = &pending.rows;
    let col = |f: fn(&NewRecord) -> &str| rows.iter().map(|(_, r, _)| f(r)).collect::<Vec<_>>();
    let tenants: Vec<&str> = rows.iter().map(|(t, _, _)| *t).collect();
    let seqs: Vec<i64> = rows.iter().map(|(_, _, s)| *s).collect();
    let clocks: Vec<i64> = rows.iter().map(|(_, r, _)| r.clock).collect();
    let created: Vec<i64> = rows.iter().map(|(_, r, _)| r.created_at).collect();
    let texts: Vec<String> = rows.iter().map(|(_, r, _)| search_text(&r.json)).collect();

    // Thread summaries, aggregated here so one upsert touches each (tenant, thread) once.
    let mut summaries: HashMap<(&str, &str), (&str, i64, i64, i64)> = HashMap::new();
    let mut order = Vec::new();
    for (tenant, record, seq) in rows {
        let entry = summaries
            .entry((tenant, record.thread.as_str()))
            .or_insert_with(|| {
                order.push((*tenant, record.thread.as_str()));
                (record.namespace.as_str(), 0, record.clock, *seq)
            });
        entry.1 += 1;
        entry.2 = entry.2.max(record.clock);
        entry.3 = entry.3.max(*seq);
    }
    let th_tenants: Vec<&str> = order.iter().map(|k| k.0).collect();
    let th_threads: Vec<&str> = order.iter().map(|k| k.1).collect();
    let th_namespaces: Vec<&str> = order.iter().map(|k| summaries[k].0).collect();
    let th_counts: Vec<i64> = order.iter().map(|k| summaries[k].1).collect();
    let th_clocks: Vec<i64> = order.iter().map(|k| summaries[k].2).collect();
    let th_seqs: Vec<i64> = order.iter().map(|k| summaries[k].3).collect();

    let mut counter_tenants: Vec<&str> = pending.first.keys().map(String::as_str).collect();
    counter_tenants.sort_unstable();
    let counter_values: Vec<i64> = counter_tenants
        .iter()
        .map(|t| pending.counters[*t])
        .collect();

    let payloads: Vec<String> = counter_tenants
        .iter()
        .zip(&counter_values)
        .map(|(t, last)| format!("{t} {} {last}", pending.first[*t]))
        .collect();

    let inserted: i64 = sqlx::query_scalar(
        "WITH ins AS ( \
           INSERT INTO records (tenant, seq, id, thread, actor, clock, act, data_type, namespace, \
                                created_at, l0, l1, l2, l3, record_json, search) \
           SELECT t, s, i, th, a, c, ac, dt, ns, ca, h0, h1, h2, h3, j, to_tsvector('simple', x) \
           FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::int8[], \
                       $7::text[], $8::text[], $9::text[], $10::int8[], $11::text[], $12::text[], \
                       $13::text[], $14::text[], $15::text[], $16::text[]) \
                AS u(t, s, i, th, a, c, ac, dt, ns, ca, h0, h1, h2, h3, j, x) \
           ON CONFLICT DO NOTHING RETURNING 1 \
         ), thr AS ( \
           INSERT INTO threads (tenant, thread, namespace, record_count, last_clock, last_seq) \
           SELECT * FROM UNNEST($17::text[], $18::text[], $19::text[], $20::int8[], $21::int8[], \
                                $22::int8[]) \
           ON CONFLICT (tenant, thread) DO UPDATE SET \
             record_count = threads.record_count + excluded.record_count, \
             last_clock = greatest(threads.last_clock, excluded.last_clock), \
             last_seq = greatest(threads.last_seq, excluded.last_seq) \
         ), cnt AS ( \
           UPDATE tenant_counters c SET last_seq = u.s \
           FROM UNNEST($23::text[], $24::int8[]) AS u(t, s) WHERE c.tenant = u.t \
         ), ntf AS ( \
           SELECT pg_notify($25, p) FROM UNNEST($26::text[]) AS p \
         ) \
         SELECT (SELECT count(*) FROM ins) + 0 * (SELECT count(*) FROM ntf)",
    )
    .bind(&tenants)
    .bind(&seqs)
    .bind(col(|r| &r.id))
    .bind(col(|r| &r.thread))
    .bind(col(|r| &r.actor))
    .bind(&clocks)
    .bind(col(|r| &r.act))
    .bind(col(|r| &r.data_type))
    .bind(col(|r| &r.namespace))
    .bind(&created)
    .bind(col(|r| &r.hash_levels[0]))
    .bind(col(|r| &r.hash_levels[1]))
    .bind(col(|r| &r.hash_levels[2]))
    .bind(col(|r| &r.hash_levels[3]))
    .bind(col(|r| &r.json))
    .bind(&texts)
    .bind(&th_tenants)
    .bind(&th_threads)
    .bind(&th_namespaces)
    .bind(&th_counts)
    .bind(&th_clocks)
    .bind(&th_seqs)
    .bind(&counter_tenants)
    .bind(&counter_values)
    .bind(CHANNEL)
    .bind(&payloads)
    .fetch_one(&mut *conn)
    .await?;
    if inserted != rows.len() as i64 {
        // Unchecked: some row was a replay or a clash; the caller rolls back and checks. Checked,
        // every row was decided under the tenants' locks, so this means a writer bypassed the
        // counters, and the batch is rolled back rather than answer with numbers not stored.
        return Err(if checked {
            StoreError::WriteFailed(format!(
                "{} of {} records conflicted after the conflict check",
                rows.len() as i64 - inserted,
                rows.len()
            ))
        } else {
            StoreError::Conflicted
        });
    }
    Ok(())
}

/// Puts a peer's full record in place of its consent stub (same id, same sequence).
async fn replace_stub(
    conn: &mut PgConnection,
    tenant: &str,
    record: &NewRecord,
    seq: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE records SET record_json = $3, l0 = $4, l1 = $5, l2 = $6, l3 = $7, \
         search = to_tsvector('simple', $8), namespace = $9 WHERE tenant = $1 AND seq = $2",
    )
    .bind(tenant)
    .bind(seq)
    .bind(&record.json)
    .bind(&record.hash_levels[0])
    .bind(&record.hash_levels[1])
    .bind(&record.hash_levels[2])
    .bind(&record.hash_levels[3])
    .bind(search_text(&record.json))
    .bind(&record.namespace)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn apply_state(
    conn: &mut PgConnection,
    tenant: &str,
    change: &StateChange,
) -> Result<(), sqlx::Error> {
    let now = crate::unix_now();
    match change {
        StateChange::Put { kind, key, value } | StateChange::PutIfAbsent { kind, key, value } => {
            let sql = if matches!(change, StateChange::PutIfAbsent { .. }) {
                "INSERT INTO federation_state (tenant, kind, key, value, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
            } else {
                "INSERT INTO federation_state (tenant, kind, key, value, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, kind, key) \
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
            sqlx::query(
                "DELETE FROM federation_state WHERE tenant = $1 AND kind = $2 AND key = $3",
            )
            .bind(tenant)
            .bind(kind)
            .bind(key)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

async fn apply_change(
    conn: &mut PgConnection,
    tenant: &str,
    change: &AuthChange,
) -> Result<Result<bool>> {
    Ok(match change {
        AuthChange::CreateServiceAccount(sa) => {
            let done = sqlx::query(
                "INSERT INTO service_accounts (tenant, id, name, scopes, allowed_actors, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(tenant)
            .bind(&sa.id)
            .bind(&sa.name)
            .bind(&sa.scopes)
            .bind(&sa.allowed_actors)
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
                 SELECT tenant, $1, id, scopes, $2, $3 FROM service_accounts \
                 WHERE tenant = $4 AND id = $5 ON CONFLICT DO NOTHING",
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
                    sqlx::query_scalar("SELECT 1 FROM tokens WHERE tenant = $1 AND token_id = $2")
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
                "UPDATE tokens SET revoked_at = $1 \
                 WHERE tenant = $2 AND token_id = $3 AND revoked_at IS NULL",
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

// ---------------------------------------------------------------------------
// Listener
// ---------------------------------------------------------------------------

/// Receives `<tenant> <first> <last>` notifications and announces the committed rows of that
/// tenant after the last one announced, in sequence order. Reading "everything after the last
/// announced" rather than exactly the notified range means nothing is skipped when notifications
/// are lost (a reconnect) and a backlog of notifications costs one query, not one each: a
/// tenant's committed sequences are always a gapless prefix, since its committers are serialized.
async fn run_listener(
    mut listener: PgListener,
    pool: PgPool,
    events: broadcast::Sender<Committed>,
) {
    let mut announced: HashMap<String, i64> = HashMap::new();
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                let Some((tenant, first, last)) = parse_payload(notification.payload()) else {
                    tracing::warn!(payload = notification.payload(), "unexpected notification");
                    continue;
                };
                let done = announced.entry(tenant.to_string()).or_insert(first - 1);
                if last <= *done {
                    continue;
                }
                if events.receiver_count() == 0 {
                    // Nobody listens: nothing to read, only remember how far the log is.
                    *done = last;
                    continue;
                }
                if let Err(e) = announce(&pool, &events, tenant, done).await {
                    tracing::warn!(error = %e, tenant, "reading committed records to announce failed");
                }
            }
            Ok(None) => {
                // The connection was lost (and is re-established): notifications sent meanwhile
                // are gone, so catch up every tenant this listener knows.
                tracing::warn!("record notification connection lost; catching up");
                for (tenant, done) in announced.iter_mut() {
                    if let Err(e) = announce(&pool, &events, tenant, done).await {
                        tracing::warn!(error = %e, tenant, "catching up announcements failed");
                    }
                }
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "record notifications failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn parse_payload(payload: &str) -> Option<(&str, i64, i64)> {
    let mut parts = payload.rsplitn(3, ' ');
    let last = parts.next()?.parse().ok()?;
    let first = parts.next()?.parse().ok()?;
    let tenant = parts.next()?;
    Some((tenant, first, last))
}

/// Broadcasts every committed record of `tenant` after `*done`, advancing `*done`.
async fn announce(
    pool: &PgPool,
    events: &broadcast::Sender<Committed>,
    tenant: &str,
    done: &mut i64,
) -> Result<()> {
    loop {
        let rows = sqlx::query(
            "SELECT seq, id, thread, record_json FROM records \
             WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(tenant)
        .bind(*done)
        .bind(ANNOUNCE_PAGE)
        .fetch_all(pool)
        .await?;
        let full = rows.len() as i64 == ANNOUNCE_PAGE;
        for row in &rows {
            let record = stored_from_row(row);
            *done = record.seq;
            let _ = events.send(Committed {
                tenant: tenant.to_string(),
                record,
            });
        }
        if !full {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_payload, search_text, tsquery_expression};

    #[test]
    fn search_words_are_quoted_lexemes() {
        let words = |ws: &[&str]| ws.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert_eq!(
            tsquery_expression(&words(&["o'b", "a\\b", "&|!"])).as_deref(),
            Some("'o''b' | 'a\\\\b' | '&|!'")
        );
        assert_eq!(
            tsquery_expression(&words(&["ze\0bra"])).as_deref(),
            Some("'ze' | 'bra'")
        );
        assert_eq!(tsquery_expression(&words(&["\0", " "])), None);
    }

    #[test]
    fn search_text_is_the_body_strings() {
        let json =
            r#"{"id":"x","thread":"t","body":{"a":"hello","b":[1,"wor\u0000ld",{"c":"deep"}]}}"#;
        assert_eq!(search_text(json), "hello wor ld deep");
        assert_eq!(search_text(r#"{"body":"plain"}"#), "plain");
        assert_eq!(search_text(r#"{"body":3}"#), "");
    }

    #[test]
    fn payloads_parse_from_the_right() {
        assert_eq!(parse_payload("a b 1 2"), Some(("a b", 1, 2)));
        assert_eq!(parse_payload("t 5 9"), Some(("t", 5, 9)));
        assert_eq!(parse_payload("t 9"), None);
    }
}
