//! Consent between namespaces (federation-protocol.md §6): grants and revocations are records on
//! `th_consent` (each with an audit record on `th_audit_consent`, same transaction); the grants
//! in force are a fold over them, read afresh for every page that needs them, so a revocation
//! holds from the next pull on every replica.

use rand::distributions::{Alphanumeric, DistString};
use serde_json::{json, Map, Value};
use syncropel_protocol::consent::{
    decide, fold_grants, grant_body, revoke_body, ConsentOp, Delivery, Grant, HashLevel,
    CONSENT_AUDIT_KIND, CONSENT_AUDIT_THREAD, CONSENT_THREAD,
};
use syncropel_protocol::{unix_now, validate_namespace_id, ErrorCode, Refusal};
use syncropel_tenant::Tenant;

use crate::error::Result;
use crate::Federation;

/// The grants of one tenant, loaded the first time a page needs them.
pub struct Grants(Option<Vec<Grant>>);

impl Grants {
    pub fn lazy() -> Grants {
        Grants(None)
    }

    pub async fn load(&mut self, fed: &Federation, tenant: &str) -> Result<&Grants> {
        if self.0.is_none() {
            self.0 = Some(current(fed, tenant).await?);
        }
        Ok(self)
    }

    pub fn decide(&self, record_ns: &str, target_ns: &str, caller: &str, thread: &str) -> Delivery {
        decide(
            self.0.as_deref().unwrap_or_default(),
            record_ns,
            target_ns,
            caller,
            thread,
            unix_now(),
        )
    }
}

/// Every consent body on `th_consent`, in log order.
async fn bodies(fed: &Federation, tenant: &str) -> Result<Vec<Map<String, Value>>> {
    let (records, _) = fed.thread_records(tenant, CONSENT_THREAD).await?;
    Ok(records
        .into_iter()
        .filter_map(|mut record| match record.get_mut("body").map(Value::take) {
            Some(Value::Object(body)) => Some(body),
            _ => None,
        })
        .collect())
}

/// The grants not revoked (expired ones included; activity is decided at use).
pub async fn current(fed: &Federation, tenant: &str) -> Result<Vec<Grant>> {
    Ok(fold_grants(&bodies(fed, tenant).await?))
}

fn audit(grant_id: &str, op: &str, detail: Value) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("kind".into(), json!(CONSENT_AUDIT_KIND));
    body.insert("grant_id".into(), json!(grant_id));
    body.insert("op".into(), json!(op));
    body.insert("detail".into(), detail);
    body.insert("at".into(), json!(unix_now()));
    body
}

/// A grant the operator asks for; what it leaves out takes the defaults of
/// federation-protocol.md §6.1 (every hash level, every thread, no expiry).
#[derive(Clone, Debug)]
pub struct GrantRequest {
    pub source_namespace: String,
    pub target_namespace: String,
    pub hash_levels: Vec<HashLevel>,
    pub peer_did: Option<String>,
    /// `None`: every thread.
    pub threads: Option<Vec<String>>,
    pub purpose: Option<String>,
    pub expires_at: Option<i64>,
    /// Who grants it: the operator's service account, or the steward's DID.
    pub granted_by: String,
}

/// Records a grant and its audit record; it holds from the next page on.
pub async fn grant(fed: &Federation, tenant: &Tenant, request: GrantRequest) -> Result<Grant> {
    validate_namespace_id(&request.source_namespace)?;
    validate_namespace_id(&request.target_namespace)?;
    let grant = Grant {
        grant_id: format!(
            "cg_{}",
            Alphanumeric.sample_string(&mut rand::thread_rng(), 20)
        ),
        source_namespace: request.source_namespace,
        target_namespace: request.target_namespace,
        hash_levels: request.hash_levels,
        peer_did: request.peer_did,
        threads: request.threads,
        purpose: request.purpose,
        expires_at: request.expires_at,
        granted_by: Some(request.granted_by),
    };
    let record = grant_body(&grant);
    // What the fold will read back must be what we wrote.
    if !matches!(ConsentOp::parse(&record), Ok(ConsentOp::Grant(_))) {
        return Err(Refusal::validation("the grant does not form a valid consent record").into());
    }
    let audit = audit(&grant.grant_id, "grant", Value::Object(record.clone()));
    fed.write_own(
        tenant,
        vec![
            (CONSENT_THREAD, record, Vec::new()),
            (CONSENT_AUDIT_THREAD, audit, Vec::new()),
        ],
        Vec::new(),
    )
    .await?;
    Ok(grant)
}

/// The levels of a pair-scoped grant that names none (federation-protocol.md §6.4): the peer
/// gets bodies only from a grant that names L0.
pub const PAIR_GRANT_LEVELS: [HashLevel; 1] = [HashLevel::L1];
/// The most namespaces of the peer one pair grant request may name.
pub const MAX_PAIR_GRANT_MAPS: usize = 32;

/// Grants bound to a pair's peer (`POST /v1/federation/pairs/{id}/grants`, `spl federation
/// grant`): records of `namespace` here reach each of `maps` at the peer (its own name when
/// `maps` is empty).
#[derive(Clone, Debug)]
pub struct PairGrantRequest {
    pub namespace: String,
    pub maps: Vec<String>,
    /// `None`: [`PAIR_GRANT_LEVELS`].
    pub hash_levels: Option<Vec<HashLevel>>,
    /// Who grants them: the operator's service account, or the steward's DID.
    pub granted_by: String,
}

/// Records one grant per target namespace, each bound to the peer of the pair `key` (a pair
/// id, peer DID or peer URL). Every namespace is checked before any grant is written; the grants
/// are separate records, so a failed write leaves the earlier ones in force (asking again adds
/// grants alike, which is harmless).
pub async fn grant_to_pair(
    fed: &Federation,
    tenant: &Tenant,
    key: &str,
    request: PairGrantRequest,
) -> Result<Vec<Grant>> {
    let pair = crate::pairs::find(fed, tenant, key).await?;
    let targets = if request.maps.is_empty() {
        vec![request.namespace.clone()]
    } else {
        request.maps
    };
    if targets.len() > MAX_PAIR_GRANT_MAPS {
        return Err(Refusal::validation(format!(
            "at most {MAX_PAIR_GRANT_MAPS} target namespaces per request"
        ))
        .into());
    }
    validate_namespace_id(&request.namespace)?;
    for target in &targets {
        validate_namespace_id(target)?;
    }
    let hash_levels = request
        .hash_levels
        .unwrap_or_else(|| PAIR_GRANT_LEVELS.to_vec());
    let mut granted = Vec::with_capacity(targets.len());
    for target in targets {
        let one = GrantRequest {
            source_namespace: request.namespace.clone(),
            target_namespace: target,
            hash_levels: hash_levels.clone(),
            peer_did: Some(pair.peer_did.clone()),
            threads: None,
            purpose: Some(format!("pair {}", pair.pair_id)),
            expires_at: None,
            granted_by: request.granted_by.clone(),
        };
        granted.push(grant(fed, tenant, one).await?);
    }
    Ok(granted)
}

/// Revokes a grant in force bound to the peer of the pair `key`; any other grant is `404`, so
/// a pair's controls cannot revoke what was granted to someone else.
pub async fn revoke_pair_grant(
    fed: &Federation,
    tenant: &Tenant,
    key: &str,
    grant_id: &str,
    reason: &str,
) -> Result<()> {
    let pair = crate::pairs::find(fed, tenant, key).await?;
    let theirs = current(fed, &tenant.id)
        .await?
        .iter()
        .any(|g| g.grant_id == grant_id && g.peer_did.as_deref() == Some(pair.peer_did.as_str()));
    if !theirs {
        return Err(Refusal::new(
            ErrorCode::NotFound,
            format!("no grant '{grant_id}' bound to {} in force", pair.peer_did),
        )
        .into());
    }
    revoke(fed, tenant, grant_id, reason).await
}

/// Revokes a grant in force, effective from the next pull.
pub async fn revoke(fed: &Federation, tenant: &Tenant, grant_id: &str, reason: &str) -> Result<()> {
    let grants = current(fed, &tenant.id).await?;
    if !grants.iter().any(|g| g.grant_id == grant_id) {
        return Err(Refusal::new(
            ErrorCode::NotFound,
            format!("no grant '{grant_id}' in force"),
        )
        .into());
    }
    let record = revoke_body(grant_id, reason);
    let audit = audit(grant_id, "revoke", json!({"reason": reason}));
    fed.write_own(
        tenant,
        vec![
            (CONSENT_THREAD, record, Vec::new()),
            (CONSENT_AUDIT_THREAD, audit, Vec::new()),
        ],
        Vec::new(),
    )
    .await?;
    Ok(())
}
