//! `GET /health` (open, liveness), `GET /ready` (open, readiness), `GET /v1/health` (full report).

use axum::extract::State;
use axum::Json;
use syncropel_api::{Authorization, Decider, Health, HealthReport, Ready};
use syncropel_protocol::ErrorCode;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Liveness. Reveals nothing about authorization posture.
pub async fn open() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        version: VERSION.to_owned(),
        proof_kinds_accepted: vec!["ed25519".to_owned()],
    })
}

/// Readiness: not draining, and the database answers with every migration applied.
pub async fn ready(State(state): State<AppState>) -> ApiResult<Json<Ready>> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::new(
            ErrorCode::ShuttingDown,
            "this server is shutting down; another replica takes the requests",
        ));
    }
    match state.store.check_ready().await {
        Ok(()) => Ok(Json(Ready {
            status: "ready".to_owned(),
        })),
        // The cause goes to the log; an unauthenticated caller learns only that it is not ready.
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the store is not ready");
            Err(ApiError::new(
                ErrorCode::NotReady,
                "the store is not ready (database unreachable or migrations behind)",
            ))
        }
    }
}

/// The full report: which deciders are live (protocol.md §13.4). Needs any valid credential.
pub async fn full(State(state): State<AppState>, caller: Caller) -> Json<HealthReport> {
    let enforced = caller.tenant.config().auth_enforced(state.auth_enforced);
    let decider = |name: &str, live: bool, because: &str| {
        if live {
            Decider::live(name)
        } else {
            Decider::abstaining(name, because)
        }
    };
    let off = "auth switched off by --insecure-localhost";
    let switch = "--insecure-localhost turns it off; an auth_required record on th_engine_config turns it back on";
    let deciders = vec![
        decider("scope", enforced, off).switched_by(switch),
        decider("actor_claim", enforced, off).switched_by(switch),
        decider("capability_grant", enforced, off)
            .switched_by(switch)
            .covering("credentials minted under a grant (members and their agents): every grant on the chain must be live"),
        decider("permission_rules", false, "no permission rules configured"),
        decider("impersonation", false, "impersonation is not offered"),
        decider(
            "principal_proof",
            false,
            "no proof-of-possession configured",
        ),
    ];
    let live = deciders.iter().filter(|d| d.is_live()).count();
    Json(HealthReport {
        status: "ok".to_owned(),
        version: VERSION.to_owned(),
        did: caller.tenant.identity.did.to_string(),
        store: state.store.backend().to_owned(),
        search: if state.search_enabled {
            "lexical"
        } else {
            "disabled"
        }
        .to_owned(),
        authorization: Authorization {
            live,
            of: deciders.len(),
            deciders,
        },
    })
}
