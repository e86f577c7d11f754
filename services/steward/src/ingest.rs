//! Turning a validated envelope into a signed record ready for the store (PROTOCOL §8.2, §9).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};
use syncropel_protocol::sync::Redaction;
use syncropel_protocol::{record_id, Act, DataType, Envelope, Keypair};
use syncropel_store::NewRecord;

use crate::unix_now;

/// The record as the API serves it, minus `sequence`, which the store assigns and splices in.
#[derive(Serialize)]
struct RecordHead<'a> {
    object: &'static str,
    id: &'a str,
    act: &'static str,
    actor: &'a str,
    body: &'a Map<String, Value>,
    clock: i64,
    data_type: &'static str,
    parents: &'a [String],
    thread: &'a str,
    judged_by: Option<&'a str>,
    namespace: &'a str,
    created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sig: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signer: Option<&'a str>,
    /// Set on a consent stub from a peer (FEDERATION §6.3), with the digests it came with.
    #[serde(skip_serializing_if = "Option::is_none")]
    redacted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consent_grant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash_levels: Option<&'a Map<String, Value>>,
}

/// Signs `envelope` with `key` and renders the stored form. The signed bytes are the 7-field
/// canonical JSON, the same bytes the id is the hash of.
pub fn seal(envelope: &Envelope, key: &Keypair, signer_did: &str) -> NewRecord {
    let canonical = envelope.canonical_json();
    let id = record_id(&canonical);
    let sig = key.sign_hex(canonical.as_bytes());
    stored_form(envelope, &id, Some(&sig), Some(signer_did), None)
}

/// The stored form of a record: ours just signed, or a peer's as it arrived, verified (its own
/// `sig` and `signer`), or a peer's consent stub (no signature; `redaction`).
pub fn stored_form(
    envelope: &Envelope,
    id: &str,
    sig: Option<&str>,
    signer: Option<&str>,
    redaction: Option<&Redaction>,
) -> NewRecord {
    let created_at = unix_now();
    let namespace = envelope.namespace();
    let head = RecordHead {
        object: "record",
        id,
        act: envelope.act.as_str(),
        actor: &envelope.actor,
        body: &envelope.body,
        clock: envelope.clock,
        data_type: envelope.data_type.as_str(),
        parents: &envelope.parents,
        thread: &envelope.thread,
        judged_by: envelope.judged_by.as_deref(),
        namespace,
        created_at,
        sig,
        signer,
        redacted: redaction.map(|_| true),
        consent_grant: redaction.and_then(|r| r.consent_grant.as_deref()),
        hash_levels: redaction.map(|r| &r.hash_levels),
    };
    let json = serde_json::to_string(&head).expect("a record always serializes");
    // A stub's levels are the digests it came with; the body we hold is not the one hashed.
    let hash_levels = match redaction {
        None => {
            let levels = envelope.hash_levels();
            [levels.l0, levels.l1, levels.l2, levels.l3]
        }
        Some(r) => {
            let level = |name: &str| {
                r.hash_levels
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            [String::new(), level("l1"), level("l2"), level("l3")]
        }
    };
    NewRecord {
        id: id.to_string(),
        thread: envelope.thread.clone(),
        actor: envelope.actor.clone(),
        clock: envelope.clock,
        act: envelope.act.as_str().to_string(),
        data_type: envelope.data_type.as_str().to_string(),
        namespace: namespace.to_string(),
        created_at,
        hash_levels,
        json,
    }
}

/// The identity a steward signs with, and the clock of the records it writes itself.
#[derive(Clone)]
pub struct Identity {
    pub key: Arc<Keypair>,
    /// The DID this steward (or hosted tenant) is known by: the key's did:key, or a did:sync or
    /// did:web whose document names the key.
    pub did: Arc<str>,
    /// The did:key of `key`: the `signer` of every record it seals and the key id of every
    /// object it signs, which peers check against `did`'s document (FEDERATION §1.1).
    pub signer: Arc<str>,
    /// The did:key of every key that has signed for `did` and was not withdrawn, current first.
    pub keys: Arc<[String]>,
    /// The did:web document this identity answers for, if any (FEDERATION §1.3).
    pub did_web: Option<Arc<DidWeb>>,
    pub clock: Arc<ServerClock>,
}

/// What a steward serves at `/.well-known/did.json` (or the path form) for a did:web it holds:
/// its own identity, or a hosted tenant's secondary did:web.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DidWeb {
    pub did: String,
    /// `(fragment, multibase)` of every key that ever signed for the DID and was not withdrawn,
    /// current first: old records keep verifying after a rotation.
    pub keys: Vec<(String, String)>,
    /// Fragments of the keys in force.
    pub current: Vec<String>,
    pub also_known_as: Vec<String>,
    /// The published `syncropel` service; the steward's own URL when unset.
    pub endpoint: Option<String>,
}

impl Identity {
    /// An identity known by its key's did:key.
    pub fn new(key: Keypair) -> Identity {
        let did = key.did_key();
        Identity::published(key, did, Vec::new(), None)
    }

    /// An identity known by `did`, a DID whose document names `key` and, from before rotations,
    /// the `retired` keys (did:keys).
    pub fn published(
        key: Keypair,
        did: String,
        retired: Vec<String>,
        did_web: Option<DidWeb>,
    ) -> Identity {
        let signer = key.did_key();
        let mut keys = vec![signer.clone()];
        keys.extend(retired.into_iter().filter(|k| *k != signer));
        Identity {
            key: Arc::new(key),
            did: did.into(),
            signer: signer.into(),
            keys: keys.into(),
            did_web: did_web.map(Arc::new),
            clock: Arc::new(ServerClock::default()),
        }
    }
}

/// Clocks for records the steward writes itself (audit trails): wall-clock milliseconds, bumped so
/// that two records in the same millisecond never collide on `(thread, actor, clock)`.
#[derive(Default)]
pub struct ServerClock(AtomicI64);

impl ServerClock {
    pub fn next(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut last = self.0.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self
                .0
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }
}

/// A record the steward writes on its own account (actor = its DID).
pub fn server_record(
    act: Act,
    thread: &str,
    actor: &str,
    clock: i64,
    body: Map<String, Value>,
) -> Envelope {
    Envelope {
        act,
        actor: actor.to_string(),
        body,
        clock,
        data_type: DataType::Scalar,
        parents: Vec::new(),
        thread: thread.to_string(),
        judged_by: None,
    }
}
