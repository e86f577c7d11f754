//! The tenant's identity (federation-protocol.md §1): `GET /v1/identity`, `POST
//! /v1/identity/upgrade`, and the did:web document served at `/.well-known/did.json` or
//! `/<path>/did.json`.

use serde::{Deserialize, Serialize};

/// `GET /v1/identity`: the DID the tenant is known by, the key that signs, the keys peers accept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "identity", default)]
pub struct Identity {
    pub did: String,
    /// `key`, `web` or `sync`.
    pub method: String,
    /// The did:key of the signing key.
    pub signer: String,
    /// The did:key of every key that signs for `did`, current first.
    pub keys: Vec<String>,
    pub did_web: Option<String>,
}

/// `POST /v1/identity/upgrade` (hosted): registers the tenant's did:sync; the body may be empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpgradeIdentity {
    /// An Ed25519 did:key that may rotate the did:sync later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_key: Option<String>,
}

/// The answer to an upgrade: the did:sync the tenant is known by from now on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "identity", default)]
pub struct IdentityUpgraded {
    pub did: String,
    /// `sync`.
    pub method: String,
}

/// A DID document (W3C DID core) as a steward serves it for its did:web.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DidDocument {
    #[serde(rename = "@context")]
    pub context: Vec<String>,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub also_known_as: Option<Vec<String>>,
    pub verification_method: Vec<VerificationMethod>,
    pub authentication: Vec<String>,
    pub assertion_method: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Vec<DidService>>,
}

/// One key of a DID document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct VerificationMethod {
    pub id: String,
    #[serde(rename = "type")]
    pub method_type: String,
    pub controller: String,
    pub public_key_multibase: String,
}

/// A service of a DID document (`syncropel`: where the steward answers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DidService {
    pub id: String,
    #[serde(rename = "type")]
    pub service_type: String,
    pub service_endpoint: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_did_web_document_round_trips_as_the_protocol_builds_it() {
        let keys = vec![("key-1".to_owned(), "z6MkOne".to_owned())];
        for (endpoint, aka) in [
            (None, vec![]),
            (
                Some("https://acme.example"),
                vec!["did:key:z6MkOne".to_owned()],
            ),
        ] {
            let built = syncropel_protocol::did_doc::did_web_document(
                "did:web:acme.example",
                &keys,
                &["key-1".to_owned()],
                endpoint,
                &aka,
            );
            let typed: DidDocument = serde_json::from_value(built.clone()).unwrap();
            assert_eq!(serde_json::to_value(&typed).unwrap(), built);
        }
    }

    #[test]
    fn identities_write_what_the_steward_sends() {
        let identity = Identity {
            did: "did:key:z6Mk1".into(),
            method: "key".into(),
            signer: "did:key:z6Mk1".into(),
            keys: vec!["did:key:z6Mk1".into()],
            did_web: None,
        };
        assert_eq!(
            serde_json::to_value(&identity).unwrap(),
            json!({"object": "identity", "did": "did:key:z6Mk1", "method": "key",
                   "signer": "did:key:z6Mk1", "keys": ["did:key:z6Mk1"], "did_web": null})
        );
    }
}
