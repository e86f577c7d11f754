//! The initiator's side of the handshake (federation-protocol.md §4.1-4.4): the operator's
//! `spl federation pair <url>` fetches and verifies the peer's manifest and sends init; on
//! approval the genesis is verified and stored verbatim, the peer's credential minted and sent
//! in the confirm.

use rand::RngCore;
use serde_json::{json, Map, Value};
use syncropel_protocol::pair::{
    init_body, outbound_secret_handle, GenesisMap, InitParams, IssuedToken,
};
use syncropel_protocol::sync::PeerItem;
use syncropel_protocol::{
    pair_id, rfc3339_from_unix, sha256_hex, unix_now, ErrorCode, PairState, Refusal, PAIRS_THREAD,
};
use syncropel_tenant::{stored_form, Tenant};

use super::{
    activate_body, audit_record, canonical_sha256, handshakes, maps_field, namespaces_field,
    now_ms, pair_credential, peer_refusal, put, text_field, verified_manifest, Answer, Handshake,
    PENDING_TTL_SECS,
};
use crate::error::{FederationError, Result};
use crate::pairs::{self, find, transition};
use crate::peer::Reach;
use crate::relay::PeerRelays;
use crate::state as fstate;
use crate::{own_record, signed, Federation};

/// Starts pairing with the steward at `peer_url` (`{"peer_url", "maps"?, "namespaces"?,
/// "no_strict"?}`); `no_strict` takes a manifest that has expired, never one whose signature
/// does not verify.
pub async fn start(
    fed: &Federation,
    tenant: &Tenant,
    request: &Map<String, Value>,
) -> Result<Answer> {
    let peer_url = text_field(request, "peer_url")?
        .trim_end_matches('/')
        .to_string();
    let maps = maps_field(request)?;
    let namespaces = namespaces_field(request, "namespaces")?;
    let no_strict = match request.get("no_strict") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(no_strict)) => *no_strict,
        Some(_) => return Err(FederationError::validation("'no_strict' must be a boolean")),
    };
    // The operator's own request: the peer may be wherever peers may be.
    let (manifest, responder) = verified_manifest(fed, &peer_url, Reach::Peers, !no_strict).await?;
    if responder == *tenant.identity.did {
        return Err(FederationError::validation(
            "that URL is this steward itself",
        ));
    }
    let id = pair_id(&tenant.identity.did, &responder);
    let existing = pairs::load(fed, tenant).await?.remove(&id);
    if let Some(pair) = existing.as_ref().filter(|p| p.state == PairState::Active) {
        return Ok(Answer::Paired(Box::new(pair.clone())));
    }
    let generation = match &existing {
        Some(pair) if pair.state == PairState::Revoked => pair.generation + 1,
        Some(pair) => pair.generation.max(1),
        None => 1,
    };
    let endpoint = manifest["federation"]["handshake_endpoint"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{peer_url}/v1/federation/pair"));
    let mut nonce = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut nonce);
    let nonce = hex::encode(nonce);
    let key = sha256_hex(nonce.as_bytes());
    let manifest_sha256 = canonical_sha256(&manifest);
    let own_url = tenant.url.clone().unwrap_or_default();
    let now = unix_now();
    let row = Handshake {
        role: "initiator".into(),
        pair_id: id.clone(),
        generation,
        peer_did: responder.clone(),
        peer_url: peer_url.clone(),
        status: "pending".into(),
        created_at: now,
        expires_at: now + PENDING_TTL_SECS,
        namespaces: namespaces.clone(),
        maps: maps.clone(),
        init_sha256: None,
        from_address: None,
        genesis: None,
        token_issued_at: None,
        token_expires_at: None,
        confirm_sha256: None,
        nonce: Some(nonce.clone()),
        endpoint: Some(endpoint.clone()),
        peer_manifest_sha256: Some(manifest_sha256.clone()),
    };
    let init_record = init_body(&InitParams {
        pair_id: &id,
        generation,
        peer_did: &responder,
        peer_url: &peer_url,
        nonce_sha256: &key,
        peer_manifest_sha256: &manifest_sha256,
        maps: &maps,
        mode: "polling",
        created_at: now,
    });
    let identity = &tenant.identity;
    let init_sealed = own_record(tenant, PAIRS_THREAD, init_record, Vec::new());
    let audit = audit_record(
        tenant,
        &id,
        generation,
        &responder,
        None,
        PairState::Establishing,
        "init",
        &init_sealed.id,
    );
    for result in fed
        .store
        .write(
            &tenant.id,
            vec![init_sealed, audit],
            vec![
                put(&key, &row),
                PeerRelays::of_manifest(&manifest).cache(&id),
            ],
        )
        .await?
    {
        result?;
    }

    let request = signed(
        json!({
            "actor_did": *identity.did, "peer_url": own_url, "labels": [], "namespace": namespaces,
            "nonce": nonce, "issued_at_ms": now_ms(), "responder_did": responder,
            "responder_manifest_sha256": manifest_sha256, "maps": maps, "mode": "polling", "mls": null,
        }),
        &identity.key,
    );
    let (status, answer) = fed
        .client()
        .post_json(&endpoint, &request, None, None)
        .await
        .map_err(|e| FederationError::unreachable(format!("init failed: {e}")))?;
    decided(fed, tenant, &key, row, status, answer).await
}

/// Asks the responder again about a pending request of ours.
pub async fn continue_pairing(fed: &Federation, tenant: &Tenant, pair_id: &str) -> Result<Answer> {
    let (key, row) = handshakes(fed, &tenant.id)
        .await?
        .into_iter()
        .filter(|(_, r)| r.role == "initiator" && r.pair_id == pair_id && r.status == "pending")
        .max_by_key(|(_, r)| r.created_at)
        .ok_or_else(|| Refusal::not_found(format!("no pairing in progress with '{pair_id}'")))?;
    let endpoint = row.endpoint.clone().unwrap_or_default();
    let nonce = row.nonce.clone().unwrap_or_default();
    let (status, answer) = fed
        .client()
        .post_json(
            &format!("{endpoint}/poll"),
            &json!({"nonce": nonce}),
            None,
            None,
        )
        .await
        .map_err(|e| FederationError::unreachable(format!("poll failed: {e}")))?;
    decided(fed, tenant, &key, row, status, answer).await
}

/// The initiator's reaction to the responder's answer to init or poll.
async fn decided(
    fed: &Federation,
    tenant: &Tenant,
    key: &str,
    mut row: Handshake,
    status: u16,
    answer: Value,
) -> Result<Answer> {
    match (status, answer["status"].as_str()) {
        (202, _) => Ok(row.pending("")),
        (200, Some("approved")) => complete(fed, tenant, key, row, answer).await,
        (200, Some("active")) => Err(Refusal::new(
            ErrorCode::PreconditionFailed,
            "the peer holds an active pair with us that this steward does not know",
        )
        .with_hint("ask the peer's operator to revoke it, then pair again")
        .into()),
        (403 | 410, _) => {
            row.status = "rejected".into();
            fed.store
                .write(&tenant.id, Vec::new(), vec![put(key, &row)])
                .await?;
            if let Ok(pair) = find(fed, tenant, &row.pair_id).await {
                if pair.state == PairState::Establishing {
                    pairs::revoke_pair(fed, tenant, &pair, "handshake_rejected", false).await?;
                }
            }
            Err(peer_refusal(status, &answer))
        }
        _ => Err(peer_refusal(status, &answer)),
    }
}

/// Whether a genesis names the namespaces and maps of our init, in any order (absent means none
/// asked: `default` and no maps).
fn grants_what_was_asked(genesis: &Map<String, Value>, row: &Handshake) -> bool {
    let namespaces = match genesis.get("namespaces") {
        None | Some(Value::Null) => Some(vec![syncropel_protocol::DEFAULT_NAMESPACE.to_string()]),
        Some(list) => serde_json::from_value::<Vec<String>>(list.clone()).ok(),
    };
    let maps = match genesis.get("maps") {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(list) => serde_json::from_value::<Vec<GenesisMap>>(list.clone()).ok(),
    };
    let (Some(mut namespaces), Some(maps)) = (namespaces, maps) else {
        return false;
    };
    let mut asked = row.namespaces.clone();
    asked.sort();
    namespaces.sort();
    let mut maps: Vec<(String, String)> = maps
        .into_iter()
        .map(|m| (m.initiator, m.responder))
        .collect();
    let mut asked_maps: Vec<(String, String)> = row
        .maps
        .iter()
        .map(|m| (m.local.clone(), m.peer.clone()))
        .collect();
    maps.sort();
    asked_maps.sort();
    namespaces == asked && maps == asked_maps
}

/// Approved: verify and store the genesis, keep the responder's token, mint ours, confirm.
async fn complete(
    fed: &Federation,
    tenant: &Tenant,
    key: &str,
    mut row: Handshake,
    answer: Value,
) -> Result<Answer> {
    let bad =
        |why: &str| FederationError::unreachable(format!("the peer's approval is invalid: {why}"));
    let token = answer["issued_token"]
        .as_str()
        .ok_or_else(|| bad("no issued_token"))?
        .to_string();
    let item = PeerItem::from_value(answer["genesis"].clone()).map_err(|e| bad(&e))?;
    let body = &item.envelope.body;
    let genuine = fed.signed_by(&item, &row.peer_did).await
        && body.get("pair_id").and_then(Value::as_str) == Some(row.pair_id.as_str())
        && body.get("nonce_sha256").and_then(Value::as_str) == Some(key)
        && item.envelope.thread == PAIRS_THREAD;
    if !genuine {
        return Err(bad(
            "the genesis is not signed by the peer for this handshake",
        ));
    }
    // The genesis is what the pair grants: exactly the namespaces and maps we asked for, or the
    // peer could read namespaces our operator never agreed to share.
    if !grants_what_was_asked(body, &row) {
        return Err(bad(
            "the genesis names other namespaces or maps than this steward asked for",
        ));
    }
    // The responder numbers the generation: a pair it revoked while we did not hear of it
    // (ours still degraded or paused) goes on in its next generation, and ours follows.
    match body.get("generation").and_then(Value::as_u64) {
        Some(generation) if generation >= row.generation => row.generation = generation,
        _ => return Err(bad("the genesis names an earlier generation than ours")),
    }
    let genesis = stored_form(
        &item.envelope,
        &item.id,
        item.sig.as_deref(),
        item.signer.as_deref(),
        None,
    );
    for result in fed
        .store
        .write(
            &tenant.id,
            vec![genesis],
            vec![fstate::seal_secret(
                &tenant.identity.key,
                &outbound_secret_handle(&row.pair_id),
                &token,
            )],
        )
        .await?
    {
        result?;
    }

    let identity = &tenant.identity;
    let (sa, minted) = pair_credential(fed, tenant, &row.peer_did).await?;
    let expires_at = minted.expires_at.unwrap_or_default();
    let confirm = signed(
        json!({
            "nonce": row.nonce, "pair_id": row.pair_id, "issued_token": minted.token,
            "token_expires_at": rfc3339_from_unix(expires_at),
            "genesis_id": item.id, "issued_at_ms": now_ms(),
        }),
        &identity.key,
    );
    let endpoint = row.endpoint.clone().unwrap_or_default();
    let (status, reply) = fed
        .client()
        .post_json(&format!("{endpoint}/confirm"), &confirm, None, None)
        .await
        .map_err(|e| FederationError::unreachable(format!("confirm failed: {e}")))?;
    if status != 200 {
        return Err(peer_refusal(status, &reply));
    }
    let pair = find(fed, tenant, &row.pair_id).await?;
    let issued = IssuedToken {
        token_id: minted.token_id,
        sa_id: sa.id,
        bound_did: row.peer_did.clone(),
        expires_at,
    };
    let record = activate_body(&row, &issued);
    row.status = "confirmed".into();
    row.nonce = None;
    let pair = transition(
        fed,
        tenant,
        &pair,
        record,
        Some(PairState::Active),
        Some("confirm"),
        vec![put(key, &row)],
    )
    .await?;
    Ok(Answer::Paired(Box::new(pair)))
}
