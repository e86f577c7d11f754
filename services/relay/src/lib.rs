//! The relay (federation-protocol.md §7): queues of signed envelopes that a source deposits while
//! its peers cannot reach it, and its peers pull. This crate holds who may call ([`auth`]), the
//! envelopes' checks ([`envelope`]), their Postgres store ([`store`]) and the routes
//! ([`routes`]); [`RelayError`] is the one place a failure becomes an answer.

pub mod auth;
pub mod limits;
pub mod metrics;
pub mod routes;
pub mod store;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use syncropel_protocol::relay::EnvelopeError;
use syncropel_protocol::ErrorCode;

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
        /// Seconds the source should wait.
        retry_after: u32,
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
    /// `400 INVALID_CURSOR`
    #[error("not a cursor of this queue")]
    InvalidCursor,
    /// `429 RATE_LIMITED`, with `Retry-After`.
    #[error("rate limit per {which} exceeded")]
    RateLimited {
        which: String,
        wait: std::time::Duration,
    },
    /// `409 CURSOR_EPOCH_MISMATCH`: the queue was dropped and opened again since.
    #[error("this cursor is of an earlier life of the queue; start again from an empty one")]
    CursorEpochMismatch,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<EnvelopeError> for RelayError {
    fn from(e: EnvelopeError) -> RelayError {
        match e {
            EnvelopeError::TooLarge(why) => RelayError::TooLarge(why),
            EnvelopeError::Invalid(_) => RelayError::Invalid(e.to_string()),
            EnvelopeError::Signature => RelayError::Signature(e.to_string()),
        }
    }
}

impl RelayError {
    pub fn code(&self) -> ErrorCode {
        match self {
            RelayError::Invalid(_) => ErrorCode::ValidationError,
            RelayError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            RelayError::Signature(_) => ErrorCode::SignatureInvalid,
            RelayError::QueueFull { .. } => ErrorCode::QueueFull,
            RelayError::QueueClosed => ErrorCode::QueueClosed,
            RelayError::NotFound => ErrorCode::NotFound,
            RelayError::AuthRequired => ErrorCode::AuthRequired,
            RelayError::AuthInvalid(_) => ErrorCode::AuthInvalid,
            RelayError::Freshness => ErrorCode::FreshnessViolation,
            RelayError::Forbidden(_) => ErrorCode::RelayForbidden,
            RelayError::DidUnresolved(_) => ErrorCode::DidUnresolved,
            RelayError::InvalidCursor => ErrorCode::InvalidCursor,
            RelayError::RateLimited { .. } => ErrorCode::RateLimited,
            RelayError::CursorEpochMismatch => ErrorCode::CursorEpochMismatch,
            RelayError::Database(_) | RelayError::Migrate(_) => ErrorCode::Internal,
        }
    }
}

/// Seconds a caller whose DID did not resolve should wait before it tries again.
const RETRY_AFTER_SECS: u32 = 30;

impl IntoResponse for RelayError {
    fn into_response(self) -> Response {
        let code = self.code();
        let message = if code == ErrorCode::Internal {
            tracing::error!(error = %self, "internal error");
            "internal error; see the relay's log".to_owned()
        } else {
            self.to_string()
        };
        let mut body = code.envelope(&message, None);
        if let (
            RelayError::QueueFull {
                limit, queued, max, ..
            },
            Some(members),
        ) = (&self, body.as_object_mut())
        {
            members.insert("limit".into(), (*limit).into());
            members.insert("queued".into(), (*queued).into());
            members.insert("max".into(), (*max).into());
        }
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(body)).into_response();
        let retry_after = match &self {
            RelayError::QueueFull { retry_after, .. } => Some(*retry_after),
            RelayError::DidUnresolved(_) => Some(RETRY_AFTER_SECS),
            // Whole seconds, rounded up: at least one.
            RelayError::RateLimited { wait, .. } => {
                Some(u32::try_from(wait.as_secs() + 1).unwrap_or(u32::MAX))
            }
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
