//! did:sync operation logs (federation-protocol.md §1.4, [P-3]): a PLC-style chain of
//! signed operations whose genesis hash is the DID, so a directory can only
//! serve what the rotation keys signed.
//!
//! Pure data: the directory service stores the [`LoggedOp`]s and calls
//! [`apply`] with its own receipt clock; nothing here does I/O or reads time.
//!
//! Representation choices: `signing_keys` values are the multibase key
//! (`z6Mk…`, a did:key without `did:key:`), as in the spec example, because
//! they become `publicKeyMultibase`; `rotation_keys` are full `did:key`s
//! because they sign ops via [`crate::signed`]. `cid`s and the DID hash the
//! canonical JSON of the op exactly as received, never a re-serialisation.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::canonical::canonical_string;
use crate::error::ProtocolError;
use crate::hash::sha256_hex;
use crate::keys::{public_key_from_did_key, Keypair};
use crate::namespace::validate_namespace_id;
use crate::signed::{sign_object, verify_object};
use crate::timestamp::unix_from_rfc3339;

/// Largest canonical signed op, in bytes (keeps the log cheap to mirror).
pub const MAX_OP_BYTES: usize = 7_500;
/// How long after receipt an op can still be displaced by a stronger key.
pub const RECOVERY_WINDOW_SECS: i64 = 72 * 3600;
/// Rotation keys per op: at least one, or nobody could ever update the DID.
pub const MAX_ROTATION_KEYS: usize = 5;
/// Handles per DID.
pub const MAX_HANDLES: usize = 3;
/// Characters of lowercase base32 kept in the DID (120 bits).
pub const DID_HASH_CHARS: usize = 24;

/// The three operation types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Genesis,
    Update,
    Tombstone,
}

/// One `services` entry (`services.syncropel` is the steward endpoint).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(rename = "type")]
    pub kind: String,
    pub endpoint: String,
}

/// A did:sync operation. Each genesis/update carries the complete new state
/// (not a diff), so the state in force at any op is that op alone. Unknown
/// members are refused: everything in an op is signed and hashed, and a
/// directory should not carry data it cannot interpret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    #[serde(rename = "type")]
    pub kind: OpType,
    /// `cid` of the op this one follows; `None` only for genesis.
    pub prev: Option<String>,
    /// Name (`key-1`) → multibase Ed25519 key (`z6Mk…`); verify records only.
    #[serde(default)]
    pub signing_keys: BTreeMap<String, String>,
    /// `did:key`s allowed to sign the next op, highest priority first.
    #[serde(default)]
    pub rotation_keys: Vec<String>,
    #[serde(default)]
    pub handles: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    /// Signing-key names withdrawn from historical verification.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compromised: Vec<String>,
    /// RFC 3339; self-asserted, so the recovery window uses receipt time.
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<Value>,
}

impl Operation {
    /// Parses and validates the members of one op (not its signature or its
    /// place in a log).
    pub fn from_value(value: &Value) -> Result<Operation, ProtocolError> {
        let op: Operation = serde_json::from_value(value.clone())
            .map_err(|e| ProtocolError::validation("operation", e.to_string()))?;
        op.validate()?;
        Ok(op)
    }

    fn validate(&self) -> Result<(), ProtocolError> {
        let bad = |field, reason: &str| Err(ProtocolError::validation(field, reason));
        if unix_from_rfc3339(&self.created_at).is_none() {
            return bad("created_at", "must be an RFC 3339 timestamp");
        }
        match (self.kind, &self.prev) {
            (OpType::Genesis, Some(_)) => return bad("prev", "must be null for genesis"),
            (OpType::Update | OpType::Tombstone, None) => {
                return bad("prev", "is required after genesis")
            }
            _ => {}
        }
        if self.kind == OpType::Tombstone {
            // A tombstone only ends the DID; state in it would be misleading.
            let empty = self.signing_keys.is_empty()
                && self.rotation_keys.is_empty()
                && self.handles.is_empty()
                && self.namespaces.is_empty()
                && self.services.is_empty()
                && self.compromised.is_empty();
            return if empty {
                Ok(())
            } else {
                bad("type", "a tombstone carries no keys, handles or services")
            };
        }
        if self.rotation_keys.is_empty() || self.rotation_keys.len() > MAX_ROTATION_KEYS {
            return bad("rotation_keys", "must hold 1 to 5 did:keys");
        }
        let mut rotation = BTreeSet::new();
        for key in &self.rotation_keys {
            public_key_from_did_key(key)?;
            if !rotation.insert(key.as_str()) {
                return bad("rotation_keys", "must be unique");
            }
        }
        for (name, key) in &self.signing_keys {
            if !valid_key_name(name) {
                return bad("signing_keys", "names are 1-64 of a-z A-Z 0-9 - _");
            }
            let did = format!("did:key:{key}");
            public_key_from_did_key(&did)?;
            // Keeping the roles apart means a leaked record key cannot rotate.
            if rotation.contains(did.as_str()) {
                return bad("signing_keys", "a rotation key cannot be a signing key");
            }
        }
        for name in &self.compromised {
            if !valid_key_name(name) || self.signing_keys.contains_key(name) {
                return bad("compromised", "names a withdrawn key, not a current one");
            }
        }
        if self.handles.len() > MAX_HANDLES {
            return bad("handles", "at most 3");
        }
        let mut seen = BTreeSet::new();
        for handle in &self.handles {
            if !valid_handle(handle) {
                return bad("handles", "3-32 characters of a-z 0-9 -");
            }
            if !seen.insert(handle) {
                return bad("handles", "must be unique");
            }
        }
        let mut seen = BTreeSet::new();
        for ns in &self.namespaces {
            validate_namespace_id(ns)?;
            if !seen.insert(ns) {
                return bad("namespaces", "must be unique");
            }
        }
        for service in self.services.values() {
            if service.kind.is_empty() || service.endpoint.is_empty() {
                return bad("services", "type and endpoint must be non-empty");
            }
        }
        Ok(())
    }
}

/// The members of an op already in a log. [`apply`] validated it on entry, so only its shape is
/// read again: re-validating decodes every key, most of the cost of folding a log.
fn logged_operation(op: &Value) -> Result<Operation, ProtocolError> {
    Operation::deserialize(op).map_err(|e| ProtocolError::validation("operation", e.to_string()))
}

fn valid_key_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_handle(handle: &str) -> bool {
    (3..=32).contains(&handle.len())
        && handle
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn prev_mismatch(reason: impl Into<String>) -> ProtocolError {
    ProtocolError::PrevMismatch {
        reason: reason.into(),
    }
}

/// Signs `op` with a rotation key (any existing `sig` is ignored) and returns
/// the wire object.
pub fn sign_operation(op: &Operation, rotation_key: &Keypair) -> Value {
    let mut unsigned = op.clone();
    unsigned.sig = None;
    let Ok(Value::Object(mut object)) = serde_json::to_value(&unsigned) else {
        unreachable!("an Operation serialises to an object of strings")
    };
    sign_object(&mut object, rotation_key);
    Value::Object(object)
}

/// The op's content id: sha256 hex of its canonical signed JSON.
pub fn cid(signed: &Value) -> String {
    sha256_hex(canonical_string(signed).as_bytes())
}

/// `did:sync:` + the first 24 characters of lowercase unpadded base32 of
/// sha256(canonical signed genesis), so the DID certifies its genesis.
pub fn did_from_genesis(signed: &Value) -> String {
    let digest = Sha256::digest(canonical_string(signed).as_bytes());
    let mut hash = base32_lower(&digest);
    hash.truncate(DID_HASH_CHARS);
    format!("did:sync:{hash}")
}

/// RFC 4648 base32, lowercase, no padding (no base32 crate in the workspace).
fn base32_lower(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in data {
        buffer = ((buffer << 8) | u32::from(byte)) & 0xFFF;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// One stored op. `received_at` (unix seconds, the directory's clock) drives
/// the recovery window; `nullified` ops stay for audit but have no effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedOp {
    pub cid: String,
    pub op: Value,
    pub received_at: i64,
    #[serde(default)]
    pub nullified: bool,
}

/// The outcome of a successful [`apply`]: append `entry`, then mark the
/// `nullified` cids (ops displaced by a recovery fork).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub entry: LoggedOp,
    pub nullified: Vec<String>,
}

/// The signer DID recorded in a verified op's `sig.key_id`.
fn signer_of(op: &Value) -> Option<&str> {
    let key_id = op.get("sig")?.get("key_id")?.as_str()?;
    Some(key_id.split_once('#').map_or(key_id, |(did, _)| did))
}

/// Checks `op` against the log and says how to extend it. Refuses: ops over
/// 7,500 bytes; malformed or badly signed ops; a replay (same cid); genesis
/// anywhere but first or not signed by one of its own rotation keys; a `prev`
/// that is not a live op or is a tombstone; a signer outside the rotation
/// keys in force at `prev`; and forks that displace ops older than 72 h or
/// signed by a key of equal or higher priority (in `prev`'s list).
pub fn apply(log: &[LoggedOp], op: &Value, received_at: i64) -> Result<Applied, ProtocolError> {
    apply_with_window(log, op, received_at, RECOVERY_WINDOW_SECS)
}

/// [`apply`] with another recovery window (seconds), for a directory
/// configured away from the 72 h default.
pub fn apply_with_window(
    log: &[LoggedOp],
    op: &Value,
    received_at: i64,
    recovery_window_secs: i64,
) -> Result<Applied, ProtocolError> {
    apply_checked(log, &CheckedOp::new(op)?, received_at, recovery_window_secs)
}

/// An op that passed every check that needs no log: size, members and signature. A directory
/// checks ops concurrently and keeps only [`apply_checked`] under its per-DID lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedOp {
    op: Value,
    parsed: Operation,
    signer: String,
    cid: String,
}

impl CheckedOp {
    pub fn new(op: &Value) -> Result<CheckedOp, ProtocolError> {
        let size = canonical_string(op).len();
        if size > MAX_OP_BYTES {
            return Err(ProtocolError::OpTooLarge {
                size,
                max: MAX_OP_BYTES,
            });
        }
        let parsed = Operation::from_value(op)?;
        let Value::Object(object) = op else {
            unreachable!("Operation::from_value accepted a non-object")
        };
        let signer = verify_object(object)?;
        Ok(CheckedOp {
            op: op.clone(),
            cid: cid(op),
            parsed,
            signer,
        })
    }

    /// The signed op as received.
    pub fn value(&self) -> &Value {
        &self.op
    }

    pub fn cid(&self) -> &str {
        &self.cid
    }
}

/// [`apply_with_window`] for an op already checked on its own.
pub fn apply_checked(
    log: &[LoggedOp],
    op: &CheckedOp,
    received_at: i64,
    recovery_window_secs: i64,
) -> Result<Applied, ProtocolError> {
    let (parsed, signer) = (&op.parsed, &op.signer);
    if log.iter().any(|e| e.cid == op.cid) {
        return Err(prev_mismatch("operation is already in the log"));
    }
    let entry = LoggedOp {
        cid: op.cid.clone(),
        op: op.op.clone(),
        received_at,
        nullified: false,
    };
    let not_authorized = || ProtocolError::KeyNotAuthorized {
        signer: signer.clone(),
    };

    let Some(prev) = &parsed.prev else {
        if !log.is_empty() {
            return Err(prev_mismatch("genesis must be the first operation"));
        }
        if !parsed.rotation_keys.contains(signer) {
            return Err(not_authorized());
        }
        return Ok(Applied {
            entry,
            nullified: Vec::new(),
        });
    };

    let live: Vec<&LoggedOp> = log.iter().filter(|e| !e.nullified).collect();
    let at = live
        .iter()
        .position(|e| &e.cid == prev)
        .ok_or_else(|| prev_mismatch("prev is not a live operation of this DID"))?;
    let prev_op = logged_operation(&live[at].op)?;
    if prev_op.kind == OpType::Tombstone {
        return Err(prev_mismatch("the DID is tombstoned"));
    }
    let rank = |did: &str| prev_op.rotation_keys.iter().position(|k| k == did);
    let signer_rank = rank(signer).ok_or_else(not_authorized)?;

    let displaced = &live[at + 1..];
    for old in displaced {
        if received_at - old.received_at > recovery_window_secs {
            return Err(prev_mismatch(format!(
                "{} is older than the recovery window ({recovery_window_secs} s) and final",
                old.cid
            )));
        }
        // A signer absent from prev's list came in later and ranks lowest.
        let old_rank = signer_of(&old.op).and_then(rank).unwrap_or(usize::MAX);
        if old_rank <= signer_rank {
            return Err(prev_mismatch(format!(
                "prev is not the head and {} was signed by a key of equal or higher priority",
                old.cid
            )));
        }
    }
    Ok(Applied {
        entry,
        nullified: displaced.iter().map(|e| e.cid.clone()).collect(),
    })
}

/// The resolved state of a DID, from its live ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DidState {
    pub did: String,
    /// cid of the last live op (the `prev` for the next update).
    pub head: String,
    /// Keys in force (empty once deactivated).
    pub signing_keys: BTreeMap<String, String>,
    pub rotation_keys: Vec<String>,
    pub handles: Vec<String>,
    pub namespaces: Vec<String>,
    pub services: BTreeMap<String, Service>,
    pub deactivated: bool,
    /// `(name, multibase key)` of every signing key that ever appeared in a
    /// live op and was not later listed as `compromised`, first seen first:
    /// old records still verify after rotation. Keys of nullified ops are
    /// left out, since recovery exists to undo them.
    pub historical_signing_keys: Vec<(String, String)>,
}

/// Folds the live ops of `log` into the current state; `None` for an empty
/// log or one whose first op is not a parseable genesis. The log is trusted
/// to have been built by [`apply`] (ops are not validated again).
pub fn current(log: &[LoggedOp]) -> Option<DidState> {
    let genesis = log.first()?;
    let mut state = DidState {
        did: did_from_genesis(&genesis.op),
        head: String::new(),
        signing_keys: BTreeMap::new(),
        rotation_keys: Vec::new(),
        handles: Vec::new(),
        namespaces: Vec::new(),
        services: BTreeMap::new(),
        deactivated: false,
        historical_signing_keys: Vec::new(),
    };
    let mut withdrawn = BTreeSet::new();
    for (i, entry) in log.iter().filter(|e| !e.nullified).enumerate() {
        let op = logged_operation(&entry.op).ok()?;
        if (i == 0) != (op.kind == OpType::Genesis) {
            return None;
        }
        for name in &op.compromised {
            for (seen, key) in &state.historical_signing_keys {
                if seen == name {
                    withdrawn.insert(key.clone());
                }
            }
        }
        for (name, key) in &op.signing_keys {
            let pair = (name.clone(), key.clone());
            if !state.historical_signing_keys.contains(&pair) {
                state.historical_signing_keys.push(pair);
            }
        }
        state.head = entry.cid.clone();
        state.deactivated = op.kind == OpType::Tombstone;
        state.signing_keys = op.signing_keys;
        state.rotation_keys = op.rotation_keys;
        state.handles = op.handles;
        state.namespaces = op.namespaces;
        state.services = op.services;
    }
    state
        .historical_signing_keys
        .retain(|(_, key)| !withdrawn.contains(key));
    Some(state)
}

/// The DID document of `state`, in the did:web shape of federation-protocol.md §1.3:
/// `verificationMethod` lists the current signing keys first, then the other
/// historical ones (so old records still verify); `authentication` and
/// `assertionMethod` name only the current ones. Key ids are `<did>#<name>`;
/// a historical key whose name is taken by another key is named by its
/// multibase instead, so ids stay unique and stable.
pub fn document(state: &DidState) -> Value {
    let did = &state.did;
    let method = |id: &str, key: &str| {
        serde_json::json!({
            "id": id,
            "type": "Ed25519VerificationKey2020",
            "controller": did,
            "publicKeyMultibase": key,
        })
    };
    let mut used = BTreeSet::new();
    let mut methods = Vec::new();
    let mut current_ids = Vec::new();
    for (name, key) in &state.signing_keys {
        let id = format!("{did}#{name}");
        used.insert(name.as_str());
        methods.push(method(&id, key));
        current_ids.push(Value::String(id));
    }
    for (name, key) in &state.historical_signing_keys {
        if state.signing_keys.get(name) == Some(key) {
            continue;
        }
        let fragment = if used.insert(name.as_str()) {
            name
        } else {
            key
        };
        methods.push(method(&format!("{did}#{fragment}"), key));
    }
    let services: Vec<Value> = state
        .services
        .iter()
        .map(|(name, service)| {
            serde_json::json!({
                "id": format!("{did}#{name}"),
                "type": service.kind,
                "serviceEndpoint": service.endpoint,
            })
        })
        .collect();
    let aliases: Vec<String> = state
        .handles
        .iter()
        .map(|h| format!("syncropel:handle:{h}"))
        .collect();
    serde_json::json!({
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/suites/ed25519-2020/v1",
        ],
        "id": did,
        "alsoKnownAs": aliases,
        "verificationMethod": methods,
        "authentication": current_ids,
        "assertionMethod": current_ids,
        "service": services,
    })
}

/// An in-memory log for one DID: [`apply`] plus committing its result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpLog {
    pub entries: Vec<LoggedOp>,
}

impl OpLog {
    pub fn new() -> OpLog {
        OpLog::default()
    }

    /// Validates `op` and, if accepted, appends it and nullifies what it displaces.
    pub fn apply(&mut self, op: &Value, received_at: i64) -> Result<Applied, ProtocolError> {
        let applied = apply(&self.entries, op, received_at)?;
        for entry in &mut self.entries {
            if applied.nullified.contains(&entry.cid) {
                entry.nullified = true;
            }
        }
        self.entries.push(applied.entry.clone());
        Ok(applied)
    }

    pub fn current(&self) -> Option<DidState> {
        current(&self.entries)
    }

    /// The DID, once a genesis is in the log.
    pub fn did(&self) -> Option<String> {
        self.entries.first().map(|e| did_from_genesis(&e.op))
    }
}

#[cfg(test)]
mod tests;
