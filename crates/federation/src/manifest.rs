//! The signed federation manifest served at `/.well-known/syncropel` (federation-protocol.md §2.1).
//!
//! Signed in "covered form": the canonical JSON of the manifest with only `signature.signature`
//! removed, so `alg`, `key_id`, `signed_at` and `expires_at` are all covered by the signature.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{json, Value};
use syncropel_protocol::{canonical_string, verify_signature, Keypair};

/// How long a manifest is valid after it is signed.
pub const MANIFEST_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
pub const FEDERATION_PROTOCOL_VERSION: &str = "0.13";
/// The steward's version, as the manifest announces it.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Builds and signs the manifest of the steward at `origin` (`https://acme.example.com`, no
/// trailing slash) whose identity is `did`, signed by `key`.
pub fn sign(key: &Keypair, did: &str, origin: &str, now: SystemTime) -> Value {
    sign_with_relays(key, did, origin, now, &[], false)
}

/// [`sign`], naming the steward's relays (federation-protocol.md §7.2): `federation.relays` in
/// order, and `federation.offline_capable` when peers should turn to them at the first failure.
pub fn sign_with_relays(
    key: &Keypair,
    did: &str,
    origin: &str,
    now: SystemTime,
    relays: &[String],
    offline_capable: bool,
) -> Value {
    let rfc3339 = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let mut manifest = json!({
        "object": "federation_manifest",
        "manifest_version": "1",
        "daemon": {
            "did": did,
            "version": VERSION,
            "federation_protocol_version": FEDERATION_PROTOCOL_VERSION,
        },
        "federation": {
            "enabled": true,
            "pair_endpoint": format!("{origin}/v1/sync"),
            "sync_change_endpoint": format!("{origin}/v1/sync/changes"),
            "sync_record_endpoint": format!("{origin}/v1/sync/records"),
            "handshake_endpoint": format!("{origin}/v1/federation/pair"),
            "relays": relays,
        },
        "advertises": {"kinds": [], "refs": [], "namespaces": []},
        "consent_policy": {
            "default_posture": "pair-then-ask",
            "accepts_pair_requests": true,
            "requires_did_method": [],
            "rejects_did_method": [],
        },
        "capabilities_ref": {"url": format!("{origin}/.well-known/syncropel"), "key": "capabilities_manifest"},
        "responders_ref": {"url": format!("{origin}/.well-known/syncropel"), "key": "responders_manifest"},
        "directory": {"registered_at": [], "directory_registration_id": null},
        "signature": {
            "alg": "Ed25519",
            "key_id": key_id(did),
            "signed_at": rfc3339(now),
            "expires_at": rfc3339(now + MANIFEST_TTL),
        },
    });
    if !relays.is_empty() {
        manifest["federation"]["offline_capable"] = json!(offline_capable);
    }
    seal(manifest, key)
}

/// `manifest` naming the new home of its steward (`federation.moved_to`, federation-protocol.md
/// §8.5), signed again by `key`.
pub fn moved(mut manifest: Value, moved_to: &str, key: &Keypair) -> Value {
    manifest["federation"]["moved_to"] = json!(moved_to);
    if let Some(signature) = manifest["signature"].as_object_mut() {
        signature.remove("signature");
    }
    seal(manifest, key)
}

/// Signs the covered form (everything but `signature.signature`) and adds the signature.
fn seal(mut manifest: Value, key: &Keypair) -> Value {
    let covered = canonical_string(&manifest);
    let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(covered.as_bytes()));
    manifest["signature"]["signature"] = json!(signature);
    manifest
}

/// The verification method of a did:key: `did:key:z…#z…`.
fn key_id(did: &str) -> String {
    match did.strip_prefix("did:key:") {
        Some(fragment) => format!("{did}#{fragment}"),
        None => format!("{did}#key-1"),
    }
}

/// Whether a manifest expires before `at`.
pub fn expires_before(manifest: &Value, at: SystemTime) -> bool {
    manifest["signature"]["expires_at"]
        .as_str()
        .and_then(|s| humantime::parse_rfc3339(s).ok())
        .is_none_or(|expires| expires < at)
}

/// Errors of [`verify`].
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest has no {0}")]
    Missing(&'static str),
    #[error("the manifest is signed by {key_id}, which is not a key of {did}")]
    ForeignKey { key_id: String, did: String },
    #[error("the manifest's signature does not verify: {0}")]
    BadSignature(String),
}

/// The DID a manifest speaks for (`daemon.did`).
pub fn daemon_did(manifest: &Value) -> Option<&str> {
    manifest["daemon"]["did"].as_str()
}

/// Verifies a manifest in covered form. A did:key steward signs with its own key; a did:sync or
/// did:web steward with one of the keys its document names, which the caller resolved and passes
/// as `document_keys` (did:keys).
pub fn verify(manifest: &Value, document_keys: &[String]) -> Result<(), ManifestError> {
    let did = daemon_did(manifest).ok_or(ManifestError::Missing("daemon.did"))?;
    let key_id = manifest["signature"]["key_id"]
        .as_str()
        .ok_or(ManifestError::Missing("signature.key_id"))?;
    let signature = manifest["signature"]["signature"]
        .as_str()
        .ok_or(ManifestError::Missing("signature.signature"))?;
    if key_id.split('#').next() != Some(did) {
        return Err(ManifestError::ForeignKey {
            key_id: key_id.to_string(),
            did: did.to_string(),
        });
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|e| ManifestError::BadSignature(e.to_string()))?;
    let mut covered = manifest.clone();
    if let Some(sig) = covered["signature"].as_object_mut() {
        sig.remove("signature");
    }
    let covered = canonical_string(&covered);
    let own = [did.to_string()];
    let keys = if did.starts_with("did:key:") {
        &own[..]
    } else {
        document_keys
    };
    let mut last = String::from("no key of the DID document to check it with");
    for key in keys {
        match verify_signature(key, covered.as_bytes(), &hex::encode(&raw)) {
            Ok(()) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(ManifestError::BadSignature(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_manifest_verifies_and_any_covered_change_breaks_it() {
        let key = Keypair::generate();
        let did = key.did_key();
        let manifest = sign(&key, &did, "https://acme.example.com", SystemTime::now());
        verify(&manifest, &[]).unwrap();
        assert!(!expires_before(&manifest, SystemTime::now()));
        assert!(expires_before(
            &manifest,
            SystemTime::now() + MANIFEST_TTL + Duration::from_secs(60)
        ));

        let forwarding = moved(manifest.clone(), "https://new.example", &key);
        verify(&forwarding, &[]).unwrap();
        assert_eq!(forwarding["federation"]["moved_to"], "https://new.example");

        let mut later = manifest.clone();
        later["signature"]["expires_at"] = json!("2099-01-01T00:00:00Z");
        assert!(matches!(
            verify(&later, &[]),
            Err(ManifestError::BadSignature(_))
        ));

        let mut moved = manifest.clone();
        moved["federation"]["sync_change_endpoint"] = json!("https://evil.example/v1/sync/changes");
        assert!(verify(&moved, &[]).is_err());

        let other = Keypair::generate();
        let mut foreign = manifest;
        foreign["daemon"]["did"] = json!(other.did_key());
        assert!(matches!(
            verify(&foreign, &[]),
            Err(ManifestError::ForeignKey { .. })
        ));
    }

    #[test]
    fn relays_are_named_in_order_and_covered_and_absent_without_them() {
        let key = Keypair::generate();
        let did = key.did_key();
        let relays = vec![
            "https://r1.example".to_string(),
            "https://r2.example".into(),
        ];
        let now = SystemTime::now();
        let manifest = sign_with_relays(&key, &did, "https://acme.example.com", now, &relays, true);
        verify(&manifest, &[]).unwrap();
        let named = crate::relay::PeerRelays::of_manifest(&manifest);
        assert_eq!(named.relays, relays);
        assert!(named.offline_capable);
        let mut moved = manifest.clone();
        moved["federation"]["relays"] = json!(["https://elsewhere.example"]);
        assert!(verify(&moved, &[]).is_err());
        // Without relays the manifest is as it always was: no `offline_capable` member.
        let plain = sign(&key, &did, "https://acme.example.com", now);
        assert!(plain["federation"].get("offline_capable").is_none());
    }

    #[test]
    fn a_document_did_manifest_verifies_only_with_a_key_of_its_document() {
        let (key, stranger) = (Keypair::generate(), Keypair::generate());
        let did = "did:sync:abcdefghijklmnopqrstuvwx";
        let manifest = sign(&key, did, "https://acme.example.com", SystemTime::now());
        verify(&manifest, &[stranger.did_key(), key.did_key()]).unwrap();
        assert!(verify(&manifest, &[stranger.did_key()]).is_err());
        assert!(verify(&manifest, &[]).is_err());
    }
}
