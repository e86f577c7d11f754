//! Application state and the router: every route of the steward in one table.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::routing::{delete, get, post};
use axum::Router;
use bytes::Bytes;
use syncropel_federation::Federation;
use syncropel_protocol::ErrorCode;
use syncropel_store::RecordStore;
use syncropel_tenant::{Namespaces, TokenCache};
use tokio_util::sync::CancellationToken;
use tower_http::cors::CorsLayer;

use crate::error::ApiError;
use crate::rate_limit::{AddressLimit, RateLimiters};
use crate::routes;
use crate::tenant::Tenancy;

/// Limits on what a request may carry.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bodies over this many bytes are refused with 413 before they are parsed.
    pub max_body_bytes: usize,
    /// JSON nested deeper than this is refused with 400 INVALID_JSON.
    pub max_json_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_json_depth: syncropel_protocol::DEFAULT_MAX_DEPTH,
        }
    }
}

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn RecordStore>,
    /// Where each request's tenant (and the identity that signs its records) comes from.
    pub tenancy: Tenancy,
    /// Token environment label (`spl_<env>_…`).
    pub env: Arc<str>,
    pub auth_enforced: bool,
    pub tokens: Arc<TokenCache>,
    pub namespaces: Arc<Namespaces>,
    pub limits: Limits,
    /// Token buckets per client address and per token (see [`crate::rate_limit`]).
    pub rate_limits: Arc<RateLimiters>,
    pub search_enabled: bool,
    pub heartbeat: Duration,
    /// Cancelled when the steward begins a graceful shutdown; watch streams say goodbye.
    pub shutdown: CancellationToken,
    /// Pairing, consent and the pull jobs.
    pub federation: Arc<Federation>,
}

/// The router. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: the address
/// rate limit keys on the peer address.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route(
            "/records",
            post(routes::records::create).get(routes::records::list),
        )
        .route("/records/batch", post(routes::records::create_batch))
        .route("/records/query", post(routes::query::query))
        .route("/records/search", post(routes::search::search))
        .route("/records/{id}", get(routes::records::get_one))
        .route("/threads", get(routes::threads::list))
        .route("/threads/{id}/records", get(routes::threads::records))
        .route("/threads/{id}/watch", get(routes::watch::watch))
        .route("/health", get(routes::health::full))
        .route(
            "/service-accounts",
            post(routes::accounts::create).get(routes::accounts::list),
        )
        .route(
            "/service-accounts/{id}/tokens",
            post(routes::accounts::mint_route),
        )
        .route("/tokens/{token_id}", delete(routes::accounts::revoke))
        .route(
            "/namespaces",
            get(routes::namespaces::list).post(routes::namespaces::create),
        )
        .route(
            "/namespaces/{*id}",
            get(routes::namespaces::get_one).delete(routes::namespaces::archive),
        )
        .route(
            "/bootstrap/service-account",
            post(routes::accounts::bootstrap),
        )
        .route("/identity", get(routes::identity::show))
        .route("/identity/upgrade", post(routes::identity::upgrade))
        .merge(routes::federation::routes());

    let mut root = Router::new()
        .route("/health", get(routes::health::open))
        .route("/ready", get(routes::health::ready))
        .route("/.well-known/syncropel", get(routes::manifest::well_known))
        .nest("/v1", v1);
    if matches!(state.tenancy, Tenancy::Hosted(_)) {
        root = root.merge(crate::hosted::provision::routes());
    } else {
        // Hosted replicas serve metrics on an internal listener only, never on a tenant host.
        root = root.route("/metrics", get(syncropel_telemetry::http::metrics));
    }
    root.fallback(routes::did_web::fallback)
        .method_not_allowed_fallback(routes::method_not_allowed)
        // Our own extractor enforces the configured limit with an ApiError; axum's default 2 MiB
        // cap must not cut in first.
        .layer(DefaultBodyLimit::disable())
        // Before anything else runs, open routes and fallbacks included; inside CORS so that a
        // browser can read the 429.
        .layer(AddressLimit(state.rate_limits.clone()))
        .layer(CorsLayer::permissive())
        // Outermost: every request gets its span and latency sample, refusals included.
        .layer(syncropel_telemetry::http::RequestTelemetry)
        .with_state(state)
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
