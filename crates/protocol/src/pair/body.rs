//! The bodies of pair records (federation-protocol.md §3.2) and of their audit (§3.5).
//!
//! The steward writes each body as a LEARN record; the builders here keep every
//! writer spelling the members the way [`super::fold_pairs`] reads them.
//! Timestamps are taken as unix seconds (what the steward's clock gives) and
//! written as RFC 3339 UTC strings, as the spec's examples show.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{
    PairEvent, PairState, PAIR_GENESIS_KIND, PAIR_INIT_KIND, PAIR_REVOKE_KIND,
    PAIR_STATE_CHANGE_KIND, PAIR_UPDATE_KIND,
};
use crate::timestamp::rfc3339_from_unix;

/// A namespace mapping from this steward's point of view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceMap {
    pub local: String,
    pub peer: String,
}

/// A namespace mapping as genesis states it, naming both sides, so that one
/// body serves both perspectives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisMap {
    pub initiator: String,
    pub responder: String,
}

/// A bearer one side minted for the other, as records describe it: by hash
/// and service account, never by value (invariant 6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    /// `sha256_hex` of the whole token string.
    pub token_id: String,
    pub sa_id: String,
    /// The peer DID the service account is bound to.
    pub bound_did: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl IssuedToken {
    fn to_value(&self) -> Value {
        json!({
            "token_id": self.token_id,
            "sa_id": self.sa_id,
            "bound_did": self.bound_did,
            "expires_at": rfc3339_from_unix(self.expires_at),
        })
    }
}

/// The members of the initiator-local `pair_init` record.
#[derive(Clone, Debug)]
pub struct InitParams<'a> {
    pub pair_id: &'a str,
    pub generation: u64,
    pub peer_did: &'a str,
    pub peer_url: &'a str,
    pub nonce_sha256: &'a str,
    pub peer_manifest_sha256: &'a str,
    /// `local` = the initiator's namespace, `peer` = the responder's.
    pub maps: &'a [NamespaceMap],
    pub mode: &'a str,
    /// Unix seconds.
    pub created_at: i64,
}

/// `syncropel.federation.pair_init.v1`: the initiator's first record of a
/// generation (state `establishing`, phase `awaiting_approval`).
pub fn init_body(p: &InitParams<'_>) -> Map<String, Value> {
    object(json!({
        "kind": PAIR_INIT_KIND,
        "pair_id": p.pair_id,
        "generation": p.generation,
        "peer_did": p.peer_did,
        "peer_url": p.peer_url,
        "nonce_sha256": p.nonce_sha256,
        "peer_manifest_sha256": p.peer_manifest_sha256,
        "maps": p.maps,
        "mode": p.mode,
        "created_at": rfc3339_from_unix(p.created_at),
    }))
}

/// The members of genesis, which the responder writes and signs and the
/// initiator stores verbatim.
#[derive(Clone, Debug)]
pub struct GenesisParams<'a> {
    pub pair_id: &'a str,
    pub generation: u64,
    pub initiator_did: &'a str,
    pub initiator_url: &'a str,
    pub responder_did: &'a str,
    pub responder_url: &'a str,
    pub nonce_sha256: &'a str,
    /// The decision record id, or `policy:<rule>`.
    pub approved_by: &'a str,
    pub scopes: &'a [String],
    pub namespaces: &'a [String],
    pub maps: &'a [GenesisMap],
    pub mode: &'a str,
    pub poll_interval_secs: u64,
    /// The token the responder minted for the initiator.
    pub responder_issued: &'a IssuedToken,
    pub token_ttl_secs: u64,
    pub renew_after_secs: u64,
    pub responder_manifest_sha256: &'a str,
    /// Unix seconds.
    pub created_at: i64,
}

/// `syncropel.federation.pair_genesis.v1`. `mls` is always null: per-pair MLS
/// (federation-protocol.md §10) is not built.
pub fn genesis_body(p: &GenesisParams<'_>) -> Map<String, Value> {
    object(json!({
        "kind": PAIR_GENESIS_KIND,
        "pair_id": p.pair_id,
        "generation": p.generation,
        "initiator_did": p.initiator_did,
        "initiator_url": p.initiator_url,
        "responder_did": p.responder_did,
        "responder_url": p.responder_url,
        "nonce_sha256": p.nonce_sha256,
        "approved_by": p.approved_by,
        "scopes": p.scopes,
        "namespaces": p.namespaces,
        "maps": p.maps,
        "mode": p.mode,
        "poll_interval_secs": p.poll_interval_secs,
        "responder_issued": p.responder_issued.to_value(),
        "token_ttl_secs": p.token_ttl_secs,
        "renew_after_secs": p.renew_after_secs,
        "responder_manifest_sha256": p.responder_manifest_sha256,
        "mls": null,
        "created_at": rfc3339_from_unix(p.created_at),
    }))
}

/// The `op` of a `pair_update` record (the table of federation-protocol.md §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateOp {
    /// The handshake finished on this side; `fields.initiator_issued`.
    Activate,
    Pause,
    Resume,
    /// `fields.cause`.
    Degrade,
    /// `fields.after`.
    Recover,
    /// `fields.peer_url`, `fields.via`.
    UrlRefreshed,
    /// `fields.peer_manifest_sha256`.
    ManifestChanged,
    /// `fields.direction`, `fields.token_id`, `fields.expires_at`.
    TokenRenewed,
    /// `fields.attempts`, `fields.expires_at`.
    RenewalFailed,
    /// Any of `mode`, `poll_interval_secs`, `thread_allow_add`,
    /// `thread_allow_remove`, `thread_rule`, `introducible`, `relays`.
    Config,
    /// `fields.thread`, `fields.cursor`.
    CursorCheckpoint,
}

impl UpdateOp {
    const ALL: [UpdateOp; 11] = [
        UpdateOp::Activate,
        UpdateOp::Pause,
        UpdateOp::Resume,
        UpdateOp::Degrade,
        UpdateOp::Recover,
        UpdateOp::UrlRefreshed,
        UpdateOp::ManifestChanged,
        UpdateOp::TokenRenewed,
        UpdateOp::RenewalFailed,
        UpdateOp::Config,
        UpdateOp::CursorCheckpoint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpdateOp::Activate => "activate",
            UpdateOp::Pause => "pause",
            UpdateOp::Resume => "resume",
            UpdateOp::Degrade => "degrade",
            UpdateOp::Recover => "recover",
            UpdateOp::UrlRefreshed => "url_refreshed",
            UpdateOp::ManifestChanged => "manifest_changed",
            UpdateOp::TokenRenewed => "token_renewed",
            UpdateOp::RenewalFailed => "renewal_failed",
            UpdateOp::Config => "config",
            UpdateOp::CursorCheckpoint => "cursor_checkpoint",
        }
    }

    pub fn parse(op: &str) -> Option<UpdateOp> {
        UpdateOp::ALL.into_iter().find(|o| o.as_str() == op)
    }

    /// The state-machine event this op is, if it changes state at all.
    pub fn event(self) -> Option<PairEvent> {
        match self {
            UpdateOp::Activate => Some(PairEvent::Activate),
            UpdateOp::Pause => Some(PairEvent::Pause),
            UpdateOp::Resume => Some(PairEvent::Resume),
            UpdateOp::Degrade => Some(PairEvent::Degrade),
            UpdateOp::Recover => Some(PairEvent::Recover),
            _ => None,
        }
    }
}

/// `syncropel.federation.pair_update.v1`. `fields` per the federation-protocol.md §3.2 table
/// ([`activate_fields`] and [`token_renewed_fields`] build the two that carry
/// tokens); `reason` is written as null when absent.
pub fn update_body(
    pair_id: &str,
    generation: u64,
    op: UpdateOp,
    reason: Option<&str>,
    fields: Map<String, Value>,
    at: i64,
) -> Map<String, Value> {
    object(json!({
        "kind": PAIR_UPDATE_KIND,
        "pair_id": pair_id,
        "generation": generation,
        "op": op.as_str(),
        "reason": reason,
        "fields": fields,
        "at": rfc3339_from_unix(at),
    }))
}

/// `fields` of `activate`: the token the initiator minted for the responder.
pub fn activate_fields(initiator_issued: &IssuedToken) -> Map<String, Value> {
    object(json!({ "initiator_issued": initiator_issued.to_value() }))
}

/// Which of a pair's two bearers a `token_renewed` replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenDirection {
    /// The token we minted for the peer.
    Inbound,
    /// The token the peer minted for us.
    Outbound,
}

impl TokenDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenDirection::Inbound => "inbound",
            TokenDirection::Outbound => "outbound",
        }
    }
}

/// `fields` of `token_renewed`; `expires_at` in unix seconds.
pub fn token_renewed_fields(
    direction: TokenDirection,
    token_id: &str,
    expires_at: i64,
) -> Map<String, Value> {
    object(json!({
        "direction": direction.as_str(),
        "token_id": token_id,
        "expires_at": rfc3339_from_unix(expires_at),
    }))
}

/// Whether the peer was told about a revocation (`notify-revoke`, federation-protocol.md §4.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RevokeNotify {
    pub attempted: bool,
    pub ok: bool,
}

/// `syncropel.federation.pair_revoke.v1`, terminal for the generation.
/// `reason` is one of `operator`, `peer_notified`, `auto_archive_90d`,
/// `handshake_rejected`, `identity_rotated`.
pub fn revoke_body(
    pair_id: &str,
    generation: u64,
    reason: &str,
    revoked_token_ids: &[String],
    notify: RevokeNotify,
    at: i64,
) -> Map<String, Value> {
    object(json!({
        "kind": PAIR_REVOKE_KIND,
        "pair_id": pair_id,
        "generation": generation,
        "reason": reason,
        "revoked_token_ids": revoked_token_ids,
        "notify": notify,
        "at": rfc3339_from_unix(at),
    }))
}

/// What an audit record reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditChange<'a> {
    /// A state change; `from` is `None` for a generation's first record.
    Transition {
        from: Option<PairState>,
        to: PairState,
    },
    /// A non-transition event (`renewal_failed`, `manifest_changed`, a
    /// handshake refusal): written with `transition: null` and `event`.
    Event(&'a str),
}

/// The members of a `pair_state_change` audit record.
#[derive(Clone, Debug)]
pub struct PairAudit<'a> {
    pub pair_id: &'a str,
    pub generation: u64,
    pub peer_did: &'a str,
    pub change: AuditChange<'a>,
    pub reason: Option<&'a str>,
    /// Id of the pair record this audits.
    pub cause_record: &'a str,
    /// Who caused it (operator DID, or the instance DID for automatic changes).
    pub actor: &'a str,
    /// Unix seconds.
    pub timestamp: i64,
}

/// `syncropel.federation.pair_state_change.v1` for `th_audit_federation_pairs`
/// (federation-protocol.md §3.5). A first transition reads `"none->establishing"` with `from:
/// null`.
pub fn audit_body(a: &PairAudit<'_>) -> Map<String, Value> {
    let mut body = object(json!({
        "kind": PAIR_STATE_CHANGE_KIND,
        "pair_id": a.pair_id,
        "generation": a.generation,
        "peer_did": a.peer_did,
        "reason": a.reason,
        "cause_record": a.cause_record,
        "actor": a.actor,
        "timestamp": rfc3339_from_unix(a.timestamp),
    }));
    let change = match a.change {
        AuditChange::Transition { from, to } => {
            let from_text = from.map_or("none", PairState::as_str);
            json!({
                "transition": format!("{from_text}->{}", to.as_str()),
                "from": from.map(PairState::as_str),
                "to": to.as_str(),
            })
        }
        AuditChange::Event(event) => json!({ "transition": null, "event": event }),
    };
    body.extend(object(change));
    body
}

/// The map inside a `json!` object literal.
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("only called with object literals"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_ops_round_trip_and_map_to_events() {
        for op in UpdateOp::ALL {
            assert_eq!(UpdateOp::parse(op.as_str()), Some(op));
        }
        assert_eq!(UpdateOp::parse("Pause"), None);
        assert_eq!(UpdateOp::Pause.event(), Some(PairEvent::Pause));
        assert_eq!(UpdateOp::Activate.event(), Some(PairEvent::Activate));
        assert_eq!(UpdateOp::Config.event(), None);
        assert_eq!(UpdateOp::CursorCheckpoint.event(), None);
    }

    #[test]
    fn update_and_revoke_bodies_have_the_spec_shape() {
        let pause = update_body(
            "fed_x",
            1,
            UpdateOp::Pause,
            Some("upgrading peer"),
            Map::new(),
            1_777_712_400,
        );
        assert_eq!(
            Value::Object(pause),
            json!({ "kind": "syncropel.federation.pair_update.v1", "pair_id": "fed_x",
                    "generation": 1, "op": "pause", "reason": "upgrading peer", "fields": {},
                    "at": "2026-05-02T09:00:00Z" })
        );
        let token = IssuedToken {
            token_id: "t1".into(),
            sa_id: "sa_a_for_b".into(),
            bound_did: "did:key:z6MkB".into(),
            expires_at: 1_785_412_800,
        };
        let activate = update_body(
            "fed_x",
            1,
            UpdateOp::Activate,
            None,
            activate_fields(&token),
            0,
        );
        assert_eq!(activate["reason"], Value::Null);
        assert_eq!(
            activate["fields"]["initiator_issued"],
            json!({ "token_id": "t1", "sa_id": "sa_a_for_b", "bound_did": "did:key:z6MkB",
                    "expires_at": "2026-07-30T12:00:00Z" })
        );
        assert_eq!(
            Value::Object(token_renewed_fields(TokenDirection::Inbound, "t2", 0)),
            json!({ "direction": "inbound", "token_id": "t2", "expires_at": "1970-01-01T00:00:00Z" })
        );
        let revoke = revoke_body(
            "fed_x",
            2,
            "operator",
            &["t1".to_owned()],
            RevokeNotify {
                attempted: true,
                ok: false,
            },
            1_777_712_400,
        );
        assert_eq!(
            Value::Object(revoke),
            json!({ "kind": "syncropel.federation.pair_revoke.v1", "pair_id": "fed_x",
                    "generation": 2, "reason": "operator", "revoked_token_ids": ["t1"],
                    "notify": {"attempted": true, "ok": false}, "at": "2026-05-02T09:00:00Z" })
        );
    }

    #[test]
    fn audit_bodies_name_the_transition_or_the_event() {
        let mut audit = PairAudit {
            pair_id: "fed_x",
            generation: 1,
            peer_did: "did:sync:bob",
            change: AuditChange::Transition {
                from: Some(PairState::Active),
                to: PairState::Paused,
            },
            reason: Some("upgrading peer"),
            cause_record: "r1",
            actor: "did:sync:user:alice",
            timestamp: 1_777_712_400,
        };
        assert_eq!(
            Value::Object(audit_body(&audit)),
            json!({ "kind": "syncropel.federation.pair_state_change.v1", "pair_id": "fed_x",
                    "generation": 1, "peer_did": "did:sync:bob", "transition": "active->paused",
                    "from": "active", "to": "paused", "reason": "upgrading peer",
                    "cause_record": "r1", "actor": "did:sync:user:alice",
                    "timestamp": "2026-05-02T09:00:00Z" })
        );
        audit.change = AuditChange::Transition {
            from: None,
            to: PairState::Establishing,
        };
        let first = audit_body(&audit);
        assert_eq!(first["transition"], "none->establishing");
        assert_eq!(first["from"], Value::Null);
        audit.change = AuditChange::Event("renewal_failed");
        let event = audit_body(&audit);
        assert_eq!(event["transition"], Value::Null);
        assert_eq!(event["event"], "renewal_failed");
        assert!(!event.contains_key("from") && !event.contains_key("to"));
    }
}
