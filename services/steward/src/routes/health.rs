//! `GET /health` (open, liveness), `GET /ready` (open, readiness), `GET /v1/health` (full report).

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use syncropel_protocol::ErrorCode;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Liveness. Reveals nothing about authorization posture.
pub async fn open() -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": VERSION,
        "proof_kinds_accepted": ["ed25519"],
    }))
}

/// Readiness: not draining, and the database answers with every migration applied.
pub async fn ready(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::new(
            ErrorCode::ShuttingDown,
            "this server is shutting down; another replica takes the requests",
        ));
    }
    match state.store.check_ready().await {
        Ok(()) => Ok(Json(json!({"status": "ready"}))),
        Err(e) => Err(ApiError::new(
            ErrorCode::NotReady,
            format!("store not ready: {e}"),
        )),
    }
}

/// The full report: which deciders are live (PROTOCOL §13.4). Needs any valid credential.
pub async fn full(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let enforced = state.auth_enforced;
    let decider = |name: &str, live: bool, because: &str| {
        if live {
            json!({"decider": name, "state": "live", "fidelity": "full"})
        } else {
            json!({"decider": name, "state": "abstaining", "because": because, "fidelity": "none"})
        }
    };
    let off = "auth switched off by --insecure-localhost";
    let deciders = vec![
        decider("scope", enforced, off),
        decider("actor_claim", enforced, off),
        decider("capability_grant", false, "not configured on this steward"),
        decider("permission_rules", false, "no permission rules configured"),
        decider("impersonation", false, "impersonation is not offered"),
        decider(
            "principal_proof",
            false,
            "no proof-of-possession configured",
        ),
    ];
    let live = deciders.iter().filter(|d| d["state"] == "live").count();
    Json(json!({
        "status": "ok",
        "version": VERSION,
        "did": &*caller.tenant.identity.did,
        "store": state.store.backend(),
        "search": if state.search_enabled { "lexical" } else { "disabled" },
        "authorization": {"live": live, "of": deciders.len(), "deciders": deciders},
    }))
}
