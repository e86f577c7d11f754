//! The pairing handshake (federation-protocol.md §4): three round trips authenticated by
//! identity-key signatures and a single-use nonce, never by a bearer (the handshake is what
//! mints bearers).
//!
//! Responder ([`responder`]): init queues the request for the operator (or approves it at once
//! when the peer's DID is on this steward's own allow-list), poll answers the decision, confirm
//! completes the exchange. Initiator ([`initiator`]): the operator's `spl federation pair <url>`
//! fetches and verifies the peer's manifest, sends init, and on approval verifies the genesis,
//! stores it verbatim, mints the peer's credential and confirms.

pub mod initiator;
pub mod responder;

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use syncropel_protocol::pair::{
    activate_fields, audit_body, update_body, AuditChange, IssuedToken, NamespaceMap, PairAudit,
    PairView, UpdateOp,
};
use syncropel_protocol::sync::sync_item;
use syncropel_protocol::{
    sha256_hex, unix_now, ErrorCode, PairState, Refusal, DEFAULT_NAMESPACE, PAIRS_AUDIT_THREAD,
};
use syncropel_store::{NewRecord, ServiceAccount, StateChange};
use syncropel_tenant::{self as accounts, MintedToken, Tenant};

use crate::error::{FederationError, Result};
use crate::peer::Reach;
use crate::state::{self as fstate, HANDSHAKE};
use crate::{manifest, own_record, Federation};

/// Scopes of the account a pair's peer gets: the peer-facing grains only
/// (federation-protocol.md §4.6).
const PAIR_SCOPES: [&str; 3] = [
    "federation:sync_pull",
    "federation:sync_push",
    "federation:subscribe",
];
/// Names of the service accounts made for pairs start so.
pub const PAIR_ACCOUNT_PREFIX: &str = "pair ";
/// Pair tokens live 90 days; renewal opens 7 days before the end.
const TOKEN_TTL_SECS: i64 = 90 * 24 * 3600;
const RENEW_AFTER_SECS: i64 = 83 * 24 * 3600;
/// A pending request and an unconfirmed approval expire after a day.
const PENDING_TTL_SECS: i64 = 24 * 3600;
/// The approved token stays retrievable by poll this long, for a lost poll answer.
const TOKEN_RETRIEVABLE_SECS: i64 = 600;
/// Clocks of the two sides may disagree by this much.
const FRESHNESS_MS: i64 = 60_000;
/// Most requests waiting for the operator at once, and from one client address. A new request
/// from a DID that already waits replaces its older one, so a DID holds one place at most.
const MAX_PENDING: usize = 100;
const MAX_PENDING_PER_ADDRESS: usize = 3;
/// Decided and expired handshakes are deleted this long after their end (their nonces can no
/// longer be replayed by then: a request is fresh for a minute).
const KEEP_ENDED_SECS: i64 = 3600;
/// How long an initiator should wait before polling a pending request again.
pub const POLL_AFTER_MS: u64 = 2000;

/// Where a handshake stands, as its answer tells the caller.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Waiting for the responder's operator (202).
    Pending {
        pair_id: String,
        /// The nonce of the handshake (the initiator's own answer leaves it empty).
        nonce: String,
        expires_at: i64,
    },
    /// The responder approved: the peer's token (while it is retrievable), the responder's
    /// manifest and the genesis it recorded.
    Approved {
        pair_id: String,
        issued_token: Option<String>,
        token_expires_at: Option<i64>,
        responder_manifest: Value,
        genesis: Option<Value>,
    },
    /// The pair stands already; pairing again is idempotent.
    Active { pair_id: String },
    /// The responder recorded the initiator's credential: the pair is active.
    Confirmed {
        pair_id: String,
        activated_record_id: Option<String>,
    },
    /// The initiator's side: the pair as it now stands.
    Paired(Box<PairView>),
}

/// One handshake in flight, on either side, keyed by the nonce's SHA-256.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Handshake {
    role: String,
    pair_id: String,
    generation: u64,
    peer_did: String,
    peer_url: String,
    /// `pending`, `approved`, `rejected` or `confirmed`.
    status: String,
    created_at: i64,
    expires_at: i64,
    namespaces: Vec<String>,
    maps: Vec<NamespaceMap>,
    /// Responder: the SHA-256 of the signed init's canonical JSON (a replay must match it; the
    /// init itself, which holds the nonce, is not kept), the address it came from, the genesis
    /// item, when the token was issued, and the SHA-256 of the confirm accepted.
    #[serde(default)]
    init_sha256: Option<String>,
    #[serde(default)]
    from_address: Option<String>,
    genesis: Option<Value>,
    token_issued_at: Option<i64>,
    token_expires_at: Option<i64>,
    #[serde(default)]
    confirm_sha256: Option<String>,
    /// Initiator: the nonce itself and where the responder takes handshake calls.
    nonce: Option<String>,
    endpoint: Option<String>,
    peer_manifest_sha256: Option<String>,
}

impl Handshake {
    /// Whether the row may be deleted at `now`: expired (a rejection expires it) long enough ago.
    fn ended(&self, now: i64) -> bool {
        self.expires_at + KEEP_ENDED_SECS <= now
    }

    fn pending(&self, nonce: &str) -> Answer {
        Answer::Pending {
            pair_id: self.pair_id.clone(),
            nonce: nonce.to_string(),
            expires_at: self.expires_at,
        }
    }
}

fn token_handle(nonce_sha256: &str) -> String {
    format!("handshake/{nonce_sha256}")
}

async fn handshakes(fed: &Federation, tenant: &str) -> Result<Vec<(String, Handshake)>> {
    fed.store
        .state_list(tenant, HANDSHAKE)
        .await?
        .into_iter()
        .map(|(key, text)| Ok((key, fstate::parse(&text)?)))
        .collect()
}

async fn handshake(fed: &Federation, tenant: &str, key: &str) -> Result<Option<Handshake>> {
    match fed.store.state_get(tenant, HANDSHAKE, key).await? {
        Some(text) => Ok(Some(fstate::parse(&text)?)),
        None => Ok(None),
    }
}

fn put(key: &str, row: &Handshake) -> StateChange {
    StateChange::put(HANDSHAKE, key, fstate::to_text(row))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn unauthenticated(why: impl Into<String>) -> FederationError {
    Refusal::new(
        ErrorCode::UnauthenticatedInitiator,
        format!(
            "pair_handshake_rejected: unauthenticated_initiator: {}",
            why.into()
        ),
    )
    .into()
}

fn text_field(body: &Map<String, Value>, name: &str) -> Result<String> {
    match body.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(FederationError::validation(format!(
            "'{name}' must be a non-empty string"
        ))),
    }
}

fn nonce_field(body: &Map<String, Value>) -> Result<String> {
    let nonce = text_field(body, "nonce")?;
    if nonce.len() != 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FederationError::validation(
            "'nonce' must be 32 bytes as 64 hex characters",
        ));
    }
    Ok(nonce.to_ascii_lowercase())
}

/// Refuses a signed message whose `issued_at_ms` is more than a minute from our clock.
pub fn check_freshness(body: &Map<String, Value>) -> std::result::Result<(), Refusal> {
    let issued = body
        .get("issued_at_ms")
        .and_then(Value::as_i64)
        .ok_or_else(|| Refusal::validation("'issued_at_ms' must be an integer"))?;
    if (now_ms() - issued).abs() > FRESHNESS_MS {
        return Err(Refusal::new(
            ErrorCode::FreshnessViolation,
            "issued_at_ms is more than 60 s away from this steward's clock",
        )
        .with_hint("fix the clock of one of the two machines"));
    }
    Ok(())
}

fn maps_field(body: &Map<String, Value>) -> Result<Vec<NamespaceMap>> {
    match body.get("maps") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(maps) => serde_json::from_value(maps.clone()).map_err(|_| {
            FederationError::validation("'maps' must be a list of {\"local\", \"peer\"}")
        }),
    }
}

/// The namespaces a pair shares under their own names; none named (absent, null or an empty
/// list) means `default`.
fn namespaces_field(body: &Map<String, Value>, name: &str) -> Result<Vec<String>> {
    let invalid = || FederationError::validation(format!("'{name}' must be a list of namespaces"));
    match body.get(name) {
        None | Some(Value::Null) => Ok(vec![DEFAULT_NAMESPACE.into()]),
        Some(Value::Array(list)) if list.is_empty() => Ok(vec![DEFAULT_NAMESPACE.into()]),
        Some(Value::String(ns)) => Ok(vec![ns.clone()]),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .filter(|l| !l.is_empty())
            .ok_or_else(invalid),
        Some(_) => Err(invalid()),
    }
}

/// A peer's manifest, as fetched from its URL.
pub(crate) enum PeerManifest {
    /// Signed by the DID it names (`daemon.did`), and fresh unless that was waived.
    Verified { manifest: Value, did: String },
    /// The peer answered, but not with a manifest that verifies; the refusal says why.
    Invalid(FederationError),
}

/// Fetches a peer's manifest and checks that it is signed by the DID it names and, when
/// `strict`, still fresh (`--no-strict` waives freshness only). An error says nothing about the
/// manifest: the peer could not be reached, or its DID not resolved (a resolution failure never
/// counts as forgery).
pub(crate) async fn peer_manifest(
    fed: &Federation,
    url: &str,
    reach: Reach,
    strict: bool,
) -> Result<PeerManifest> {
    let (client, _) = fed.reaching(reach);
    let document = client.manifest(url).await.map_err(|e| {
        FederationError::unreachable(format!("could not fetch the manifest of {url}: {e}"))
    })?;
    let Some(manifest) = document.get("federation_manifest").cloned() else {
        return Ok(PeerManifest::Invalid(
            Refusal::new(
                ErrorCode::PeerUnreachable,
                format!("{url} has no `federation_manifest` key"),
            )
            .with_hint("create an identity on the peer (`spl init`) first")
            .into(),
        ));
    };
    let did = manifest::daemon_did(&manifest)
        .unwrap_or_default()
        .to_string();
    let keys = fed.keys_reaching(reach, &did).await?;
    Ok(
        match fed
            .manifests
            .check(&manifest, &keys, SystemTime::now(), strict)
        {
            Ok(_) => PeerManifest::Verified { manifest, did },
            Err(e) => PeerManifest::Invalid(
                Refusal::new(
                    ErrorCode::UnauthenticatedInitiator,
                    format!("the manifest of {url} is refused: {e}"),
                )
                .into(),
            ),
        },
    )
}

/// [`peer_manifest`], refusing one that does not verify: the manifest and its DID.
pub(crate) async fn verified_manifest(
    fed: &Federation,
    url: &str,
    reach: Reach,
    strict: bool,
) -> Result<(Value, String)> {
    match peer_manifest(fed, url, reach, strict).await? {
        PeerManifest::Verified { manifest, did } => Ok((manifest, did)),
        PeerManifest::Invalid(refused) => Err(refused),
    }
}

/// SHA-256 (hex) of a JSON value's canonical form: how manifests and stored handshake
/// messages are named by digest.
pub(crate) fn canonical_sha256(value: &Value) -> String {
    sha256_hex(syncropel_protocol::canonical_string(value).as_bytes())
}

/// The peer's side of a pair here: an account bound to its DID with the peer-facing grains
/// only, and its first token.
async fn pair_credential(
    fed: &Federation,
    tenant: &Tenant,
    peer_did: &str,
) -> Result<(ServiceAccount, MintedToken)> {
    let store = fed.store.as_ref();
    let sa = accounts::create_service_account(
        store,
        &tenant.id,
        &tenant.identity,
        &format!("{PAIR_ACCOUNT_PREFIX}{peer_did}"),
        PAIR_SCOPES.iter().map(|s| s.to_string()).collect(),
        vec![peer_did.to_string()],
    )
    .await?;
    let minted = accounts::mint(
        store,
        &tenant.id,
        &tenant.identity,
        &fed.env,
        &sa.id,
        Some(TOKEN_TTL_SECS),
    )
    .await?;
    Ok((sa, minted))
}

/// The pair account `sa_id` for `peer_did`, made again under its id if the store lacks it (a
/// restore of the pair's records without the token records), so that a renewal has an account
/// to mint the peer's new token under.
pub(crate) async fn ensure_pair_account(
    fed: &Federation,
    tenant: &Tenant,
    sa_id: &str,
    peer_did: &str,
) -> Result<()> {
    let store = fed.store.as_ref();
    if store.service_account(&tenant.id, sa_id).await?.is_none() {
        accounts::create_service_account_with_id(
            store,
            &tenant.id,
            &tenant.identity,
            sa_id.to_string(),
            &format!("{PAIR_ACCOUNT_PREFIX}{peer_did}"),
            PAIR_SCOPES.iter().map(|s| s.to_string()).collect(),
            vec![peer_did.to_string()],
        )
        .await?;
    }
    Ok(())
}

fn item_of(record: &NewRecord) -> Result<Value> {
    let stored: Value = serde_json::from_str(&record.json).map_err(FederationError::internal)?;
    sync_item(&stored)
        .ok_or_else(|| FederationError::internal("a sealed record renders as an item"))
}

#[allow(clippy::too_many_arguments)]
fn audit_record(
    tenant: &Tenant,
    pair_id: &str,
    generation: u64,
    peer_did: &str,
    from: Option<PairState>,
    to: PairState,
    reason: &str,
    cause: &str,
) -> NewRecord {
    let identity = &tenant.identity;
    let body = audit_body(&PairAudit {
        pair_id,
        generation,
        peer_did,
        change: AuditChange::Transition { from, to },
        reason: Some(reason),
        cause_record: cause,
        actor: &identity.did,
        timestamp: unix_now(),
    });
    own_record(tenant, PAIRS_AUDIT_THREAD, body, Vec::new())
}

/// The `activate` record that ends the handshake on either side, naming the token the
/// initiator minted for the responder.
fn activate_body(row: &Handshake, issued: &IssuedToken) -> Map<String, Value> {
    update_body(
        &row.pair_id,
        row.generation,
        UpdateOp::Activate,
        None,
        activate_fields(issued),
        unix_now(),
    )
}

/// The responder's error answer, as ours (same code, its message).
fn peer_refusal(status: u16, body: &Value) -> FederationError {
    let code = body["code"]
        .as_str()
        .and_then(ErrorCode::from_wire)
        .unwrap_or(ErrorCode::PeerUnreachable);
    let message = body["message"].as_str().unwrap_or("the peer refused");
    Refusal::new(code, format!("the peer answered {status}: {message}")).into()
}
