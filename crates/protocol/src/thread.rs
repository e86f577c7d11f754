//! Thread names (protocol.md §3) and the reserved threads of §3.1.

use crate::error::ProtocolError;

/// Longest accepted thread name, in UTF-8 bytes.
pub const MAX_THREAD_BYTES: usize = 256;

/// Config and registry threads: client writes need `admin` or `config:write`.
pub const CONFIG_THREADS: &[&str] = &[
    "th_engine_config",
    "th_actor_registry",
    "th_instance_registry",
    "th_fleet_control",
    "th_namespace_registry",
    "th_invites",
    "th_invite_templates",
    "th_queries",
];

/// Validates a thread name. The SDK puts threads into URL paths unescaped, so
/// anything that would not survive as one path segment is refused.
pub fn validate_thread(thread: &str) -> Result<(), ProtocolError> {
    let reason = if thread.is_empty() {
        "must not be empty".to_owned()
    } else if thread.len() > MAX_THREAD_BYTES {
        format!(
            "is {} bytes long; the limit is {MAX_THREAD_BYTES}",
            thread.len()
        )
    } else if let Some(c) = thread
        .chars()
        .find(|&c| matches!(c, '/' | '?' | '#') || c.is_whitespace() || c.is_control())
    {
        format!(
            "must not contain {c:?} ('/', '?', '#', whitespace and control characters are refused)"
        )
    } else {
        return Ok(());
    };
    Err(ProtocolError::validation("thread", reason))
}

/// The threads the steward's federation state is folded from: only its own federation code
/// writes them, since a record there moves pairs, bearers and consent.
pub const STEWARD_STATE_THREADS: &[&str] =
    &["th_federation_pairs", "th_consent", "th_sync_control"];

/// The prefix of a member's identity thread (`th_identity_<label>`): its binding, grants,
/// acceptance and revocations, which the steward's membership state is rebuilt from.
pub const IDENTITY_THREAD_PREFIX: &str = "th_identity_";

/// Threads only the server writes (`th_audit_*`, `th_secret_audit`, `th_credentials`, whose
/// records say where each secret's value lives, members' identity threads, and the
/// [`STEWARD_STATE_THREADS`]); a client write is `403 RESERVED_THREAD` whatever its scopes.
pub fn is_server_only_thread(thread: &str) -> bool {
    thread.starts_with("th_audit_")
        || thread.starts_with(IDENTITY_THREAD_PREFIX)
        || matches!(thread, "th_secret_audit" | "th_credentials")
        || STEWARD_STATE_THREADS.contains(&thread)
}

/// Config and registry threads of protocol.md §3.1 (see [`CONFIG_THREADS`]).
pub fn is_config_thread(thread: &str) -> bool {
    CONFIG_THREADS.contains(&thread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_rules() {
        let th = format!("th_{}", "a".repeat(64));
        for ok in [th.as_str(), "music.library", "x", "日本", &"a".repeat(256)] {
            assert!(validate_thread(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a/b",
            "a?b",
            "a#b",
            "a b",
            "a\tb",
            "a\u{85}b",
            "a\u{2028}b",
            "a\u{7f}b",
            "a\u{0}b",
            &"a".repeat(257),
        ] {
            assert!(validate_thread(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reserved_threads() {
        assert!(is_server_only_thread("th_audit_security"));
        assert!(is_server_only_thread("th_audit_graph_traversal_acme"));
        assert!(is_server_only_thread("th_secret_audit"));
        assert!(!is_server_only_thread("th_engine_config"));
        assert!(is_server_only_thread("th_identity_mora"));
        for state in ["th_federation_pairs", "th_consent", "th_sync_control"] {
            assert!(is_server_only_thread(state), "{state}");
        }
        assert!(is_config_thread("th_engine_config"));
        assert!(is_config_thread("th_queries"));
        assert!(!is_config_thread("th_audit_security"));
        assert!(!is_config_thread("music.library"));
    }
}
