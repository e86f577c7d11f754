//! Consent (federation-protocol.md §6): grants on `th_consent`, their fold, the filter a
//! source runs on every record of every pull, and the redacted stub it serves
//! in place of a record a grant opens only by digest.
//!
//! Cross-namespace delivery is default-deny: only an active grant naming the
//! record's namespace, the puller's target namespace, the caller (or nobody)
//! and the thread (or `*`) opens a path; a public grant opens one thread whatever the
//! namespaces and caller. An `accept` (federation-protocol.md §6.4) is the puller's side of
//! two-sided L0 consent and opens nothing itself. Checking that the target namespace
//! is one the pair agreed on (`CONSENT_DENIED`, federation-protocol.md §6.2) is the caller's job
//! and comes before [`decide`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::ProtocolError;
use crate::namespace::validate_namespace_id;
use crate::record::Envelope;
use crate::thread::validate_thread;
use crate::timestamp::{rfc3339_from_unix, unix_from_rfc3339};

/// The reserved thread grants and revocations live on.
pub const CONSENT_THREAD: &str = "th_consent";
/// Where every grant and revoke is mirrored for humans.
pub const CONSENT_AUDIT_THREAD: &str = "th_audit_consent";
/// Body kind of grant and revoke records.
pub const CONSENT_KIND: &str = "core.consent.v1";
/// Body kind of the audit records on [`CONSENT_AUDIT_THREAD`].
pub const CONSENT_AUDIT_KIND: &str = "core.consent_state_change.v1";
/// How long a public grant lasts (federation-protocol.md §6.1: about a week).
pub const PUBLIC_GRANT_TTL_SECS: i64 = 7 * 24 * 60 * 60;
/// The levels a public grant may name: full records or act-and-shape stubs.
pub const PUBLIC_LEVELS: [HashLevel; 2] = [HashLevel::L0, HashLevel::L2];
/// What a namespace field of a public grant holds: any namespace.
pub const ANY_NAMESPACE: &str = "*";

/// A hash level (federation-protocol.md §6.3). L0 reveals everything and is only ever delivered as
/// the full record; L1–L3 are delivered as digests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum HashLevel {
    L0,
    L1,
    L2,
    L3,
}

impl HashLevel {
    pub const ALL: [HashLevel; 4] = [HashLevel::L0, HashLevel::L1, HashLevel::L2, HashLevel::L3];

    pub fn as_str(self) -> &'static str {
        match self {
            HashLevel::L0 => "L0",
            HashLevel::L1 => "L1",
            HashLevel::L2 => "L2",
            HashLevel::L3 => "L3",
        }
    }

    /// `"L0"` … `"L3"`, exactly.
    pub fn parse(level: &str) -> Option<HashLevel> {
        HashLevel::ALL.into_iter().find(|l| l.as_str() == level)
    }
}

/// One grant, as its latest `op: "grant"` record states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub grant_id: String,
    pub source_namespace: String,
    pub target_namespace: String,
    /// Sorted, without duplicates, never empty.
    pub hash_levels: Vec<HashLevel>,
    /// `None`: any caller.
    pub peer_did: Option<String>,
    /// `None`: every thread (`"*"` on the wire).
    pub threads: Option<Vec<String>>,
    pub purpose: Option<String>,
    /// Unix seconds; `None`: never expires.
    pub expires_at: Option<i64>,
    pub granted_by: Option<String>,
    /// A public sharing grant (federation-protocol.md §6.1): one thread, any namespace on either
    /// side ([`ANY_NAMESPACE`]), any caller, at one of [`PUBLIC_LEVELS`].
    pub public: bool,
}

/// The puller's side of two-sided L0 consent (federation-protocol.md §6.4): records of
/// `source_namespace` at the steward `peer_did` may land whole in our `target_namespace`.
/// Recorded on the puller's own `th_consent`; its signed record is what the source checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acceptance {
    pub grant_id: String,
    pub source_namespace: String,
    pub target_namespace: String,
    /// The source steward whose L0 grants this accepts.
    pub peer_did: String,
    /// Unix seconds; `None`: until revoked.
    pub expires_at: Option<i64>,
    pub accepted_by: Option<String>,
}

impl Acceptance {
    /// Whether this acceptance lets the source `source_did` serve records of
    /// `record_namespace` whole into `target_namespace`.
    pub fn admits(
        &self,
        source_did: &str,
        record_namespace: &str,
        target_namespace: &str,
        now: i64,
    ) -> bool {
        self.peer_did == source_did
            && self.source_namespace == record_namespace
            && self.target_namespace == target_namespace
            && self.expires_at.is_none_or(|at| at > now)
    }
}

/// What one `core.consent.v1` body does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsentOp {
    Grant(Grant),
    Accept(Acceptance),
    /// Ends a grant or an acceptance.
    Revoke {
        grant_id: String,
        reason: Option<String>,
    },
}

impl ConsentOp {
    /// Validates a consent body: `grant`, `accept` (federation-protocol.md §6.4) or `revoke`.
    pub fn parse(body: &Map<String, Value>) -> Result<ConsentOp, ProtocolError> {
        if body.get("kind").and_then(Value::as_str) != Some(CONSENT_KIND) {
            return Err(invalid("body.kind", format!("must be {CONSENT_KIND:?}")));
        }
        let grant_id = match body.get("grant_id") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            _ => return Err(invalid("body.grant_id", "must be a non-empty string")),
        };
        match body.get("op").and_then(Value::as_str) {
            Some("grant") => Ok(ConsentOp::Grant(parse_grant(grant_id, body)?)),
            Some("accept") => Ok(ConsentOp::Accept(parse_acceptance(grant_id, body)?)),
            Some("revoke") => Ok(ConsentOp::Revoke {
                grant_id,
                reason: optional_string(body, "reason", "body.reason")?,
            }),
            _ => Err(invalid(
                "body.op",
                "must be \"grant\", \"accept\" or \"revoke\"",
            )),
        }
    }
}

fn parse_grant(grant_id: String, body: &Map<String, Value>) -> Result<Grant, ProtocolError> {
    let public = match body.get("public") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => return Err(invalid("body.public", "must be a boolean")),
    };
    if public {
        return parse_public_grant(grant_id, body);
    }
    let source_namespace = namespace(body, "source_namespace", "body.source_namespace")?;
    let target_namespace = namespace(body, "target_namespace", "body.target_namespace")?;
    let hash_levels = hash_levels(body)?;

    let threads = match body.get("threads") {
        None | Some(Value::Null) => None,
        Some(Value::String(all)) if all == "*" => None,
        Some(Value::Array(items)) if !items.is_empty() => Some(
            items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid("body.threads", "must list thread ids"))?,
        ),
        _ => {
            return Err(invalid(
                "body.threads",
                "must be \"*\" or a non-empty array of thread ids",
            ))
        }
    };
    Ok(Grant {
        grant_id,
        source_namespace,
        target_namespace,
        hash_levels,
        peer_did: optional_string(body, "peer_did", "body.peer_did")?,
        threads,
        purpose: optional_string(body, "purpose", "body.purpose")?,
        expires_at: expires_at(body)?,
        granted_by: optional_string(body, "granted_by", "body.granted_by")?,
        public: false,
    })
}

fn namespace(
    body: &Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<String, ProtocolError> {
    match body.get(key) {
        Some(Value::String(ns)) => validate_namespace_id(ns).map(|()| ns.clone()),
        _ => Err(invalid(field, "must be a namespace id")),
    }
}

/// Sorted, without duplicates, never empty.
fn hash_levels(body: &Map<String, Value>) -> Result<Vec<HashLevel>, ProtocolError> {
    let levels = "must be a non-empty array of \"L0\", \"L1\", \"L2\", \"L3\"";
    let mut hash_levels = match body.get("hash_levels") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| item.as_str().and_then(HashLevel::parse))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("body.hash_levels", levels))?,
        _ => return Err(invalid("body.hash_levels", levels)),
    };
    hash_levels.sort_unstable();
    hash_levels.dedup();
    Ok(hash_levels)
}

/// Written as RFC 3339; unix seconds are accepted too.
fn expires_at(body: &Map<String, Value>) -> Result<Option<i64>, ProtocolError> {
    match body.get("expires_at") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value {
            Value::Number(n) => n.as_i64(),
            Value::String(text) => unix_from_rfc3339(text),
            _ => None,
        }
        .map(Some)
        .ok_or_else(|| {
            invalid(
                "body.expires_at",
                "must be null, unix seconds or an RFC 3339 time",
            )
        }),
    }
}

/// A public grant names one thread and one of [`PUBLIC_LEVELS`]; its namespaces are
/// [`ANY_NAMESPACE`], it names no peer, and it always expires.
fn parse_public_grant(grant_id: String, body: &Map<String, Value>) -> Result<Grant, ProtocolError> {
    let thread = match body.get("thread") {
        Some(Value::String(thread)) => validate_thread(thread)
            .map(|()| thread.clone())
            .map_err(|e| invalid("body.thread", e.to_string()))?,
        _ => return Err(invalid("body.thread", "must be a thread id")),
    };
    let level = match body.get("granted_level").and_then(Value::as_str) {
        Some(level) => HashLevel::parse(level).filter(|l| PUBLIC_LEVELS.contains(l)),
        None => None,
    }
    .ok_or_else(|| invalid("body.granted_level", "must be \"L0\" or \"L2\""))?;
    for key in ["source_namespace", "target_namespace"] {
        if body.get(key).and_then(Value::as_str) != Some(ANY_NAMESPACE) {
            return Err(invalid(
                "body.public",
                "a public grant's namespaces are \"*\"",
            ));
        }
    }
    if hash_levels(body)? != [level] {
        return Err(invalid(
            "body.hash_levels",
            "a public grant's levels are its granted_level",
        ));
    }
    if body.get("threads") != Some(&json!([thread])) {
        return Err(invalid(
            "body.threads",
            "a public grant's threads are its thread",
        ));
    }
    if !matches!(body.get("peer_did"), None | Some(Value::Null)) {
        return Err(invalid("body.peer_did", "a public grant names no peer"));
    }
    let expires_at = expires_at(body)?
        .ok_or_else(|| invalid("body.expires_at", "a public grant always expires"))?;
    Ok(Grant {
        grant_id,
        source_namespace: ANY_NAMESPACE.to_owned(),
        target_namespace: ANY_NAMESPACE.to_owned(),
        hash_levels: vec![level],
        peer_did: None,
        threads: Some(vec![thread]),
        purpose: optional_string(body, "purpose", "body.purpose")?,
        expires_at: Some(expires_at),
        granted_by: optional_string(body, "granted_by", "body.granted_by")?,
        public: true,
    })
}

fn parse_acceptance(
    grant_id: String,
    body: &Map<String, Value>,
) -> Result<Acceptance, ProtocolError> {
    if hash_levels(body)? != [HashLevel::L0] {
        return Err(invalid(
            "body.hash_levels",
            "an acceptance accepts [\"L0\"] only",
        ));
    }
    let peer_did = match body.get("peer_did") {
        Some(Value::String(did)) if did.starts_with("did:") => did.clone(),
        _ => return Err(invalid("body.peer_did", "must name the source's DID")),
    };
    Ok(Acceptance {
        grant_id,
        source_namespace: namespace(body, "source_namespace", "body.source_namespace")?,
        target_namespace: namespace(body, "target_namespace", "body.target_namespace")?,
        peer_did,
        expires_at: expires_at(body)?,
        accepted_by: optional_string(body, "accepted_by", "body.accepted_by")?,
    })
}

fn optional_string(
    body: &Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<Option<String>, ProtocolError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(field, "must be a string or null")),
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ProtocolError {
    ProtocolError::validation(field, reason)
}

/// The body of a grant record. `threads: None` is written `"*"`;
/// `expires_at` as an RFC 3339 UTC string, or null.
pub fn grant_body(grant: &Grant) -> Map<String, Value> {
    let levels: Vec<&str> = grant.hash_levels.iter().map(|l| l.as_str()).collect();
    let mut body = object(json!({
        "kind": CONSENT_KIND,
        "op": "grant",
        "grant_id": grant.grant_id,
        "source_namespace": grant.source_namespace,
        "target_namespace": grant.target_namespace,
        "hash_levels": levels,
        "peer_did": grant.peer_did,
        "threads": grant.threads.as_ref().map_or(json!("*"), |t| json!(t)),
        "purpose": grant.purpose,
        "expires_at": grant.expires_at.map(rfc3339_from_unix),
        "granted_by": grant.granted_by,
    }));
    // A public grant also reads as it was asked for (`thread`, `granted_level`).
    if grant.public {
        body.insert("public".into(), Value::Bool(true));
        if let Some([thread]) = grant.threads.as_deref() {
            body.insert("thread".into(), json!(thread));
        }
        if let [level] = grant.hash_levels.as_slice() {
            body.insert("granted_level".into(), json!(level.as_str()));
        }
    }
    body
}

/// The body of an acceptance record (federation-protocol.md §6.4).
pub fn acceptance_body(acceptance: &Acceptance) -> Map<String, Value> {
    object(json!({
        "kind": CONSENT_KIND,
        "op": "accept",
        "grant_id": acceptance.grant_id,
        "source_namespace": acceptance.source_namespace,
        "target_namespace": acceptance.target_namespace,
        "hash_levels": [HashLevel::L0.as_str()],
        "peer_did": acceptance.peer_did,
        "expires_at": acceptance.expires_at.map(rfc3339_from_unix),
        "accepted_by": acceptance.accepted_by,
    }))
}

/// The body of a revoke record: effective on the next pull, not retroactive.
pub fn revoke_body(grant_id: &str, reason: &str) -> Map<String, Value> {
    object(json!({
        "kind": CONSENT_KIND,
        "op": "revoke",
        "grant_id": grant_id,
        "reason": reason,
    }))
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("only called with object literals"),
    }
}

impl Grant {
    /// Active unless it has expired: `expires_at` must be in the future.
    /// (Revoked grants are gone from [`fold_grants`]'s result.)
    pub fn is_active(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|expires_at| expires_at > now)
    }

    /// Whether this grant opens records of `record_namespace` on `thread` to
    /// `caller_did` pulling into `target_namespace` (federation-protocol.md §6.2 "matching grant").
    pub fn matches(
        &self,
        record_namespace: &str,
        target_namespace: &str,
        caller_did: &str,
        thread: &str,
        now: i64,
    ) -> bool {
        let namespaces = self.public
            || (self.source_namespace == record_namespace
                && self.target_namespace == target_namespace);
        self.is_active(now)
            && namespaces
            && self
                .peer_did
                .as_deref()
                .is_none_or(|peer| peer == caller_did)
            && self
                .threads
                .as_ref()
                .is_none_or(|threads| threads.iter().any(|t| t == thread))
    }
}

/// One entry in force on `th_consent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Consent {
    Grant(Grant),
    Accept(Acceptance),
}

/// Folds consent bodies in log order: the last record per `grant_id` wins and
/// a revoke removes the grant or acceptance. Bodies that do not parse are skipped. The
/// result is ordered by the log position of each entry's winning record,
/// oldest first, which is the recency [`decide`] relies on. Expired entries
/// are kept; activity is evaluated at use.
pub fn fold<'a>(bodies: impl IntoIterator<Item = &'a Map<String, Value>>) -> Vec<Consent> {
    let mut latest: HashMap<String, (usize, Option<Consent>)> = HashMap::new();
    for (position, body) in bodies.into_iter().enumerate() {
        let (grant_id, entry) = match ConsentOp::parse(body) {
            Ok(ConsentOp::Grant(grant)) => (grant.grant_id.clone(), Some(Consent::Grant(grant))),
            Ok(ConsentOp::Accept(accept)) => {
                (accept.grant_id.clone(), Some(Consent::Accept(accept)))
            }
            Ok(ConsentOp::Revoke { grant_id, .. }) => (grant_id, None),
            Err(_) => continue,
        };
        latest.insert(grant_id, (position, entry));
    }
    let mut live: Vec<(usize, Consent)> = latest
        .into_values()
        .filter_map(|(position, entry)| Some((position, entry?)))
        .collect();
    live.sort_unstable_by_key(|(position, _)| *position);
    live.into_iter().map(|(_, entry)| entry).collect()
}

/// The grants of [`fold`], in its order (acceptances open nothing to anyone).
pub fn fold_grants<'a>(bodies: impl IntoIterator<Item = &'a Map<String, Value>>) -> Vec<Grant> {
    fold(bodies)
        .into_iter()
        .filter_map(|entry| match entry {
            Consent::Grant(grant) => Some(grant),
            Consent::Accept(_) => None,
        })
        .collect()
}

/// What the source serves for one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The record unchanged, body and signature.
    Full,
    /// A stub ([`redacted_item`]) with the digests of `levels` (never L0).
    Redacted {
        grant_id: String,
        levels: Vec<HashLevel>,
    },
    /// Nothing: no active grant opens this path.
    Omit,
}

/// The federation-protocol.md §6.2 filter for a record outside the namespace the pair agreed to
/// land whole in `target_namespace` (the caller serves that one unchanged, since it knows the
/// pair's maps): the most recent matching grant decides (`grants` in [`fold_grants`] order),
/// public grants left out when one naming the caller matches: with L0 → full, without →
/// redacted with its levels; no matching grant → omitted.
///
/// `l0_accepted` is false when the source requires two-sided L0 consent and the puller has not
/// shown an acceptance for this namespace pair (federation-protocol.md §6.4): a grant with L0
/// then serves its best non-L0 level, which for a grant of L0 alone is every digest level (L0
/// contains them all).
pub fn decide(
    grants: &[Grant],
    record_namespace: &str,
    target_namespace: &str,
    caller_did: &str,
    thread: &str,
    now: i64,
    l0_accepted: bool,
) -> Delivery {
    let matching: Vec<&Grant> = grants
        .iter()
        .filter(|g| g.matches(record_namespace, target_namespace, caller_did, thread, now))
        .collect();
    // A grant made for this caller outranks a public one: sharing a thread with anyone does not
    // take back what a pair was given.
    let named = !caller_did.is_empty()
        && matching
            .iter()
            .any(|g| g.peer_did.as_deref() == Some(caller_did));
    let Some(grant) = matching.into_iter().rev().find(|g| !(named && g.public)) else {
        return Delivery::Omit;
    };
    if !grant.hash_levels.contains(&HashLevel::L0) {
        return Delivery::Redacted {
            grant_id: grant.grant_id.clone(),
            levels: grant.hash_levels.clone(),
        };
    }
    if l0_accepted {
        return Delivery::Full;
    }
    let below: Vec<HashLevel> = grant
        .hash_levels
        .iter()
        .copied()
        .filter(|l| *l != HashLevel::L0)
        .collect();
    Delivery::Redacted {
        grant_id: grant.grant_id.clone(),
        levels: if below.is_empty() {
            HashLevel::ALL[1..].to_vec()
        } else {
            below
        },
    }
}

/// The federation-protocol.md §6.3 stub for `envelope` (whose record id is `id`): the envelope with
/// body `{"redacted": true}`, no `sig`/`signer`, and the digests of the
/// non-L0 `levels` only — an L0 digest is never sent.
pub fn redacted_item(envelope: &Envelope, id: &str, grant_id: &str, levels: &[HashLevel]) -> Value {
    let digests = envelope.hash_levels();
    let mut hash_levels = Map::new();
    for level in levels {
        let (key, digest) = match level {
            HashLevel::L0 => continue,
            HashLevel::L1 => ("l1", &digests.l1),
            HashLevel::L2 => ("l2", &digests.l2),
            HashLevel::L3 => ("l3", &digests.l3),
        };
        hash_levels.insert(key.to_owned(), Value::String(digest.clone()));
    }
    json!({
        "id": id,
        "redacted": true,
        "consent_grant": grant_id,
        "hash_levels": hash_levels,
        "record": {
            "parents": envelope.parents,
            "thread": envelope.thread,
            "actor": envelope.actor,
            "act": envelope.act.as_str(),
            "body": { "redacted": true },
            "clock": envelope.clock,
            "data_type": envelope.data_type.as_str(),
            "judged_by": envelope.judged_by,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    const NOW: i64 = 1_777_636_800;
    const BOB: &str = "did:key:z6MkBob";

    fn grant(id: &str, levels: &[HashLevel]) -> Grant {
        Grant {
            grant_id: id.to_owned(),
            source_namespace: "research".to_owned(),
            target_namespace: "my-team".to_owned(),
            hash_levels: levels.to_vec(),
            peer_did: None,
            threads: None,
            purpose: Some("weekly telemetry".to_owned()),
            expires_at: None,
            granted_by: Some("did:sync:user:alice".to_owned()),
            public: false,
        }
    }

    /// Runs the filter for a `research` record pulled by Bob into `my-team`.
    fn decide_for(grants: &[Grant], thread: &str, caller: &str) -> Delivery {
        decide(grants, "research", "my-team", caller, thread, NOW, true)
    }

    fn redacted(id: &str, levels: &[HashLevel]) -> Delivery {
        Delivery::Redacted {
            grant_id: id.to_owned(),
            levels: levels.to_vec(),
        }
    }

    use HashLevel::{L0, L1, L2, L3};

    #[test]
    fn the_filter_follows_the_table() {
        // A namespace of the target's name is no exception: a map may land another one there.
        assert_eq!(
            decide(&[], "research", "research", BOB, "th_a", NOW, true),
            Delivery::Omit
        );
        // Different namespace, no grant: omitted.
        assert_eq!(decide_for(&[], "th_a", BOB), Delivery::Omit);
        // A grant for other namespaces does not match.
        let mut elsewhere = grant("cg_1", &[L1]);
        elsewhere.target_namespace = "other".to_owned();
        assert_eq!(
            decide_for(&[elsewhere.clone()], "th_a", BOB),
            Delivery::Omit
        );
        elsewhere.target_namespace = "my-team".to_owned();
        elsewhere.source_namespace = "default".to_owned();
        assert_eq!(decide_for(&[elsewhere], "th_a", BOB), Delivery::Omit);
        // A grant listing L0: unchanged.
        assert_eq!(
            decide_for(&[grant("cg_1", &[L0])], "th_a", BOB),
            Delivery::Full
        );
        assert_eq!(
            decide_for(&[grant("cg_1", &[L0, L1, L2, L3])], "th_a", BOB),
            Delivery::Full
        );
        // Without L0: a stub carrying the granted levels.
        assert_eq!(
            decide_for(&[grant("cg_1", &[L1, L2, L3])], "th_a", BOB),
            redacted("cg_1", &[L1, L2, L3])
        );
        assert_eq!(
            decide_for(&[grant("cg_1", &[L3])], "th_a", BOB),
            redacted("cg_1", &[L3])
        );
    }

    #[test]
    fn expiry_is_evaluated_at_use() {
        let mut g = grant("cg_1", &[L1]);
        g.expires_at = Some(NOW + 1);
        assert!(g.is_active(NOW));
        assert_eq!(
            decide_for(&[g.clone()], "th_a", BOB),
            redacted("cg_1", &[L1])
        );
        g.expires_at = Some(NOW);
        assert!(!g.is_active(NOW));
        assert_eq!(decide_for(&[g.clone()], "th_a", BOB), Delivery::Omit);
        g.expires_at = None;
        assert!(g.is_active(i64::MAX));
    }

    #[test]
    fn peer_and_thread_scoping_are_enforced() {
        let mut g = grant("cg_1", &[L2]);
        g.peer_did = Some(BOB.to_owned());
        assert_eq!(
            decide_for(&[g.clone()], "th_a", BOB),
            redacted("cg_1", &[L2])
        );
        assert_eq!(
            decide_for(&[g.clone()], "th_a", "did:key:z6MkCarol"),
            Delivery::Omit
        );
        g.threads = Some(vec!["th_a".to_owned(), "th_b".to_owned()]);
        assert_eq!(
            decide_for(&[g.clone()], "th_b", BOB),
            redacted("cg_1", &[L2])
        );
        assert_eq!(decide_for(&[g], "th_c", BOB), Delivery::Omit);
    }

    #[test]
    fn the_fold_keeps_the_last_record_per_grant_and_drops_revoked_ones() {
        let g1 = grant_body(&grant("cg_1", &[L1]));
        let g2 = grant_body(&grant("cg_2", &[L0]));
        let r1 = revoke_body("cg_1", "no longer needed");
        assert_eq!(fold_grants([&g1, &g2, &r1]), [grant("cg_2", &[L0])]);
        // A revoke is not forever: a later grant with the same id is live again.
        let g1_again = grant_body(&grant("cg_1", &[L2]));
        let junk = object(json!({"kind": CONSENT_KIND, "op": "grant"}));
        assert_eq!(
            fold_grants([&g1, &g2, &r1, &junk, &g1_again]),
            [grant("cg_2", &[L0]), grant("cg_1", &[L2])]
        );
        assert!(fold_grants([&r1]).is_empty());
    }

    #[test]
    fn the_most_recent_matching_grant_wins() {
        let full = grant_body(&grant("cg_full", &[L0]));
        let digest = grant_body(&grant("cg_digest", &[L1]));
        let grants = fold_grants([&full, &digest]);
        assert_eq!(
            decide_for(&grants, "th_a", BOB),
            redacted("cg_digest", &[L1])
        );
        let grants = fold_grants([&digest, &full]);
        assert_eq!(decide_for(&grants, "th_a", BOB), Delivery::Full);
        // Re-granting makes a grant the most recent again.
        let grants = fold_grants([&full, &digest, &full]);
        assert_eq!(decide_for(&grants, "th_a", BOB), Delivery::Full);
        // A newer grant that does not match (another thread) leaves the older in force.
        let mut narrow = grant("cg_narrow", &[L0]);
        narrow.threads = Some(vec!["th_other".to_owned()]);
        let grants = fold_grants([&digest, &grant_body(&narrow)]);
        assert_eq!(
            decide_for(&grants, "th_a", BOB),
            redacted("cg_digest", &[L1])
        );
    }

    #[test]
    fn bodies_round_trip_and_take_both_expiry_forms() {
        let mut g = grant("cg_1", &[L1, L2]);
        g.peer_did = Some(BOB.to_owned());
        g.threads = Some(vec!["th_a".to_owned()]);
        g.expires_at = Some(1_785_412_800);
        let body = grant_body(&g);
        assert_eq!(body["expires_at"], "2026-07-30T12:00:00Z");
        assert_eq!(body["hash_levels"], json!(["L1", "L2"]));
        assert_eq!(ConsentOp::parse(&body), Ok(ConsentOp::Grant(g.clone())));

        let wildcard = grant_body(&grant("cg_2", &[L3]));
        assert_eq!(wildcard["threads"], "*");
        assert_eq!(wildcard["expires_at"], Value::Null);
        assert_eq!(
            ConsentOp::parse(&wildcard),
            Ok(ConsentOp::Grant(grant("cg_2", &[L3])))
        );

        let mut as_integer = body.clone();
        as_integer.insert("expires_at".into(), json!(1_785_412_800));
        // Levels are normalised: sorted, duplicates dropped.
        as_integer.insert("hash_levels".into(), json!(["L2", "L1", "L2"]));
        assert_eq!(ConsentOp::parse(&as_integer), Ok(ConsentOp::Grant(g)));

        assert_eq!(
            ConsentOp::parse(&revoke_body("cg_1", "done")),
            Ok(ConsentOp::Revoke {
                grant_id: "cg_1".into(),
                reason: Some("done".into())
            })
        );
        assert_eq!(HashLevel::parse("L2"), Some(L2));
        assert_eq!(HashLevel::parse("l2"), None);
    }

    #[test]
    fn bad_bodies_are_validation_errors() {
        let good = grant_body(&grant("cg_1", &[L1]));
        let cases: [(&str, Value, &str); 9] = [
            ("hash_levels", json!(["L1", "L4"]), "body.hash_levels"),
            ("hash_levels", json!([]), "body.hash_levels"),
            ("hash_levels", json!("L1"), "body.hash_levels"),
            ("target_namespace", json!(7), "body.target_namespace"),
            ("threads", json!([]), "body.threads"),
            ("expires_at", json!("tomorrow"), "body.expires_at"),
            ("op", json!("lend"), "body.op"),
            ("kind", json!("core.consent.v2"), "body.kind"),
            ("grant_id", json!(""), "body.grant_id"),
        ];
        for (key, value, field) in cases {
            let mut body = good.clone();
            body.insert(key.to_owned(), value.clone());
            match ConsentOp::parse(&body) {
                Err(ProtocolError::Validation { field: f, .. }) => {
                    assert_eq!(f, field, "{key}: {value}")
                }
                other => panic!("{key}: {value} gave {other:?}"),
            }
        }
        let mut missing = good.clone();
        missing.remove("source_namespace");
        let err = ConsentOp::parse(&missing).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ValidationError);
        let mut bad_ns = good;
        bad_ns.insert("source_namespace".into(), json!("Not A Namespace"));
        assert_eq!(
            ConsentOp::parse(&bad_ns).unwrap_err().code(),
            ErrorCode::NamespaceIdInvalid
        );
    }

    #[test]
    fn the_stub_keeps_the_envelope_and_only_granted_digests() {
        let envelope = Envelope::from_value(json!({
            "act": "DO", "actor": "did:sync:user:alice", "clock": 12, "thread": "th_review",
            "parents": ["p2", "p1"], "judged_by": null,
            "body": {"domain": "review", "operation": "approve", "namespace": "research",
                     "secret_plan": "do not leak"},
        }))
        .unwrap();
        let digests = envelope.hash_levels();
        let item = redacted_item(&envelope, &envelope.id(), "cg_1", &[L0, L1, L3]);
        assert_eq!(
            item,
            json!({
                "id": envelope.id(), "redacted": true, "consent_grant": "cg_1",
                "hash_levels": {"l1": digests.l1, "l3": digests.l3},
                "record": { "parents": ["p1", "p2"], "thread": "th_review",
                            "actor": "did:sync:user:alice", "act": "DO",
                            "body": {"redacted": true}, "clock": 12, "data_type": "SCALAR",
                            "judged_by": null },
            })
        );
        let text = item.to_string();
        assert!(!text.contains(&digests.l0), "the L0 digest is never sent");
        assert!(!text.contains(&digests.l2));
        assert!(!text.contains("do not leak") && !text.contains("\"sig\""));
        let only_l2 = redacted_item(&envelope, "x", "cg_2", &[L2]);
        assert_eq!(only_l2["hash_levels"], json!({"l2": digests.l2}));
    }

    fn public(id: &str, thread: &str, level: HashLevel) -> Grant {
        Grant {
            grant_id: id.to_owned(),
            source_namespace: ANY_NAMESPACE.to_owned(),
            target_namespace: ANY_NAMESPACE.to_owned(),
            hash_levels: vec![level],
            peer_did: None,
            threads: Some(vec![thread.to_owned()]),
            purpose: None,
            expires_at: Some(NOW + PUBLIC_GRANT_TTL_SECS),
            granted_by: Some("sa_1".to_owned()),
            public: true,
        }
    }

    #[test]
    fn a_public_grant_opens_its_thread_in_any_namespace_to_anyone_until_it_expires() {
        let g = public("cg_pub", "th_a", L2);
        let body = grant_body(&g);
        assert_eq!(body["public"], true);
        assert_eq!(body["thread"], "th_a");
        assert_eq!(body["granted_level"], "L2");
        assert_eq!(body["source_namespace"], "*");
        assert_eq!(ConsentOp::parse(&body), Ok(ConsentOp::Grant(g.clone())));
        for (ns, target, caller) in [
            ("research", "my-team", BOB),
            ("default", "default", "did:key:z6MkCarol"),
            ("a/b", "elsewhere", ""),
        ] {
            assert_eq!(
                decide(
                    std::slice::from_ref(&g),
                    ns,
                    target,
                    caller,
                    "th_a",
                    NOW,
                    true
                ),
                redacted("cg_pub", &[L2])
            );
        }
        assert_eq!(
            decide_for(std::slice::from_ref(&g), "th_b", BOB),
            Delivery::Omit
        );
        let later = NOW + PUBLIC_GRANT_TTL_SECS;
        assert_eq!(
            decide(&[g], "research", "my-team", BOB, "th_a", later, true),
            Delivery::Omit
        );
        let full = public("cg_full", "th_a", L0);
        assert_eq!(decide_for(&[full], "th_a", BOB), Delivery::Full);
    }

    #[test]
    fn a_grant_naming_the_caller_outranks_a_later_public_grant() {
        let mut pair = grant("cg_pair", &[L0]);
        pair.peer_did = Some(BOB.to_owned());
        let shared = public("cg_pub", "th_a", L2);
        let grants = [pair.clone(), shared.clone()];
        assert_eq!(decide_for(&grants, "th_a", BOB), Delivery::Full);
        // Anyone else gets what the public grant gives.
        assert_eq!(
            decide_for(&grants, "th_a", "did:key:z6MkCarol"),
            redacted("cg_pub", &[L2])
        );
        // Among grants that are not public, the most recent still decides.
        let mut everyone = grant("cg_all", &[L1]);
        everyone.peer_did = None;
        assert_eq!(
            decide_for(&[pair, everyone, shared], "th_a", BOB),
            redacted("cg_all", &[L1])
        );
    }

    #[test]
    fn a_public_grant_body_must_be_exactly_one() {
        let good = grant_body(&public("cg_pub", "th_a", L2));
        let cases: [(&str, Value, &str); 8] = [
            ("granted_level", json!("L1"), "body.granted_level"),
            ("thread", json!("not a thread"), "body.thread"),
            ("source_namespace", json!("research"), "body.public"),
            ("hash_levels", json!(["L2", "L3"]), "body.hash_levels"),
            ("threads", json!("*"), "body.threads"),
            ("peer_did", json!(BOB), "body.peer_did"),
            ("expires_at", Value::Null, "body.expires_at"),
            ("public", json!("yes"), "body.public"),
        ];
        for (key, value, field) in cases {
            let mut body = good.clone();
            body.insert(key.to_owned(), value.clone());
            match ConsentOp::parse(&body) {
                Err(ProtocolError::Validation { field: f, .. }) => {
                    assert_eq!(f, field, "{key}: {value}")
                }
                other => panic!("{key}: {value} gave {other:?}"),
            }
        }
    }

    #[test]
    fn without_an_acceptance_an_l0_grant_serves_its_best_digest_level() {
        let only_l0 = grant("cg_1", &[L0]);
        let decide_unaccepted = |g: &Grant| {
            decide(
                std::slice::from_ref(g),
                "research",
                "my-team",
                BOB,
                "th_a",
                NOW,
                false,
            )
        };
        assert_eq!(decide_unaccepted(&only_l0), redacted("cg_1", &[L1, L2, L3]));
        let wide = grant("cg_2", &[L0, L2, L3]);
        assert_eq!(decide_unaccepted(&wide), redacted("cg_2", &[L2, L3]));
        // Grants without L0 are what they were.
        assert_eq!(
            decide_unaccepted(&grant("cg_3", &[L3])),
            redacted("cg_3", &[L3])
        );
    }

    #[test]
    fn acceptances_fold_apart_from_grants_and_admit_only_their_pair() {
        let accept = Acceptance {
            grant_id: "ca_1".to_owned(),
            source_namespace: "research".to_owned(),
            target_namespace: "my-team".to_owned(),
            peer_did: "did:key:z6MkSource".to_owned(),
            expires_at: Some(NOW + 10),
            accepted_by: Some("sa_1".to_owned()),
        };
        let body = acceptance_body(&accept);
        assert_eq!(body["op"], "accept");
        assert_eq!(body["hash_levels"], json!(["L0"]));
        assert_eq!(
            ConsentOp::parse(&body),
            Ok(ConsentOp::Accept(accept.clone()))
        );
        let g = grant_body(&grant("cg_1", &[L1]));
        assert_eq!(fold_grants([&g, &body]), [grant("cg_1", &[L1])]);
        assert_eq!(
            fold([&g, &body]),
            [
                Consent::Grant(grant("cg_1", &[L1])),
                Consent::Accept(accept.clone())
            ]
        );
        assert!(fold([&body, &revoke_body("ca_1", "done")]).is_empty());

        assert!(accept.admits("did:key:z6MkSource", "research", "my-team", NOW));
        assert!(!accept.admits("did:key:z6MkOther", "research", "my-team", NOW));
        assert!(!accept.admits("did:key:z6MkSource", "default", "my-team", NOW));
        assert!(!accept.admits("did:key:z6MkSource", "research", "default", NOW));
        assert!(!accept.admits("did:key:z6MkSource", "research", "my-team", NOW + 10));

        let mut wider = body.clone();
        wider.insert("hash_levels".into(), json!(["L0", "L1"]));
        assert!(ConsentOp::parse(&wider).is_err());
        let mut anonymous = body;
        anonymous.insert("peer_did".into(), Value::Null);
        assert!(ConsentOp::parse(&anonymous).is_err());
    }
}
