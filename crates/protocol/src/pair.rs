//! Federation pairs as data (federation-protocol.md §3): the pair id both sides compute, the state
//! machine, the record bodies on `th_federation_pairs` (`pair/body.rs`) and the fold that derives
//! each pair's view from them (`pair/fold.rs`).

mod body;
mod fold;

pub use body::{
    activate_fields, audit_body, genesis_body, init_body, revoke_body, token_renewed_fields,
    update_body, AuditChange, GenesisMap, GenesisParams, InitParams, IssuedToken, NamespaceMap,
    PairAudit, RevokeNotify, TokenDirection, UpdateOp,
};
pub use fold::{
    fold_pairs, outbound_secret_handle, CursorCheckpoint, InboundToken, OutboundToken, PairPhase,
    PairRole, PairTokens, PairView, DEFAULT_POLL_INTERVAL_SECS,
};

use crate::hash::sha256_hex;

/// The thread pair records live on.
pub const PAIRS_THREAD: &str = "th_federation_pairs";
/// The thread of the human-readable audit of every pair transition.
pub const PAIRS_AUDIT_THREAD: &str = "th_audit_federation_pairs";

/// Record kinds we emit (federation-protocol.md §3.2, §3.5); the fold also accepts upstream's short
/// names.
pub const PAIR_INIT_KIND: &str = "syncropel.federation.pair_init.v1";
pub const PAIR_GENESIS_KIND: &str = "syncropel.federation.pair_genesis.v1";
pub const PAIR_UPDATE_KIND: &str = "syncropel.federation.pair_update.v1";
pub const PAIR_REVOKE_KIND: &str = "syncropel.federation.pair_revoke.v1";
/// The audit kind, on [`PAIRS_AUDIT_THREAD`].
pub const PAIR_STATE_CHANGE_KIND: &str = "syncropel.federation.pair_state_change.v1";
/// The responder's pending decision, on the decision queue rather than the pair thread.
pub const PAIR_PENDING_KIND: &str = "syncropel.federation.pair_pending.v1";

/// `fed_` + SHA-256 of the two DIDs, lower-cased and sorted, joined by a newline
/// (federation-protocol.md §3.1): both sides of a pair compute the same id, whichever of them asks.
pub fn pair_id(did_a: &str, did_b: &str) -> String {
    let (a, b) = (did_a.to_lowercase(), did_b.to_lowercase());
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    format!(
        "fed_{}",
        sha256_hex(format!("{first}\n{second}").as_bytes())
    )
}

/// The state of one generation of a pair (federation-protocol.md §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairState {
    /// The handshake is in flight.
    Establishing,
    Active,
    /// Stopped by the operator; credentials stay valid.
    Paused,
    /// Failing for a recurring cause (unreachable, 401, expired token, …).
    Degraded,
    /// Terminal for this generation.
    Revoked,
}

/// What a pair record does to the state (the `op` of an update, or the record kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairEvent {
    /// `pair_init` (initiator) or an approved genesis (responder).
    Begin,
    Activate,
    Pause,
    Resume,
    Degrade,
    Recover,
    Revoke,
}

impl PairState {
    pub fn as_str(self) -> &'static str {
        match self {
            PairState::Establishing => "establishing",
            PairState::Active => "active",
            PairState::Paused => "paused",
            PairState::Degraded => "degraded",
            PairState::Revoked => "revoked",
        }
    }

    /// The state after `event`, or `None` when the table of federation-protocol.md §3.4 has no such
    /// transition (the fold ignores such a record). `from` is `None` before the first record of a
    /// generation.
    pub fn after(from: Option<PairState>, event: PairEvent) -> Option<PairState> {
        use PairEvent as E;
        use PairState as S;
        match (from, event) {
            (None, E::Begin) => Some(S::Establishing),
            (Some(S::Establishing), E::Activate) => Some(S::Active),
            (Some(S::Active), E::Pause) | (Some(S::Degraded), E::Pause) => Some(S::Paused),
            (Some(S::Paused), E::Resume) => Some(S::Active),
            (Some(S::Active), E::Degrade) => Some(S::Degraded),
            (Some(S::Degraded), E::Recover) => Some(S::Active),
            (Some(S::Revoked), _) => None,
            (Some(_), E::Revoke) => Some(S::Revoked),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_compute_the_same_pair_id() {
        let alice = "did:key:z6MkAlice";
        let bob = "did:web:Bob.Example.com";
        assert_eq!(pair_id(alice, bob), pair_id(bob, alice));
        assert_eq!(pair_id(alice, bob), pair_id(alice, &bob.to_lowercase()));
        let id = pair_id(alice, bob);
        assert!(id.starts_with("fed_") && id.len() == 4 + 64, "{id}");
        let expected = sha256_hex(b"did:key:z6mkalice\ndid:web:bob.example.com");
        assert_eq!(id, format!("fed_{expected}"));
        assert_ne!(pair_id(alice, bob), pair_id(alice, "did:web:carol.example"));
    }

    #[test]
    fn the_state_machine_follows_the_transition_table() {
        use PairEvent as E;
        use PairState as S;
        let walk = |events: &[E]| {
            events
                .iter()
                .try_fold(None, |state, e| PairState::after(state, *e).map(Some))
                .flatten()
        };
        assert_eq!(walk(&[E::Begin]), Some(S::Establishing));
        assert_eq!(walk(&[E::Begin, E::Activate]), Some(S::Active));
        assert_eq!(
            walk(&[E::Begin, E::Activate, E::Pause, E::Resume]),
            Some(S::Active)
        );
        assert_eq!(
            walk(&[E::Begin, E::Activate, E::Degrade, E::Recover]),
            Some(S::Active)
        );
        assert_eq!(
            walk(&[E::Begin, E::Activate, E::Degrade, E::Pause]),
            Some(S::Paused)
        );
        assert_eq!(walk(&[E::Begin, E::Revoke]), Some(S::Revoked));
        assert_eq!(
            walk(&[E::Begin, E::Activate, E::Pause, E::Revoke]),
            Some(S::Revoked)
        );
        // Not in the table: automatic transitions never leave paused; revoked is terminal;
        // nothing happens before a generation begins.
        assert_eq!(PairState::after(Some(S::Paused), E::Degrade), None);
        assert_eq!(PairState::after(Some(S::Paused), E::Recover), None);
        assert_eq!(PairState::after(Some(S::Establishing), E::Pause), None);
        assert_eq!(PairState::after(Some(S::Active), E::Begin), None);
        for event in [E::Begin, E::Activate, E::Resume, E::Revoke] {
            assert_eq!(PairState::after(Some(S::Revoked), event), None);
        }
        assert_eq!(PairState::after(None, E::Activate), None);
        assert_eq!(S::Degraded.as_str(), "degraded");
    }
}
