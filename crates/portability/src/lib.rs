//! Moving a tenant between stewards (federation-protocol.md §8.3–8.5): its store written as a
//! signed bundle, and a bundle taken into a store, in either mode (a home's SQLite, a hosted
//! tenant's partition of Postgres).
//!
//! - [`export()`]: every record, per thread in sequence order, the DID document, the identity
//!   seed sealed under a passphrase, the bearers peers issued to us; handed out as chunks so
//!   that a file or an HTTP body streams it.
//! - [`open()`] then [`import()`]: a bundle checked whole (every hash, the signature) and its
//!   identity opened before anything is written; then every record checked and stored in the
//!   bundle's order, accounts and tokens rebuilt from their records, the bearers installed and
//!   a new cursor epoch begun. Idempotent: a rerun after an interruption ends in the same store.
//! - [`audit`]: the `core.portability.event.v1` record of every export and import.
//! - [`departure`]: `leaving` and `moved`, the source's side of a move, and the fence.

pub mod audit;
pub mod departure;
mod export;
mod import;
mod replay;

pub use export::{export, ExportOptions, ExportSource, ExportSummary};
pub use import::{import, open, restore, ImportOptions, ImportSummary, Opened};

use std::sync::atomic::{AtomicU64, Ordering};

use syncropel_bundle::BundleError;
use syncropel_store::StoreError;

/// The bearers peers issued to this tenant (the store's `secret` documents, as sealed there:
/// under a key derived from the identity key, which only the moved identity opens), one JSON
/// line `{"handle", "sealed"}` each.
pub const CREDENTIALS: &str = "federation/credentials.sealed";

/// The credential that carries the store's cursor key (its `sync_meta`), sealed like the
/// bearers: the new home keeps the key and takes a new epoch.
pub(crate) const CURSOR_KEY_HANDLE: &str = "portability:sync_meta";

/// State documents of the import in progress and of those done (keyed by bundle hash): what
/// lets a rerun of the same bundle go on in a store that is no longer empty.
pub const IMPORTS: &str = "portability_import";

/// How far an export or import is, for a caller that shows it (a progress bar): records done of
/// about how many.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }

    fn add(&self, done: u64) {
        self.done.fetch_add(done, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PortabilityError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Federation(#[from] syncropel_federation::FederationError),
    /// Options that do not go together.
    #[error("{0}")]
    Invalid(String),
    /// The store or the bundle is not one this import may go ahead with.
    #[error("import refused: {0}")]
    Refused(String),
    /// The reader of a stream went away (an HTTP client hung up): the export stops.
    #[error("the export's reader went away")]
    Abandoned,
}

pub type Result<T> = std::result::Result<T, PortabilityError>;
