//! The sync wire (federation-protocol.md §5): the opaque cursors of `GET /v1/sync/changes` and the
//! checks a puller runs on every item a peer serves before anything reaches its store
//! (federation-protocol.md §1.1).

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::hash::record_id;
use crate::keys::{decode_signature, public_key_from_did_key};
use crate::record::Envelope;

/// Records per page when the puller names no limit, and the most it may ask for.
pub const DEFAULT_PAGE: u32 = 1000;
pub const MAX_PAGE: u32 = 10_000;

/// A position in one store's commit sequence. On the wire it is `<payload>.<mac>`: the payload is
/// base64url of `{"v":1,"e":"<epoch>","s":<seq>}` and the mac the first 16 bytes of its
/// HMAC-SHA256 under the store's cursor key, so a peer cannot forge a position, and a store made
/// anew by an import (another epoch) refuses cursors of the old one instead of skipping records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncCursor {
    /// 16 hex characters naming one life of a store.
    pub epoch: String,
    pub seq: i64,
}

/// Why a cursor was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CursorError {
    /// Not a cursor of this store (bad shape or mac).
    Invalid,
    /// One of ours, from another epoch of the store.
    EpochMismatch,
}

type HmacSha256 = Hmac<Sha256>;

impl SyncCursor {
    pub fn encode(&self, key: &[u8]) -> String {
        let payload = self.payload();
        let mac = mac(key, payload.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(&mac[..16])
        )
    }

    /// Decodes a cursor this store issued; the empty string is the start of epoch `epoch`.
    pub fn decode(cursor: &str, key: &[u8], epoch: &str) -> Result<SyncCursor, CursorError> {
        if cursor.is_empty() {
            return Ok(SyncCursor {
                epoch: epoch.to_string(),
                seq: 0,
            });
        }
        let (payload, given) = cursor.split_once('.').ok_or(CursorError::Invalid)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| CursorError::Invalid)?;
        let given = URL_SAFE_NO_PAD
            .decode(given)
            .map_err(|_| CursorError::Invalid)?;
        // The mac is checked before anything inside the cursor is believed: an edited epoch or
        // another tenant's cursor is tampering, not another life of this store.
        let mut check = HmacSha256::new_from_slice(key).map_err(|_| CursorError::Invalid)?;
        check.update(&payload);
        check
            .verify_truncated_left(&given)
            .ok()
            .filter(|_| given.len() == 16)
            .ok_or(CursorError::Invalid)?;
        let parsed = parse_payload(&payload).ok_or(CursorError::Invalid)?;
        // A store made anew from an export (import, restore) keeps its key and takes a new
        // epoch: a cursor of its earlier life names no position here, and the puller must start
        // again.
        if parsed.epoch != epoch {
            return Err(CursorError::EpochMismatch);
        }
        Ok(parsed)
    }

    /// Reads a cursor's position without checking its mac: a puller uses it only to notice a
    /// source whose cursor goes backwards (federation-protocol.md §5.5), never to build one. `None`
    /// for a cursor of another shape (peers' cursors are opaque).
    pub fn peek(cursor: &str) -> Option<SyncCursor> {
        let (payload, _) = cursor.split_once('.')?;
        parse_payload(&URL_SAFE_NO_PAD.decode(payload).ok()?)
    }

    fn payload(&self) -> String {
        format!(r#"{{"v":1,"e":"{}","s":{}}}"#, self.epoch, self.seq)
    }
}

fn mac(key: &[u8], data: &[u8]) -> [u8; 32] {
    #[allow(clippy::expect_used)] // HMAC takes keys of any length.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn parse_payload(bytes: &[u8]) -> Option<SyncCursor> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let epoch = value.get("e")?.as_str()?;
    let seq = value.get("s")?.as_i64()?;
    let valid = value.get("v")?.as_i64() == Some(1)
        && epoch.len() == 16
        && epoch.bytes().all(|b| b.is_ascii_hexdigit())
        && seq >= 0;
    valid.then(|| SyncCursor {
        epoch: epoch.to_string(),
        seq,
    })
}

/// Renders one stored record (the JSON object the records API serves) as a sync item
/// `{"id", "record": {the seven hashed fields, judged_by, sig, signer}}`
/// (federation-protocol.md §1.1). `None` when the stored JSON is not a record object.
pub fn sync_item(stored: &Value) -> Option<Value> {
    const FIELDS: [&str; 10] = [
        "parents",
        "thread",
        "actor",
        "act",
        "body",
        "clock",
        "data_type",
        "judged_by",
        "sig",
        "signer",
    ];
    let object = stored.as_object()?;
    let id = object.get("id")?.clone();
    let mut record = Map::new();
    for field in FIELDS {
        if let Some(value) = object.get(field) {
            record.insert(field.to_string(), value.clone());
        }
    }
    let mut item = Map::new();
    item.insert("id".into(), id);
    if object.get("redacted") == Some(&Value::Bool(true)) {
        // A stub we hold is passed on as a stub, with the digests it came with.
        item.insert("redacted".into(), Value::Bool(true));
        for field in ["consent_grant", "hash_levels"] {
            if let Some(value) = object.get(field) {
                item.insert(field.to_string(), value.clone());
            }
        }
    }
    item.insert("record".into(), Value::Object(record));
    Some(Value::Object(item))
}

/// A stored record's sync item as JSON text, made without building the record's value tree (the
/// source's hot path: every record of every page), with the namespace and thread the consent
/// filter needs. `None` for a stored consent stub or anything unexpected: the caller then takes
/// the general path ([`sync_item`]).
pub fn sync_item_text(stored: &str) -> Option<ItemText> {
    use serde_json::value::RawValue;
    #[derive(serde::Deserialize)]
    struct Stored<'a> {
        #[serde(borrow)]
        id: &'a RawValue,
        #[serde(borrow)]
        parents: &'a RawValue,
        thread: String,
        #[serde(borrow)]
        actor: &'a RawValue,
        #[serde(borrow)]
        act: &'a RawValue,
        #[serde(borrow)]
        body: &'a RawValue,
        #[serde(borrow)]
        clock: &'a RawValue,
        #[serde(borrow)]
        data_type: &'a RawValue,
        #[serde(borrow, default)]
        judged_by: Option<&'a RawValue>,
        #[serde(default)]
        namespace: Option<String>,
        #[serde(borrow, default)]
        sig: Option<&'a RawValue>,
        #[serde(borrow, default)]
        signer: Option<&'a RawValue>,
        #[serde(default)]
        redacted: Option<bool>,
    }
    let r: Stored<'_> = serde_json::from_str(stored).ok()?;
    if r.redacted.is_some() {
        return None;
    }
    let thread_json = serde_json::to_string(&r.thread).ok()?;
    let mut text = String::with_capacity(stored.len());
    text.push_str("{\"id\":");
    text.push_str(r.id.get());
    text.push_str(",\"record\":{\"parents\":");
    text.push_str(r.parents.get());
    for (name, value) in [
        ("thread", Some(thread_json.as_str())),
        ("actor", Some(r.actor.get())),
        ("act", Some(r.act.get())),
        ("body", Some(r.body.get())),
        ("clock", Some(r.clock.get())),
        ("data_type", Some(r.data_type.get())),
        ("judged_by", r.judged_by.map(RawValue::get)),
        ("sig", r.sig.map(RawValue::get)),
        ("signer", r.signer.map(RawValue::get)),
    ] {
        if let Some(value) = value {
            text.push_str(",\"");
            text.push_str(name);
            text.push_str("\":");
            text.push_str(value);
        }
    }
    text.push_str("}}");
    Some(ItemText {
        namespace: r
            .namespace
            .unwrap_or_else(|| crate::DEFAULT_NAMESPACE.to_string()),
        thread: r.thread,
        text,
    })
}

/// See [`sync_item_text`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemText {
    pub namespace: String,
    pub thread: String,
    pub text: String,
}

/// One item of a peer's page, parsed but not yet verified.
#[derive(Clone, Debug)]
pub struct PeerItem {
    pub id: String,
    pub envelope: Envelope,
    /// The seven-field canonical JSON: the id preimage and the signed bytes.
    pub canonical: String,
    pub sig: Option<String>,
    pub signer: Option<String>,
    /// Set for a consent stub (federation-protocol.md §6.3): its body is `{"redacted": true}` and
    /// it carries no signature; its id cannot be checked.
    pub redaction: Option<Redaction>,
    /// The W3C `traceparent` of the span that wrote the record at the source, when it was
    /// traced: the ingest here continues that trace. Advisory: a malformed one is dropped.
    pub traceparent: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Redaction {
    pub consent_grant: Option<String>,
    /// `{"l1": …, "l2": …, "l3": …}`, only the levels the grant allows.
    pub hash_levels: Map<String, Value>,
}

/// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, the only W3C version there is.
pub fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1].bytes().any(|b| b != b'0')
        && parts[2].bytes().any(|b| b != b'0')
}

/// A sync item's JSON text with the record's `traceparent` added (the item ends in `}`).
pub fn item_with_traceparent(item: &str, traceparent: &str) -> String {
    debug_assert!(is_traceparent(traceparent));
    let body = item.trim_end().strip_suffix('}').unwrap_or(item);
    format!("{body},\"traceparent\":\"{traceparent}\"}}")
}

impl PeerItem {
    /// Parses one item; the error says what about its shape is wrong (the page it came in is
    /// then a protocol violation, federation-protocol.md §5.5).
    pub fn from_value(item: Value) -> Result<PeerItem, String> {
        let Value::Object(mut item) = item else {
            return Err("an item is not a JSON object".into());
        };
        let id = match item.remove("id") {
            Some(Value::String(id))
                if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                id
            }
            _ => return Err("an item's id is not 64 hex characters".into()),
        };
        let Some(Value::Object(mut record)) = item.remove("record") else {
            return Err(format!("item {id} has no record object"));
        };
        let text = |record: &mut Map<String, Value>, field: &str| match record.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("item {id}: `{field}` is not a string")),
        };
        let sig = text(&mut record, "sig")?;
        let signer = text(&mut record, "signer")?;
        let redaction = match item.get("redacted") {
            Some(Value::Bool(true)) => {
                if record.get("body") != Some(&serde_json::json!({"redacted": true})) {
                    return Err(format!("redacted item {id} carries a body"));
                }
                let hash_levels = match item.remove("hash_levels") {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::Object(levels)) => levels,
                    Some(_) => return Err(format!("item {id}: `hash_levels` is not an object")),
                };
                let consent_grant = match item.remove("consent_grant") {
                    Some(Value::String(grant)) => Some(grant),
                    _ => None,
                };
                Some(Redaction {
                    consent_grant,
                    hash_levels,
                })
            }
            None | Some(Value::Bool(false)) => None,
            Some(_) => return Err(format!("item {id}: `redacted` is not a boolean")),
        };
        let envelope = Envelope::from_value(Value::Object(record))
            .map_err(|e| format!("item {id} is not a valid record: {e}"))?;
        let canonical = envelope.canonical_json();
        let traceparent = match item.remove("traceparent") {
            Some(Value::String(value)) if is_traceparent(&value) => Some(value),
            _ => None,
        };
        Ok(PeerItem {
            id,
            envelope,
            canonical,
            sig,
            signer,
            redaction,
            traceparent,
        })
    }

    /// The actor, when only its own DID document can name the keys that sign for it
    /// (did:web, directory did:sync): the caller resolves it before [`verify_items`].
    pub fn actor_with_document(&self) -> Option<&str> {
        let actor = self.envelope.actor.as_str();
        has_document(actor).then_some(actor)
    }

    /// The DID whose key must have signed this record (federation-protocol.md §1.1, §1.4):
    /// * a did:key actor signs for itself (`signer` may only repeat it);
    /// * a did:web or directory did:sync actor must be signed by a key of its DID document:
    ///   `signer` must be one of the keys `resolved` holds for it (`SIGNATURE_INVALID` if not;
    ///   `SIGNER_UNRESOLVED` while the document could not be had);
    /// * a typed local DID (`did:sync:user:…`, `did:sync:agent:…`, …) or any other method has
    ///   no document: its records are signed by their hosting steward's key, named in
    ///   `signer`, and taken as vouched for by the peer that served them.
    fn signing_did<'a>(&'a self, resolved: &'a ResolvedKeys) -> Result<&'a str, Rejection> {
        let actor = self.envelope.actor.as_str();
        if actor.starts_with("did:key:") {
            return match self.signer.as_deref() {
                None => Ok(actor),
                Some(signer) if signer == actor => Ok(actor),
                Some(_) => Err(Rejection::SignatureInvalid),
            };
        }
        if has_document(actor) {
            let document = resolved.get(actor).ok_or(Rejection::SignerUnresolved)?;
            // Without `signer`, the document's current key is the only candidate.
            let signer = match self.signer.as_deref() {
                Some(signer) => signer,
                None => document
                    .current
                    .first()
                    .ok_or(Rejection::SignatureInvalid)?,
            };
            return if document.keys.iter().any(|k| k == signer) {
                Ok(signer)
            } else if document.fresh {
                Err(Rejection::SignatureInvalid)
            } else {
                // A key the document may have gained since it was fetched: not a forgery yet.
                Err(Rejection::SignerUnresolved)
            };
        }
        match self.signer.as_deref() {
            Some(signer) if signer.starts_with("did:key:") => Ok(signer),
            _ => Err(Rejection::SignerUnresolved),
        }
    }

    /// The did:key named in `signer`, if any.
    pub fn signer(&self) -> Option<&str> {
        self.signer.as_deref()
    }
}

/// For each actor with a DID document, the keys that may sign its records. An actor missing
/// from the map could not be resolved.
pub type ResolvedKeys = HashMap<String, DocumentKeys>;

/// The keys of one DID document (federation-protocol.md §1.5), as did:keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocumentKeys {
    /// Every key valid for verifying: current and retired, never those withdrawn as
    /// compromised.
    pub keys: Vec<String>,
    /// The keys in force.
    pub current: Vec<String>,
    /// Fetched after the records being checked arrived: a signer it lacks is not a key of the
    /// DID (`SIGNATURE_INVALID`). From an older copy, the same miss only waits
    /// (`SIGNER_UNRESOLVED`) until the document can be fetched again.
    pub fresh: bool,
}

impl DocumentKeys {
    /// A fresh document whose only key is `signer` (a record checked against a known key).
    pub fn only(signer: &str) -> DocumentKeys {
        DocumentKeys {
            keys: vec![signer.to_string()],
            current: vec![signer.to_string()],
            fresh: true,
        }
    }
}

/// A DID whose keys only its own document can name: did:web, and a directory did:sync
/// (`did:sync:<hash>`, no type segment).
pub fn has_document(did: &str) -> bool {
    did.starts_with("did:web:")
        || did
            .strip_prefix("did:sync:")
            .is_some_and(|rest| !rest.contains(':'))
}

/// Why a peer's record was not admitted (federation-protocol.md §1.1); the puller quarantines it
/// under this code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    IdMismatch,
    SignatureRequired,
    SignatureInvalid,
    SignerUnresolved,
}

impl Rejection {
    pub fn code(self) -> &'static str {
        match self {
            Rejection::IdMismatch => "ID_MISMATCH",
            Rejection::SignatureRequired => "SIGNATURE_REQUIRED",
            Rejection::SignatureInvalid => "SIGNATURE_INVALID",
            Rejection::SignerUnresolved => "SIGNER_UNRESOLVED",
        }
    }

    /// A forged record stays refused; an unresolvable signer may verify later.
    pub fn is_final(self) -> bool {
        !matches!(self, Rejection::SignerUnresolved)
    }
}

/// Checks every item of a page, in order: the id against the record, then the signature against
/// the signing key. Signatures are verified as one batch (several times faster than one by one);
/// only when the batch fails are they verified singly, strictly, to find which ones are bad.
/// Weak keys are refused before batching, as strict verification would.
pub fn verify_items(items: &[PeerItem], resolved: &ResolvedKeys) -> Vec<Result<(), Rejection>> {
    let mut outcomes: Vec<Result<(), Rejection>> = Vec::with_capacity(items.len());
    let mut pending: Vec<(usize, VerifyingKey, Signature)> = Vec::new();
    // A page is mostly signed by a few keys; decoding a key (a point decompression) costs about
    // as much as a batched verification, so each is decoded once per page.
    let mut keys: HashMap<&str, Option<VerifyingKey>> = HashMap::new();
    for (index, item) in items.iter().enumerate() {
        if item.redaction.is_some() {
            outcomes.push(Ok(()));
            continue;
        }
        match prepare(item, resolved, &mut keys) {
            Ok((key, signature)) => {
                pending.push((index, key, signature));
                outcomes.push(Ok(()));
            }
            Err(rejection) => outcomes.push(Err(rejection)),
        }
    }
    if pending.is_empty() {
        return outcomes;
    }
    let messages: Vec<&[u8]> = pending
        .iter()
        .map(|(i, _, _)| items[*i].canonical.as_bytes())
        .collect();
    let signatures: Vec<Signature> = pending.iter().map(|(_, _, s)| *s).collect();
    let keys: Vec<VerifyingKey> = pending.iter().map(|(_, k, _)| *k).collect();
    if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_err() {
        for ((index, key, signature), message) in pending.iter().zip(messages) {
            if key.verify_strict(message, signature).is_err() {
                outcomes[*index] = Err(Rejection::SignatureInvalid);
            }
        }
    }
    outcomes
}

fn prepare<'a>(
    item: &'a PeerItem,
    resolved: &'a ResolvedKeys,
    keys: &mut HashMap<&'a str, Option<VerifyingKey>>,
) -> Result<(VerifyingKey, Signature), Rejection> {
    if record_id(&item.canonical) != item.id {
        return Err(Rejection::IdMismatch);
    }
    let sig = item.sig.as_deref().ok_or(Rejection::SignatureRequired)?;
    let did = item.signing_did(resolved)?;
    let key = *keys.entry(did).or_insert_with(|| {
        public_key_from_did_key(did)
            .ok()
            .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
            .filter(|key| !key.is_weak())
    });
    let key = key.ok_or(Rejection::SignatureInvalid)?;
    let signature = decode_signature(sig).map_err(|_| Rejection::SignatureInvalid)?;
    Ok((key, Signature::from_bytes(&signature)))
}

#[cfg(test)]
mod tests;
