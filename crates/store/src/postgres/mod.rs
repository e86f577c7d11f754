//! The Postgres backend: the hosted store, many tenants and any number of steward replicas over one
//! database (schema and the reasons for it: `migrations/postgres`).
//!
//! Writes ([`writer`]): writer tasks commit whatever has queued in one transaction (group commit),
//! like the SQLite writer. Inside it, each tenant's counter row in `tenant_counters` is locked first
//! (in tenant order, so two replicas never deadlock); holding it, the batch looks up which of its
//! records are replays or clock clashes, numbers only the rows it will insert, inserts them with one
//! multi-row statement, and advances the counters. The row lock serializes a tenant's committers
//! across every replica, so a tenant's sequences commit in increasing order with no gaps, and a
//! reader holding cursor N never later sees a smaller sequence commit.
//!
//! Announcements ([`listen`]): the inserting transaction `NOTIFY`s `records` with
//! `<tenant> <first> <last>`; Postgres delivers it at commit to every replica's listener, which
//! reads the committed rows of that tenant after the last one it announced and broadcasts them in
//! sequence order.
//!
//! Token lookups ([`tokens`]) are batched; search ([`search`]) uses a `tsvector` column.

mod bound;
mod explain;
mod listen;
mod search;
mod sql;
mod tokens;
mod writer;

use std::convert::Infallible;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::{broadcast, mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

use self::bound::bound;
use crate::platform::PlatformStore;
use crate::query::Column;
use crate::shared::writer::{submit, Answer, Queued, WriteOp};
use crate::shared::{text_column, EVENT_CAPACITY, QUEUE_DEPTH};
use crate::{
    Appended, AuthChange, Committed, ListFilter, NewRecord, RecordStore, Result, ServiceAccount,
    StateChange, StoreError, StoredRecord, ThreadSummary, TokenGrant,
};

/// The migrations of this backend, applied at open and checked by readiness.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Writer tasks per store. A tenant always goes to the same writer (its records commit in order);
/// different tenants' batches commit in parallel, overlapping one batch's fsync with the next
/// one's work.
const WRITERS: usize = 4;
/// Connections of each of the two pools of tenant reads; with the platform's, the writers' and
/// the listener's, a replica opens at most `2 × POOL_CONNECTIONS + PLATFORM_CONNECTIONS +
/// WRITERS + 1`.
const POOL_CONNECTIONS: u32 = 8;
/// Connections for the work that spans tenants: migrations, batched token lookups, the
/// platform's tables.
const PLATFORM_CONNECTIONS: u32 = 4;
/// The NOTIFY channel of committed records.
const CHANNEL: &str = "records";

pub struct PgStore {
    /// Tenant reads of everything but `records`: small tables keyed by tenant, where cached
    /// plans are right. Its connections are [`bound`](bound::bound) to the tenant they read for.
    pool: PgPool,
    /// Tenant reads of `records` (and the listener's), planned per execution (see
    /// [`PgStore::open_with`]); bound like `pool`'s.
    records_pool: PgPool,
    /// Work that spans tenants, as the steward's own role: migrations, batched token lookups,
    /// the platform's tables.
    platform_pool: PgPool,
    /// The writer tasks' connections (cached plans).
    writer_pool: PgPool,
    /// One queue per writer task; a tenant's writes always take the same one.
    writes: Vec<mpsc::Sender<Queued<Infallible>>>,
    events: broadcast::Sender<Committed>,
    writers: Mutex<Vec<JoinHandle<()>>>,
    listener: JoinHandle<()>,
    /// Token lookups, answered in batches by [`tokens::run_token_lookups`].
    token_lookups: mpsc::Sender<tokens::TokenLookup>,
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
        let pool_options = |connections: u32| {
            PgPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(Duration::from_secs(30))
        };
        let platform_pool = pool_options(PLATFORM_CONNECTIONS)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&platform_pool).await?;
        let writer_pool = pool_options(WRITERS as u32)
            .connect_with(options.clone())
            .await?;
        let pool = bound::unbinding(pool_options(POOL_CONNECTIONS))
            .connect_with(options.clone())
            .await?;
        let records_pool = bound::unbinding(pool_options(POOL_CONNECTIONS))
            .connect_with(options.options([("plan_cache_mode", "force_custom_plan")]))
            .await?;
        // A login role that may not act as `syncropel_tenant` would fail every tenant read:
        // fail here instead, with Postgres's own reason.
        drop(bound(&pool, "").await?);

        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        // Listening before `open` returns: a write made after it is announced to subscribers.
        let mut listener = PgListener::connect_with(&platform_pool).await?;
        listener.eager_reconnect(true);
        listener.listen(CHANNEL).await?;
        let listener = tokio::spawn(listen::run_listener(
            listener,
            records_pool.clone(),
            events.clone(),
        ));

        let (writes, tasks) = (0..WRITERS)
            .map(|_| {
                let (sender, queue) = mpsc::channel(QUEUE_DEPTH);
                let task = tokio::spawn(writer::run_writer(writer_pool.clone(), queue));
                (sender, task)
            })
            .unzip();
        let (token_lookups, lookups) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(tokens::run_token_lookups(platform_pool.clone(), lookups));
        Ok(PgStore {
            token_lookups,
            pool,
            platform_pool,
            records_pool,
            writer_pool,
            writes,
            events,
            writers: Mutex::new(tasks),
            listener,
        })
    }

    /// The hosted platform's own tables (tenants, provisionings, pull leases), on this store's
    /// pool of work that spans tenants.
    pub fn platform(&self) -> PlatformStore {
        PlatformStore {
            pool: self.platform_pool.clone(),
        }
    }

    /// Queues `op` on the writer of `tenant` and waits for its answer.
    async fn submit<T>(&self, tenant: &str, (op, answer): (WriteOp, Answer<T>)) -> Result<T> {
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(tenant, &mut hasher);
        let writer = std::hash::Hasher::finish(&hasher) as usize % self.writes.len();
        submit(&self.writes[writer], op, answer).await
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
        self.submit(tenant, WriteOp::append(tenant, record)).await
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
                token_id,
                sa_id,
                grant_id,
                ..
            } => [token_id, sa_id]
                .into_iter()
                .chain(grant_id)
                .map(String::as_str)
                .collect(),
            AuthChange::RevokeToken { token_id, .. } => vec![token_id],
            AuthChange::ParentTokens { sa_id, grant_id } => vec![sa_id, grant_id],
        };
        if texts.iter().any(|t| t.contains('\0')) {
            return Err(nul_error());
        }
        self.submit(tenant, WriteOp::auth(tenant, change, audit))
            .await
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
        self.submit(tenant, WriteOp::write(tenant, records, state))
            .await
    }

    #[tracing::instrument(level = "debug", name = "store.state_get", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn state_get(&self, tenant: &str, kind: &str, key: &str) -> Result<Option<String>> {
        if has_nul([Some(tenant), Some(kind), Some(key)]) {
            return Ok(None);
        }
        sql::state_get(&mut *bound(&self.pool, tenant).await?, tenant, kind, key).await
    }

    #[tracing::instrument(level = "debug", name = "store.state_list", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn state_list(&self, tenant: &str, kind: &str) -> Result<Vec<(String, String)>> {
        if has_nul([Some(tenant), Some(kind)]) {
            return Ok(Vec::new());
        }
        sql::state_list(&mut *bound(&self.pool, tenant).await?, tenant, kind).await
    }

    async fn state_page(
        &self,
        tenant: &str,
        kind: &str,
        prefix: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(String, String)>> {
        if has_nul([Some(tenant), Some(kind), Some(prefix), Some(after)]) {
            return Ok(Vec::new());
        }
        let mut conn = bound(&self.pool, tenant).await?;
        sql::state_page(&mut *conn, tenant, kind, prefix, after, limit).await
    }

    async fn state_count(&self, tenant: &str, kind: &str) -> Result<u64> {
        if has_nul([Some(tenant), Some(kind)]) {
            return Ok(0);
        }
        sql::state_count(&mut *bound(&self.pool, tenant).await?, tenant, kind).await
    }

    #[tracing::instrument(level = "debug", name = "store.head_seq", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn head_seq(&self, tenant: &str) -> Result<i64> {
        if tenant.contains('\0') {
            return Ok(0);
        }
        let last: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM tenant_counters WHERE tenant = $1")
                .bind(tenant)
                .fetch_optional(&mut *bound(&self.pool, tenant).await?)
                .await?;
        Ok(last.unwrap_or(0))
    }

    async fn stored_bytes(&self, tenant: &str) -> Result<u64> {
        if tenant.contains('\0') {
            return Ok(0);
        }
        let bytes: Option<i64> =
            sqlx::query_scalar("SELECT bytes FROM tenant_counters WHERE tenant = $1")
                .bind(tenant)
                .fetch_optional(&mut *bound(&self.pool, tenant).await?)
                .await?;
        Ok(bytes.map_or(0, |b| u64::try_from(b).unwrap_or(0)))
    }

    #[tracing::instrument(level = "debug", name = "store.get", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<StoredRecord>> {
        if tenant.contains('\0') || id.contains('\0') {
            return Ok(None);
        }
        sql::get(&mut *bound(&self.records_pool, tenant).await?, tenant, id).await
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
        sql::list(
            &mut *bound(&self.records_pool, tenant).await?,
            tenant,
            filter,
        )
        .await
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
        sql::threads(
            &mut *bound(&self.pool, tenant).await?,
            tenant,
            before_seq,
            limit,
        )
        .await
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
        let mut conn = bound(&self.records_pool, tenant).await?;
        sql::scan(&mut *conn, tenant, equalities, after_seq, limit).await
    }

    #[tracing::instrument(level = "debug", name = "store.search", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn search(
        &self,
        tenant: &str,
        words: &[String],
        limit: u32,
    ) -> Result<Vec<(f64, StoredRecord)>> {
        search::search(&self.records_pool, tenant, words, limit).await
    }

    async fn check_ready(&self) -> Result<()> {
        sql::check_ready(&self.platform_pool, &MIGRATOR).await
    }

    async fn has_service_accounts(&self, tenant: &str) -> Result<bool> {
        if tenant.contains('\0') {
            return Ok(false);
        }
        sql::has_service_accounts(&mut *bound(&self.pool, tenant).await?, tenant).await
    }

    async fn service_accounts(&self, tenant: &str) -> Result<Vec<ServiceAccount>> {
        if tenant.contains('\0') {
            return Ok(Vec::new());
        }
        sql::service_accounts(&mut *bound(&self.pool, tenant).await?, tenant).await
    }

    async fn service_account(&self, tenant: &str, id: &str) -> Result<Option<ServiceAccount>> {
        if tenant.contains('\0') || id.contains('\0') {
            return Ok(None);
        }
        sql::service_account(&mut *bound(&self.pool, tenant).await?, tenant, id).await
    }

    /// Looked up fresh on every call (a revocation holds at once on every replica); concurrent
    /// lookups share one query.
    #[tracing::instrument(level = "debug", name = "store.token", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn token(&self, tenant: &str, token_id: &str) -> Result<Option<TokenGrant>> {
        if tenant.contains('\0') || token_id.contains('\0') {
            return Ok(None);
        }
        let (reply, answer) = oneshot::channel();
        let lookup = tokens::TokenLookup {
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
            if writes.send(Queued::Close).await.is_ok() {
                let _ = task.await;
            }
        }
        self.listener.abort();
        self.writer_pool.close().await;
        self.records_pool.close().await;
        self.pool.close().await;
        self.platform_pool.close().await;
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
    if has_nul(texts.into_iter().map(Some)) {
        return Err(nul_error());
    }
    Ok(())
}
