//! Relay queues and envelopes (federation-protocol.md §7.2-7.3): a batch of one queue's items,
//! signed by the source over its canonical form, so that a relay can delay or lose items but
//! never invent, alter or move them (a stub carries no signature of its own; the envelope's
//! covers it). The relay checks an envelope before it queues it, and the destination again
//! before it ingests a single item.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::{canonical_string, sha256_hex, verify_signature, Keypair};

/// Why an envelope is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Past [`MAX_ITEMS`] or [`MAX_BYTES`].
    #[error("{0}")]
    TooLarge(String),
    /// Not an envelope of this queue.
    #[error("envelope: {0}")]
    Invalid(String),
    /// Not signed by the queue's source.
    #[error("the envelope is not signed by its source")]
    Signature,
}

/// Most items in one envelope.
pub const MAX_ITEMS: usize = 1000;
/// Most bytes of one envelope, as received.
pub const MAX_BYTES: usize = 8 << 20;

/// What a queue carries: one thread of one pair, landing in one namespace of the destination.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Queue {
    pub source_did: String,
    pub dest_did: String,
    pub pair_id: String,
    pub generation: u64,
    pub thread: String,
    pub target_namespace: String,
}

impl Queue {
    /// `rq_` + the first 32 hex of sha256 of the queue's canonical JSON: both sides compute it.
    pub fn id(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        let digest = sha256_hex(canonical_string(&value).as_bytes());
        format!("rq_{}", &digest[..32])
    }
}

/// An envelope as deposited: checked, with the exact bytes it came as.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub queue_id: String,
    pub queue: Queue,
    pub source_epoch: String,
    pub first_sseq: i64,
    pub last_sseq: i64,
    /// The ids of its items, in order.
    pub ids: Vec<String>,
    /// Its items as sent: whole signed records or redacted stubs (federation-protocol.md §6.3).
    pub items: Vec<Value>,
    /// The keys the source vouches for each typed actor of its items (federation-protocol.md
    /// §1.4), covered by the envelope's signature: a destination that cannot reach the source
    /// takes them as the source's `actor-keys` answers.
    pub actor_keys: BTreeMap<String, Vec<String>>,
    /// sha256 hex of the canonical `{encoding, ids, queue_id, source_epoch}`.
    pub envelope_id: String,
    /// The bytes it came as (empty when it was checked as a value).
    pub bytes: Vec<u8>,
}

impl Envelope {
    /// Reads and checks an envelope for `queue_id` as deposited: its size, and then as
    /// [`Envelope::check_value`].
    pub fn check(bytes: Vec<u8>, queue_id: &str, signer: &str) -> Result<Envelope, EnvelopeError> {
        if bytes.len() > MAX_BYTES {
            return Err(EnvelopeError::TooLarge(format!(
                "an envelope holds at most {MAX_BYTES} bytes"
            )));
        }
        let value = serde_json::from_slice::<Value>(&bytes)
            .map_err(|_| EnvelopeError::Invalid("not a JSON object".into()))?;
        let mut envelope = Envelope::check_value(value, queue_id, signer)?;
        envelope.bytes = bytes;
        Ok(envelope)
    }

    /// Checks an envelope for `queue_id` already parsed (as a destination reads it in a page):
    /// its shape, its item bound and that the source's key `signer` (a did:key that may sign
    /// for `queue.source_did`) signed it.
    pub fn check_value(
        value: Value,
        queue_id: &str,
        signer: &str,
    ) -> Result<Envelope, EnvelopeError> {
        let invalid = |why: &str| EnvelopeError::Invalid(why.to_string());
        let Value::Object(mut object) = value else {
            return Err(invalid("not a JSON object"));
        };
        if object.get("object") != Some(&json!("relay_envelope")) {
            return Err(invalid("`object` is not \"relay_envelope\""));
        }
        if object.get("encoding") != Some(&json!("plain")) {
            return Err(invalid("`encoding` must be \"plain\""));
        }
        let sig = object.remove("sig").ok_or_else(|| invalid("no `sig`"))?;
        let value = sig
            .get("value")
            .and_then(Value::as_str)
            .filter(|_| sig.get("alg") == Some(&json!("Ed25519")))
            .ok_or_else(|| invalid("`sig` is not {alg: Ed25519, value}"))?;
        let canonical = canonical_string(&Value::Object(object.clone()));
        verify_signature(signer, canonical.as_bytes(), value)
            .map_err(|_| EnvelopeError::Signature)?;
        let queue: Queue = serde_json::from_value(object.get("queue").cloned().unwrap_or_default())
            .map_err(|e| invalid(&format!("`queue`: {e}")))?;
        if object.get("queue_id").and_then(Value::as_str) != Some(queue_id)
            || queue.id() != queue_id
        {
            return Err(invalid("it belongs to another queue"));
        }
        let text = |field: &str| {
            object
                .get(field)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let int = |field: &str| object.get(field).and_then(Value::as_i64);
        let source_epoch = text("source_epoch").ok_or_else(|| invalid("no `source_epoch`"))?;
        let (Some(first_sseq), Some(last_sseq)) = (int("first_sseq"), int("last_sseq")) else {
            return Err(invalid("`first_sseq` and `last_sseq` are required"));
        };
        if first_sseq < 1 || first_sseq > last_sseq {
            return Err(invalid(
                "`first_sseq` must be 1 or more and at most `last_sseq`",
            ));
        }
        let items = match object.remove("items") {
            Some(Value::Array(items)) if !items.is_empty() => items,
            _ => return Err(invalid("`items` must be a non-empty array")),
        };
        if items.len() > MAX_ITEMS {
            return Err(EnvelopeError::TooLarge(format!(
                "an envelope holds at most {MAX_ITEMS} items"
            )));
        }
        let actor_keys = match object.remove("actor_keys") {
            None => BTreeMap::new(),
            Some(keys) => serde_json::from_value::<BTreeMap<String, Vec<String>>>(keys)
                .map_err(|_| invalid("`actor_keys` maps actors to lists of did:keys"))?,
        };
        let ids = items
            .iter()
            .map(|item| item.get("id").and_then(Value::as_str).map(str::to_string))
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| invalid("every item needs an `id`"))?;
        let envelope_id = envelope_id(queue_id, &source_epoch, &ids);
        Ok(Envelope {
            queue_id: queue_id.to_string(),
            queue,
            source_epoch,
            first_sseq,
            last_sseq,
            ids,
            items,
            actor_keys,
            envelope_id,
            bytes: Vec::new(),
        })
    }
}

/// sha256 hex of the canonical `{encoding, ids, queue_id, source_epoch}`.
pub fn envelope_id(queue_id: &str, source_epoch: &str, ids: &[String]) -> String {
    let value = json!({"encoding": "plain", "ids": ids, "queue_id": queue_id, "source_epoch": source_epoch});
    sha256_hex(canonical_string(&value).as_bytes())
}

/// Signs an envelope of `items` for `queue` with the source's `key` (whose id is `key_id`),
/// vouching for their typed actors' keys (`actor_keys`, left out when empty): what a source
/// deposits.
pub fn sign(
    key: &Keypair,
    key_id: &str,
    queue: &Queue,
    source_epoch: &str,
    (first_sseq, last_sseq): (i64, i64),
    items: Vec<Value>,
    actor_keys: &BTreeMap<String, Vec<String>>,
) -> Value {
    let mut object = Map::new();
    object.insert("object".into(), json!("relay_envelope"));
    object.insert("queue_id".into(), json!(queue.id()));
    object.insert("source_epoch".into(), json!(source_epoch));
    object.insert("first_sseq".into(), json!(first_sseq));
    object.insert("last_sseq".into(), json!(last_sseq));
    object.insert("queue".into(), json!(queue));
    object.insert("encoding".into(), json!("plain"));
    object.insert("items".into(), Value::Array(items));
    if !actor_keys.is_empty() {
        object.insert("actor_keys".into(), json!(actor_keys));
    }
    let canonical = canonical_string(&Value::Object(object.clone()));
    let value = key.sign_hex(canonical.as_bytes());
    object.insert(
        "sig".into(),
        json!({"alg": "Ed25519", "key_id": key_id, "value": value}),
    );
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(source: &Keypair) -> Queue {
        Queue {
            source_did: source.did_key(),
            dest_did: "did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH".into(),
            pair_id: "fed_1".into(),
            generation: 1,
            thread: "th_inbox".into(),
            target_namespace: "default".into(),
        }
    }

    fn items() -> Vec<Value> {
        vec![
            json!({"id": "a1", "record": {"body": {"n": 1}}}),
            json!({"id": "a2", "redacted": true, "record": {}}),
        ]
    }

    fn deposit(source: &Keypair, queue: &Queue) -> Vec<u8> {
        let key_id = format!("{}#key-1", source.did_key());
        sign(
            source,
            &key_id,
            queue,
            "00aa",
            (10, 11),
            items(),
            &BTreeMap::new(),
        )
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_signed_envelope_checks_and_names_itself_by_its_ids() {
        let source = Keypair::generate();
        let queue = queue(&source);
        let id = queue.id();
        assert!(id.starts_with("rq_") && id.len() == 35);
        let checked = Envelope::check(deposit(&source, &queue), &id, &source.did_key()).unwrap();
        assert_eq!(checked.ids, ["a1", "a2"]);
        assert_eq!((checked.first_sseq, checked.last_sseq), (10, 11));
        assert_eq!(checked.envelope_id, envelope_id(&id, "00aa", &checked.ids));
    }

    #[test]
    fn the_sources_vouches_for_typed_actors_are_covered_by_its_signature() {
        let source = Keypair::generate();
        let queue = queue(&source);
        let id = queue.id();
        let key_id = format!("{}#key-1", source.did_key());
        let vouches = BTreeMap::from([("did:sync:user:alice".to_string(), vec![source.did_key()])]);
        let signed = sign(&source, &key_id, &queue, "00aa", (1, 2), items(), &vouches);
        let checked =
            Envelope::check(signed.to_string().into_bytes(), &id, &source.did_key()).unwrap();
        assert_eq!(checked.actor_keys, vouches);
        let mut widened = signed;
        widened["actor_keys"]["did:sync:user:alice"] = json!([Keypair::generate().did_key()]);
        assert!(matches!(
            Envelope::check(widened.to_string().into_bytes(), &id, &source.did_key()),
            Err(EnvelopeError::Signature)
        ));
    }

    #[test]
    fn forged_altered_and_moved_envelopes_are_refused() {
        let source = Keypair::generate();
        let queue = queue(&source);
        let id = queue.id();
        let bytes = deposit(&source, &queue);

        let stranger = Keypair::generate().did_key();
        assert!(matches!(
            Envelope::check(bytes.clone(), &id, &stranger),
            Err(EnvelopeError::Signature)
        ));
        let altered = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("\"n\":1", "\"n\":2");
        assert!(matches!(
            Envelope::check(altered.into_bytes(), &id, &source.did_key()),
            Err(EnvelopeError::Signature)
        ));
        let elsewhere = Queue {
            thread: "th_other".into(),
            ..queue.clone()
        };
        assert!(matches!(
            Envelope::check(bytes, &elsewhere.id(), &source.did_key()),
            Err(EnvelopeError::Invalid(_))
        ));
        let empty = sign(
            &source,
            "k",
            &queue,
            "00aa",
            (1, 1),
            Vec::new(),
            &BTreeMap::new(),
        )
        .to_string();
        assert!(matches!(
            Envelope::check(empty.into_bytes(), &id, &source.did_key()),
            Err(EnvelopeError::Invalid(_))
        ));
        let backwards = sign(
            &source,
            "k",
            &queue,
            "00aa",
            (5, 4),
            items(),
            &BTreeMap::new(),
        )
        .to_string();
        assert!(matches!(
            Envelope::check(backwards.into_bytes(), &id, &source.did_key()),
            Err(EnvelopeError::Invalid(_))
        ));
        let many: Vec<Value> = (0..=MAX_ITEMS)
            .map(|i| json!({"id": i.to_string()}))
            .collect();
        let many = sign(
            &source,
            "k",
            &queue,
            "00aa",
            (1, 2000),
            many,
            &BTreeMap::new(),
        )
        .to_string();
        assert!(matches!(
            Envelope::check(many.into_bytes(), &id, &source.did_key()),
            Err(EnvelopeError::TooLarge(_))
        ));
    }
}
