//! The record store of a steward: one trait, [`RecordStore`], whose every method takes the tenant
//! first.
//!
//! The local backend is SQLite ([`SqliteStore`]); the hosted Postgres backend ([`PgStore`])
//! implements the same trait, so the steward never knows which one it runs on. Backends are chosen
//! once, by URL scheme ([`open`]). What the two do alike (the group-commit writer's core and the
//! statements they run the same way) is written once, in `shared`.
//!
//! Every other statement of the steward is here too: the hosted platform's tables (tenants,
//! provisionings, pull leases) are [`platform::PlatformStore`]'s.

pub mod platform;
mod postgres;
pub mod query;
mod shared;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use async_trait::async_trait;
use base64::Engine as _;
use tokio::sync::broadcast;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Errors of the store. The steward maps them to API errors in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another record already holds this `(thread, actor, clock)`.
    #[error("DuplicateClock: thread={thread} actor={actor} clock={clock}")]
    DuplicateClock {
        thread: String,
        actor: String,
        clock: i64,
    },
    #[error("service account '{0}' already exists")]
    ServiceAccountExists(String),
    #[error("unknown service account '{0}'")]
    UnknownServiceAccount(String),
    #[error("a token with id '{0}' already exists")]
    TokenExists(String),
    #[error("unsupported store URL '{0}': expected sqlite:, postgres: or postgresql:")]
    UnsupportedUrl(String),
    /// The batch this write was part of was rolled back; nothing of it was stored.
    #[error("write failed and was rolled back: {0}")]
    WriteFailed(String),
    /// A read shared by several callers failed (each gets the message).
    #[error("read failed: {0}")]
    ReadFailed(String),
    /// A batch written without a lookup met a stored id or clock; it is rolled back and retried
    /// with one. Never reaches callers.
    #[error("the batch met stored records and is retried with a lookup")]
    Conflicted,
    /// A row the caller named does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A write broke a uniqueness rule; `constraint` names which.
    #[error("conflict on {constraint}")]
    Conflict { constraint: String },
    #[error("the store's writer has stopped")]
    WriterStopped,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    /// The database lacks migrations this build needs (readiness).
    #[error("the database has migrations up to {applied}; this build needs {needed}")]
    MigrationsBehind { applied: i64, needed: i64 },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A validated, signed record ready to be stored. The steward renders the response JSON; the store
/// only adds the sequence it assigns.
#[derive(Clone, Debug)]
pub struct NewRecord {
    pub id: String,
    pub thread: String,
    pub actor: String,
    pub clock: i64,
    pub act: String,
    pub data_type: String,
    pub namespace: String,
    pub created_at: i64,
    /// The record's JSON object as the API serves it, except `sequence`: the store assigns that
    /// number at insert and splices it in whenever it hands the record out.
    pub json: String,
}

/// A record as stored: its sequence and the JSON the API serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub seq: i64,
    pub id: String,
    pub thread: String,
    pub json: String,
}

/// What an append did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Appended {
    /// A new row, with its freshly assigned sequence.
    Inserted(StoredRecord),
    /// The id was already stored: nothing changed, here is the stored record.
    Existing(StoredRecord),
}

impl Appended {
    pub fn record(&self) -> &StoredRecord {
        match self {
            Appended::Inserted(r) | Appended::Existing(r) => r,
        }
    }
}

/// That a record has just been committed, as announced to watchers (in sequence order): where,
/// never the record itself, so that a subscriber that stops reading pins a few bytes per commit,
/// not the platform's newest records. Subscribers read what they need from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub tenant: String,
    pub thread: String,
    pub seq: i64,
}

impl Committed {
    fn of(tenant: &str, record: &StoredRecord) -> Committed {
        Committed {
            tenant: tenant.to_owned(),
            thread: record.thread.clone(),
            seq: record.seq,
        }
    }
}

/// What one [`RecordStore::scan`] call reads at most, in record bytes (plus one record).
pub const SCAN_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// Filters of the list endpoints. All conditions AND.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub thread: Option<String>,
    pub actor: Option<String>,
    /// Inclusive lower bound on `clock`.
    pub since_clock: Option<i64>,
    /// Only records with a greater sequence (the decoded cursor).
    pub after_seq: i64,
    pub limit: u32,
    /// The page stops at the first record that reaches this many bytes of record JSON (so it
    /// holds at least one record, and at most one record more than the budget); the cut is made
    /// in the database, before any record is loaded. `None` for the steward's own folds.
    pub max_bytes: Option<usize>,
}

impl ListFilter {
    /// Whether a page read with this filter may have been cut by [`ListFilter::max_bytes`]
    /// rather than by its end: more records may follow it.
    pub fn cut_by_bytes(&self, page: &[StoredRecord]) -> bool {
        self.max_bytes
            .is_some_and(|max| page.iter().map(|r| r.json.len()).sum::<usize>() >= max)
    }
}

/// One entry of `GET /v1/threads`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ThreadSummary {
    pub id: String,
    pub namespace: String,
    pub record_count: i64,
    pub last_clock: i64,
    #[serde(skip)]
    pub last_seq: i64,
}

/// A service account: who may act, with which scopes, claiming which actors.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ServiceAccount {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// Actor DIDs this account may claim; empty means any.
    pub allowed_actors: Vec<String>,
    pub created_at: i64,
}

/// A minted token, known only by its id (SHA-256 of the whole token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenGrant {
    pub token_id: String,
    pub sa_id: String,
    pub scopes: Vec<String>,
    pub allowed_actors: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The grant this token was minted under (membership and agent credentials), whose liveness
    /// is checked on every request.
    pub grant_id: Option<String>,
}

/// A change to service accounts or tokens; applied in the same transaction as its audit record.
#[derive(Clone, Debug)]
pub enum AuthChange {
    CreateServiceAccount(ServiceAccount),
    MintToken {
        token_id: String,
        sa_id: String,
        created_at: i64,
        expires_at: Option<i64>,
        grant_id: Option<String>,
    },
    RevokeToken {
        token_id: String,
        revoked_at: i64,
    },
    /// Puts an account's live tokens that have no grant under `grant_id` (a member adopted with
    /// its existing credential): the bearer stays the same, its liveness now follows the grant.
    ParentTokens {
        sa_id: String,
        grant_id: String,
    },
}

/// A change to the federation state: small keyed documents per tenant (pull cursors, handshakes,
/// secrets, quarantine), written in the same transaction as the records they go with.
#[derive(Clone, Debug)]
pub enum StateChange {
    Put {
        kind: String,
        key: String,
        value: String,
    },
    /// Keeps an existing value: the first writer of a key wins.
    PutIfAbsent {
        kind: String,
        key: String,
        value: String,
    },
    Delete {
        kind: String,
        key: String,
    },
}

impl StateChange {
    pub fn put(kind: &str, key: &str, value: impl Into<String>) -> StateChange {
        StateChange::Put {
            kind: kind.to_string(),
            key: key.to_string(),
            value: value.into(),
        }
    }

    pub fn put_if_absent(kind: &str, key: &str, value: impl Into<String>) -> StateChange {
        StateChange::PutIfAbsent {
            kind: kind.to_string(),
            key: key.to_string(),
            value: value.into(),
        }
    }

    pub fn delete(kind: &str, key: &str) -> StateChange {
        StateChange::Delete {
            kind: kind.to_string(),
            key: key.to_string(),
        }
    }
}

/// The record store. Every method takes the tenant first; nothing is ambient.
#[async_trait]
pub trait RecordStore: Send + Sync + 'static {
    /// Appends one record, idempotently by id. Concurrent calls share transactions (group commit).
    async fn append(&self, tenant: &str, record: NewRecord) -> Result<Appended>;

    /// Applies an auth change and stores its audit record in one transaction. Returns whether the
    /// change took effect (a revoke of an unknown or already revoked token does not).
    async fn apply_auth_change(
        &self,
        tenant: &str,
        change: AuthChange,
        audit: NewRecord,
    ) -> Result<bool>;

    /// Stores records (each idempotent by id, as [`RecordStore::append`]) and state changes in
    /// one transaction: an ingested page and the cursor that moves past it commit together.
    /// One result per record, in order.
    async fn write(
        &self,
        tenant: &str,
        records: Vec<NewRecord>,
        state: Vec<StateChange>,
    ) -> Result<Vec<Result<Appended>>>;

    /// One state document.
    async fn state_get(&self, tenant: &str, kind: &str, key: &str) -> Result<Option<String>>;

    /// Every state document of a kind, ordered by key.
    async fn state_list(&self, tenant: &str, kind: &str) -> Result<Vec<(String, String)>>;

    /// At most `limit` state documents of a kind whose keys start with `prefix` (`""`: all) and
    /// sort after `after`, ordered by key: a page of a kind too large to read whole.
    async fn state_page(
        &self,
        tenant: &str,
        kind: &str,
        prefix: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(String, String)>>;

    /// How many state documents of a kind the tenant holds (without reading them).
    async fn state_count(&self, tenant: &str, kind: &str) -> Result<u64>;

    /// The highest sequence committed for the tenant (0 when it has no records).
    async fn head_seq(&self, tenant: &str) -> Result<i64>;

    /// About how many bytes the tenant's store takes: its records' JSON (Postgres), the whole
    /// database file (SQLite, one tenant). Read without a scan.
    async fn stored_bytes(&self, tenant: &str) -> Result<u64>;

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<StoredRecord>>;

    /// Records in ascending sequence.
    async fn list(&self, tenant: &str, filter: &ListFilter) -> Result<Vec<StoredRecord>>;

    /// Threads, most recently written first, strictly older than `before_seq` when given.
    async fn threads(
        &self,
        tenant: &str,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ThreadSummary>>;

    /// Candidate rows for a rich query, ascending sequence after `after_seq`: the column equalities
    /// are pushed down, the rest of the filter is evaluated by the caller. At most `limit` rows,
    /// and no more after the first that reaches [`SCAN_PAGE_BYTES`]: the scan is over when a call
    /// answers none.
    async fn scan(
        &self,
        tenant: &str,
        equalities: &[(query::Column, String)],
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredRecord>>;

    /// Full-text search over body string values: `(score, record)`, best first, score >= 0.
    /// `words` are plain words; the backend quotes them.
    async fn search(
        &self,
        tenant: &str,
        words: &[String],
        limit: u32,
    ) -> Result<Vec<(f64, StoredRecord)>>;

    /// Readiness: the database answers and holds every migration this build knows.
    async fn check_ready(&self) -> Result<()>;

    async fn has_service_accounts(&self, tenant: &str) -> Result<bool>;
    async fn service_accounts(&self, tenant: &str) -> Result<Vec<ServiceAccount>>;
    async fn service_account(&self, tenant: &str, id: &str) -> Result<Option<ServiceAccount>>;
    async fn token(&self, tenant: &str, token_id: &str) -> Result<Option<TokenGrant>>;

    /// Announces committed records, in sequence order per tenant.
    fn subscribe(&self) -> broadcast::Receiver<Committed>;

    /// Stops the writer after the queued writes and closes connections.
    async fn close(&self);

    /// The backend's name, for health reports: `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
}

/// Compares the newest migration a database recorded as applied with the newest `migrator`
/// knows; a database ahead of this build (a newer release migrated it) is fine.
fn migrations_ready(migrator: &sqlx::migrate::Migrator, applied: Option<i64>) -> Result<()> {
    let needed = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let applied = applied.unwrap_or(0);
    if applied < needed {
        return Err(StoreError::MigrationsBehind { applied, needed });
    }
    Ok(())
}

/// The query [`migrations_ready`] reads, the same on both backends.
const APPLIED_MIGRATION: &str = "SELECT MAX(version) FROM _sqlx_migrations WHERE success";

/// Opens the backend named by the URL scheme.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn RecordStore>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PgStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

/// The served form of a stored record: its JSON with `"sequence":N` spliced in before the closing
/// brace (stored records are always JSON objects).
pub fn with_sequence(json: &str, seq: i64) -> String {
    let body = json.strip_suffix('}').unwrap_or(json);
    let mut out = String::with_capacity(json.len() + 24);
    out.push_str(body);
    out.push_str(",\"sequence\":");
    out.push_str(&seq.to_string());
    out.push('}');
    out
}

/// Whether `incoming` (a record from a peer) replaces `stored`: a consent stub
/// (federation-protocol.md §6.3) is replaced by the full record of the same id once that has
/// arrived verified, provided the stub's envelope (thread, actor, act, clock, parents) is the
/// record's: a stub cannot be used to hold a slot the record would not. Nothing else stored is ever
/// rewritten.
pub(crate) fn replaces_stub(stored: &str, incoming: &str) -> bool {
    let parse = |json: &str| serde_json::from_str::<serde_json::Value>(json).ok();
    let (Some(stored), Some(incoming)) = (parse(stored), parse(incoming)) else {
        return false;
    };
    let same_envelope = ["thread", "actor", "act", "clock", "parents"]
        .iter()
        .all(|field| stored.get(field) == incoming.get(field));
    stub_value(&stored) && !stub_value(&incoming) && same_envelope
}

/// Whether a record's JSON is a consent stub (`"redacted": true`), which nobody signed.
pub(crate) fn is_stub(json: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(json).is_ok_and(|value| stub_value(&value))
}

fn stub_value(record: &serde_json::Value) -> bool {
    record.get("redacted") == Some(&serde_json::Value::Bool(true))
}

/// Seconds since the Unix epoch, for `updated_at` columns.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// List cursors are opaque to clients: base64url of the last sequence.
pub fn encode_cursor(seq: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(seq.to_string())
}

/// Decodes a list cursor; `None` when it is not one of ours.
pub fn decode_cursor(cursor: &str) -> Option<i64> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    std::str::from_utf8(&bytes)
        .ok()?
        .parse()
        .ok()
        .filter(|s| *s >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        assert_eq!(decode_cursor("not base64!"), None);
        assert_eq!(decode_cursor(&encode_cursor(-1)), None);
    }
}
