//! Discovery on a local steward: the mDNS roster, the optional mDNS announcement, and transitive
//! introductions (a paired peer lists the peers its operator agreed to introduce; we ask one of
//! ours). Discovery only ever lists candidates: it never creates a pair or a pair record.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use syncropel_api::{IntroducedPeer, Introductions};
use syncropel_discovery::{Announcement, Announcer, Browser, MdnsConfig, MdnsPeer};
use syncropel_protocol::pair::PairView;
use syncropel_protocol::{ErrorCode, PairState, Refusal};
use syncropel_store::StateChange;
use syncropel_tenant::Tenant;

use crate::error::{FederationError, Result};
use crate::{manifest, pairs, state as fstate, Federation};

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

fn slot<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts the mDNS browser and, when configured, the announcer of a local steward's one tenant.
/// A failure is logged and the steward runs on without it. Both stop (announcer with goodbye
/// packets) when the steward shuts down.
pub fn start(fed: &std::sync::Arc<Federation>, tenant: &Tenant) {
    let config = &fed.config.discovery;
    let did = tenant.identity.did.to_string();
    let discovery = &fed.discovery;
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
        let manifest = manifest::sign_announcing(
            &tenant.identity.key,
            &did,
            &url,
            SystemTime::now(),
            &fed.config,
        );
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
    let fed = fed.clone();
    tokio::spawn(async move {
        fed.shutdown.cancelled().await;
        let discovery = &fed.discovery;
        drop(slot(&discovery.announcer).take());
        drop(slot(&discovery.browser).take());
    });
}

/// The stewards this one has heard on the LAN, unverified.
pub fn roster(fed: &Federation) -> Vec<MdnsPeer> {
    slot(&fed.discovery.browser)
        .as_ref()
        .map(Browser::peers)
        .unwrap_or_default()
}

#[derive(Serialize, Deserialize)]
struct Introducible {
    introducible: bool,
}

async fn is_introducible(fed: &Federation, tenant: &str, pair_id: &str) -> Result<bool> {
    Ok(
        match fed.store.state_get(tenant, INTRODUCIBLE, pair_id).await? {
            Some(text) => fstate::parse::<Introducible>(&text)?.introducible,
            None => false,
        },
    )
}

/// Whether the peer of the pair named `key` may be introduced to our other peers.
pub async fn set_introducible(
    fed: &Federation,
    tenant: &Tenant,
    key: &str,
    introducible: bool,
) -> Result<PairView> {
    let pair = pairs::find(fed, tenant, key).await?;
    let change = StateChange::put(
        INTRODUCIBLE,
        &pair.pair_id,
        fstate::to_text(&Introducible { introducible }),
    );
    fed.store
        .write(&tenant.id, Vec::new(), vec![change])
        .await?;
    Ok(pair)
}

/// The peers this steward's operator agreed to introduce, never the caller. `sa_id` is the
/// caller's account (`None` when auth is off: the operator's own tooling, which is no peer).
pub async fn introductions_for_peer(
    fed: &Federation,
    tenant: &Tenant,
    sa_id: Option<&str>,
) -> Result<Introductions> {
    if !fed.config.discovery.introduce {
        return Err(Refusal::not_found("this steward makes no introductions").into());
    }
    let caller_did = match sa_id {
        Some(sa_id) => {
            let pair = pairs::by_inbound_account(fed, tenant, sa_id)
                .await?
                .ok_or_else(|| {
                    Refusal::new(ErrorCode::PermissionDenied, "a pair token is required")
                })?;
            pairs::require_serving(&pair)?;
            pair.peer_did
        }
        None => String::new(),
    };
    let mut peers = Vec::new();
    for pair in pairs::load(fed, tenant).await?.into_values() {
        let live = matches!(pair.state, PairState::Active | PairState::Degraded);
        if !live
            || pair.peer_did == caller_did
            || !is_introducible(fed, &tenant.id, &pair.pair_id).await?
        {
            continue;
        }
        let last_contact = fed
            .jobs
            .health(&tenant.id, &pair.pair_id)
            .iter()
            .filter_map(|h| h.last_success_at)
            .max();
        peers.push(IntroducedPeer {
            did: pair.peer_did,
            url: pair.peer_url,
            // Pairs keep no handles or manifest digests of their peers yet.
            handles: Vec::new(),
            manifest_sha256: None,
            last_contact_at: last_contact.map(syncropel_protocol::rfc3339_from_unix),
        });
    }
    Ok(Introductions {
        introduced_by: tenant.identity.did.to_string(),
        peers,
    })
}

/// Asks the paired peer `via` whom it introduces, with the bearer it issued us.
pub async fn introductions_via(
    fed: &Federation,
    tenant: &Tenant,
    via: &str,
) -> Result<Introductions> {
    let pair = pairs::find(fed, tenant, via).await?;
    // The operator's own call: a pair not (or no longer) active is no fault of its token.
    if matches!(pair.state, PairState::Establishing | PairState::Revoked) {
        return Err(Refusal::new(
            ErrorCode::UnpairedPeer,
            format!("the pair with {via} is not active"),
        )
        .into());
    }
    pairs::require_serving(&pair)?;
    let url = pair.peer_url.clone().ok_or_else(|| {
        Refusal::new(
            ErrorCode::UnpairedPeer,
            format!("no URL is known for {via}"),
        )
    })?;
    let token = pairs::outbound_token(fed, tenant, &pair.pair_id)
        .await?
        .ok_or_else(|| {
            Refusal::new(
                ErrorCode::UnpairedPeer,
                format!("no bearer from {via} is stored"),
            )
        })?;
    let own = tenant.identity.did.to_string();
    let (status, body) = fed
        .client()
        .get_json(
            &format!("{}/v1/federation/peers", url.trim_end_matches('/')),
            Some(&token),
            Some(&own),
        )
        .await
        .map_err(|e| FederationError::unreachable(e.to_string()))?;
    if status == 404 {
        return Err(Refusal::not_found(format!("{via} makes no introductions")).into());
    }
    if status != 200 || body["object"] != "introductions" {
        return Err(FederationError::unreachable(format!(
            "{via} answered {status} to the introductions request"
        )));
    }
    // Never ourselves, and only well-formed entries.
    let peers: Vec<IntroducedPeer> = body["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["did"].as_str().is_some_and(|d| d != own))
        .filter_map(|p| serde_json::from_value(p.clone()).ok())
        .collect();
    Ok(Introductions {
        introduced_by: pair.peer_did,
        peers,
    })
}
