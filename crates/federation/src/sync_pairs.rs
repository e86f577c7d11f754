//! One-thread sync pairs (federation-protocol.md §5.7), the older token-based sync: one-way
//! subscriptions to one thread of a peer, made on the puller (`POST /v1/sync/pairs`, `spl fleet
//! sync add`). Their lifecycle is LEARN records on `th_sync_control` (`topic: pair_state` per
//! transition, `pair_removed` at the end), folded into the registry at every read;
//! running/failing come from the job's health.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use syncropel_protocol::{unix_now, validate_thread, ErrorCode, Refusal};
use syncropel_tenant::Tenant;

use crate::error::Result;
use crate::puller::{PullError, Source};
use crate::threads::refuse_unpullable;
use crate::{pairs, state as fstate, Federation};

pub const CONTROL_THREAD: &str = "th_sync_control";
/// Sync pairs one tenant may hold: each runs a pull job against a URL its creator chose.
pub const MAX_SYNC_PAIRS: usize = 64;
const KIND: &str = "syncropel.sync.pair_state.v1";

/// One sync pair, as folded from its records.
#[derive(Clone, Debug)]
pub struct SyncPair {
    pub pair_id: String,
    pub peer_did: String,
    pub peer_url: String,
    pub thread_id: String,
    /// `starting`, `paused` or `stopped` as recorded; `running`/`failing` come from the job.
    pub recorded: String,
}

/// The registry: a fold over `th_sync_control`, last record per pair wins.
pub async fn registry(fed: &Federation, tenant: &str) -> Result<BTreeMap<String, SyncPair>> {
    let mut pairs = BTreeMap::new();
    let (records, _) = fed.thread_records(tenant, CONTROL_THREAD).await?;
    for record in &records {
        let body = &record["body"];
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        let Some(id) = text("pair_id") else { continue };
        match text("topic").as_deref() {
            Some("pair_removed") => {
                if let Some(p) = pairs.get_mut(&id) {
                    let p: &mut SyncPair = p;
                    p.recorded = "stopped".into();
                }
            }
            Some("pair_state") => {
                let new_state = text("state").unwrap_or_else(|| "starting".into());
                let fresh = || SyncPair {
                    pair_id: id.clone(),
                    peer_did: text("peer_did").unwrap_or_default(),
                    peer_url: text("peer_url").unwrap_or_default(),
                    thread_id: text("thread_id").unwrap_or_default(),
                    recorded: "starting".into(),
                };
                let entry = pairs.entry(id.clone()).or_insert_with(fresh);
                if entry.recorded != "stopped" {
                    entry.recorded = new_state;
                } else if new_state == "starting" {
                    // A removed pair added again (same peer and thread, so the same id):
                    // only `create` writes `starting` for a pair the API no longer shows.
                    *entry = fresh();
                }
            }
            _ => {}
        }
    }
    Ok(pairs)
}

fn secret_handle(pair_id: &str) -> String {
    format!("legacy/{pair_id}")
}

/// The pull source of a sync pair: its peer's URL, and the outbound token of an active
/// record-bound pair with the same peer at the same URL if there is one, else its own token.
pub(crate) async fn source(
    fed: &Federation,
    tenant: &Tenant,
    id: String,
) -> std::result::Result<Source, PullError> {
    let parked = |m: String| PullError::Parked(Refusal::new(ErrorCode::PairPaused, m));
    let registry = registry(fed, &tenant.id).await?;
    let pair = registry
        .get(&id)
        .ok_or_else(|| parked(format!("no sync pair {id}")))?;
    match pair.recorded.as_str() {
        "paused" => return Err(parked(format!("{id} is paused"))),
        "stopped" => return Err(parked(format!("{id} was removed"))),
        _ => {}
    }
    let token =
        match pairs::outbound_token_for_peer(fed, tenant, &pair.peer_did, &pair.peer_url).await? {
            Some(token) => token,
            None => fstate::open_secret(
                fed.store.as_ref(),
                &tenant.id,
                &tenant.identity.key,
                &secret_handle(&id),
            )
            .await?
            .unwrap_or_default(),
        };
    Ok(Source {
        id,
        peer_did: pair.peer_did.clone(),
        base_url: pair.peer_url.clone(),
        token,
        actor: tenant.identity.did.to_string(),
        target_namespace: None,
        generation: 0,
        continuous: false,
        on_demand: false,
        poll_interval: None,
        consent_accepts: Vec::new(),
    })
}

async fn record_state(
    fed: &Federation,
    tenant: &Tenant,
    pair: &SyncPair,
    topic: &str,
    new_state: &str,
) -> Result<()> {
    let body = json!({
        "kind": KIND, "topic": topic, "pair_id": pair.pair_id, "peer_did": pair.peer_did,
        "peer_url": pair.peer_url, "thread_id": pair.thread_id, "state": new_state, "at": unix_now(),
    });
    fed.write_own(
        tenant,
        vec![(CONTROL_THREAD, object(body), Vec::new())],
        Vec::new(),
    )
    .await?;
    Ok(())
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A sync pair the operator asks for. Its id is derived from the peer and thread, so asking
/// again is the same pair.
#[derive(Clone, Debug)]
pub struct SyncPairRequest {
    pub peer_did: String,
    pub peer_url: String,
    pub thread_id: String,
    /// The token the peer issued for this thread; without one, the bearer of a record-bound
    /// pair with the same peer at the same URL is used.
    pub peer_token: Option<String>,
}

/// Whether `peer_url` names this machine (`localhost`, a loopback address): the only peers a
/// steward that listens on loopback can sync with both ways.
pub fn is_loopback_url(peer_url: &str) -> bool {
    let Ok(url) = url::Url::parse(peer_url) else {
        return false;
    };
    match url.host() {
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Creates (or re-creates) a sync pair and starts its job. Also answers whether it lacks any
/// credential (no token given and no record-bound pair with the peer): its pulls are refused
/// until one exists.
pub async fn create(
    fed: &Arc<Federation>,
    tenant: &Arc<Tenant>,
    request: SyncPairRequest,
) -> Result<(SyncPair, bool)> {
    validate_thread(&request.thread_id)?;
    refuse_unpullable(&request.thread_id)?;
    if !(request.peer_url.starts_with("http://") || request.peer_url.starts_with("https://")) {
        return Err(Refusal::validation("peer_url must be an http(s) URL").into());
    }
    let SyncPairRequest {
        peer_did,
        peer_url,
        thread_id,
        peer_token,
    } = request;
    let pair_id = format!(
        "sp_{}",
        &syncropel_protocol::sha256_hex(format!("{peer_did}\n{peer_url}\n{thread_id}").as_bytes())
            [..16]
    );
    let live = registry(fed, &tenant.id)
        .await?
        .into_values()
        .filter(|p| p.recorded != "stopped" && p.pair_id != pair_id)
        .count();
    if live >= MAX_SYNC_PAIRS {
        return Err(Refusal::new(
            ErrorCode::TenantLimitReached,
            format!("a tenant holds at most {MAX_SYNC_PAIRS} sync pairs"),
        )
        .with_hint("remove one first (`DELETE /v1/sync/pairs/{id}`), or pair with the peer instead")
        .into());
    }
    let pair = SyncPair {
        pair_id: pair_id.clone(),
        peer_did,
        peer_url,
        thread_id: thread_id.clone(),
        recorded: "starting".into(),
    };
    let mut changes = Vec::new();
    if let Some(token) = &peer_token {
        changes.push(fstate::seal_secret(
            &tenant.identity.key,
            &secret_handle(&pair_id),
            token,
        ));
    }
    let body = json!({
        "kind": KIND, "topic": "pair_state", "pair_id": pair.pair_id, "peer_did": pair.peer_did,
        "peer_url": pair.peer_url, "thread_id": pair.thread_id, "state": "starting", "at": unix_now(),
    });
    fed.write_own(
        tenant,
        vec![(CONTROL_THREAD, object(body), Vec::new())],
        changes,
    )
    .await?;
    fed.start_job(tenant.clone(), &pair_id, &thread_id).await?;
    let uncredentialed = peer_token.is_none()
        && pairs::outbound_token_for_peer(fed, tenant, &pair.peer_did, &pair.peer_url)
            .await?
            .is_none();
    Ok((pair, uncredentialed))
}

/// A live sync pair (not removed).
pub async fn find(fed: &Federation, tenant: &str, id: &str) -> Result<SyncPair> {
    registry(fed, tenant)
        .await?
        .remove(id)
        .filter(|p| p.recorded != "stopped")
        .ok_or_else(|| Refusal::not_found(format!("no sync pair '{id}'")).into())
}

/// Removes a sync pair: its job stops on every replica; its cursor row stays as history.
pub async fn remove(fed: &Federation, tenant: &Tenant, id: &str) -> Result<SyncPair> {
    let mut pair = find(fed, &tenant.id, id).await?;
    record_state(fed, tenant, &pair, "pair_removed", "stopped").await?;
    fed.stop_jobs(&tenant.id, id).await?;
    pair.recorded = "stopped".into();
    Ok(pair)
}

/// Pauses a sync pair; its job parks at once.
pub async fn pause(fed: &Federation, tenant: &Tenant, id: &str) -> Result<SyncPair> {
    let mut pair = find(fed, &tenant.id, id).await?;
    record_state(fed, tenant, &pair, "pair_state", "paused").await?;
    fed.jobs.kick(&tenant.id, id);
    pair.recorded = "paused".into();
    Ok(pair)
}

/// Resumes a sync pair; its job pulls at once.
pub async fn resume(fed: &Arc<Federation>, tenant: &Arc<Tenant>, id: &str) -> Result<SyncPair> {
    let mut pair = find(fed, &tenant.id, id).await?;
    record_state(fed, tenant, &pair, "pair_state", "starting").await?;
    fed.start_job(tenant.clone(), id, &pair.thread_id).await?;
    fed.jobs.kick(&tenant.id, id);
    pair.recorded = "starting".into();
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::is_loopback_url;

    #[test]
    fn loopback_urls_name_this_machine() {
        for url in [
            "http://127.0.0.1:9100",
            "http://127.8.0.1",
            "http://[::1]:9100",
            "http://localhost:9100",
            "http://LocalHost.",
            "http://bob.localhost",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "https://bob.example",
            "http://10.0.0.2:9100",
            "http://[::2]",
            "http://localhost.example",
            "not a url",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }
}
