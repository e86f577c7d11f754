//! The export bundle (federation-protocol.md §8.3): one `tar.zst` holding a steward's manifest
//! and its signature, its DID document, its identity seed sealed under a passphrase, and its
//! records, every file named in the manifest by its sha256, so that a bundle is checked whole
//! before anything of it is used.
//!
//! - [`write`]: [`BundleWriter`] adds files and signs the manifest last; the same input gives
//!   the same bytes.
//! - [`read`]: [`verify`] streams a bundle once, refusing unsafe paths, oversize entries and
//!   decompression bombs, and checks every hash and the signature; [`entries`] streams it again
//!   to use it.
//! - [`seal`]: the identity seed under a passphrase (Argon2id, then XChaCha20-Poly1305).

mod manifest;
pub mod read;
pub mod seal;
pub mod write;

pub use manifest::{Counts, Manifest, Producer, BUNDLE_VERSION};
pub use read::{entries, verify, Limits, Verified};
pub use write::BundleWriter;

/// What can be wrong with a bundle or its use; nothing is written when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("reading or writing the bundle: {0}")]
    Io(#[from] std::io::Error),
    /// Not a tar.zst, cut short, or a member that is not what it must be.
    #[error("malformed bundle: {0}")]
    Malformed(String),
    /// A path that could leave the bundle's directory, or that no bundle holds.
    #[error(
        "refused entry `{0}`: paths are relative, without `..`, under the bundle's directories"
    )]
    UnsafePath(String),
    /// An entry or the whole bundle past its size limit (a decompression bomb, say).
    #[error("{0}")]
    TooLarge(String),
    /// A file whose bytes are not those the manifest names, or a file it does not name.
    #[error("the bundle was altered: {0}")]
    Altered(String),
    #[error("signature verification failed: {0}")]
    Signature(String),
    #[error("wrong passphrase")]
    WrongPassphrase,
}

pub type Result<T> = std::result::Result<T, BundleError>;

/// The manifest and its signature, by path.
pub const MANIFEST: &str = "manifest.json";
pub const MANIFEST_SIG: &str = "manifest.sig";
pub const DID_DOCUMENT: &str = "identity/did_document.json";
pub const PRIVATE_KEY: &str = "identity/private_key.enc";
/// A did:sync's operation log, one logged operation (`{cid, op, received_at, nullified}`) a line.
pub const DID_OPERATIONS: &str = "directory/ops.jsonl";

/// Whether `path` may be a member of a bundle: relative, plain segments, under one of its
/// directories (or one of its top-level files).
pub fn safe_path(path: &str) -> bool {
    const TOP: [&str; 2] = [MANIFEST, MANIFEST_SIG];
    const DIRS: [&str; 5] = [
        "identity/",
        "records/",
        "federation/",
        "directory/",
        "blobs/",
    ];
    let plain = !path.is_empty()
        && !path.starts_with('/')
        && path.len() <= 512
        && path.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-:%".contains(c))
        });
    plain && (TOP.contains(&path) || DIRS.iter().any(|dir| path.starts_with(dir)))
}
