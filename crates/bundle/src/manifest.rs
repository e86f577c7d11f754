//! `manifest.json` (federation-protocol.md §8.3).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The bundle format this crate writes and reads.
pub const BUNDLE_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Manifest {
    pub bundle_version: u32,
    pub source_did: String,
    pub record_count: u64,
    /// sha256 of the lines `"<sha256 hex of file>  <path>\n"` of every file but `manifest.*`,
    /// sorted by path.
    pub bundle_sha256: String,
    pub created_at: String,
    pub store_epoch: String,
    pub producer: Producer,
    pub identity_included: bool,
    /// `federation-only` (pair tokens, which peers hold) or `all` (`--carry-tokens`).
    pub tokens: String,
    pub counts: Counts,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Producer {
    #[serde(rename = "impl")]
    pub implementation: String,
    pub version: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    pub threads: u64,
    pub pairs: u64,
    pub consent_grants: u64,
    pub service_accounts: u64,
    pub blobs: u64,
}

/// The bundle hash over `(path, sha256 hex)` pairs, which must be sorted by path.
pub(crate) fn bundle_sha256<'a>(files: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    let mut hasher = Sha256::new();
    for (path, hash) in files {
        hasher.update(format!("{hash}  {path}\n").as_bytes());
    }
    hex(&hasher.finalize())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
