//! The router: every route of the steward in one table.

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use axum::routing::{delete, get, post};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::rate_limit::AddressLimit;
use crate::routes;
use crate::state::{AppState, Tenancy};

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
        .route(
            "/threads",
            get(routes::threads::list).post(routes::threads::open),
        )
        .route("/threads/{id}", delete(routes::threads::close))
        .route("/threads/{id}/records", get(routes::threads::records))
        .route("/threads/{id}/watch", get(routes::watch::watch))
        .route("/health", get(routes::health::full))
        .route("/capabilities", get(routes::manifest::show_capabilities))
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
        .route("/secrets/{operation}", post(routes::secrets::call))
        .route("/scope_presets", get(routes::membership::presets))
        .route("/invites", post(routes::membership::issue))
        .route(
            "/invites/{id}",
            get(routes::membership::preview).delete(routes::membership::revoke_invite),
        )
        .route("/invites/{id}/redeem", post(routes::membership::redeem))
        .route("/members", get(routes::membership::list))
        .route("/members/adopt", post(routes::membership::adopt))
        .route(
            "/members/{label}",
            delete(routes::membership::revoke_member),
        )
        .route(
            "/members/{label}/grants",
            post(routes::membership::mint_agent),
        )
        .route(
            "/members/{label}/grants/{grant_id}",
            delete(routes::membership::revoke_agent),
        )
        .route("/config", get(routes::config::show))
        .route("/config/{topic}", post(routes::config::set))
        .route("/identity", get(routes::identity::show))
        .route("/identity/upgrade", post(routes::identity::upgrade))
        .route("/portability/export", post(routes::portability::export))
        .route("/portability/import", post(routes::portability::import))
        .route("/portability/fence", post(routes::portability::fence))
        .merge(routes::federation::routes());
    // Hosted tenants get their first account while they are provisioned.
    let v1 = match state.tenancy {
        Tenancy::Single(_) => v1.route(
            "/bootstrap/service-account",
            post(routes::accounts::bootstrap),
        ),
        Tenancy::Hosted(_) => v1,
    };
    // The tenant gate: a moved tenant answers 410; a refusal is recorded on its way out.
    let v1 = v1.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        routes::portability::moved_gate,
    ));

    let mut root = Router::new()
        .route("/health", get(routes::health::open))
        .route("/ready", get(routes::health::ready))
        .route("/.well-known/syncropel", get(routes::manifest::well_known))
        .nest("/v1", v1);
    if matches!(state.tenancy, Tenancy::Hosted(_)) {
        root = root.merge(crate::hosted::provision::routes());
    }
    // Open like the directory service itself: its ops are signed, and it bounds them on its own.
    if let Some(directory) = &state.directory {
        root = root.merge(syncropel_directory::routes(directory.clone()));
    }
    // Unauthenticated, so only where the machine's own users reach it unless asked for.
    if state.metrics_on_main {
        root = root.route("/metrics", get(syncropel_telemetry::http::metrics));
    }
    let root = root
        .fallback(routes::did_web::fallback)
        .method_not_allowed_fallback(routes::method_not_allowed)
        // Our own extractor enforces the configured limit with an ApiError; axum's default 2 MiB
        // cap must not cut in first.
        .layer(DefaultBodyLimit::disable())
        // Before anything else runs, open routes and fallbacks included; inside CORS so that a
        // browser can read the 429.
        .layer(AddressLimit(state.rate_limits.clone()));
    let root = match cors(&state.cors_origins) {
        Some(cors) => root.layer(cors),
        None => root,
    };
    // Outermost: every request gets its span and latency sample, refusals included.
    root.layer(syncropel_telemetry::http::RequestTelemetry)
        .with_state(state)
}

/// CORS for the configured origins only: without any, no web page may read this steward's
/// answers (a page could otherwise use a browser on the steward's machine to reach it).
fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin.trim_end_matches('/')).ok())
        .collect();
    (!origins.is_empty()).then(|| CorsLayer::permissive().allow_origin(AllowOrigin::list(origins)))
}
