//! did:sync operation logs (FEDERATION §1.4, [P-3]): a PLC-style chain of
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

/// The DID document of `state`, in the did:web shape of §1.3:
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
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::json;

    const T0: i64 = 1_777_636_800;
    const HOUR: i64 = 3600;

    struct Keys {
        user: Keypair,
        host: Keypair,
        record1: Keypair,
        record2: Keypair,
    }

    fn keys() -> Keys {
        Keys {
            user: Keypair::from_seed(&[1; 32]),
            host: Keypair::from_seed(&[2; 32]),
            record1: Keypair::from_seed(&[3; 32]),
            record2: Keypair::from_seed(&[4; 32]),
        }
    }

    fn multibase(key: &Keypair) -> String {
        key.did_key().strip_prefix("did:key:").unwrap().to_owned()
    }

    fn state_op(k: &Keys, kind: OpType, prev: Option<&str>, record: &[&Keypair]) -> Operation {
        Operation {
            kind,
            prev: prev.map(str::to_owned),
            signing_keys: record
                .iter()
                .enumerate()
                .map(|(i, key)| (format!("key-{}", i + 1), multibase(key)))
                .collect(),
            rotation_keys: vec![k.user.did_key(), k.host.did_key()],
            handles: vec!["alice".into()],
            namespaces: vec!["alice".into()],
            services: BTreeMap::from([(
                "syncropel".into(),
                Service {
                    kind: "syncropel".into(),
                    endpoint: "https://alice.syncropel.app".into(),
                },
            )]),
            compromised: Vec::new(),
            created_at: "2026-05-01T12:00:00Z".into(),
            sig: None,
        }
    }

    fn tombstone(prev: &str) -> Operation {
        Operation {
            kind: OpType::Tombstone,
            prev: Some(prev.to_owned()),
            signing_keys: BTreeMap::new(),
            rotation_keys: Vec::new(),
            handles: Vec::new(),
            namespaces: Vec::new(),
            services: BTreeMap::new(),
            compromised: Vec::new(),
            created_at: "2026-05-02T12:00:00Z".into(),
            sig: None,
        }
    }

    /// A log holding a genesis signed by the host key; returns its cid.
    fn genesis_log(k: &Keys) -> (OpLog, String) {
        let mut log = OpLog::new();
        let g = sign_operation(&state_op(k, OpType::Genesis, None, &[&k.record1]), &k.host);
        let applied = log.apply(&g, T0).unwrap();
        (log, applied.entry.cid)
    }

    fn update(k: &Keys, prev: &str, record: &[&Keypair], signer: &Keypair) -> Value {
        sign_operation(&state_op(k, OpType::Update, Some(prev), record), signer)
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(base32_lower(input.as_bytes()), expected, "{input:?}");
        }
        assert_eq!(base32_lower(&[0xFF; 5]), "77777777");
    }

    #[test]
    fn did_derivation_is_deterministic_and_hashes_the_signed_genesis() {
        let k = keys();
        let op = state_op(&k, OpType::Genesis, None, &[&k.record1]);
        let a = sign_operation(&op, &k.host);
        let b = sign_operation(&op, &k.host);
        assert_eq!(a, b);
        let did = did_from_genesis(&a);
        assert_eq!(did, did_from_genesis(&b));
        let hash = did.strip_prefix("did:sync:").unwrap();
        assert_eq!(hash.len(), DID_HASH_CHARS);
        assert!(hash.bytes().all(|c| matches!(c, b'a'..=b'z' | b'2'..=b'7')));
        let digest = Sha256::digest(canonical_string(&a).as_bytes());
        assert_eq!(hash, &base32_lower(&digest)[..24]);
        // Signed by another key, the same content is another DID.
        assert_ne!(did, did_from_genesis(&sign_operation(&op, &k.user)));
        assert_eq!(cid(&a), sha256_hex(canonical_string(&a).as_bytes()));

        let (log, head) = genesis_log(&k);
        assert_eq!(log.did().unwrap(), did);
        let state = log.current().unwrap();
        assert_eq!(state.did, did);
        assert_eq!(state.head, head);
        assert_eq!(state.handles, ["alice"]);
        assert!(!state.deactivated);
    }

    #[test]
    fn genesis_must_be_first_and_self_signed() {
        let k = keys();
        let op = state_op(&k, OpType::Genesis, None, &[&k.record1]);
        let by_outsider = sign_operation(&op, &k.record2);
        let err = apply(&[], &by_outsider, T0).unwrap_err();
        assert_eq!(err.code(), ErrorCode::KeyNotAuthorized, "{err}");

        let (log, _) = genesis_log(&k);
        let second = sign_operation(&op, &k.user);
        let err = apply(&log.entries, &second, T0).unwrap_err();
        assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");
    }

    #[test]
    fn update_by_a_rotation_key_is_accepted() {
        let k = keys();
        let (mut log, g) = genesis_log(&k);
        let applied = log
            .apply(&update(&k, &g, &[&k.record2], &k.host), T0 + 10)
            .unwrap();
        assert!(applied.nullified.is_empty());
        let state = log.current().unwrap();
        assert_eq!(state.head, applied.entry.cid);
        assert_eq!(
            state.signing_keys,
            BTreeMap::from([("key-1".to_owned(), multibase(&k.record2))])
        );
    }

    #[test]
    fn update_signed_by_a_signing_key_is_refused() {
        let k = keys();
        let (log, g) = genesis_log(&k);
        let op = update(&k, &g, &[&k.record2], &k.record1);
        let err = apply(&log.entries, &op, T0 + 10).unwrap_err();
        assert_eq!(err.code(), ErrorCode::KeyNotAuthorized, "{err}");
        assert_eq!(err.code().http_status(), 403);
    }

    #[test]
    fn a_tampered_op_fails_its_signature() {
        let k = keys();
        let (log, g) = genesis_log(&k);
        let mut op = update(&k, &g, &[&k.record2], &k.host);
        op["handles"] = json!(["mallory"]);
        let err = apply(&log.entries, &op, T0 + 10).unwrap_err();
        assert_eq!(err.code(), ErrorCode::SignatureInvalid, "{err}");
    }

    #[test]
    fn wrong_prev_is_refused() {
        let k = keys();
        let (log, _) = genesis_log(&k);
        let op = update(&k, &"0".repeat(64), &[&k.record2], &k.host);
        let err = apply(&log.entries, &op, T0 + 10).unwrap_err();
        assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");
        assert_eq!(err.code().http_status(), 409);
        // An update without prev is malformed, not a genesis.
        let mut op = state_op(&k, OpType::Update, None, &[&k.record2]);
        op.prev = None;
        let err = apply(&log.entries, &sign_operation(&op, &k.host), T0).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ValidationError, "{err}");
    }

    #[test]
    fn replay_is_refused_with_prev_mismatch() {
        let k = keys();
        let (mut log, g) = genesis_log(&k);
        let genesis = log.entries[0].op.clone();
        let err = apply(&log.entries, &genesis, T0 + 1).unwrap_err();
        assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");
        let op = update(&k, &g, &[&k.record2], &k.user);
        log.apply(&op, T0 + 10).unwrap();
        let err = log.apply(&op, T0 + 20).unwrap_err();
        assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");
        assert!(err.to_string().contains("already in the log"), "{err}");
        assert_eq!(log.entries.len(), 2);
    }

    /// Genesis, then op B by the host key (index 1) one hour later.
    fn with_host_update(k: &Keys) -> (OpLog, String, String) {
        let (mut log, g) = genesis_log(k);
        let b = log
            .apply(&update(k, &g, &[&k.record2], &k.host), T0 + HOUR)
            .unwrap()
            .entry
            .cid;
        (log, g, b)
    }

    #[test]
    fn recovery_within_72h_displaces_a_lower_priority_op() {
        let k = keys();
        let (mut log, g, b) = with_host_update(&k);
        let mut fork = state_op(&k, OpType::Update, Some(&g), &[&k.record1]);
        fork.rotation_keys = vec![k.user.did_key()]; // drop the host key
        let fork = sign_operation(&fork, &k.user);
        let applied = log.apply(&fork, T0 + HOUR + 72 * HOUR).unwrap();
        assert_eq!(applied.nullified, vec![b.clone()]);
        let displaced = log.entries.iter().find(|e| e.cid == b).unwrap();
        assert!(displaced.nullified, "B stays in the log, nullified");
        assert_eq!(log.entries.len(), 3);
        let state = log.current().unwrap();
        assert_eq!(state.head, applied.entry.cid);
        assert_eq!(state.rotation_keys, [k.user.did_key()]);
        // B's key is not historical: B was undone.
        assert_eq!(
            state.historical_signing_keys,
            [("key-1".to_owned(), multibase(&k.record1))]
        );
        // A nullified op cannot be built upon.
        let err = apply(
            &log.entries,
            &update(&k, &b, &[&k.record2], &k.user),
            T0 + 80 * HOUR,
        )
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");
    }

    #[test]
    fn recovery_after_72h_is_refused() {
        let k = keys();
        let (log, g, _) = with_host_update(&k);
        let fork = update(&k, &g, &[&k.record1], &k.user);
        let err = apply(&log.entries, &fork, T0 + HOUR + 72 * HOUR + 1).unwrap_err();
        assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");
        assert!(err.to_string().contains("final"), "{err}");
    }

    #[test]
    fn fork_by_equal_or_lower_priority_key_is_refused() {
        let k = keys();
        // Host (index 1) cannot displace the host's own op B.
        let (log, g, _) = with_host_update(&k);
        let fork = update(&k, &g, &[&k.record1], &k.host);
        let err = apply(&log.entries, &fork, T0 + 2 * HOUR).unwrap_err();
        assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");

        // Host cannot displace the user's (index 0) op, nor can the user.
        let (mut log, g) = genesis_log(&k);
        log.apply(&update(&k, &g, &[&k.record2], &k.user), T0 + HOUR)
            .unwrap();
        for signer in [&k.host, &k.user] {
            let mut op = state_op(&k, OpType::Update, Some(&g), &[&k.record1]);
            op.handles = vec!["alice-2".into()];
            let err = apply(&log.entries, &sign_operation(&op, signer), T0 + 2 * HOUR).unwrap_err();
            assert_eq!(err.code(), ErrorCode::PrevMismatch, "{signer:?}: {err}");
        }
    }

    #[test]
    fn tombstone_ends_the_log() {
        let k = keys();
        let (mut log, g) = genesis_log(&k);
        let t = log
            .apply(&sign_operation(&tombstone(&g), &k.host), T0 + HOUR)
            .unwrap()
            .entry
            .cid;
        let state = log.current().unwrap();
        assert!(state.deactivated);
        assert!(state.signing_keys.is_empty() && state.rotation_keys.is_empty());
        assert_eq!(state.historical_signing_keys.len(), 1);
        for signer in [&k.user, &k.host] {
            let err = apply(
                &log.entries,
                &update(&k, &t, &[&k.record2], signer),
                T0 + 2 * HOUR,
            )
            .unwrap_err();
            assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");
        }
        // A tombstone carrying state is malformed.
        let mut bad = tombstone(&g);
        bad.handles = vec!["alice".into()];
        let err = apply(&log.entries, &sign_operation(&bad, &k.user), T0).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ValidationError, "{err}");
        // Within 72 h the user key can still undo a tombstone by the host.
        let applied = log
            .apply(&update(&k, &g, &[&k.record1], &k.user), T0 + 2 * HOUR)
            .unwrap();
        assert_eq!(applied.nullified, [t]);
        assert!(!log.current().unwrap().deactivated);
    }

    #[test]
    fn recovery_window_is_configurable() {
        let k = keys();
        let (log, g, _) = with_host_update(&k);
        let fork = update(&k, &g, &[&k.record1], &k.user);
        let err = apply_with_window(&log.entries, &fork, T0 + 2 * HOUR, HOUR / 2).unwrap_err();
        assert_eq!(err.code(), ErrorCode::PrevMismatch, "{err}");
        apply_with_window(&log.entries, &fork, T0 + 100 * HOUR, 200 * HOUR).unwrap();
    }

    #[test]
    fn document_lists_current_then_historical_keys() {
        let k = keys();
        let (mut log, g) = genesis_log(&k);
        // key-1 is rotated to another key under the same name.
        log.apply(&update(&k, &g, &[&k.record2], &k.user), T0 + HOUR)
            .unwrap();
        let state = log.current().unwrap();
        let doc = document(&state);
        let did = &state.did;
        assert_eq!(doc["id"], json!(did));
        assert_eq!(doc["alsoKnownAs"], json!(["syncropel:handle:alice"]));
        let current = format!("{did}#key-1");
        assert_eq!(doc["assertionMethod"], json!([current]));
        assert_eq!(doc["authentication"], json!([current]));
        let methods = doc["verificationMethod"].as_array().unwrap();
        assert_eq!(methods.len(), 2);
        assert_eq!(methods[0]["id"], json!(current));
        assert_eq!(
            methods[0]["publicKeyMultibase"],
            json!(multibase(&k.record2))
        );
        let old = multibase(&k.record1);
        assert_eq!(methods[1]["id"], json!(format!("{did}#{old}")));
        assert_eq!(methods[1]["publicKeyMultibase"], json!(old));
        assert_eq!(
            doc["service"],
            json!([{
                "id": format!("{did}#syncropel"),
                "type": "syncropel",
                "serviceEndpoint": "https://alice.syncropel.app",
            }])
        );
    }

    #[test]
    fn oversize_op_is_refused() {
        let k = keys();
        let mut op = state_op(&k, OpType::Genesis, None, &[&k.record1]);
        op.services.get_mut("syncropel").unwrap().endpoint =
            format!("https://{}.example", "a".repeat(MAX_OP_BYTES));
        let err = apply(&[], &sign_operation(&op, &k.host), T0).unwrap_err();
        assert_eq!(err.code(), ErrorCode::OpTooLarge, "{err}");
        assert_eq!(err.code().http_status(), 413);
        // Just under the limit passes.
        let signed = sign_operation(&state_op(&k, OpType::Genesis, None, &[]), &k.host);
        let room = MAX_OP_BYTES - canonical_string(&signed).len();
        let mut op = state_op(&k, OpType::Genesis, None, &[]);
        let endpoint = &mut op.services.get_mut("syncropel").unwrap().endpoint;
        endpoint.push_str(&"a".repeat(room));
        let signed = sign_operation(&op, &k.host);
        assert_eq!(canonical_string(&signed).len(), MAX_OP_BYTES);
        apply(&[], &signed, T0).unwrap();
    }

    #[test]
    fn historical_keys_survive_rotation_unless_compromised() {
        let k = keys();
        let (mut log, g) = genesis_log(&k);
        let mut rotate = state_op(&k, OpType::Update, Some(&g), &[]);
        rotate.signing_keys = BTreeMap::from([("key-2".into(), multibase(&k.record2))]);
        let u1 = log
            .apply(&sign_operation(&rotate, &k.user), T0 + HOUR)
            .unwrap()
            .entry
            .cid;
        let state = log.current().unwrap();
        assert_eq!(state.signing_keys.len(), 1);
        assert_eq!(
            state.historical_signing_keys,
            [
                ("key-1".to_owned(), multibase(&k.record1)),
                ("key-2".to_owned(), multibase(&k.record2)),
            ]
        );
        let mut withdraw = rotate.clone();
        withdraw.prev = Some(u1);
        withdraw.compromised = vec!["key-1".into()];
        log.apply(&sign_operation(&withdraw, &k.user), T0 + 2 * HOUR)
            .unwrap();
        assert_eq!(
            log.current().unwrap().historical_signing_keys,
            [("key-2".to_owned(), multibase(&k.record2))]
        );
    }

    #[test]
    fn malformed_members_are_refused() {
        let k = keys();
        let base = state_op(&k, OpType::Genesis, None, &[&k.record1]);
        let mut cases: Vec<(&str, Operation)> = Vec::new();
        let mut op = base.clone();
        op.rotation_keys.clear();
        cases.push(("no rotation keys", op));
        let mut op = base.clone();
        op.rotation_keys = (10..16)
            .map(|i| Keypair::from_seed(&[i; 32]).did_key())
            .collect();
        cases.push(("six rotation keys", op));
        let mut op = base.clone();
        op.handles = vec!["al".into()];
        cases.push(("short handle", op));
        let mut op = base.clone();
        op.handles = vec!["Alice".into()];
        cases.push(("upper-case handle", op));
        let mut op = base.clone();
        op.handles = vec!["aaa".into(), "bbb".into(), "ccc".into(), "ddd".into()];
        cases.push(("four handles", op));
        let mut op = base.clone();
        op.signing_keys.insert("key-2".into(), multibase(&k.host));
        cases.push(("rotation key as signing key", op));
        let mut op = base.clone();
        op.created_at = "yesterday".into();
        cases.push(("bad created_at", op));
        for (what, op) in cases {
            let err = apply(&[], &sign_operation(&op, &k.user), T0).unwrap_err();
            assert_eq!(err.code(), ErrorCode::ValidationError, "{what}: {err}");
        }
        let mut unknown = sign_operation(&base, &k.user);
        unknown["extra"] = json!(1);
        let err = apply(&[], &unknown, T0).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ValidationError, "{err}");
        // The valid base passes, so each case fails for its own reason.
        apply(&[], &sign_operation(&base, &k.user), T0).unwrap();
    }
}
