//! The Syncropel record protocol as pure data: strict JSON parsing, canonical
//! JSON, envelopes and their validation, record ids, hash levels, Ed25519
//! signing, `did:key` and the federation pair state machine. No I/O; every function is deterministic except
//! [`Keypair::generate`].
//!
//! Section numbers (§) refer to the protocol specification.

mod act;
mod canonical;
mod error;
mod hash;
mod keys;
mod kind;
mod namespace;
mod number;
mod pair;
mod parse;
mod record;
mod secrets;
mod thread;

pub use act::{Act, DataType};
pub use canonical::{canonical_string, canonicalize, parse_json, DEFAULT_MAX_DEPTH};
pub use error::{ErrorCode, ProtocolError};
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
pub use pair::{pair_id, PairEvent, PairState, PAIRS_AUDIT_THREAD, PAIRS_THREAD};
pub use record::{json_type_name, Envelope};
pub use secrets::{check_secret_fields, is_credential_kind, CREDENTIAL_ALLOWED_FIELDS};
pub use thread::{
    is_config_thread, is_server_only_thread, validate_thread, CONFIG_THREADS, MAX_THREAD_BYTES,
};
