//! The relay (federation-protocol.md §7): queues of signed envelopes that a source deposits while
//! its peers cannot reach it, and its peers pull. This crate holds who may call ([`auth`]), the
//! envelopes' checks ([`envelope`]) and their Postgres store ([`store`]).

pub mod auth;
pub mod envelope;
pub mod store;

/// What can go wrong at the relay; each maps to one error code of §7.3.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// `400 VALIDATION_ERROR`
    #[error("{0}")]
    Invalid(String),
    /// `413 PAYLOAD_TOO_LARGE`
    #[error("{0}")]
    TooLarge(String),
    /// `422 SIGNATURE_INVALID`
    #[error("{0}")]
    Signature(String),
    /// `507 QUEUE_FULL`: nothing was stored.
    #[error("the deposit would pass the {limit} bound: {queued} queued of at most {max}")]
    QueueFull {
        limit: &'static str,
        queued: i64,
        max: i64,
    },
    /// `410 QUEUE_CLOSED`: its destination deleted the queue.
    #[error("the queue was closed by its destination")]
    QueueClosed,
    /// `404 NOT_FOUND`
    #[error("no such queue")]
    NotFound,
    /// `401 AUTH_REQUIRED`
    #[error("this call needs an `Authorization: DIDSig` header")]
    AuthRequired,
    /// `401 AUTH_INVALID`: a bad, unverifiable or replayed signature.
    #[error("{0}")]
    AuthInvalid(String),
    /// `403 FRESHNESS_VIOLATION`
    #[error("the call's time is more than a minute from the relay's")]
    Freshness,
    /// `403 RELAY_FORBIDDEN`
    #[error("{0}")]
    Forbidden(String),
    /// `503 DID_UNRESOLVED`: not an authentication failure; retry later.
    #[error("the caller's DID cannot be resolved now: {0}")]
    DidUnresolved(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}
