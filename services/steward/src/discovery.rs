//! Discovery on a local steward: the mDNS roster (`GET /v1/discovery/mdns`), the optional mDNS
//! announcement, and transitive introductions (`GET /v1/federation/peers` for paired peers,
//! `GET /v1/federation/introductions?via=` to ask one of them). Discovery only ever lists
//! candidates: it never creates a pair or a pair record.

use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use syncropel_discovery::{Announcement, Announcer, Browser, MdnsConfig};
use syncropel_protocol::{ErrorCode, PairState};
use syncropel_store::StateChange;

use crate::app::{AppState, JsonBody};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::federation::pairs;
use crate::routes::{Params, PathParam};
use crate::tenant::{Tenancy, Tenant};
use syncropel_tenant::Scope;

/// Federation state documents marking a pair introducible, keyed by pair id.
const INTRODUCIBLE: &str = "introducible";

/// How a steward takes part in discovery. The default is all off, as the hosted binary runs;
/// `spl serve` turns the mDNS listener on.
#[derive(Clone, Debug, Default)]
pub struct DiscoveryConfig {
    /// Keep an mDNS roster of the stewards on the LAN.
    pub mdns_listen: bool,
    /// Announce this steward on the LAN.
    pub mdns_broadcast: bool,
    /// Interfaces and port of the mDNS daemons.
    pub mdns: MdnsConfig,
    /// Handle to announce, when the operator has one.
    pub handle: Option<String>,
    /// Namespace to announce, when the operator serves one.
    pub namespace: Option<String>,
    /// Answer `GET /v1/federation/peers` for paired peers (404 otherwise).
    pub introduce: bool,
}

/// The running mDNS daemons of a steward; empty until [`start`].
#[derive(Default)]
pub struct Discovery {
    browser: Mutex<Option<Browser>>,
    announcer: Mutex<Option<Announcer>>,
}

fn slot<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn single_tenant(state: &AppState) -> Option<&std::sync::Arc<Tenant>> {
    match &state.tenancy {
        Tenancy::Single(tenant) => Some(tenant),
        Tenancy::Hosted(_) => None,
    }
}

/// Starts the mDNS browser and, when configured, the announcer of a local steward. A failure is
/// logged and the steward runs on without it. Both stop (announcer with goodbye packets) when
/// the steward shuts down.
pub fn start(state: &AppState) {
    let config = &state.federation.config.discovery;
    let Some(tenant) = single_tenant(state) else {
        return;
    };
    let did = tenant.identity.did.to_string();
    let discovery = &state.federation.discovery;
    if config.mdns_listen {
        match Browser::start(&config.mdns, Some(&did)) {
            Ok(browser) => *slot(&discovery.browser) = Some(browser),
            Err(e) => {
                tracing::warn!(error = %e, "mdns: listener not started; LAN discovery is off")
            }
        }
    }
    if config.mdns_broadcast {
        let Some(url) = tenant.url.clone() else {
            tracing::warn!("mdns: no bound URL to announce");
            return;
        };
        let manifest = crate::manifest::sign(&tenant.identity.key, &did, &url, SystemTime::now());
        let announcement = Announcement {
            did,
            endpoint: url,
            namespace: config.namespace.clone(),
            handle: config.handle.clone(),
            capabilities: vec!["sync".into(), "handshake".into()],
            manifest_fingerprint: Some(syncropel_discovery::manifest_fingerprint(
                manifest.to_string().as_bytes(),
            )),
        };
        match Announcer::start(&config.mdns, &announcement) {
            Ok(announcer) => {
                tracing::info!(instance = %announcer.fullname(), "mdns: announcing this steward");
                *slot(&discovery.announcer) = Some(announcer);
            }
            Err(e) => tracing::warn!(error = %e, "mdns: announcer not started"),
        }
    }
    let state = state.clone();
    tokio::spawn(async move {
        state.shutdown.cancelled().await;
        let discovery = &state.federation.discovery;
        drop(slot(&discovery.announcer).take());
        drop(slot(&discovery.browser).take());
    });
}

/// The discovery routes under `/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/discovery/mdns", get(mdns_roster))
        .route("/federation/peers", get(introductions_for_peer))
        .route("/federation/introductions", get(introductions_via))
        .route(
            "/federation/pairs/{id}/introducible",
            post(set_introducible),
        )
}

/// `GET /v1/discovery/mdns`: the stewards this one has heard on the LAN, unverified.
async fn mdns_roster(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Scope::ConfigRead)?;
    let peers = slot(&state.federation.discovery.browser)
        .as_ref()
        .map(Browser::peers)
        .unwrap_or_default();
    Ok(Json(json!({"object": "mdns_roster", "peers": peers})).into_response())
}

#[derive(Serialize, Deserialize)]
struct Introducible {
    introducible: bool,
}

async fn is_introducible(state: &AppState, tenant: &str, pair_id: &str) -> ApiResult<bool> {
    Ok(
        match state.store.state_get(tenant, INTRODUCIBLE, pair_id).await? {
            Some(text) => crate::federation::state::parse::<Introducible>(&text)?.introducible,
            None => false,
        },
    )
}

/// `POST /v1/federation/pairs/{id}/introducible` `{"introducible": bool}`: whether this pair's
/// peer may be introduced to our other peers.
async fn set_introducible(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(key): PathParam,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    caller.tenant.require_writable()?;
    let introducible = body["introducible"]
        .as_bool()
        .ok_or_else(|| ApiError::validation("`introducible` must be true or false"))?;
    let pair = pairs::find(&state, &caller.tenant, &key).await?;
    let change = StateChange::put(
        INTRODUCIBLE,
        &pair.pair_id,
        crate::federation::state::to_text(&Introducible { introducible }),
    );
    state
        .store
        .write(&caller.tenant.id, Vec::new(), vec![change])
        .await?;
    Ok(Json(json!({
        "object": "pair_introducible",
        "pair_id": pair.pair_id,
        "peer_did": pair.peer_did,
        "introducible": introducible,
    }))
    .into_response())
}

/// `GET /v1/federation/peers` with a pair bearer: the peers this steward's operator agreed to
/// introduce, never the caller. 404 unless introductions are on.
async fn introductions_for_peer(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Response> {
    if !state.federation.config.discovery.introduce {
        return Err(ApiError::not_found("this steward makes no introductions"));
    }
    let caller_did = match &caller.grant {
        Some(grant) => {
            let pair = pairs::by_inbound_account(&state, &caller.tenant, &grant.sa_id)
                .await?
                .ok_or_else(|| {
                    ApiError::new(ErrorCode::PermissionDenied, "a pair token is required")
                })?;
            pairs::require_serving(&pair)?;
            pair.peer_did
        }
        // Auth switched off: the operator's own tooling, which is no peer.
        None => String::new(),
    };
    let tenant = &caller.tenant;
    let mut peers = Vec::new();
    for pair in pairs::load(&state, tenant).await?.into_values() {
        let live = matches!(pair.state, PairState::Active | PairState::Degraded);
        if !live
            || pair.peer_did == caller_did
            || !is_introducible(&state, &tenant.id, &pair.pair_id).await?
        {
            continue;
        }
        let last_contact = state
            .federation
            .jobs
            .health(&tenant.id, &pair.pair_id)
            .iter()
            .filter_map(|h| h.last_success_at)
            .max();
        peers.push(json!({
            "did": pair.peer_did,
            "url": pair.peer_url,
            // Pairs keep no handles or manifest digests of their peers yet.
            "handles": [],
            "manifest_sha256": Value::Null,
            "last_contact_at": last_contact.map(syncropel_protocol::rfc3339_from_unix),
        }));
    }
    Ok(Json(json!({
        "object": "introductions",
        "introduced_by": tenant.identity.did.to_string(),
        "peers": peers,
    }))
    .into_response())
}

/// `GET /v1/federation/introductions?via=<did>`: asks the paired peer `via` whom it introduces,
/// with the bearer it issued us.
async fn introductions_via(
    State(state): State<AppState>,
    caller: Caller,
    Params(params): Params,
) -> ApiResult<Response> {
    caller.require(Scope::FederationManage)?;
    let via = params
        .get("via")
        .ok_or_else(|| ApiError::validation("`via` (a paired peer's DID) is required"))?;
    let tenant = &caller.tenant;
    let pair = pairs::find(&state, tenant, via).await?;
    pairs::require_serving(&pair)?;
    let url = pair.peer_url.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnpairedPeer,
            format!("no URL is known for {via}"),
        )
    })?;
    let token = pairs::outbound_token(&state, tenant, &pair.pair_id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnpairedPeer,
                format!("no bearer from {via} is stored"),
            )
        })?;
    let own = tenant.identity.did.to_string();
    let (status, body) = state
        .federation
        .client()
        .get_json(
            &format!("{}/v1/federation/peers", url.trim_end_matches('/')),
            Some(&token),
            Some(&own),
        )
        .await
        .map_err(|e| ApiError::new(ErrorCode::PeerUnreachable, e.to_string()))?;
    if status == 404 {
        return Err(ApiError::not_found(format!("{via} makes no introductions")));
    }
    if status != 200 || body["object"] != "introductions" {
        return Err(ApiError::new(
            ErrorCode::PeerUnreachable,
            format!("{via} answered {status} to the introductions request"),
        ));
    }
    // Never ourselves, and only well-formed entries.
    let peers: Vec<Value> = body["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["did"].as_str().is_some_and(|d| d != own))
        .cloned()
        .collect();
    Ok(Json(json!({
        "object": "introductions",
        "introduced_by": pair.peer_did,
        "peers": peers,
    }))
    .into_response())
}
