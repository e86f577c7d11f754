//! Pair token renewal (federation-protocol.md §4.6): pair tokens live 90 days; from day 83 the initiator
//! renews (the responder steps in from day 85 if the initiator has not). The renewer mints a new
//! token for the peer and calls the peer's `/refresh` with the token being renewed plus an
//! identity signature; the peer mints a new token for the renewer, revokes the old one at once
//! (no overlap) and answers it. Both sides write `token_renewed` records, one per direction.
//! A retry of a refresh whose answer was lost gets the same answer for 10 minutes (by nonce).

use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use serde_json::{json, Map, Value};
use syncropel_protocol::pair::{
    outbound_secret_handle, token_renewed_fields, update_body, PairRole, PairView, TokenDirection,
    UpdateOp,
};
use syncropel_protocol::signed::verify_object;
use syncropel_protocol::{
    rfc3339_from_unix, sha256_hex, unix_from_rfc3339, unix_now, ErrorCode, PairState, Refusal,
};
use syncropel_store::StateChange;
use syncropel_tenant::{self as accounts, mint_token, Tenant};

use crate::error::{FederationError, Result};
use crate::pairs::{self, find, transition};
use crate::state::{self as fstate, REFRESH};
use crate::Federation;

/// Pair tokens live this long.
pub const TOKEN_TTL_SECS: i64 = 90 * 24 * 3600;
/// The initiator renews once this little is left (day 83 of 90)…
const INITIATOR_WINDOW_SECS: i64 = 7 * 24 * 3600;
/// …and the responder once this little is left (day 85), if the initiator has not.
const RESPONDER_WINDOW_SECS: i64 = 5 * 24 * 3600;
/// A refresh answer is kept this long for a retry with the same nonce.
const REPLAY_SECS: i64 = 600;

/// Whether this side should renew the pair's tokens now.
fn due(pair: &PairView, now: i64) -> bool {
    // A degraded pair keeps trying: a renewal is how one whose token expired comes back.
    if !matches!(pair.state, PairState::Active | PairState::Degraded) {
        return false;
    }
    let Some(expires) = pair
        .tokens
        .outbound
        .as_ref()
        .and_then(|t| unix_from_rfc3339(&t.expires_at))
    else {
        return false;
    };
    let window = match pair.role {
        PairRole::Initiator => INITIATOR_WINDOW_SECS,
        PairRole::Responder => RESPONDER_WINDOW_SECS,
    };
    now >= expires - window
}

/// Renews every pair of the tenant that is due; failures are logged and retried next time.
pub async fn renew_due(fed: &Federation, tenant: &Tenant) -> Result<usize> {
    let now = (fed.config.clock)();
    let mut renewed = 0;
    for pair in pairs::load(fed, tenant).await?.into_values() {
        if !due(&pair, now) {
            continue;
        }
        match renew(fed, tenant, &pair).await {
            Ok(_) => renewed += 1,
            Err(e) => {
                tracing::warn!(pair = %pair.pair_id, error = %e, "token renewal failed");
                if let Err(e) = renewal_failed(fed, tenant, &pair, now).await {
                    tracing::warn!(pair = %pair.pair_id, error = %e, "recording a failed renewal");
                }
            }
        }
    }
    Ok(renewed)
}

/// A failed renewal is a `renewal_failed` update `{attempts, expires_at}` (one per check, the
/// attempts counted since the last renewal); once the outbound token has expired the pair also
/// degrades with `token_expired`.
async fn renewal_failed(
    fed: &Federation,
    tenant: &Tenant,
    pair: &PairView,
    now: i64,
) -> Result<()> {
    let Some(outbound) = &pair.tokens.outbound else {
        return Ok(());
    };
    let expires = unix_from_rfc3339(&outbound.expires_at);
    let key = format!("{}:{}", pair.pair_id, outbound.token_id);
    let attempts = fed
        .store
        .state_get(&tenant.id, RENEWAL_FAILURES, &key)
        .await?
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let mut fields = Map::new();
    fields.insert("attempts".into(), json!(attempts));
    fields.insert("expires_at".into(), json!(outbound.expires_at));
    let body = update_body(
        &pair.pair_id,
        pair.generation,
        UpdateOp::RenewalFailed,
        None,
        fields,
        unix_now(),
    );
    let count = StateChange::put(RENEWAL_FAILURES, &key, attempts.to_string());
    let pair = transition(
        fed,
        tenant,
        pair,
        body,
        None,
        Some("renewal_failed"),
        vec![count],
    )
    .await?;
    if expires.is_some_and(|at| now >= at) && pair.state == PairState::Active {
        pairs::degrade(fed, tenant, &pair, "token_expired").await?;
    }
    Ok(())
}

/// Failed renewals per (pair, outbound token): a renewed token starts counting again.
const RENEWAL_FAILURES: &str = "renewal_failures";

/// The periodic check of a tenant's pairs: tokens due for renewal are renewed, pairs whose
/// peer's records have waited a day for their signer degrade, handshakes unfinished after a
/// day are revoked, and the peers' manifests are verified again.
pub async fn check(fed: &Federation, tenant: &Tenant) -> Result<()> {
    renew_due(fed, tenant).await?;
    pairs::degrade_unresolved(fed, tenant).await?;
    pairs::expire_handshakes(fed, tenant).await?;
    pairs::check_manifests(fed, tenant).await?;
    Ok(())
}

/// Runs [`check`] every `interval`, until shutdown.
pub fn spawn(fed: Arc<Federation>, tenant: Arc<Tenant>, interval: Duration) {
    tokio::spawn(async move {
        loop {
            if let Err(e) = check(&fed, &tenant).await {
                tracing::warn!(error = %e, "checking pair tokens failed");
            }
            tokio::select! {
                _ = fed.shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    });
}

/// Renews one pair's tokens as the caller side.
pub async fn renew(fed: &Federation, tenant: &Tenant, pair: &PairView) -> Result<PairView> {
    let store = fed.store.as_ref();
    let identity = &tenant.identity;
    let inbound = pair.tokens.inbound.clone().ok_or_else(|| {
        FederationError::corrupt(format!("pair {} has no inbound token", pair.pair_id))
    })?;
    // Gone after a restore (`credential_missing`): the identity's signature alone then
    // authenticates the renewal (federation-protocol.md §3.6, §4.6).
    let old_outbound = pairs::outbound_token(fed, tenant, &pair.pair_id).await?;
    crate::handshake::ensure_pair_account(fed, tenant, &inbound.sa_id, &pair.peer_did).await?;
    let url = pair.peer_url.clone().unwrap_or_default();
    // The peer's new token for us, and the nonce of this renewal: kept before the call, so a
    // retry after a lost answer (or a crash) repeats the same renewal, which the peer answers
    // again from its replay cache instead of refusing our already revoked bearer.
    let attempt = renewal_attempt(fed, tenant, &pair.pair_id, &inbound.sa_id).await?;
    let (new_inbound, nonce, new_inbound_expires) = (
        attempt.token.clone(),
        attempt.nonce.clone(),
        attempt.expires_at,
    );
    let request = crate::signed(
        json!({
            "pair_id": pair.pair_id, "generation": pair.generation, "nonce": nonce,
            "issued_at_ms": unix_now() * 1000, "issued_token": new_inbound,
            "token_expires_at": rfc3339_from_unix(new_inbound_expires),
        }),
        &identity.key,
    );
    let (status, answer) = fed
        .client()
        .post_json(
            &format!("{}/v1/federation/pair/refresh", url.trim_end_matches('/')),
            &request,
            old_outbound.as_deref(),
            Some(&identity.did),
        )
        .await
        .map_err(|e| FederationError::unreachable(format!("refresh failed: {e}")))?;
    if status != 200 {
        return Err(FederationError::unreachable(format!(
            "the peer refused the refresh ({status}): {}",
            answer["message"].as_str().unwrap_or("")
        )));
    }
    let new_outbound = answer["issued_token"]
        .as_str()
        .ok_or_else(|| FederationError::unreachable("the refresh answer has no token"))?
        .to_string();
    let new_outbound_expires = answer["token_expires_at"]
        .as_str()
        .and_then(unix_from_rfc3339)
        .unwrap_or(unix_now() + TOKEN_TTL_SECS);
    // Ours for the peer: the new one in, the old one out (no overlap).
    let minted = accounts::install_token(
        store,
        &tenant.id,
        identity,
        &inbound.sa_id,
        new_inbound,
        Some(TOKEN_TTL_SECS),
    )
    .await?;
    accounts::revoke(store, &tenant.id, identity, &inbound.token_id).await?;
    fed.tokens.evict(&tenant.id, &inbound.token_id);
    let renewed = record_renewal(
        fed,
        tenant,
        pair,
        (
            &minted.token_id,
            minted.expires_at.unwrap_or(new_inbound_expires),
        ),
        (&new_outbound, new_outbound_expires),
        attempt.done(),
    )
    .await?;
    pairs::recover(fed, tenant, renewed).await
}

/// One renewal in progress on the renewer's side.
struct Attempt {
    pair_id: String,
    nonce: String,
    token: String,
    expires_at: i64,
}

impl Attempt {
    /// Forgets the attempt, in the transaction that records the renewal.
    fn done(&self) -> Vec<StateChange> {
        let key = format!("out/{}", self.pair_id);
        vec![
            StateChange::delete(REFRESH, &key),
            StateChange::delete(fstate::SECRET, &key),
        ]
    }
}

/// The renewal in progress for a pair if it is recent enough for the peer to answer it again,
/// else a new one (stored before it is sent).
async fn renewal_attempt(
    fed: &Federation,
    tenant: &Tenant,
    pair_id: &str,
    sa_id: &str,
) -> Result<Attempt> {
    let store = fed.store.as_ref();
    let key = format!("out/{pair_id}");
    let now = unix_now();
    if let Some(text) = store.state_get(&tenant.id, REFRESH, &key).await? {
        let saved: Value = fstate::parse(&text)?;
        let token = fstate::open_secret(store, &tenant.id, &tenant.identity.key, &key).await?;
        if let (Some(at), Some(nonce), Some(token)) =
            (saved["at"].as_i64(), saved["nonce"].as_str(), token)
        {
            if now - at < REPLAY_SECS - 60 {
                return Ok(Attempt {
                    pair_id: pair_id.to_string(),
                    nonce: nonce.to_string(),
                    token,
                    expires_at: saved["expires_at"].as_i64().unwrap_or(at + TOKEN_TTL_SECS),
                });
            }
        }
    }
    let mut nonce = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut nonce);
    let (token, _) = mint_token(&fed.env, sa_id);
    let attempt = Attempt {
        pair_id: pair_id.to_string(),
        nonce: hex::encode(nonce),
        token,
        expires_at: now + TOKEN_TTL_SECS,
    };
    let saved = json!({"at": now, "nonce": attempt.nonce, "expires_at": attempt.expires_at});
    store
        .write(
            &tenant.id,
            Vec::new(),
            vec![
                StateChange::put(REFRESH, &key, saved.to_string()),
                fstate::seal_secret(&tenant.identity.key, &key, &attempt.token),
            ],
        )
        .await?;
    Ok(attempt)
}

/// Writes both `token_renewed` records and keeps the new outbound bearer.
async fn record_renewal(
    fed: &Federation,
    tenant: &Tenant,
    pair: &PairView,
    inbound: (&str, i64),
    outbound: (&str, i64),
    mut changes: Vec<StateChange>,
) -> Result<PairView> {
    let now = unix_now();
    let first = update_body(
        &pair.pair_id,
        pair.generation,
        UpdateOp::TokenRenewed,
        None,
        token_renewed_fields(TokenDirection::Inbound, inbound.0, inbound.1),
        now,
    );
    let secret = fstate::seal_secret(
        &tenant.identity.key,
        &outbound_secret_handle(&pair.pair_id),
        outbound.0,
    );
    let pair = transition(
        fed,
        tenant,
        pair,
        first,
        None,
        Some("token_renewed"),
        Vec::new(),
    )
    .await?;
    let second = update_body(
        &pair.pair_id,
        pair.generation,
        UpdateOp::TokenRenewed,
        None,
        token_renewed_fields(
            TokenDirection::Outbound,
            &sha256_hex(outbound.0.as_bytes()),
            outbound.1,
        ),
        now,
    );
    transition(fed, tenant, &pair, second, None, Some("token_renewed"), {
        changes.push(secret);
        changes
    })
    .await
}

/// A token a peer renewed for us: the answer to its `/refresh`.
#[derive(Clone, Debug)]
pub struct Refreshed {
    pub pair_id: String,
    pub issued_token: Option<String>,
    /// RFC 3339.
    pub token_expires_at: Option<String>,
}

/// `POST /v1/federation/pair/refresh`: the peer renews, authenticated by its identity signature
/// over `request` (fresh, its nonce never used before). The bearer being renewed is not needed:
/// it proves nothing the signature does not, and a peer that restored its pair records without
/// their secrets no longer has it.
pub async fn refresh(
    fed: &Federation,
    tenant: &Tenant,
    request: &Map<String, Value>,
) -> Result<Refreshed> {
    let signer = verify_object(request).map_err(|e| {
        Refusal::new(
            ErrorCode::UnauthenticatedInitiator,
            format!("the refresh signature: {e}"),
        )
    })?;
    crate::handshake::check_freshness(request)?;
    let field = |name: &str| request.get(name).and_then(Value::as_str);
    let pair = find(fed, tenant, field("pair_id").unwrap_or_default()).await?;
    if !fed.signs_for(&pair.peer_did, &signer).await
        || request.get("generation").and_then(Value::as_u64) != Some(pair.generation)
    {
        return Err(Refusal::new(
            ErrorCode::UnauthenticatedInitiator,
            "the refresh is not signed by this pair's peer",
        )
        .into());
    }
    let nonce = field("nonce")
        .filter(|n| n.len() == 64)
        .ok_or_else(|| Refusal::validation("'nonce' must be 64 hex characters"))?;
    let key = format!("refresh/{}", sha256_hex(nonce.as_bytes()));
    let now = unix_now();
    // A retry of a refresh that went through (its answer was lost): the old bearer is already
    // revoked, so the peer's signature over the same nonce is what authenticates it.
    if let Some(text) = fed.store.state_get(&tenant.id, REFRESH, &key).await? {
        let cached: Value = fstate::parse(&text)?;
        if cached["at"]
            .as_i64()
            .is_some_and(|at| now - at < REPLAY_SECS)
        {
            let token =
                fstate::open_secret(fed.store.as_ref(), &tenant.id, &tenant.identity.key, &key)
                    .await?;
            return Ok(Refreshed {
                pair_id: pair.pair_id,
                issued_token: token,
                token_expires_at: cached["token_expires_at"].as_str().map(str::to_string),
            });
        }
        return Err(
            Refusal::new(ErrorCode::NonceReused, "this refresh nonce has been used").into(),
        );
    }
    if pair.state == PairState::Revoked {
        return Err(Refusal::new(
            ErrorCode::AuthInvalid,
            format!("pair {} is revoked: pair again", pair.pair_id),
        )
        .into());
    }
    let inbound =
        pair.tokens.inbound.clone().ok_or_else(|| {
            Refusal::new(ErrorCode::AuthInvalid, "this pair has no token to renew")
        })?;
    crate::handshake::ensure_pair_account(fed, tenant, &inbound.sa_id, &pair.peer_did).await?;
    let their_token = field("issued_token")
        .ok_or_else(|| Refusal::validation("'issued_token' is required"))?
        .to_string();
    let their_expires = field("token_expires_at")
        .and_then(unix_from_rfc3339)
        .unwrap_or(now + TOKEN_TTL_SECS);
    let store = fed.store.as_ref();
    let identity = &tenant.identity;
    let minted = accounts::mint(
        store,
        &tenant.id,
        identity,
        &fed.env,
        &inbound.sa_id,
        Some(TOKEN_TTL_SECS),
    )
    .await?;
    accounts::revoke(store, &tenant.id, identity, &inbound.token_id).await?;
    fed.tokens.evict(&tenant.id, &inbound.token_id);
    let expires = minted.expires_at.unwrap_or(now + TOKEN_TTL_SECS);
    let replay = vec![
        StateChange::put(
            REFRESH,
            &key,
            json!({"at": now, "token_expires_at": rfc3339_from_unix(expires)}).to_string(),
        ),
        fstate::seal_secret(&identity.key, &key, &minted.token),
    ];
    fed.store.write(&tenant.id, Vec::new(), replay).await?;
    record_renewal(
        fed,
        tenant,
        &pair,
        (&minted.token_id, expires),
        (&their_token, their_expires),
        Vec::new(),
    )
    .await?;
    Ok(Refreshed {
        pair_id: pair.pair_id,
        issued_token: Some(minted.token),
        token_expires_at: Some(rfc3339_from_unix(expires)),
    })
}

/// The operator refreshes a pair now: its peer's manifest verified again, its tokens renewed.
pub async fn refresh_now(fed: &Federation, tenant: &Tenant, key: &str) -> Result<PairView> {
    let pair = find(fed, tenant, key).await?;
    let pair = pairs::check_manifest(fed, tenant, pair).await?;
    renew(fed, tenant, &pair).await
}
