//! The responder's side of the handshake (federation-protocol.md §4.2-4.4): a peer's init is
//! queued for the operator (or approved by this steward's own allow-list), poll answers the
//! decision, confirm records the initiator's credential and makes the pair active.

use serde_json::{Map, Value};
use syncropel_protocol::pair::{
    genesis_body, outbound_secret_handle, GenesisMap, GenesisParams, IssuedToken, NamespaceMap,
};
use syncropel_protocol::signed::verify_object;
use syncropel_protocol::{
    pair_id, sha256_hex, unix_from_rfc3339, unix_now, ErrorCode, PairState, Refusal, PAIRS_THREAD,
};
use syncropel_store::StateChange;
use syncropel_tenant::Tenant;

use super::{
    activate_body, audit_record, canonical_sha256, check_freshness, handshake, handshakes, item_of,
    maps_field, namespaces_field, nonce_field, pair_credential, put, text_field, token_handle,
    unauthenticated, verified_manifest, Answer, Handshake, MAX_PENDING, MAX_PENDING_PER_ADDRESS,
    PAIR_SCOPES, PENDING_TTL_SECS, RENEW_AFTER_SECS, TOKEN_RETRIEVABLE_SECS, TOKEN_TTL_SECS,
};
use crate::error::{FederationError, Result};
use crate::pairs::{self, find, transition};
use crate::peer::Reach;
use crate::relay::PeerRelays;
use crate::state::{self as fstate, HANDSHAKE};
use crate::{own_record, Federation};

/// `POST /v1/federation/pair` (and `/init`): a peer asks to pair with us. `from` is the client
/// address the request came from, which holds few requests pending at once.
pub async fn init(
    fed: &Federation,
    tenant: &Tenant,
    request: &Map<String, Value>,
    from: Option<&str>,
    reach: Reach,
) -> Result<Answer> {
    let policy = &fed.config.pairing;
    if policy.refuse_requests {
        return Err(Refusal::new(
            ErrorCode::PairingDisabled,
            "this steward takes no pair requests",
        )
        .into());
    }
    let initiator = text_field(request, "actor_did")?;
    let peer_url = text_field(request, "peer_url")?;
    let nonce = nonce_field(request)?;
    let namespaces = namespaces_field(request, "namespace")?;
    let maps = maps_field(request)?;
    check_freshness(request)?;
    if text_field(request, "responder_did")? != *tenant.identity.did {
        return Err(unauthenticated(
            "the request is addressed to another steward",
        ));
    }
    let signer = verify_object(request).map_err(|e| unauthenticated(e.to_string()))?;
    if !fed.signs_for_reaching(reach, &initiator, &signer).await {
        return Err(unauthenticated("the request is not signed by actor_did"));
    }
    if !policy.admits_method(&initiator) {
        return Err(Refusal::new(
            ErrorCode::PairRejected,
            format!("this steward takes no pair requests from {initiator}'s DID method"),
        )
        .into());
    }
    let init_sha256 = canonical_sha256(&Value::Object(request.clone()));

    let key = sha256_hex(nonce.as_bytes());
    if let Some(row) = handshake(fed, &tenant.id, &key).await? {
        if row
            .init_sha256
            .as_deref()
            .is_some_and(|known| known != init_sha256)
        {
            return Err(Refusal::new(
                ErrorCode::NonceConflict,
                "this nonce came with another request",
            )
            .into());
        }
        return match row.status.as_str() {
            "confirmed" => Err(
                Refusal::new(ErrorCode::NonceReused, "this nonce has been used")
                    .with_hint("run `spl federation pair` again (it makes a new nonce)")
                    .into(),
            ),
            _ => decision(fed, tenant, &key, &row, &nonce).await,
        };
    }
    let id = pair_id(&tenant.identity.did, &initiator);
    let existing = pairs::load(fed, tenant).await?.remove(&id);
    if existing
        .as_ref()
        .is_some_and(|p| p.state == PairState::Active)
    {
        // Pairing is idempotent: the pair stands, no new tokens.
        return Ok(Answer::Active { pair_id: id });
    }
    let now = unix_now();
    let rows = handshakes(fed, &tenant.id).await?;
    // Ended handshakes go with this write; a request from the same DID replaces its older one.
    let mut changes: Vec<StateChange> = rows
        .iter()
        .filter(|(_, r)| {
            r.ended(now)
                || (r.role == "responder" && r.status == "pending" && r.peer_did == initiator)
        })
        .map(|(key, _)| StateChange::delete(HANDSHAKE, key))
        .collect();
    let waiting: Vec<&Handshake> = rows
        .iter()
        .map(|(_, r)| r)
        .filter(|r| {
            r.role == "responder"
                && r.status == "pending"
                && r.expires_at > now
                && r.peer_did != initiator
        })
        .collect();
    let from_here = waiting
        .iter()
        .filter(|r| from.is_some() && r.from_address.as_deref() == from)
        .count();
    if waiting.len() >= MAX_PENDING || from_here >= MAX_PENDING_PER_ADDRESS {
        return Err(Refusal::new(
            ErrorCode::PairRateLimited,
            "too many pair requests are waiting for the operator",
        )
        .with_hint("ask the operator to decide the requests waiting (`spl federation pending`)")
        .into());
    }
    // The URL must be the initiator's own: its manifest there names the same DID. Whatever went
    // wrong, the answer is the same, so that a request cannot probe what answers at a URL.
    let verified = verified_manifest(fed, &peer_url, reach, true).await;
    let manifest = match verified {
        Ok((manifest, did)) if did == initiator => manifest,
        _ => {
            return Err(unauthenticated(format!(
                "no manifest of {initiator} could be verified at {peer_url}"
            )))
        }
    };
    let generation = match &existing {
        Some(pair) if pair.state == PairState::Revoked => pair.generation + 1,
        Some(pair) => pair.generation.max(1),
        None => 1,
    };
    let row = Handshake {
        role: "responder".into(),
        pair_id: id,
        generation,
        peer_did: initiator.clone(),
        peer_url,
        status: "pending".into(),
        created_at: now,
        expires_at: now + PENDING_TTL_SECS,
        namespaces,
        maps,
        init_sha256: Some(init_sha256),
        from_address: from.map(str::to_string),
        genesis: None,
        token_issued_at: None,
        token_expires_at: None,
        confirm_sha256: None,
        nonce: None,
        endpoint: None,
        peer_manifest_sha256: None,
    };
    changes.push(put(&key, &row));
    changes.push(PeerRelays::of_manifest(&manifest).cache(&row.pair_id));
    fed.store.write(&tenant.id, Vec::new(), changes).await?;
    let approved_by = if fed.config.auto_approve.contains(&initiator) {
        Some("policy:auto_approve_dids")
    } else if policy
        .approve_rule
        .as_ref()
        .is_some_and(|rule| rule.admits(DECISION_THREAD, &decision_record(&row)))
    {
        Some("policy:approve_rule")
    } else {
        None
    };
    if let Some(policy) = approved_by {
        let row = approve_row(fed, tenant, &key, row, policy).await?;
        return decision(fed, tenant, &key, &row, &nonce).await;
    }
    Ok(row.pending(&nonce))
}

/// The thread an approval rule sees as `thread()`: pair decisions are the operator's.
const DECISION_THREAD: &str = "th_aitl";

/// A pending request as an approval rule sees it (`record.body`, federation-protocol.md §3.7).
fn decision_record(row: &Handshake) -> Value {
    serde_json::json!({
        "body": {
            "kind": "syncropel.federation.pair_pending.v1",
            "aitl": {"kind": "pair_pending.v1"},
            "pair_id": row.pair_id,
            "peer_did": row.peer_did,
            "peer_url": row.peer_url,
            "namespaces": row.namespaces,
            "maps": row.maps,
        }
    })
}

/// The answer to init or poll for a request in `row`'s state.
async fn decision(
    fed: &Federation,
    tenant: &Tenant,
    key: &str,
    row: &Handshake,
    nonce: &str,
) -> Result<Answer> {
    match row.status.as_str() {
        "pending" if row.expires_at <= unix_now() => Err(Refusal::new(
            ErrorCode::NonceExpired,
            "this pair request expired before it was approved",
        )
        .into()),
        "pending" => Ok(row.pending(nonce)),
        "rejected" => Err(Refusal::new(
            ErrorCode::PairRejected,
            "the operator rejected this pair request",
        )
        .into()),
        _ => {
            let fresh = row.status == "approved"
                && row
                    .token_issued_at
                    .is_some_and(|at| unix_now() - at < TOKEN_RETRIEVABLE_SECS);
            let issued_token = if fresh {
                fstate::open_secret(
                    fed.store.as_ref(),
                    &tenant.id,
                    &tenant.identity.key,
                    &token_handle(key),
                )
                .await?
            } else {
                None
            };
            let responder_manifest = fed.own_manifest(tenant);
            Ok(Answer::Approved {
                pair_id: row.pair_id.clone(),
                issued_token,
                token_expires_at: row.token_expires_at,
                responder_manifest,
                genesis: row.genesis.clone(),
            })
        }
    }
}

/// Approves a pending request: the peer's account and token, then genesis, its audit and the
/// handshake row in one transaction.
async fn approve_row(
    fed: &Federation,
    tenant: &Tenant,
    key: &str,
    mut row: Handshake,
    approved_by: &str,
) -> Result<Handshake> {
    let identity = &tenant.identity;
    let (sa, minted) = pair_credential(fed, tenant, &row.peer_did).await?;
    let expires_at = minted.expires_at.unwrap_or_default();
    let issued = IssuedToken {
        token_id: minted.token_id.clone(),
        sa_id: sa.id.clone(),
        bound_did: row.peer_did.clone(),
        expires_at,
    };
    let scopes: Vec<String> = PAIR_SCOPES.iter().map(|s| s.to_string()).collect();
    let maps: Vec<GenesisMap> = row
        .maps
        .iter()
        .map(|m: &NamespaceMap| GenesisMap {
            initiator: m.local.clone(),
            responder: m.peer.clone(),
        })
        .collect();
    let url = tenant.url.clone().unwrap_or_default();
    let own_manifest = fed.own_manifest(tenant);
    let body = genesis_body(&GenesisParams {
        pair_id: &row.pair_id,
        generation: row.generation,
        initiator_did: &row.peer_did,
        initiator_url: &row.peer_url,
        responder_did: &identity.did,
        responder_url: &url,
        nonce_sha256: key,
        approved_by,
        scopes: &scopes,
        namespaces: &row.namespaces,
        maps: &maps,
        mode: "polling",
        poll_interval_secs: fed.config.poll_interval.as_secs().max(1),
        responder_issued: &issued,
        token_ttl_secs: TOKEN_TTL_SECS as u64,
        renew_after_secs: RENEW_AFTER_SECS as u64,
        responder_manifest_sha256: &canonical_sha256(&own_manifest),
        created_at: unix_now(),
    });
    let genesis = own_record(tenant, PAIRS_THREAD, body, Vec::new());
    let audit = audit_record(
        tenant,
        &row.pair_id,
        row.generation,
        &row.peer_did,
        None,
        PairState::Establishing,
        approved_by,
        &genesis.id,
    );
    row.status = "approved".into();
    row.genesis = Some(item_of(&genesis)?);
    row.token_issued_at = Some(unix_now());
    row.token_expires_at = Some(expires_at);
    let changes = vec![
        put(key, &row),
        fstate::seal_secret(&identity.key, &token_handle(key), &minted.token),
    ];
    for result in fed
        .store
        .write(&tenant.id, vec![genesis, audit], changes)
        .await?
    {
        result?;
    }
    Ok(row)
}

/// `POST /v1/federation/pair/poll {"nonce"}`
pub async fn poll(
    fed: &Federation,
    tenant: &Tenant,
    request: &Map<String, Value>,
) -> Result<Answer> {
    let nonce = nonce_field(request)?;
    let key = sha256_hex(nonce.as_bytes());
    let row = handshake(fed, &tenant.id, &key)
        .await?
        .filter(|r| r.role == "responder")
        .ok_or_else(|| Refusal::not_found("no pair request with this nonce"))?;
    decision(fed, tenant, &key, &row, &nonce).await
}

/// Parses `spl_<env>_<sa_id>_<secret>` for its account id.
fn token_account(token: &str) -> Option<String> {
    let rest = token.strip_prefix("spl_")?;
    let (_, rest) = rest.split_once('_')?;
    let (sa_id, secret) = rest.rsplit_once('_')?;
    (!sa_id.is_empty() && !secret.is_empty()).then(|| sa_id.to_string())
}

/// `POST /v1/federation/pair/confirm`: the initiator's credential for us; the pair goes active.
pub async fn confirm(
    fed: &Federation,
    tenant: &Tenant,
    request: &Map<String, Value>,
    reach: Reach,
) -> Result<Answer> {
    let nonce = nonce_field(request)?;
    let key = sha256_hex(nonce.as_bytes());
    let Some(mut row) = handshake(fed, &tenant.id, &key)
        .await?
        .filter(|r| r.role == "responder")
    else {
        return Err(Refusal::not_found("no pair request with this nonce").into());
    };
    let body_sha256 = canonical_sha256(&Value::Object(request.clone()));
    if row.status == "confirmed" {
        return if row.confirm_sha256.as_deref() == Some(body_sha256.as_str()) {
            confirmed(fed, tenant, &row.pair_id).await
        } else {
            Err(Refusal::new(
                ErrorCode::NonceConflict,
                "this handshake was confirmed with another request",
            )
            .into())
        };
    }
    if row.status != "approved" {
        return decision(fed, tenant, &key, &row, &nonce).await;
    }
    check_freshness(request)?;
    let signer = verify_object(request).map_err(|e| unauthenticated(e.to_string()))?;
    if !fed.signs_for_reaching(reach, &row.peer_did, &signer).await {
        return Err(unauthenticated(
            "the confirm is not signed by the initiator",
        ));
    }
    let genesis_id = row
        .genesis
        .as_ref()
        .and_then(|g| g["id"].as_str())
        .unwrap_or_default();
    if text_field(request, "pair_id")? != row.pair_id
        || text_field(request, "genesis_id")? != genesis_id
    {
        return Err(FederationError::validation(
            "pair_id or genesis_id does not match this handshake",
        ));
    }
    let token = text_field(request, "issued_token")?;
    let sa_id = token_account(&token)
        .ok_or_else(|| Refusal::validation("'issued_token' is not a steward token"))?;
    let expires_at = request
        .get("token_expires_at")
        .and_then(Value::as_str)
        .and_then(unix_from_rfc3339)
        .unwrap_or(unix_now() + TOKEN_TTL_SECS);
    let pair = find(fed, tenant, &row.pair_id).await?;
    let issued = IssuedToken {
        token_id: sha256_hex(token.as_bytes()),
        sa_id,
        bound_did: tenant.identity.did.to_string(),
        expires_at,
    };
    let record = activate_body(&row, &issued);
    row.status = "confirmed".into();
    row.confirm_sha256 = Some(body_sha256);
    let changes = vec![
        put(&key, &row),
        fstate::seal_secret(
            &tenant.identity.key,
            &outbound_secret_handle(&row.pair_id),
            &token,
        ),
        StateChange::delete(fstate::SECRET, &token_handle(&key)),
    ];
    transition(
        fed,
        tenant,
        &pair,
        record,
        Some(PairState::Active),
        Some("confirm"),
        changes,
    )
    .await?;
    confirmed(fed, tenant, &row.pair_id).await
}

async fn confirmed(fed: &Federation, tenant: &Tenant, pair_id: &str) -> Result<Answer> {
    let pair = find(fed, tenant, pair_id).await?;
    Ok(Answer::Confirmed {
        pair_id: pair_id.to_string(),
        activated_record_id: pair.next_parents.last().cloned(),
    })
}

/// A request waiting for the operator.
#[derive(Clone, Debug)]
pub struct PendingRequest {
    pub pair_id: String,
    pub peer_did: String,
    pub peer_url: String,
    pub namespaces: Vec<String>,
    pub maps: Vec<NamespaceMap>,
    pub expires_at: i64,
}

/// `GET /v1/federation/pending`: requests waiting for the operator.
pub async fn pending(fed: &Federation, tenant: &Tenant) -> Result<Vec<PendingRequest>> {
    let now = unix_now();
    Ok(handshakes(fed, &tenant.id)
        .await?
        .into_iter()
        .filter(|(_, r)| r.role == "responder" && r.status == "pending" && r.expires_at > now)
        .map(|(_, r)| PendingRequest {
            pair_id: r.pair_id,
            peer_did: r.peer_did,
            peer_url: r.peer_url,
            namespaces: r.namespaces,
            maps: r.maps,
            expires_at: r.expires_at,
        })
        .collect())
}

async fn pending_row(
    fed: &Federation,
    tenant: &Tenant,
    pair_id: &str,
) -> Result<(String, Handshake)> {
    let now = unix_now();
    handshakes(fed, &tenant.id)
        .await?
        .into_iter()
        .find(|(_, r)| {
            r.role == "responder"
                && r.status == "pending"
                && r.pair_id == pair_id
                && r.expires_at > now
        })
        .ok_or_else(|| Refusal::not_found(format!("no pending pair request '{pair_id}'")).into())
}

/// The operator approves a pending request (`approved_by` names who, for the genesis); answers
/// the peer's DID.
pub async fn approve(
    fed: &Federation,
    tenant: &Tenant,
    pair_id: &str,
    approved_by: &str,
) -> Result<String> {
    let (key, row) = pending_row(fed, tenant, pair_id).await?;
    let row = approve_row(fed, tenant, &key, row, approved_by).await?;
    Ok(row.peer_did)
}

/// The operator rejects a pending request; answers the peer's DID.
pub async fn reject(fed: &Federation, tenant: &Tenant, pair_id: &str) -> Result<String> {
    let (key, mut row) = pending_row(fed, tenant, pair_id).await?;
    row.status = "rejected".into();
    row.expires_at = unix_now();
    fed.store
        .write(&tenant.id, Vec::new(), vec![put(&key, &row)])
        .await?;
    Ok(row.peer_did)
}
