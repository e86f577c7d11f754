//! Which threads cross between stewards: a steward's own bookkeeping (pairs, consent, registry,
//! config and audit threads) is never served to a peer nor filled from one, since a peer's record
//! there would change what this steward's folds decide.

use syncropel_protocol::{is_config_thread, is_server_only_thread, ErrorCode, Refusal};

/// Threads no grant ever opens (federation-protocol.md §5.1): the steward's own bookkeeping.
pub fn never_served(thread: &str) -> bool {
    thread.starts_with("th_audit_")
        || thread.starts_with(syncropel_protocol::IDENTITY_THREAD_PREFIX)
        || matches!(
            thread,
            "th_federation_pairs"
                | "th_consent"
                | "th_engine_config"
                | "th_secret_audit"
                | "th_credentials"
                | "th_sync_control"
                | "th_invites"
                | "th_service_accounts"
                | "th_tokens"
        )
}

/// Whether records of `thread` may come from a peer: never the steward's own bookkeeping
/// (config, registry, pair, consent and audit threads).
pub fn pullable_thread(thread: &str) -> bool {
    !(is_config_thread(thread) || is_server_only_thread(thread) || never_served(thread))
}

/// Threads no peer may fill (see [`pullable_thread`]).
pub fn refuse_unpullable(thread: &str) -> std::result::Result<(), Refusal> {
    if pullable_thread(thread) {
        Ok(())
    } else {
        Err(Refusal::new(
            ErrorCode::ThreadNotAllowed,
            format!("thread '{thread}' is this steward's own; it is never pulled from a peer"),
        ))
    }
}
