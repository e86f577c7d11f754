//! The signed federation manifest served at `/.well-known/syncropel` (federation-protocol.md §2.1).
//!
//! Signed in "covered form": the canonical JSON of the manifest with only `signature.signature`
//! removed, so `alg`, `key_id`, `signed_at` and `expires_at` are all covered by the signature.
//! Verifiers also take upstream's form (the whole `signature` member removed), whose `expires_at`
//! is unsigned: [`Verifier`] then caps its freshness at 7 days after first sight.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{json, Value};
use syncropel_protocol::{canonical_string, verify_signature, Keypair};

use crate::FederationConfig;

/// How long a manifest is valid after it is signed.
pub const MANIFEST_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// A steward signs its manifest again once it is this old.
pub const RESIGN_AFTER: Duration = Duration::from_secs(24 * 3600);
pub const FEDERATION_PROTOCOL_VERSION: &str = "0.13";
/// The steward's version, as the manifest announces it.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Builds and signs the manifest of the steward at `origin` (`https://acme.example.com`, no
/// trailing slash) whose identity is `did`, signed by `key`.
pub fn sign(key: &Keypair, did: &str, origin: &str, now: SystemTime) -> Value {
    sign_announcing(key, did, origin, now, &FederationConfig::default())
}

/// [`sign`], announcing what `config` sets: the steward's relays (federation-protocol.md §7.2:
/// `federation.relays` in order, and `federation.offline_capable` when peers should turn to them
/// at the first failure) and its pairing policy (§2.1 `consent_policy`, `advertises.kinds`).
pub fn sign_announcing(
    key: &Keypair,
    did: &str,
    origin: &str,
    now: SystemTime,
    config: &FederationConfig,
) -> Value {
    let (relays, offline_capable) = (&config.relay.urls, config.relay.offline_capable);
    let policy = &config.pairing;
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
        "advertises": {"kinds": policy.advertised_kinds, "refs": [], "namespaces": []},
        "consent_policy": {
            "default_posture": if policy.refuse_requests { "closed" } else { "pair-then-ask" },
            "accepts_pair_requests": !policy.refuse_requests,
            "requires_did_method": policy.requires_did_method,
            "rejects_did_method": policy.rejects_did_method,
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
    #[error("the manifest has expired")]
    Expired,
    #[error(
        "the manifest is signed in upstream form (its expiry unsigned) and was first seen more \
         than 7 days ago"
    )]
    StaleUpstream,
}

/// The DID a manifest speaks for (`daemon.did`).
pub fn daemon_did(manifest: &Value) -> Option<&str> {
    manifest["daemon"]["did"].as_str()
}

/// What a manifest's signature covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Ours: everything but `signature.signature`, `expires_at` included.
    Covered,
    /// Upstream's: everything but the `signature` member, so `expires_at` is not signed.
    Upstream,
}

/// Verifies a manifest's signature, in covered form, else in upstream form; answers the form
/// that verified. A did:key steward signs with its own key; a did:sync or did:web steward with
/// one of the keys its document names, which the caller resolved and passes as `document_keys`
/// (did:keys). Freshness is [`Verifier::check`]'s.
pub fn verify(manifest: &Value, document_keys: &[String]) -> Result<Form, ManifestError> {
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
    let mut upstream = manifest.clone();
    if let Some(object) = upstream.as_object_mut() {
        object.remove("signature");
    }
    let forms = [
        (Form::Covered, canonical_string(&covered)),
        (Form::Upstream, canonical_string(&upstream)),
    ];
    let own = [did.to_string()];
    let keys = if did.starts_with("did:key:") {
        &own[..]
    } else {
        document_keys
    };
    let signature = hex::encode(&raw);
    let mut last = String::from("no key of the DID document to check it with");
    for (form, signed) in &forms {
        for key in keys {
            match verify_signature(key, signed.as_bytes(), &signature) {
                Ok(()) => return Ok(*form),
                Err(e) => last = e.to_string(),
            }
        }
    }
    Err(ManifestError::BadSignature(last))
}

/// How far past its `expires_at` a manifest is still taken (clocks disagree).
pub const EXPIRY_SKEW: Duration = Duration::from_secs(5 * 60);
/// How long after first sight an upstream-form signature is taken: its `expires_at` is not
/// signed, so anyone could have moved it.
pub const UPSTREAM_FRESH_FOR: Duration = Duration::from_secs(7 * 24 * 3600);
/// Upstream-form signatures remembered at most; past that the one seen longest ago is forgotten.
const MAX_SIGHTINGS: usize = 10_000;

/// Verifies manifests and checks their freshness, remembering in memory when it first saw each
/// upstream-form signature (a restart, or a one-shot CLI, starts counting afresh).
#[derive(Debug, Default)]
pub struct Verifier {
    first_seen: Mutex<HashMap<String, SystemTime>>,
}

impl Verifier {
    /// [`verify`], then, when `strict`, freshness at `now`: not past `expires_at` by more than
    /// [`EXPIRY_SKEW`], and an upstream-form signature first seen at most [`UPSTREAM_FRESH_FOR`]
    /// ago. Without `strict` (`--no-strict`) only freshness is waived, never the signature.
    pub fn check(
        &self,
        manifest: &Value,
        document_keys: &[String],
        now: SystemTime,
        strict: bool,
    ) -> Result<Form, ManifestError> {
        let form = verify(manifest, document_keys)?;
        if form == Form::Upstream {
            let signature = manifest["signature"]["signature"].as_str().unwrap_or("");
            let first = self.first_sight(signature, now);
            if strict && now > first + UPSTREAM_FRESH_FOR {
                return Err(ManifestError::StaleUpstream);
            }
        }
        if strict && expires_before(manifest, now - EXPIRY_SKEW) {
            return Err(ManifestError::Expired);
        }
        Ok(form)
    }

    /// When `signature` was first seen, noting `now` if never.
    fn first_sight(&self, signature: &str, now: SystemTime) -> SystemTime {
        let mut seen = self.first_seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(first) = seen.get(signature) {
            return *first;
        }
        if seen.len() >= MAX_SIGHTINGS {
            let oldest = seen
                .iter()
                .min_by_key(|(_, first)| **first)
                .map(|(s, _)| s.clone());
            if let Some(oldest) = oldest {
                seen.remove(&oldest);
            }
        }
        seen.insert(signature.to_string(), now);
        now
    }
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

    /// `manifest` signed as upstream signs: everything but the `signature` member.
    fn sign_upstream(mut manifest: Value, key: &Keypair) -> Value {
        let mut signed = manifest.clone();
        signed.as_object_mut().unwrap().remove("signature");
        let signature = key.sign(canonical_string(&signed).as_bytes());
        manifest["signature"]["signature"] =
            json!(base64::engine::general_purpose::STANDARD.encode(signature));
        manifest
    }

    #[test]
    fn an_upstream_form_manifest_verifies_and_only_its_signature_block_is_unsigned() {
        let key = Keypair::generate();
        let did = key.did_key();
        let covered = sign(&key, &did, "https://acme.example.com", SystemTime::now());
        assert_eq!(verify(&covered, &[]).unwrap(), Form::Covered);
        let upstream = sign_upstream(covered.clone(), &key);
        assert_ne!(
            upstream["signature"]["signature"],
            covered["signature"]["signature"]
        );
        assert_eq!(verify(&upstream, &[]).unwrap(), Form::Upstream);

        for (path, value) in [
            (
                "/federation/sync_change_endpoint",
                json!("https://evil.example/v1/sync/changes"),
            ),
            ("/daemon/version", json!("9.9.9")),
            ("/advertises/kinds", json!(["music.catalog.track"])),
            ("/consent_policy/accepts_pair_requests", json!(false)),
        ] {
            let mut tampered = upstream.clone();
            *tampered.pointer_mut(path).unwrap() = value;
            assert!(
                matches!(verify(&tampered, &[]), Err(ManifestError::BadSignature(_))),
                "{path}"
            );
        }

        // `expires_at` is covered in our form, not in upstream's.
        let later = |mut manifest: Value| {
            manifest["signature"]["expires_at"] = json!("2099-01-01T00:00:00Z");
            manifest
        };
        assert!(verify(&later(covered), &[]).is_err());
        assert_eq!(verify(&later(upstream), &[]).unwrap(), Form::Upstream);
    }

    #[test]
    fn upstream_form_freshness_is_capped_at_seven_days_after_first_sight() {
        let key = Keypair::generate();
        let did = key.did_key();
        let now = SystemTime::now();
        let mut upstream = sign_upstream(sign(&key, &did, "https://acme.example.com", now), &key);
        // Unsigned in this form, so it promises nothing.
        upstream["signature"]["expires_at"] = json!("2099-01-01T00:00:00Z");
        let verifier = Verifier::default();
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(
            verifier.check(&upstream, &[], now, true).unwrap(),
            Form::Upstream
        );
        verifier.check(&upstream, &[], now + 6 * day, true).unwrap();
        assert!(matches!(
            verifier.check(&upstream, &[], now + 7 * day + Duration::from_secs(1), true),
            Err(ManifestError::StaleUpstream)
        ));
        // `--no-strict` waives freshness; another verifier first sees it now.
        verifier
            .check(&upstream, &[], now + 8 * day, false)
            .unwrap();
        Verifier::default()
            .check(&upstream, &[], now + 8 * day, true)
            .unwrap();

        // A covered-form manifest is as fresh as its own signed `expires_at` says.
        let covered = sign(&key, &did, "https://acme.example.com", now);
        verifier.check(&covered, &[], now + 6 * day, true).unwrap();
        assert!(matches!(
            verifier.check(&covered, &[], now + 8 * day, true),
            Err(ManifestError::Expired)
        ));
        verifier.check(&covered, &[], now + 8 * day, false).unwrap();
        // A signature that does not verify is never waived.
        let mut forged = covered;
        forged["federation"]["relays"] = json!(["https://elsewhere.example"]);
        assert!(matches!(
            verifier.check(&forged, &[], now, false),
            Err(ManifestError::BadSignature(_))
        ));
    }

    #[test]
    fn first_sightings_are_bounded_forgetting_the_oldest() {
        let verifier = Verifier::default();
        let start = SystemTime::now();
        let later = start + Duration::from_secs(60);
        verifier.first_sight("oldest", start);
        for n in 1..MAX_SIGHTINGS {
            verifier.first_sight(&n.to_string(), later);
        }
        assert_eq!(verifier.first_sight("oldest", later), start);
        verifier.first_sight("one more", later);
        assert_eq!(verifier.first_seen.lock().unwrap().len(), MAX_SIGHTINGS);
        assert_eq!(verifier.first_sight("1", start), later, "still known");
        assert_eq!(verifier.first_sight("oldest", later), later, "forgotten");
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
        let config = FederationConfig {
            relay: crate::RelayConfig {
                urls: relays.clone(),
                offline_capable: true,
                ..crate::RelayConfig::default()
            },
            ..FederationConfig::default()
        };
        let manifest = sign_announcing(&key, &did, "https://acme.example.com", now, &config);
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
