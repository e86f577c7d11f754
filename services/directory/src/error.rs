//! The one place where a failure becomes an HTTP answer in the error envelope.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use syncropel_protocol::{ErrorCode, ProtocolError};

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The op (or its JSON) broke a protocol rule; the protocol error carries the code.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0} is deactivated (its log ends in a tombstone)")]
    Deactivated(String),
    #[error("handle {0:?} belongs to another DID")]
    HandleTaken(String),
    #[error("too many operations for this DID; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("request body is over {max} bytes")]
    PayloadTooLarge { max: usize },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored data that no longer parses, a stopped writer: our fault, never the caller's.
    #[error("{0}")]
    Internal(String),
    /// Readiness: the database does not answer or lacks migrations.
    #[error("not ready: {0}")]
    NotReady(String),
    /// Readiness while the server drains.
    #[error("this server is shutting down; another replica takes the requests")]
    ShuttingDown,
}

impl DirectoryError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DirectoryError::Protocol(e) => e.code(),
            DirectoryError::Validation(_) => ErrorCode::ValidationError,
            DirectoryError::NotFound(_) => ErrorCode::NotFound,
            DirectoryError::Deactivated(_) => ErrorCode::DidDeactivated,
            DirectoryError::HandleTaken(_) => ErrorCode::HandleTaken,
            DirectoryError::RateLimited { .. } => ErrorCode::RateLimited,
            DirectoryError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            DirectoryError::Database(_)
            | DirectoryError::Migrate(_)
            | DirectoryError::Internal(_) => ErrorCode::Internal,
            DirectoryError::NotReady(_) => ErrorCode::NotReady,
            DirectoryError::ShuttingDown => ErrorCode::ShuttingDown,
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            DirectoryError::RateLimited { .. } => {
                Some("retry after the number of seconds in Retry-After")
            }
            DirectoryError::HandleTaken(_) => Some("choose another handle"),
            DirectoryError::Deactivated(_) => {
                Some("the operation log is still served at /directory/{hash}/operations")
            }
            _ => None,
        }
    }
}

/// Axum's own rejections answer in plain text; these put them in the envelope.
impl From<PathRejection> for DirectoryError {
    fn from(rejection: PathRejection) -> DirectoryError {
        DirectoryError::Validation(rejection.body_text())
    }
}

impl From<QueryRejection> for DirectoryError {
    fn from(rejection: QueryRejection) -> DirectoryError {
        DirectoryError::Validation(rejection.body_text())
    }
}

impl IntoResponse for DirectoryError {
    fn into_response(self) -> Response {
        let code = self.code();
        let message = if code == ErrorCode::Internal {
            tracing::error!(error = %self, "internal error");
            "internal error; see the directory's log".to_owned()
        } else {
            self.to_string()
        };
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = code.envelope(&message, self.hint()).to_string();
        let mut response =
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if let DirectoryError::RateLimited { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}
