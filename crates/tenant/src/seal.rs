//! Turning a validated envelope into a signed record ready for the store (protocol.md §8.2, §9).

use serde::Serialize;
use serde_json::{Map, Value};
use syncropel_protocol::sync::Redaction;
use syncropel_protocol::{record_id, unix_now, Act, DataType, Envelope, Keypair};
use syncropel_store::NewRecord;

use crate::Identity;

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
    /// Set on a consent stub from a peer (federation-protocol.md §6.3), with the digests it came
    /// with.
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
    stored_form_at(envelope, id, sig, signer, redaction, unix_now())
}

/// [`stored_form`] stored under `namespace`, whatever the body names: a peer's record pulled
/// into the namespace a pair maps it to (federation-protocol.md §6.2). The body, and so the id
/// and signature, stay as signed.
pub fn stored_form_in(
    envelope: &Envelope,
    id: &str,
    sig: Option<&str>,
    signer: Option<&str>,
    redaction: Option<&Redaction>,
    namespace: &str,
) -> NewRecord {
    render(envelope, id, sig, signer, redaction, unix_now(), namespace)
}

/// [`stored_form`] as stored at `created_at`: a record moved between stewards keeps the time
/// its first store took it.
pub fn stored_form_at(
    envelope: &Envelope,
    id: &str,
    sig: Option<&str>,
    signer: Option<&str>,
    redaction: Option<&Redaction>,
    created_at: i64,
) -> NewRecord {
    let namespace = envelope.namespace();
    render(envelope, id, sig, signer, redaction, created_at, namespace)
}

fn render(
    envelope: &Envelope,
    id: &str,
    sig: Option<&str>,
    signer: Option<&str>,
    redaction: Option<&Redaction>,
    created_at: i64,
    namespace: &str,
) -> NewRecord {
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
    #[allow(clippy::expect_used)] // Strings, integers and a map with string keys: cannot fail.
    let json = serde_json::to_string(&head).expect("a record always serializes");
    NewRecord {
        id: id.to_string(),
        thread: envelope.thread.clone(),
        actor: envelope.actor.clone(),
        clock: envelope.clock,
        act: envelope.act.as_str().to_string(),
        data_type: envelope.data_type.as_str().to_string(),
        namespace: namespace.to_string(),
        created_at,
        json,
    }
}

/// A record the steward writes on its own account (an audit or registry record), signed by
/// `identity`.
pub fn sealed_own(
    identity: &Identity,
    act: Act,
    thread: &str,
    body: Map<String, Value>,
) -> NewRecord {
    let envelope = server_record(act, thread, &identity.did, identity.clock.next(), body);
    seal(&envelope, &identity.key, &identity.signer)
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_record_stored_in_another_namespace_keeps_its_body_and_id() {
        let mut body = Map::new();
        body.insert("namespace".into(), json!("my-team"));
        let envelope = server_record(Act::Know, "th_x", "did:sync:user:bob", 1, body);
        let id = record_id(&envelope.canonical_json());
        let own = stored_form(&envelope, &id, Some("sig"), Some("did:key:z"), None);
        let mapped = stored_form_in(
            &envelope,
            &id,
            Some("sig"),
            Some("did:key:z"),
            None,
            "research",
        );
        assert_eq!(own.namespace, "my-team");
        assert_eq!(mapped.namespace, "research");
        assert_eq!(mapped.id, own.id);
        let stored: Value = serde_json::from_str(&mapped.json).unwrap();
        assert_eq!(stored["namespace"], "research");
        assert_eq!(stored["body"]["namespace"], "my-team");
        assert_eq!(stored["sig"], "sig");
    }
}
