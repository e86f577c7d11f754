//! The Syncropel record protocol as pure data: strict JSON parsing, canonical
//! JSON, envelopes and their validation, record ids, hash levels, Ed25519
//! signing, `did:key` and the federation pair state machine. No I/O; every function is
//! deterministic except [`Keypair::generate`] and [`unix_now`].
//!
//! Section numbers (`protocol.md §N`, `federation-protocol.md §N`) refer to the documents of that
//! name in `docs/`.

mod act;
mod canonical;
pub mod consent;
pub mod did_doc;
pub mod did_sync;
pub mod didsig;
mod error;
mod hash;
mod keys;
mod kind;
pub mod moved;
mod namespace;
mod number;
pub mod pair;
mod parse;
mod record;
pub mod relay;
mod secrets;
pub mod signed;
pub mod sync;
mod thread;
mod timestamp;

pub use act::{Act, DataType};
pub use canonical::{canonical_string, canonicalize, parse_json, DEFAULT_MAX_DEPTH};
pub use error::{ErrorCode, ProtocolError, Refusal};
pub use hash::{
    hash_level_preimages, hash_levels, record_id, sha256_hex, HashLevelPreimages, HashLevels,
};
pub use keys::{did_key_from_public, public_key_from_did_key, verify_signature, Keypair};
pub use kind::validate_kind;
pub use namespace::{
    validate_namespace_id, DEFAULT_NAMESPACE, MAX_NAMESPACE_DEPTH, MAX_NAMESPACE_LEN,
    MAX_NAMESPACE_SEGMENT_LEN,
};
pub use number::MAX_INTEGER_DIGITS;
pub use pair::{
    activate_fields, audit_body, fold_pairs, genesis_body, init_body, outbound_secret_handle,
    pair_id, revoke_body, token_renewed_fields, update_body, AuditChange, CursorCheckpoint,
    GenesisMap, GenesisParams, InboundToken, InitParams, IssuedToken, NamespaceMap, OutboundToken,
    PairAudit, PairEvent, PairPhase, PairRole, PairState, PairTokens, PairView, RevokeNotify,
    TokenDirection, UpdateOp, PAIRS_AUDIT_THREAD, PAIRS_THREAD, PAIR_GENESIS_KIND, PAIR_INIT_KIND,
    PAIR_PENDING_KIND, PAIR_REVOKE_KIND, PAIR_STATE_CHANGE_KIND, PAIR_UPDATE_KIND,
};
pub use record::{json_type_name, Envelope};
pub use secrets::{check_secret_fields, is_credential_kind, CREDENTIAL_ALLOWED_FIELDS};
pub use thread::{
    is_config_thread, is_server_only_thread, validate_thread, CONFIG_THREADS,
    IDENTITY_THREAD_PREFIX, MAX_THREAD_BYTES,
};
pub use timestamp::{rfc3339_from_unix, unix_from_rfc3339, unix_now};
