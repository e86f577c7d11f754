//! Record-bound pairs (federation-protocol.md §3): their state is a fold over
//! `th_federation_pairs`, read afresh for every decision (no replica caches a pair), and every
//! transition is a record written together with its audit record on
//! `th_audit_federation_pairs` in one transaction.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use syncropel_protocol::moved::check_moved;
use syncropel_protocol::pair::{
    audit_body, fold_pairs, outbound_secret_handle, revoke_body, update_body, AuditChange,
    PairAudit, PairView, RevokeNotify, UpdateOp, DEFAULT_POLL_INTERVAL_SECS,
};
use syncropel_protocol::sync::{has_document, PeerItem};
use syncropel_protocol::{
    unix_from_rfc3339, unix_now, validate_thread, ErrorCode, PairState, Refusal,
    PAIRS_AUDIT_THREAD, PAIRS_THREAD,
};
use syncropel_store::{ListFilter, StateChange};
use syncropel_tenant::Tenant;

use crate::error::{FederationError, Result};
use crate::handshake::{canonical_sha256, peer_manifest, verified_manifest, PeerManifest};
use crate::peer::{PeerError, Reach};
use crate::puller::{pull_through, PullError, PullOutcome, Source};
use crate::relay::PeerRelays;
use crate::signers::signature_holds;
use crate::state as fstate;
use crate::threads::refuse_unpullable;
use crate::{own_record, Federation};

/// A genesis counts only if it is signed for the responder it names: by the responder's key for
/// a did:key responder; for a responder with a DID document, by the key that was checked against
/// that document when the genesis was stored (only this steward writes the pair thread,
/// federation-protocol.md §3). Checking against today's document instead would make pairs vanish
/// after a key rotation.
fn genesis_verifies(record: &Value) -> bool {
    let Ok(item) = PeerItem::from_value(json!({"id": record["id"], "record": record})) else {
        return false;
    };
    let responder = record["body"]["responder_did"].as_str().unwrap_or("");
    let signer = item.signer().unwrap_or(&item.envelope.actor);
    let for_responder = if has_document(responder) {
        item.envelope.actor == responder
    } else {
        signer == responder
    };
    for_responder && signature_holds(&item, signer)
}

/// Every pair of the tenant, by pair id. The fold is kept per tenant and reused while no record
/// has been added to `th_federation_pairs` since (one indexed read checks that), so every
/// replica still decides on the current log.
pub async fn load(fed: &Federation, tenant: &Tenant) -> Result<BTreeMap<String, PairView>> {
    let cached = fed.cached_pairs(&tenant.id);
    if let Some((seq, pairs)) = cached {
        let newer = ListFilter {
            thread: Some(PAIRS_THREAD.into()),
            actor: None,
            since_clock: None,
            after_seq: seq,
            limit: 1,
            max_bytes: None,
        };
        if fed.store.list(&tenant.id, &newer).await?.is_empty() {
            return Ok(pairs);
        }
    }
    let (records, seq) = fed.thread_records(&tenant.id, PAIRS_THREAD).await?;
    let pairs = fold_pairs(&records, &tenant.identity.did, genesis_verifies);
    fed.cache_pairs(&tenant.id, seq, pairs.clone());
    Ok(pairs)
}

/// A pair named by its id or its peer's DID.
pub async fn find(fed: &Federation, tenant: &Tenant, key: &str) -> Result<PairView> {
    let mut pairs = load(fed, tenant).await?;
    if let Some(pair) = pairs.remove(key) {
        return Ok(pair);
    }
    pairs
        .into_values()
        .find(|p| p.peer_did == key || p.peer_url.as_deref() == Some(key.trim_end_matches('/')))
        .ok_or_else(|| {
            Refusal::new(ErrorCode::UnpairedPeer, format!("no pair with '{key}'"))
                .with_hint("pair first: `spl federation pair <peer-url>`")
                .into()
        })
}

/// The pair whose inbound service account is `sa_id` (the pair behind a peer's token).
pub async fn by_inbound_account(
    fed: &Federation,
    tenant: &Tenant,
    sa_id: &str,
) -> Result<Option<PairView>> {
    Ok(load(fed, tenant)
        .await?
        .into_values()
        .find(|p| p.tokens.inbound.as_ref().is_some_and(|t| t.sa_id == sa_id)))
}

/// How often a pull job records where it is (`cursor_checkpoint`, federation-protocol.md §3.2: at
/// most once a minute; the live cursor row is what the job reads).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// A pair whose peer has not answered a pull for this long degrades (`unreachable_24h`).
const UNREACHABLE_SECS: i64 = 24 * 3600;
/// A degraded pair with no contact for this long is revoked (`auto_archive_90d`, §3.4).
const ARCHIVE_SECS: i64 = 90 * 24 * 3600;

/// What a pull says about its pair (federation-protocol.md §5.5): a 401 degrades an active pair at
/// once (`auth_401`), the next success recovers a degraded one, and the cursor is checkpointed as a
/// record now and then so that the fold can rebuild it after a restore.
pub async fn after_pull(
    fed: &Federation,
    tenant: &Tenant,
    pair_id: &str,
    thread: &str,
    result: &std::result::Result<PullOutcome, PullError>,
    last_checkpoint: &mut Option<std::time::Instant>,
) -> Result<()> {
    let pair = find(fed, tenant, pair_id).await?;
    let now = unix_now();
    // A 401 degrades at once; any other failure once nothing has come through for 24 hours
    // (the cursor row keeps the last success, so this survives restarts), and a degraded pair
    // that has heard nothing for 90 days is revoked.
    let silent_for = match result {
        Err(PullError::Peer(_)) => {
            fstate::pull_cursor(fed.store.as_ref(), &tenant.id, pair_id, thread)
                .await?
                .and_then(|c| c.last_sync_at)
                .map(|at| now - at)
        }
        _ => None,
    };
    if pair.state == PairState::Degraded && silent_for.is_some_and(|s| s > ARCHIVE_SECS) {
        revoke_pair(fed, tenant, &pair, "auto_archive_90d", false).await?;
        fed.jobs.kick(&tenant.id, &pair.pair_id);
        return Ok(());
    }
    let cause = match result {
        Err(PullError::Peer(PeerError::Http4xx {
            status: 401,
            code: Some(code),
            ..
        })) if code == ErrorCode::TokenExpiredRenewPair.as_str() => Some("token_expired"),
        Err(PullError::Peer(e)) if e.http_status() == Some(401) => Some("auth_401"),
        Err(PullError::Peer(_)) => silent_for
            .is_some_and(|s| s > UNREACHABLE_SECS)
            .then_some("unreachable_24h"),
        _ => None,
    };
    if let Err(PullError::Peer(PeerError::Moved { notice, .. })) = result {
        // Followed, or refused and tried again at the next pull; not a reason to degrade.
        if let Err(e) = follow_move(fed, tenant, &pair, notice).await {
            tracing::warn!(pair = %pair.pair_id, error = %e, "not following the peer's move");
        }
        return Ok(());
    }
    if let Err(PullError::Peer(
        PeerError::ConnectRefused(_) | PeerError::DnsFailure(_) | PeerError::Timeout(_),
    )) = result
    {
        if let Err(e) = follow_resolution(fed, tenant, &pair).await {
            tracing::debug!(pair = %pair.pair_id, error = %e, "the peer's DID names no other home");
        }
    }
    match result {
        Err(_) => {
            if let Some(cause) = cause.filter(|_| pair.state == PairState::Active) {
                degrade(fed, tenant, &pair, cause).await?;
            }
        }
        Ok(outcome) => {
            let pair = recover(fed, tenant, pair).await?;
            let moved = pair.cursors.get(thread).map(|c| c.cursor.as_str())
                != Some(outcome.cursor.as_str());
            let due = last_checkpoint.is_none_or(|at| at.elapsed() >= CHECKPOINT_EVERY);
            if moved && due && !outcome.cursor.is_empty() {
                let mut fields = Map::new();
                fields.insert("thread".into(), json!(thread));
                fields.insert("cursor".into(), json!(outcome.cursor));
                let body = update_body(
                    &pair.pair_id,
                    pair.generation,
                    UpdateOp::CursorCheckpoint,
                    None,
                    fields,
                    now,
                );
                transition(fed, tenant, &pair, body, None, None, Vec::new()).await?;
                *last_checkpoint = Some(std::time::Instant::now());
            }
        }
    }
    Ok(())
}

/// How long a record may wait in quarantine for its signer before its pair degrades.
const SIGNER_WAIT_SECS: i64 = 24 * 3600;
const SIGNER_UNRESOLVED: &str = "SIGNER_UNRESOLVED";

/// The pairs (by id) whose peers sent a record still waiting for its signer after 24 hours.
async fn unresolved_sources(
    fed: &Federation,
    tenant: &Tenant,
) -> Result<std::collections::BTreeSet<String>> {
    let now = unix_now();
    let held = fed.store.state_list(&tenant.id, fstate::QUARANTINE).await?;
    Ok(held
        .iter()
        .filter_map(|(_, text)| serde_json::from_str::<Value>(text).ok())
        .filter(|entry| {
            entry["code"] == SIGNER_UNRESOLVED
                && entry["at"]
                    .as_i64()
                    .is_some_and(|at| now - at > SIGNER_WAIT_SECS)
        })
        .filter_map(|entry| entry["source"].as_str().map(str::to_string))
        .collect())
}

/// Degrades every active pair whose peer sent a record that has waited more than 24 hours for
/// its signer to resolve (`SIGNER_UNRESOLVED`, federation-protocol.md §1.1); run with the
/// periodic renewal checks. How many it degraded.
pub async fn degrade_unresolved(fed: &Federation, tenant: &Tenant) -> Result<usize> {
    let stale = unresolved_sources(fed, tenant).await?;
    if stale.is_empty() {
        return Ok(0);
    }
    let mut degraded = 0;
    for pair in load(fed, tenant).await?.into_values() {
        if pair.state == PairState::Active && stale.contains(&pair.pair_id) {
            degrade(fed, tenant, &pair, SIGNER_UNRESOLVED).await?;
            degraded += 1;
        }
    }
    Ok(degraded)
}

/// How long a handshake may stay unfinished (awaiting the peer's approval or confirm).
const HANDSHAKE_WAIT_SECS: i64 = 24 * 3600;

/// Revokes every pair whose handshake has not finished within a day (`handshake_rejected`,
/// federation-protocol.md §3.4): an approval or a confirm that never came. Run with the periodic
/// pair check; how many it revoked.
pub async fn expire_handshakes(fed: &Federation, tenant: &Tenant) -> Result<usize> {
    let now = unix_now();
    let mut expired = 0;
    for pair in load(fed, tenant).await?.into_values() {
        let started = pair.created_at.as_deref().and_then(unix_from_rfc3339);
        let stale = started.is_some_and(|at| now - at > HANDSHAKE_WAIT_SECS);
        if pair.state == PairState::Establishing && stale {
            revoke_pair(fed, tenant, &pair, "handshake_rejected", false).await?;
            expired += 1;
        }
    }
    Ok(expired)
}

/// A degraded pair's `recover`, after the first success since (a pull, a renewal); the pair as
/// it now stands. A pair degraded for an unresolved signer recovers only once no record of its
/// peer still waits past the day, and one degraded for its peer's manifest only at a check that
/// finds the manifest verifying again ([`check_manifest`]).
pub async fn recover(fed: &Federation, tenant: &Tenant, pair: PairView) -> Result<PairView> {
    if pair.state != PairState::Degraded || pair.degraded_cause.as_deref() == Some(MANIFEST_INVALID)
    {
        return Ok(pair);
    }
    if pair.degraded_cause.as_deref() == Some(SIGNER_UNRESOLVED)
        && unresolved_sources(fed, tenant)
            .await?
            .contains(&pair.pair_id)
    {
        return Ok(pair);
    }
    write_recover(fed, tenant, pair).await
}

/// Writes a degraded pair's `recover` (`{"after": <cause>}`).
async fn write_recover(fed: &Federation, tenant: &Tenant, pair: PairView) -> Result<PairView> {
    let mut fields = Map::new();
    fields.insert("after".into(), json!(pair.degraded_cause));
    let body = update_body(
        &pair.pair_id,
        pair.generation,
        UpdateOp::Recover,
        None,
        fields,
        unix_now(),
    );
    transition(
        fed,
        tenant,
        &pair,
        body,
        Some(PairState::Active),
        Some("recovered"),
        Vec::new(),
    )
    .await
}

/// Writes an active pair's `degrade` with its `cause`.
pub(crate) async fn degrade(
    fed: &Federation,
    tenant: &Tenant,
    pair: &PairView,
    cause: &str,
) -> Result<PairView> {
    let mut fields = Map::new();
    fields.insert("cause".into(), json!(cause));
    let body = update_body(
        &pair.pair_id,
        pair.generation,
        UpdateOp::Degrade,
        Some(cause),
        fields,
        unix_now(),
    );
    transition(
        fed,
        tenant,
        pair,
        body,
        Some(PairState::Degraded),
        Some(cause),
        Vec::new(),
    )
    .await
}

/// An active pair whose bearer at the peer is gone (a restore brought its records back but not
/// its secret, federation-protocol.md §3.6) degrades with `credential_missing`, until `spl
/// federation refresh` gets a new one by the identity's signature. Whether it did now.
pub async fn degrade_without_credential(
    fed: &Federation,
    tenant: &Tenant,
    pair: &PairView,
) -> Result<bool> {
    if pair.state != PairState::Active
        || outbound_token(fed, tenant, &pair.pair_id).await?.is_some()
    {
        return Ok(false);
    }
    degrade(fed, tenant, pair, CREDENTIAL_MISSING).await?;
    Ok(true)
}

/// The `degrade` cause of a pair whose bearer is gone.
pub const CREDENTIAL_MISSING: &str = "credential_missing";

/// The `degrade` cause of a pair whose peer's manifest no longer verifies.
pub const MANIFEST_INVALID: &str = "manifest_invalid";

/// Fetches the manifest of a live pair's peer again (at a refresh and at the periodic pair check,
/// federation-protocol.md §3.4, §5.5) and records what changed: one that no longer verifies for
/// the peer's DID (or has expired) degrades an active pair (`manifest_invalid`); one that verifies
/// recovers a pair degraded for that, and, when its digest is not the one the pair holds, is
/// recorded as `manifest_changed` (its relays cached as the peer's). A peer that cannot be reached,
/// or whose DID cannot be resolved, changes nothing. The pair as it now stands.
pub async fn check_manifest(fed: &Federation, tenant: &Tenant, pair: PairView) -> Result<PairView> {
    let live = matches!(pair.state, PairState::Active | PairState::Degraded);
    let Some(url) = pair.peer_url.clone().filter(|_| live) else {
        return Ok(pair);
    };
    let refused = match peer_manifest(fed, &url, Reach::Peers, true).await {
        Err(e) => {
            tracing::debug!(pair = %pair.pair_id, error = %e, "the peer's manifest is out of reach");
            return Ok(pair);
        }
        Ok(PeerManifest::Verified { manifest, did }) if did == pair.peer_did => {
            return manifest_verified(fed, tenant, pair, &manifest).await;
        }
        Ok(PeerManifest::Verified { did, .. }) => format!("{url} serves a manifest of {did}"),
        Ok(PeerManifest::Invalid(e)) => e.message(),
    };
    tracing::warn!(pair = %pair.pair_id, why = %refused, "the peer's manifest no longer verifies");
    if pair.state != PairState::Active {
        return Ok(pair);
    }
    degrade(fed, tenant, &pair, MANIFEST_INVALID).await
}

/// The peer's manifest verified: recovers a pair degraded because it did not, and records a
/// manifest the pair does not know yet.
async fn manifest_verified(
    fed: &Federation,
    tenant: &Tenant,
    pair: PairView,
    manifest: &Value,
) -> Result<PairView> {
    let pair = if pair.state == PairState::Degraded
        && pair.degraded_cause.as_deref() == Some(MANIFEST_INVALID)
    {
        write_recover(fed, tenant, pair).await?
    } else {
        pair
    };
    let digest = canonical_sha256(manifest);
    if pair.peer_manifest_sha256.as_deref() == Some(digest.as_str()) {
        return Ok(pair);
    }
    let mut fields = Map::new();
    fields.insert("peer_manifest_sha256".into(), json!(digest));
    let body = update_body(
        &pair.pair_id,
        pair.generation,
        UpdateOp::ManifestChanged,
        None,
        fields,
        unix_now(),
    );
    let relays = PeerRelays::of_manifest(manifest).cache(&pair.pair_id);
    transition(
        fed,
        tenant,
        &pair,
        body,
        None,
        Some("manifest_changed"),
        vec![relays],
    )
    .await
}

/// [`check_manifest`] for every live pair of the tenant; run with the periodic pair check.
pub async fn check_manifests(fed: &Federation, tenant: &Tenant) -> Result<()> {
    for pair in load(fed, tenant).await?.into_values() {
        check_manifest(fed, tenant, pair).await?;
    }
    Ok(())
}

/// A peer that answered `410 INSTANCE_MOVED` (federation-protocol.md §8.5). Its notice must be
/// signed by a key of the pair's peer DID and name a URL that serves a manifest of that DID;
/// then the pair follows it (`url_refreshed`, via `moved_to`) with the same tokens. The old
/// store's cursors are refused there once and the pulls start over, de-duplicating.
async fn follow_move(
    fed: &Federation,
    tenant: &Tenant,
    pair: &PairView,
    notice: &Value,
) -> Result<()> {
    let refused =
        |why: String| FederationError::Refused(Refusal::new(ErrorCode::SignatureInvalid, why));
    let checked = check_moved(notice).map_err(refused)?;
    if checked.did != pair.peer_did {
        return Err(refused(format!(
            "the notice is for {}, not the peer",
            checked.did
        )));
    }
    let keys = fed.keys_reaching(Reach::Peers, &pair.peer_did).await?;
    if !keys.contains(&checked.signer) {
        return Err(refused(format!(
            "{} is not a key of the peer",
            checked.signer
        )));
    }
    move_to(fed, tenant, pair, &checked.moved_to, "moved_to").await?;
    tracing::info!(pair = %pair.pair_id, moved_to = %checked.moved_to, "followed the peer's move");
    Ok(())
}

/// A peer that cannot be reached where the pair knows it, whose DID has a document (did:sync,
/// did:web): resolved afresh (at most once per 30 s per DID), and followed (`url_refreshed`, via
/// `did_resolution`) when it names another home that serves a manifest of the same DID, as the
/// new home of a moved peer publishes (federation-protocol.md §8.5, steps 3 and 5).
async fn follow_resolution(fed: &Federation, tenant: &Tenant, pair: &PairView) -> Result<()> {
    if !has_document(&pair.peer_did) {
        return Ok(());
    }
    let resolved = fed
        .resolver()
        .refresh(&pair.peer_did)
        .await
        .map_err(|e| FederationError::unreachable(e.to_string()))?;
    let Some(endpoint) = resolved.endpoint.as_deref() else {
        return Ok(());
    };
    let endpoint = endpoint.trim_end_matches('/');
    if pair.peer_url.as_deref().map(|u| u.trim_end_matches('/')) == Some(endpoint) {
        return Ok(());
    }
    move_to(fed, tenant, pair, endpoint, "did_resolution").await?;
    tracing::info!(pair = %pair.pair_id, url = %endpoint, "followed the peer's DID to its new home");
    Ok(())
}

/// `spl federation refresh <peer> --url <new>`: the operator names where the peer lives now,
/// for when its old home is gone and cannot say (federation-protocol.md §8.5).
pub async fn set_url(fed: &Federation, tenant: &Tenant, key: &str, url: &str) -> Result<PairView> {
    let pair = find(fed, tenant, key).await?;
    move_to(fed, tenant, &pair, url.trim_end_matches('/'), "operator").await
}

/// Points `pair` at `url` (`url_refreshed`) once `url` serves a manifest signed for the pair's
/// peer DID; the tokens stay.
async fn move_to(
    fed: &Federation,
    tenant: &Tenant,
    pair: &PairView,
    url: &str,
    via: &str,
) -> Result<PairView> {
    if pair.peer_url.as_deref().map(|u| u.trim_end_matches('/')) == Some(url) {
        return Ok(pair.clone());
    }
    let (_, did) = verified_manifest(fed, url, Reach::Peers, true).await?;
    if did != pair.peer_did {
        return Err(FederationError::Refused(Refusal::new(
            ErrorCode::SignatureInvalid,
            format!("{url} serves {did}, not the peer {}", pair.peer_did),
        )));
    }
    let mut fields = Map::new();
    fields.insert("peer_url".into(), json!(url));
    fields.insert("via".into(), json!(via));
    let body = update_body(
        &pair.pair_id,
        pair.generation,
        UpdateOp::UrlRefreshed,
        None,
        fields,
        unix_now(),
    );
    let moved = transition(
        fed,
        tenant,
        pair,
        body,
        None,
        Some("url_refreshed"),
        Vec::new(),
    )
    .await?;
    fed.jobs.kick(&tenant.id, &pair.pair_id);
    Ok(moved)
}

/// A pair serves its peer while active or degraded; paused answers `pair_paused`.
pub fn require_serving(pair: &PairView) -> std::result::Result<(), Refusal> {
    match pair.state {
        PairState::Active | PairState::Degraded => Ok(()),
        PairState::Paused => Err(Refusal::new(
            ErrorCode::PairPaused,
            format!("pair {} is paused", pair.pair_id),
        )
        .with_hint("the operator resumes it with `spl federation resume`")),
        PairState::Establishing | PairState::Revoked => Err(Refusal::new(
            ErrorCode::AuthInvalid,
            format!("pair {} is not active", pair.pair_id),
        )),
    }
}

/// The namespaces the peer may land our records in: the agreed same-name namespaces and the
/// peer side of each map.
pub fn target_namespaces(pair: &PairView) -> Vec<String> {
    let mut targets = pair.namespaces.clone();
    targets.extend(pair.maps.iter().map(|m| m.peer.clone()));
    if targets.is_empty() {
        targets.push(syncropel_protocol::DEFAULT_NAMESPACE.into());
    }
    targets
}

/// Our namespaces a pull through the pair may land records in: the agreed same-name namespaces
/// and the local side of each map (`default` when the pair lists neither). The peer serves each
/// as [`target_namespaces`] lists it on its side.
pub fn local_namespaces(pair: &PairView) -> Vec<String> {
    let mut locals = pair.namespaces.clone();
    locals.extend(pair.maps.iter().map(|m| m.local.clone()));
    if locals.is_empty() {
        locals.push(syncropel_protocol::DEFAULT_NAMESPACE.into());
    }
    locals
}

/// The namespace a pull of `thread` through `pair` lands its records in. `named` must be one the
/// pair agreed on from our side (`403 CONSENT_DENIED`) and writable here
/// (`403 NAMESPACE_REJECTED`); a job keeps the namespace it started with, since what it stored
/// stays where it is (`409 precondition_failed` for another). Naming none keeps the job's.
async fn aim(
    fed: &Federation,
    tenant: &Tenant,
    pair: &PairView,
    thread: &str,
    named: Option<&str>,
) -> std::result::Result<Option<String>, PullError> {
    let row = fstate::pull_cursor(fed.store.as_ref(), &tenant.id, &pair.pair_id, thread).await?;
    let held = row.as_ref().and_then(|row| row.target_namespace.clone());
    let Some(named) = named else {
        return Ok(held);
    };
    let agreed = local_namespaces(pair);
    if !agreed.iter().any(|ns| ns == named) {
        return Err(PullError::Parked(
            Refusal::new(
                ErrorCode::ConsentDenied,
                format!("namespace '{named}' is not one this pair agreed on"),
            )
            .with_hint(format!("agreed namespaces here: {}", agreed.join(", "))),
        ));
    }
    fed.namespaces
        .check_writable(fed.store.as_ref(), &tenant.id, named)
        .await?;
    if row.is_some() && held.as_deref() != Some(named) {
        let now = held.as_deref().map_or_else(
            || "each record's own namespace".to_string(),
            |ns| format!("namespace '{ns}'"),
        );
        return Err(PullError::Parked(Refusal::new(
            ErrorCode::PreconditionFailed,
            format!("thread '{thread}' from this peer is already pulled into {now}"),
        )));
    }
    Ok(Some(named.to_string()))
}

/// The bearer an active pair with `peer_did` holds for us at the peer, for a request to
/// `peer_url`: only when that is the pair's own verified peer URL, so the bearer never goes
/// anywhere else whoever names the URL.
pub async fn outbound_token_for_peer(
    fed: &Federation,
    tenant: &Tenant,
    peer_did: &str,
    peer_url: &str,
) -> Result<Option<String>> {
    let peer_url = peer_url.trim_end_matches('/');
    let pair = load(fed, tenant).await?.into_values().find(|p| {
        p.peer_did == peer_did
            && p.state == PairState::Active
            && p.peer_url.as_deref().map(|url| url.trim_end_matches('/')) == Some(peer_url)
    });
    match pair {
        Some(pair) => outbound_token(fed, tenant, &pair.pair_id).await,
        None => Ok(None),
    }
}

pub async fn outbound_token(
    fed: &Federation,
    tenant: &Tenant,
    pair_id: &str,
) -> Result<Option<String>> {
    fstate::open_secret(
        fed.store.as_ref(),
        &tenant.id,
        &tenant.identity.key,
        &outbound_secret_handle(pair_id),
    )
    .await
}

/// The pull source of a pair, resolved before each pull: only an active or degraded pair with
/// a credential is pulled from.
pub(crate) async fn source(
    fed: &Federation,
    tenant: &Tenant,
    pair_id: String,
) -> std::result::Result<Source, PullError> {
    let pair = find(fed, tenant, &pair_id).await?;
    require_serving(&pair).map_err(PullError::Parked)?;
    let Some(token) = outbound_token(fed, tenant, &pair_id).await? else {
        degrade_without_credential(fed, tenant, &pair).await?;
        return Err(PullError::Parked(
            Refusal::new(
                ErrorCode::AuthInvalid,
                format!("pair {pair_id} has no outbound credential"),
            )
            .with_hint("get a new one from the peer: `spl federation refresh <peer>`"),
        ));
    };
    Ok(Source {
        id: pair_id,
        peer_did: pair.peer_did.clone(),
        base_url: pair.peer_url.clone().unwrap_or_default(),
        token,
        actor: tenant.identity.did.to_string(),
        target_namespace: None,
        generation: pair.generation,
        continuous: pair.mode == CONTINUOUS,
        on_demand: pair.mode == ON_DEMAND,
        poll_interval: (pair.poll_interval_secs != DEFAULT_POLL_INTERVAL_SECS)
            .then(|| Duration::from_secs(pair.poll_interval_secs)),
        consent_accepts: Vec::new(),
    })
}

/// Writes one update (or revoke) of a pair with its audit record, in one transaction, and
/// answers the pair as it now stands.
pub async fn transition(
    fed: &Federation,
    tenant: &Tenant,
    pair: &PairView,
    body: Map<String, Value>,
    to: Option<PairState>,
    reason: Option<&str>,
    changes: Vec<StateChange>,
) -> Result<PairView> {
    let identity = &tenant.identity;
    // The audit names the state record, whose id is known once it is sealed.
    let record = own_record(tenant, PAIRS_THREAD, body, pair.next_parents.clone());
    let change = match to {
        Some(to) => AuditChange::Transition {
            from: Some(pair.state),
            to,
        },
        None => AuditChange::Event("update"),
    };
    let audit = audit_body(&PairAudit {
        pair_id: &pair.pair_id,
        generation: pair.generation,
        peer_did: &pair.peer_did,
        change,
        reason,
        cause_record: &record.id,
        actor: &identity.did,
        timestamp: unix_now(),
    });
    let audit = own_record(tenant, PAIRS_AUDIT_THREAD, audit, Vec::new());
    for result in fed
        .store
        .write(&tenant.id, vec![record, audit], changes)
        .await?
    {
        result?;
    }
    find(fed, tenant, &pair.pair_id).await
}

/// The optional `reason` of an operator's request body.
pub fn reason_of(body: &Value) -> std::result::Result<Option<String>, Refusal> {
    match body.get("reason") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(r)) => Ok(Some(r.clone())),
        Some(_) => Err(Refusal::validation("'reason' must be a string")),
    }
}

/// The operator pauses or resumes a pair (`op` leads to `to`; `body` may give a `reason`); its
/// jobs hear of it at once.
pub async fn operate(
    fed: &Federation,
    tenant: &Tenant,
    key: &str,
    op: UpdateOp,
    to: PairState,
    body: &Value,
) -> Result<PairView> {
    let pair = find(fed, tenant, key).await?;
    let allowed = op
        .event()
        .is_some_and(|event| PairState::after(Some(pair.state), event) == Some(to));
    if !allowed {
        return Err(Refusal::new(
            ErrorCode::PreconditionFailed,
            format!(
                "pair {} is {}; it cannot {}",
                pair.pair_id,
                pair.state.as_str(),
                op.as_str()
            ),
        )
        .into());
    }
    let reason = reason_of(body)?;
    let reason = reason.as_deref();
    let record = update_body(
        &pair.pair_id,
        pair.generation,
        op,
        reason,
        Map::new(),
        unix_now(),
    );
    let pair = transition(fed, tenant, &pair, record, Some(to), reason, Vec::new()).await?;
    fed.jobs.kick(&tenant.id, &pair.pair_id);
    Ok(pair)
}

/// The pair `mode` whose jobs pull over the continuous feed.
pub const CONTINUOUS: &str = "continuous";
/// The mode of a pair pulled only when asked (`spl sync`).
pub const ON_DEMAND: &str = "on-demand";
/// The longest poll interval a pair may set: a day.
const MAX_POLL_INTERVAL_SECS: u64 = 24 * 3600;

/// Threads one pair may name in its allow list.
pub const MAX_ALLOWED_THREADS: usize = 1000;

/// The operator changes what a pair's peer is served (federation-protocol.md §5.6):
/// `thread_allow_add` and `thread_allow_remove` (a thread or a list), `thread_rule` (CEL, or
/// `null` to drop it). Written as a `config` update with its audit record; the peer's next
/// request is served the new scope.
pub async fn configure(
    fed: &Federation,
    tenant: &Tenant,
    key: &str,
    body: &Value,
) -> Result<PairView> {
    let pair = find(fed, tenant, key).await?;
    if pair.state == PairState::Revoked {
        return Err(Refusal::new(
            ErrorCode::PreconditionFailed,
            format!("pair {} is revoked", pair.pair_id),
        )
        .into());
    }
    let Some(asked) = body.as_object() else {
        return Err(Refusal::validation("the body must be a JSON object").into());
    };
    let mut fields = Map::new();
    for (name, value) in asked {
        match name.as_str() {
            "thread_allow_add" | "thread_allow_remove" => {
                let threads: Vec<&str> = match value {
                    Value::String(thread) => vec![thread.as_str()],
                    Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                if threads.is_empty()
                    || matches!(value, Value::Array(a) if a.len() != threads.len())
                {
                    return Err(Refusal::validation(format!(
                        "'{name}' is a thread or a non-empty list of threads"
                    ))
                    .into());
                }
                for thread in &threads {
                    validate_thread(thread).map_err(|e| Refusal::validation(e.to_string()))?;
                    refuse_unpullable(thread)?;
                }
                fields.insert(name.clone(), json!(threads));
            }
            "thread_rule" => {
                match value {
                    Value::Null => {}
                    Value::String(rule) => {
                        crate::ThreadRule::compile(rule)?;
                    }
                    _ => {
                        return Err(Refusal::validation(
                            "'thread_rule' is a CEL expression, or null to drop it",
                        )
                        .into())
                    }
                }
                fields.insert(name.clone(), value.clone());
            }
            "mode" => match value.as_str() {
                Some("polling" | CONTINUOUS | ON_DEMAND) => {
                    fields.insert(name.clone(), value.clone());
                }
                _ => {
                    return Err(Refusal::validation(
                        "'mode' is polling, continuous or on-demand",
                    )
                    .into())
                }
            },
            "poll_interval_secs" => match value.as_u64() {
                Some(secs @ 1..=MAX_POLL_INTERVAL_SECS) => {
                    fields.insert(name.clone(), json!(secs));
                }
                _ => {
                    return Err(Refusal::validation(format!(
                        "'poll_interval_secs' is a whole number of seconds from 1 to {MAX_POLL_INTERVAL_SECS}"
                    ))
                    .into())
                }
            },
            "reason" => {}
            other => {
                return Err(Refusal::validation(format!(
                    "'{other}' is not a setting of a pair here (mode, poll_interval_secs, \
                     thread_allow_add, thread_allow_remove, thread_rule)"
                ))
                .into())
            }
        }
    }
    if fields.is_empty() {
        return Err(Refusal::validation("nothing to change").into());
    }
    let added = fields
        .get("thread_allow_add")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if pair.thread_allow.len() + added > MAX_ALLOWED_THREADS {
        return Err(Refusal::validation(format!(
            "a pair allows at most {MAX_ALLOWED_THREADS} named threads (use a thread rule)"
        ))
        .into());
    }
    let reason = reason_of(body)?;
    let reason = reason.as_deref();
    let record = update_body(
        &pair.pair_id,
        pair.generation,
        UpdateOp::Config,
        reason,
        fields,
        unix_now(),
    );
    let pair = transition(fed, tenant, &pair, record, None, reason, Vec::new()).await?;
    // Its jobs take a new mode at once.
    fed.jobs.kick(&tenant.id, &pair.pair_id);
    Ok(pair)
}

/// Revokes a pair on this side: the revoke record, the inbound tokens revoked and the outbound
/// secret deleted in one go; then a best-effort notice to the peer (federation-protocol.md §4.8).
pub async fn revoke_pair(
    fed: &Federation,
    tenant: &Tenant,
    pair: &PairView,
    reason: &str,
    notify: bool,
) -> Result<PairView> {
    let mut revoked = Vec::new();
    if let Some(inbound) = &pair.tokens.inbound {
        syncropel_tenant::revoke(
            fed.store.as_ref(),
            &tenant.id,
            &tenant.identity,
            &inbound.token_id,
        )
        .await?;
        fed.tokens.evict(&tenant.id, &inbound.token_id);
        revoked.push(inbound.token_id.clone());
    }
    let mut outcome = RevokeNotify {
        attempted: false,
        ok: false,
    };
    if notify {
        let token: Option<String> = outbound_token(fed, tenant, &pair.pair_id).await?;
        if let (Some(url), Some(token)) = (pair.peer_url.as_deref(), token) {
            outcome.attempted = true;
            let body = crate::signed(
                json!({
                    "pair_id": pair.pair_id, "generation": pair.generation, "reason": reason,
                    "issued_at_ms": unix_now() * 1000,
                }),
                &tenant.identity.key,
            );
            let target = format!(
                "{}/v1/federation/pair/notify-revoke",
                url.trim_end_matches('/')
            );
            outcome.ok = matches!(
                fed.client()
                    .post_json(&target, &body, Some(&token), Some(&tenant.identity.did))
                    .await,
                Ok((200..=299, _))
            );
        }
    }
    let record = revoke_body(
        &pair.pair_id,
        pair.generation,
        reason,
        &revoked,
        outcome,
        unix_now(),
    );
    let changes = vec![StateChange::delete(
        fstate::SECRET,
        &outbound_secret_handle(&pair.pair_id),
    )];
    let pair = transition(
        fed,
        tenant,
        pair,
        record,
        Some(PairState::Revoked),
        Some(reason),
        changes,
    )
    .await?;
    fed.stop_jobs(&tenant.id, &pair.pair_id).await?;
    Ok(pair)
}

/// The operator revokes a pair (a revoked one stays as it is).
pub async fn revoke(
    fed: &Federation,
    tenant: &Tenant,
    key: &str,
    reason: &str,
) -> Result<PairView> {
    let pair = find(fed, tenant, key).await?;
    if pair.state == PairState::Revoked {
        return Ok(pair);
    }
    revoke_pair(fed, tenant, &pair, reason, true).await
}

/// `POST /v1/federation/pair/notify-revoke`: the peer revoked; we revoke symmetrically. The
/// caller is the peer, by its pair token (account `sa_id`), and signs the notice.
pub async fn notified_revoke(
    fed: &Federation,
    tenant: &Tenant,
    sa_id: &str,
    notice: &Value,
) -> Result<PairView> {
    let pair = by_inbound_account(fed, tenant, sa_id)
        .await?
        .ok_or_else(|| {
            Refusal::new(ErrorCode::PermissionDenied, "this token belongs to no pair")
        })?;
    let notice = notice
        .as_object()
        .ok_or_else(|| Refusal::validation("the notice must be a JSON object"))?;
    let signer = syncropel_protocol::signed::verify_object(notice)?;
    crate::handshake::check_freshness(notice)?;
    let signed_by_peer = fed.signs_for(&pair.peer_did, &signer).await;
    if notice.get("generation").and_then(Value::as_u64) != Some(pair.generation) {
        return Err(FederationError::validation(
            "the notice is for another generation of this pair",
        ));
    }
    if !signed_by_peer || notice.get("pair_id").and_then(Value::as_str) != Some(&pair.pair_id) {
        return Err(Refusal::new(
            ErrorCode::UnauthenticatedInitiator,
            "the notice is not signed by this pair's peer",
        )
        .into());
    }
    if pair.state == PairState::Revoked {
        return Ok(pair);
    }
    revoke_pair(fed, tenant, &pair, "peer_notified", false).await
}

/// Where a one-shot pull comes from: a peer named by pair id, DID or URL, or (with a token
/// the peer issued and no pair) a peer URL.
pub struct PullRequest<'a> {
    pub thread: &'a str,
    pub peer: &'a str,
    pub peer_token: Option<&'a str>,
    /// Our namespace the records land in (only through a pair); none: the job's, if it has one.
    pub namespace: Option<&'a str>,
}

/// A one-shot pull (`spl sync T from PEER`) that pages until the peer has nothing more. Through
/// a pair it also leaves the pair's job running for the thread; with a token and no pair it is
/// the one-shot path of the older token-based sync.
pub async fn pull(
    fed: &Arc<Federation>,
    tenant: &Arc<Tenant>,
    request: PullRequest<'_>,
) -> std::result::Result<PullOutcome, PullError> {
    let PullRequest {
        thread,
        peer,
        peer_token,
        namespace,
    } = request;
    validate_thread(thread).map_err(|e| PullError::Parked(e.into()))?;
    refuse_unpullable(thread).map_err(PullError::Parked)?;
    let source = match find(fed, tenant, peer).await {
        Ok(pair) => {
            match pair.state {
                PairState::Paused => require_serving(&pair).map_err(PullError::Parked)?,
                // The operator's call is fine; the pair is what cannot carry a pull (a 401
                // here would read as the operator's own token being refused).
                PairState::Establishing | PairState::Revoked => {
                    return Err(PullError::Parked(
                        Refusal::new(
                            ErrorCode::PreconditionFailed,
                            format!("pair {} is {}", pair.pair_id, pair.state.as_str()),
                        )
                        .with_hint("pair again: `spl federation pair <peer-url>`"),
                    ))
                }
                PairState::Active | PairState::Degraded => {}
            }
            let target_namespace = aim(fed, tenant, &pair, thread, namespace).await?;
            Source {
                target_namespace,
                ..source(fed, tenant, pair.pair_id.clone()).await?
            }
            .with_acceptances(fed, &tenant.id)
            .await?
        }
        Err(_) if namespace.is_some() => {
            return Err(PullError::Parked(Refusal::validation(
                "a namespace to pull into is named only through a pair",
            )))
        }
        Err(unpaired) => match peer_token {
            Some(token) if peer.starts_with("http://") || peer.starts_with("https://") => Source {
                id: format!(
                    "once_{}",
                    &syncropel_protocol::sha256_hex(peer.as_bytes())[..16]
                ),
                peer_did: String::new(),
                base_url: peer.to_string(),
                token: token.to_string(),
                actor: tenant.identity.did.to_string(),
                target_namespace: None,
                generation: 0,
                continuous: false,
                on_demand: false,
                poll_interval: None,
                consent_accepts: Vec::new(),
            },
            Some(_) => {
                return Err(PullError::Parked(Refusal::validation(
                    "with --peer-token, name the peer by its URL",
                )))
            }
            None => return Err(unpaired.into()),
        },
    };
    let total = pull_through(fed, tenant, &source, thread).await?;
    if !source.id.starts_with("once_") {
        fed.start_job(tenant.clone(), &source.id, thread).await?;
    }
    Ok(total)
}
