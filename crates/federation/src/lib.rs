//! Talking to federation peers over HTTP, safely (FEDERATION.md §2.1, §5.1, §5.4, §5.5).
//!
//! [`PeerClient`] fetches change pages and manifests and posts JSON to peers with bounded
//! response sizes, per-call deadlines and the §5.5 error classes ([`PeerError`]); [`Backoff`]
//! is the full-jitter retry schedule the pull loop uses between failures. [`DidResolver`]
//! resolves did:web and did:sync DIDs to their keys and endpoint (§1.3–1.5), with a cache.

mod backoff;
mod client;
mod error;
mod resolve;
mod target;

pub use backoff::Backoff;
pub use client::{ChangesRequest, PeerClient, PeerClientOptions};
pub use error::PeerError;
pub use resolve::{DidResolver, ResolvedDid};
/// A parsed `sync_changes` page: the API contract's type, records kept as JSON for verification.
pub use syncropel_api::ChangesPage;
