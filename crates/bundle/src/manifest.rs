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
    /// in archive order.
    pub bundle_sha256: String,
    pub created_at: String,
    pub store_epoch: String,
    pub producer: Producer,
    pub identity_included: bool,
    /// `federation-only` (pair tokens, which peers hold) or `all` (`--carry-tokens`).
    pub tokens: String,
    pub counts: Counts,
    /// A snapshot (`spl thread snapshot`): the records of these threads only, and neither the
    /// identity nor credentials. Absent: the whole store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<Vec<String>>,
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

/// The bundle hash, fed every file but `manifest.*` in archive order: sha256 of the lines
/// `"<sha256 hex of file>  <path>\n"`. Memory stays constant whatever the number of files: a
/// path added twice is told by a 64-bit keyed digest of each path (the key is drawn per process,
/// so the one-in-ten-million chance of a false refusal at a million files never repeats).
pub(crate) struct BundleHash {
    hasher: Sha256,
    paths: std::collections::HashSet<u64>,
    keys: std::collections::hash_map::RandomState,
}

impl BundleHash {
    pub(crate) fn new() -> BundleHash {
        BundleHash {
            hasher: Sha256::new(),
            paths: std::collections::HashSet::new(),
            keys: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Adds one file; `false` when its path was added before.
    pub(crate) fn add(&mut self, path: &str, bytes: &[u8]) -> bool {
        use std::hash::BuildHasher;
        if !self.paths.insert(self.keys.hash_one(path)) {
            return false;
        }
        let line = format!("{}  {path}\n", hex(&Sha256::digest(bytes)));
        self.hasher.update(line.as_bytes());
        true
    }

    pub(crate) fn files(&self) -> u64 {
        self.paths.len() as u64
    }

    pub(crate) fn finish(self) -> String {
        hex(&self.hasher.finalize())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}
