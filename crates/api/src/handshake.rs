//! The pairing handshake between stewards (federation-protocol.md §4): init, poll and confirm,
//! authenticated by identity-key signatures and a single-use nonce; and the two signed notices of a
//! live pair, revoke and token refresh (federation-protocol.md §4.6, §4.8).
//!
//! Signed messages carry `sig` over the canonical JSON of the other members
//! (`syncropel_protocol::signed`): serialize without `sig`, sign, and verify the object as
//! received.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use syncropel_protocol::NamespaceMap;

use crate::manifest::FederationManifest;

/// The `sig` member of a signed message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectSignature {
    /// `Ed25519`.
    pub alg: String,
    /// `<did:key>#key-1`.
    pub key_id: String,
    /// Unpadded base64url.
    pub value: String,
}

/// `POST /v1/federation/pair` (or `/init`): the initiator asks to pair.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PairInit {
    pub actor_did: String,
    /// Where the initiator answers; its manifest there must name `actor_did`.
    pub peer_url: String,
    pub labels: Vec<String>,
    /// The namespaces to share under their own names (none: `default`).
    pub namespace: Vec<String>,
    /// 32 random bytes as 64 hex characters.
    pub nonce: String,
    /// Within 60 s of the responder's clock.
    pub issued_at_ms: i64,
    pub responder_did: String,
    pub responder_manifest_sha256: String,
    pub maps: Vec<NamespaceMap>,
    /// `polling`.
    pub mode: String,
    /// Reserved for MLS; `null`.
    pub mls: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sig: Option<ObjectSignature>,
}

/// `POST /v1/federation/pair/poll`: the initiator asks about its request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PairPoll {
    pub nonce: String,
}

/// `POST /v1/federation/pair/confirm`: the initiator's token for the responder; the pair goes
/// active on both sides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PairConfirm {
    pub nonce: String,
    pub pair_id: String,
    pub issued_token: String,
    /// RFC 3339.
    pub token_expires_at: String,
    /// The id of the genesis record the responder sent.
    pub genesis_id: String,
    pub issued_at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sig: Option<ObjectSignature>,
}

/// `POST /v1/federation/pair/notify-revoke`, with the pair's token: the peer revoked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RevokeNotice {
    pub pair_id: String,
    pub generation: u64,
    pub reason: String,
    pub issued_at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sig: Option<ObjectSignature>,
}

/// `POST /v1/federation/pair/refresh`, with the token being renewed: the renewer's new token for
/// the peer; the peer answers its new token for the renewer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PairRefresh {
    pub pair_id: String,
    pub generation: u64,
    /// 64 hex characters; a retry with the same nonce gets the same answer for 10 minutes.
    pub nonce: String,
    pub issued_at_ms: i64,
    pub issued_token: String,
    /// RFC 3339.
    pub token_expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sig: Option<ObjectSignature>,
}

/// The answer to a refresh.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "pair_refresh", default)]
pub struct PairRefreshed {
    pub pair_id: String,
    pub issued_token: Option<String>,
    pub token_expires_at: Option<String>,
}

/// `202`: the responder's operator has not decided yet; poll again after `poll_after_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "pair_handshake", default)]
pub struct HandshakePending {
    /// `establishing`.
    pub state: String,
    /// `pending`.
    pub status: String,
    pub pair_id: String,
    pub nonce: String,
    pub poll_after_ms: u64,
    /// RFC 3339.
    pub expires_at: String,
}

/// How long to wait between polls when an answer does not say.
const POLL_AFTER_MS: u64 = 2000;

impl HandshakePending {
    pub fn new(pair_id: &str, nonce: &str, expires_at: String) -> HandshakePending {
        HandshakePending {
            pair_id: pair_id.to_owned(),
            nonce: nonce.to_owned(),
            expires_at,
            ..HandshakePending::default()
        }
    }
}

/// An answer without `poll_after_ms` reads as the protocol's 2 s.
impl Default for HandshakePending {
    fn default() -> HandshakePending {
        HandshakePending {
            state: "establishing".to_owned(),
            status: "pending".to_owned(),
            pair_id: String::new(),
            nonce: String::new(),
            poll_after_ms: POLL_AFTER_MS,
            expires_at: String::new(),
        }
    }
}

/// The pair already stands: pairing is idempotent and mints no new tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "pair_handshake", default)]
pub struct HandshakeActive {
    /// `active`.
    pub state: String,
    /// `active`.
    pub status: String,
    pub pair_id: String,
}

/// Approved: the responder's token for the initiator (retrievable for 10 minutes), its signed
/// manifest and the genesis record as a sync item (`{"id", "record"}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "pair_handshake", default)]
pub struct HandshakeApproved {
    /// `establishing`.
    pub state: String,
    /// `approved`.
    pub status: String,
    pub pair_id: String,
    pub issued_token: Option<String>,
    /// RFC 3339.
    pub token_expires_at: Option<String>,
    pub responder_manifest: FederationManifest,
    /// Reserved for MLS; `null`.
    pub mls_welcome: Option<Value>,
    pub genesis: Option<Value>,
}

/// The answer to confirm: the pair is active, made so by `activated_record_id`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "pair_handshake", default)]
pub struct HandshakeConfirmed {
    /// `active`.
    pub status: String,
    pub pair_id: String,
    pub activated_record_id: Option<String>,
}

/// What init, poll and confirm answer, told apart by `status` (and a confirmation by its
/// `activated_record_id`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum HandshakeAnswer {
    Pending(HandshakePending),
    Approved(Box<HandshakeApproved>),
    Active(HandshakeActive),
    Confirmed(HandshakeConfirmed),
}

impl<'de> Deserialize<'de> for HandshakeAnswer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<HandshakeAnswer, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(deserializer)?;
        let answer = match value.get("status").and_then(Value::as_str) {
            Some("pending") => serde_json::from_value(value).map(HandshakeAnswer::Pending),
            Some("approved") => {
                serde_json::from_value(value).map(|a| HandshakeAnswer::Approved(Box::new(a)))
            }
            Some("active") if value.get("activated_record_id").is_some() => {
                serde_json::from_value(value).map(HandshakeAnswer::Confirmed)
            }
            Some("active") => serde_json::from_value(value).map(HandshakeAnswer::Active),
            other => {
                return Err(D::Error::custom(format!(
                    "a handshake answer's status is pending, approved or active, not {other:?}"
                )))
            }
        };
        answer.map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_read_by_status() {
        let pending = HandshakePending::new("fed_1", "ab", "2026-12-02T00:00:00Z".into());
        let written = serde_json::to_value(&pending).unwrap();
        assert_eq!(
            written,
            json!({"object": "pair_handshake", "state": "establishing", "status": "pending",
                   "pair_id": "fed_1", "nonce": "ab", "poll_after_ms": 2000,
                   "expires_at": "2026-12-02T00:00:00Z"})
        );
        assert_eq!(
            serde_json::from_value::<HandshakeAnswer>(written).unwrap(),
            HandshakeAnswer::Pending(pending)
        );

        let active = json!({"object": "pair_handshake", "state": "active", "status": "active",
                            "pair_id": "fed_1"});
        assert!(matches!(
            serde_json::from_value::<HandshakeAnswer>(active.clone()).unwrap(),
            HandshakeAnswer::Active(_)
        ));
        let confirmed = json!({"object": "pair_handshake", "status": "active", "pair_id": "fed_1",
                               "activated_record_id": null});
        let read: HandshakeAnswer = serde_json::from_value(confirmed.clone()).unwrap();
        assert!(matches!(read, HandshakeAnswer::Confirmed(_)));
        assert_eq!(serde_json::to_value(&read).unwrap(), confirmed);
        assert!(serde_json::from_value::<HandshakeAnswer>(json!({"status": "odd"})).is_err());
    }

    #[test]
    fn a_pending_answer_without_poll_after_ms_means_two_seconds() {
        let pending: HandshakePending =
            serde_json::from_value(json!({"status": "pending", "pair_id": "fed_1"})).unwrap();
        assert_eq!(pending.poll_after_ms, 2000);
        assert_eq!(pending.pair_id, "fed_1");
    }

    #[test]
    fn approvals_carry_nulls_for_what_is_gone() {
        let approved = HandshakeApproved {
            state: "establishing".into(),
            status: "approved".into(),
            pair_id: "fed_1".into(),
            issued_token: None,
            token_expires_at: None,
            responder_manifest: FederationManifest::default(),
            mls_welcome: None,
            genesis: Some(json!({"id": "g", "record": {"clock": 1}})),
        };
        let written = serde_json::to_value(&approved).unwrap();
        for member in ["issued_token", "token_expires_at", "mls_welcome"] {
            assert_eq!(written[member], Value::Null, "{member}");
            assert!(written.get(member).is_some(), "{member}");
        }
        assert_eq!(
            serde_json::from_value::<HandshakeAnswer>(written).unwrap(),
            HandshakeAnswer::Approved(Box::new(approved))
        );
    }

    #[test]
    fn signed_messages_leave_out_an_absent_sig() {
        let poll = PairInit {
            actor_did: "did:key:z6Mk1".into(),
            mode: "polling".into(),
            ..PairInit::default()
        };
        let written = serde_json::to_value(&poll).unwrap();
        assert!(written.get("sig").is_none());
        assert_eq!(written["mls"], Value::Null);
        assert!(written.get("mls").is_some());
    }
}
