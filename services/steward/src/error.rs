//! The one place where everything that can go wrong becomes an HTTP answer in the ApiError envelope
//! (`{"object":"error","type","code","message","hint"?}`).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use syncropel_federation::FederationError;
use syncropel_portability::PortabilityError;
use syncropel_protocol::{ErrorCode, ProtocolError, Refusal};
use syncropel_store::StoreError;
use syncropel_tenant::TenantError;

/// An error answer. Built from a stable [`ErrorCode`], so status and type always agree with the code.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub hint: Option<String>,
    /// Extra members of the envelope (e.g. `required_scope`).
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            hint: None,
            extra: Map::new(),
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> ApiError {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_extra(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ValidationError, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }

    /// `429 RATE_LIMITED` after `wait`: the answer carries `Retry-After` in whole seconds (rounded
    /// up, at least 1), also given in the envelope as `retry_after_secs`.
    pub fn rate_limited(message: impl Into<String>, wait: std::time::Duration) -> ApiError {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError::new(ErrorCode::RateLimited, message)
            .with_hint("slow down; retry after the number of seconds in Retry-After")
            .with_extra("retry_after_secs", secs.max(1))
    }

    /// `410 INSTANCE_MOVED` with `moved_to` and the new home's signed notice
    /// (federation-protocol.md §8.5), which peers check and follow.
    pub fn moved(moved_to: String, notice: Value) -> ApiError {
        ApiError::new(
            ErrorCode::InstanceMoved,
            format!("this steward has moved to {moved_to}"),
        )
        .with_hint("follow `moved_to`: the notice is signed by the steward's DID")
        .with_extra("moved_to", moved_to)
        .with_extra("notice", notice)
    }

    pub fn internal(message: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %message, "internal error");
        ApiError::new(ErrorCode::Internal, "internal error; see the steward's log")
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn body(&self) -> Value {
        let mut body = self.code.envelope(&self.message, self.hint.as_deref());
        if let Value::Object(members) = &mut body {
            for (k, v) in &self.extra {
                members.insert(k.clone(), v.clone());
            }
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status(),
            [(header::CONTENT_TYPE, "application/json")],
            self.body().to_string(),
        )
            .into_response();
        if let Some(secs) = self.extra.get("retry_after_secs").and_then(Value::as_u64) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}

impl From<ProtocolError> for ApiError {
    fn from(e: ProtocolError) -> ApiError {
        ApiError::new(e.code(), e.to_string())
    }
}

impl From<Refusal> for ApiError {
    fn from(e: Refusal) -> ApiError {
        ApiError {
            code: e.code,
            message: e.message,
            hint: e.hint,
            extra: Map::new(),
        }
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> ApiError {
        match e {
            TenantError::Refused(refusal) => refusal.into(),
            TenantError::Store(e) => e.into(),
            TenantError::Corrupt(_) => ApiError::internal(e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::DuplicateClock { .. } => {
                ApiError::new(ErrorCode::IngestFailed, e.to_string())
            }
            StoreError::ServiceAccountExists(_) | StoreError::TokenExists(_) => {
                ApiError::new(ErrorCode::ValidationError, e.to_string())
            }
            StoreError::UnknownServiceAccount(_) => ApiError::not_found(e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl From<FederationError> for ApiError {
    fn from(e: FederationError) -> ApiError {
        match e {
            FederationError::Refused(refusal) => refusal.into(),
            FederationError::Store(e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<PortabilityError> for ApiError {
    fn from(e: PortabilityError) -> ApiError {
        use syncropel_bundle::BundleError;
        match e {
            PortabilityError::Store(e) => e.into(),
            PortabilityError::Invalid(why) => ApiError::validation(why),
            PortabilityError::Federation(e) => e.into(),
            PortabilityError::Bundle(BundleError::Signature(_)) => {
                ApiError::new(ErrorCode::SignatureInvalid, e.to_string())
            }
            PortabilityError::Bundle(BundleError::TooLarge(_)) => {
                ApiError::new(ErrorCode::PayloadTooLarge, e.to_string())
            }
            PortabilityError::Bundle(_) | PortabilityError::Refused(_) => {
                ApiError::validation(e.to_string())
            }
            PortabilityError::Abandoned => ApiError::internal(e),
        }
    }
}

impl From<syncropel_store::query::QueryError> for ApiError {
    fn from(e: syncropel_store::query::QueryError) -> ApiError {
        ApiError::new(ErrorCode::InvalidFilter, e.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
