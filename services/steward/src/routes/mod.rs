//! HTTP handlers, one module per resource.

pub mod accounts;
pub mod config;
pub mod did_web;
pub mod federation;
pub mod health;
pub mod identity;
pub mod manifest;
pub mod membership;
pub mod namespaces;
pub mod portability;
pub mod query;
pub mod records;
pub mod search;
pub mod secrets;
pub mod threads;
pub mod watch;

use std::collections::HashMap;

use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value};
use syncropel_api::ErrorBody;
use syncropel_protocol::ErrorCode;
use syncropel_store::StoredRecord;

use crate::error::ApiError;
use crate::state::AppState;

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not accept that method",
    )
}

/// A JSON answer from already-serialized text (records are stored as the text the API serves).
pub fn json_text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The list envelope of protocol.md §10.3 around stored records, spliced without re-serializing
/// them.
pub fn record_list(records: &[StoredRecord], next_cursor: Option<String>) -> Response {
    let body = syncropel_api::splice::record_page(
        records.iter().map(|r| r.json.as_str()),
        next_cursor.as_deref(),
    );
    json_text(StatusCode::OK, body)
}

/// The envelope `error` answers with, as a value inside another answer (a batch item).
pub fn error_body(error: &ApiError) -> ErrorBody {
    ErrorBody {
        error_type: error.code.error_type().to_owned(),
        code: error.code.as_str().to_owned(),
        message: error.message.clone(),
        hint: error.hint.clone(),
        extra: error.extra.clone(),
    }
}

/// Query-string parameters, parsed by hand so every mistake gets a clear VALIDATION_ERROR.
pub struct Params(pub HashMap<String, String>);

impl Params {
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.str(name)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ApiError::validation(format!("query parameter '{name}' must be an integer"))
                })
            })
            .transpose()
    }

    /// `limit`: default and maximum per protocol.md §13; 0 or negative is refused.
    pub fn limit(&self, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.int("limit")? {
            None => Ok(default),
            Some(n) if n >= 1 => Ok(n.min(i64::from(max)) as u32),
            Some(_) => Err(ApiError::validation("limit must be at least 1")),
        }
    }

    /// The decoded list cursor (0 when absent).
    pub fn cursor(&self) -> Result<i64, ApiError> {
        match self.str("cursor") {
            None | Some("") => Ok(0),
            Some(c) => syncropel_store::decode_cursor(c)
                .ok_or_else(|| ApiError::validation("invalid cursor")),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Params, ApiError> {
        let axum::extract::Query(map) =
            axum::extract::Query::<HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::validation(format!("invalid query string: {e}")))?;
        Ok(Params(map))
    }
}

/// Thread ids arrive percent-decoded from the path; they obey the same rules as in a record.
pub fn checked_thread(thread: &str) -> Result<(), ApiError> {
    syncropel_protocol::validate_thread(thread).map_err(ApiError::from)
}

/// A single path parameter, percent-decoded; a malformed one is a VALIDATION_ERROR.
pub struct PathParam(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<PathParam, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::validation(format!("invalid path: {e}")))?;
        Ok(PathParam(value))
    }
}

/// Two path parameters, with the same refusal as [`PathParam`].
pub struct PathPair(pub String, pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathPair {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<PathPair, ApiError> {
        let axum::extract::Path((first, second)) =
            axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::validation(format!("invalid path: {e}")))?;
        Ok(PathPair(first, second))
    }
}

/// A request body parsed as strict JSON (protocol.md §5): size limit first (413), then duplicate
/// keys, NaN, lone surrogates and depth (400 INVALID_JSON). Numbers come out canonical.
pub struct JsonBody(pub serde_json::Value);

/// The raw bytes of a request body, within the size limit.
pub struct LimitedBody(pub Bytes);

impl FromRequest<AppState> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<LimitedBody, ApiError> {
        let limit = state.limits.max_body_bytes;
        let too_large = || {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("request body exceeds the limit of {limit} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > limit) {
            return Err(too_large());
        }
        match axum::body::to_bytes(req.into_body(), limit).await {
            Ok(bytes) => Ok(LimitedBody(bytes)),
            Err(e) => {
                // to_bytes reports an over-limit body as a length-limit error somewhere in its
                // chain.
                let over = std::error::Error::source(&e).is_some_and(|s| {
                    s.is::<http_body_util::LengthLimitError>()
                        || s.source()
                            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                });
                if over {
                    Err(too_large())
                } else {
                    Err(ApiError::new(
                        ErrorCode::InvalidJson,
                        format!("could not read the request body: {e}"),
                    ))
                }
            }
        }
    }
}

/// A body that may be empty: `null` then, else strict JSON as [`JsonBody`].
pub fn optional_json(state: &AppState, bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Null);
    }
    Ok(syncropel_protocol::parse_json(
        bytes,
        state.limits.max_json_depth,
    )?)
}

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<JsonBody, ApiError> {
        let LimitedBody(bytes) = LimitedBody::from_request(req, state).await?;
        let value = syncropel_protocol::parse_json(&bytes, state.limits.max_json_depth)?;
        Ok(JsonBody(value))
    }
}

/// A body that should be a JSON object; anything else reads as an empty one, so that the
/// fields it lacks are named in the refusal.
fn object(body: Value) -> Map<String, Value> {
    match body {
        Value::Object(object) => object,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_the_envelope_the_error_answers_with() {
        let error = ApiError::rate_limited("slow down", std::time::Duration::from_millis(1500))
            .with_extra("scope", "records:write");
        assert_eq!(
            serde_json::to_value(error_body(&error)).unwrap(),
            error.body()
        );
        let plain = ApiError::not_found("no such route");
        assert_eq!(
            serde_json::to_value(error_body(&plain)).unwrap(),
            plain.body()
        );
    }
}
