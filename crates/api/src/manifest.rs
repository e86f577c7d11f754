//! `GET /.well-known/syncropel`: the tenant's signed federation manifest
//! (federation-protocol.md §2.1).
//!
//! The signature covers the canonical JSON of the manifest without `signature.signature`, so a
//! verifier checks the document as it was received; these types are for building and reading it.

use serde::{Deserialize, Serialize};

/// The answer of `GET /.well-known/syncropel`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WellKnown {
    pub capabilities_manifest: Capabilities,
    pub federation_manifest: FederationManifest,
}

/// What this steward can do (`GET /v1/capabilities`, and `capabilities_manifest` in
/// `/.well-known/syncropel`): each flag says whether the feature is served here now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "capabilities_manifest", default)]
pub struct Capabilities {
    /// The capability manifest's version the SDK pins (`MANIFEST_VERSION`).
    pub manifest_version: String,
    pub kernel_version: String,
    /// `local` (`spl serve`) or `hosted`.
    pub tier: String,
    pub capabilities: CapabilityFlags,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CapabilityFlags {
    pub records: bool,
    pub batch: bool,
    pub rich_query: bool,
    pub search: bool,
    pub watch: bool,
    pub namespaces: bool,
    pub membership: bool,
    pub secrets: bool,
    pub config_records: bool,
    pub federation: bool,
    /// Changes feed modes served: `normal`, `longpoll`, `continuous`.
    pub sync_feeds: Vec<String>,
    pub sync_push: bool,
    pub thread_rules: bool,
    pub consent: bool,
    pub relay: bool,
    pub portability: bool,
    pub data_plane: bool,
    pub mls: bool,
}

/// Who the steward is, where its federation endpoints are and how it takes pair requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "federation_manifest", default)]
pub struct FederationManifest {
    pub manifest_version: String,
    pub daemon: ManifestDaemon,
    pub federation: ManifestFederation,
    pub advertises: Advertises,
    pub consent_policy: ConsentPolicy,
    pub capabilities_ref: ManifestRef,
    pub responders_ref: ManifestRef,
    pub directory: ManifestDirectory,
    pub signature: ManifestSignature,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManifestDaemon {
    pub did: String,
    pub version: String,
    pub federation_protocol_version: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManifestFederation {
    pub enabled: bool,
    pub pair_endpoint: String,
    pub sync_change_endpoint: String,
    pub sync_record_endpoint: String,
    pub handshake_endpoint: String,
    pub relays: Vec<String>,
    /// Peers turn to `relays` at the first failed pull (federation-protocol.md §7.2); absent
    /// from manifests without relays, and a served manifest must keep exactly the members
    /// signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline_capable: Option<bool>,
    /// Where the steward lives now, once its new home fenced it (federation-protocol.md §8.5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Advertises {
    pub kinds: Vec<String>,
    pub refs: Vec<String>,
    pub namespaces: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsentPolicy {
    pub default_posture: String,
    pub accepts_pair_requests: bool,
    pub requires_did_method: Vec<String>,
    pub rejects_did_method: Vec<String>,
}

/// Where a further document is: `url`, and the member of it to read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManifestRef {
    pub url: String,
    pub key: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManifestDirectory {
    pub registered_at: Vec<String>,
    pub directory_registration_id: Option<String>,
}

/// Ed25519 over the covered form; `signature` (base64) is absent from the covered form itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManifestSignature {
    pub alg: String,
    pub key_id: String,
    /// RFC 3339.
    pub signed_at: String,
    /// RFC 3339.
    pub expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// A manifest as the steward signs it (`manifest::sign`).
    pub(crate) fn signed() -> Value {
        let origin = "https://acme.example.com";
        json!({
            "object": "federation_manifest",
            "manifest_version": "1",
            "daemon": {"did": "did:key:z6Mk1", "version": "0.1.0", "federation_protocol_version": "0.13"},
            "federation": {
                "enabled": true,
                "pair_endpoint": format!("{origin}/v1/sync"),
                "sync_change_endpoint": format!("{origin}/v1/sync/changes"),
                "sync_record_endpoint": format!("{origin}/v1/sync/records"),
                "handshake_endpoint": format!("{origin}/v1/federation/pair"),
                "relays": [],
            },
            "advertises": {"kinds": [], "refs": [], "namespaces": []},
            "consent_policy": {"default_posture": "pair-then-ask", "accepts_pair_requests": true,
                               "requires_did_method": [], "rejects_did_method": []},
            "capabilities_ref": {"url": format!("{origin}/.well-known/syncropel"), "key": "capabilities_manifest"},
            "responders_ref": {"url": format!("{origin}/.well-known/syncropel"), "key": "responders_manifest"},
            "directory": {"registered_at": [], "directory_registration_id": null},
            "signature": {"alg": "Ed25519", "key_id": "did:key:z6Mk1#z6Mk1",
                          "signed_at": "2026-12-01T00:00:00Z", "expires_at": "2026-12-08T00:00:00Z",
                          "signature": "c2ln"},
        })
    }

    #[test]
    fn a_signed_manifest_round_trips_member_for_member() {
        let capabilities = Capabilities {
            manifest_version: "2".into(),
            tier: "local".into(),
            ..Capabilities::default()
        };
        let document = json!({
            "capabilities_manifest": serde_json::to_value(capabilities).unwrap(),
            "federation_manifest": signed(),
        });
        let typed: WellKnown = serde_json::from_value(document.clone()).unwrap();
        assert_eq!(typed.federation_manifest.daemon.did, "did:key:z6Mk1");
        assert_eq!(serde_json::to_value(&typed).unwrap(), document);
    }
}
