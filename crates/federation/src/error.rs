//! The engine's one error type. Refusals carry the stable code the caller sees; everything else
//! is this steward's own failure.

use syncropel_protocol::{ErrorCode, ProtocolError, Refusal};
use syncropel_store::StoreError;
use syncropel_tenant::TenantError;

#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// Refused for a reason the caller can act on (a bad request, a pair in the wrong state, a
    /// peer that answered with a refusal of its own).
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Federation state or a record this steward stored cannot be read back.
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    /// A task of the engine failed (a verification task panicked, say).
    #[error("{0}")]
    Internal(String),
}

impl FederationError {
    pub fn corrupt(e: impl std::fmt::Display) -> FederationError {
        FederationError::Corrupt(e.to_string())
    }

    pub fn internal(e: impl std::fmt::Display) -> FederationError {
        FederationError::Internal(e.to_string())
    }

    /// What went wrong, without the code: a refusal's own message.
    pub fn message(&self) -> String {
        match self {
            FederationError::Refused(refusal) => refusal.message.clone(),
            other => other.to_string(),
        }
    }

    /// The stable code this error is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            FederationError::Refused(refusal) => refusal.code,
            FederationError::Store(StoreError::DuplicateClock { .. }) => ErrorCode::IngestFailed,
            FederationError::Store(
                StoreError::ServiceAccountExists(_) | StoreError::TokenExists(_),
            ) => ErrorCode::ValidationError,
            FederationError::Store(StoreError::UnknownServiceAccount(_)) => ErrorCode::NotFound,
            _ => ErrorCode::Internal,
        }
    }

    /// `503 PEER_UNREACHABLE`: a peer could not be reached or answered nonsense.
    pub(crate) fn unreachable(message: impl Into<String>) -> FederationError {
        Refusal::new(ErrorCode::PeerUnreachable, message).into()
    }

    /// `400 VALIDATION_ERROR`.
    pub(crate) fn validation(message: impl Into<String>) -> FederationError {
        Refusal::validation(message).into()
    }
}

impl From<TenantError> for FederationError {
    fn from(e: TenantError) -> FederationError {
        match e {
            TenantError::Refused(refusal) => FederationError::Refused(refusal),
            TenantError::Store(e) => FederationError::Store(e),
            TenantError::Corrupt(message) => FederationError::Corrupt(message),
        }
    }
}

impl From<ProtocolError> for FederationError {
    fn from(e: ProtocolError) -> FederationError {
        FederationError::Refused(e.into())
    }
}

pub type Result<T, E = FederationError> = std::result::Result<T, E>;
