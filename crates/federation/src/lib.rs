//! Federation between stewards (docs/federation-protocol.md), everything but HTTP routing: the
//! steward's HTTP layer parses requests, checks scopes and renders answers; every decision is made
//! here.
//!
//! - Identity: which keys may sign for a DID ([`signers`]), resolved by [`DidResolver`] (did:web
//!   documents, did:sync logs from the operator's directories), typed actors vouched for by the
//!   peer that served them ([`actor_keys`]), and the signed manifest ([`manifest`]).
//! - Pairing: the handshake that makes a pair ([`handshake`]), pairs as a fold over records
//!   ([`pairs`]), token renewal ([`renewal`]), and the older one-thread sync pairs
//!   ([`sync_pairs`]).
//! - Sync: the source's changes feed with its consent filter ([`feed`], [`consent`]), and the
//!   puller's jobs that fetch pages, verify every record and ingest them with their cursor
//!   ([`puller`]).
//! - Talking to peers safely: [`PeerClient`] bounds sizes and time and classifies failures
//!   ([`PeerError`]); [`Backoff`] spaces retries.
//! - Relays for peers that cannot be reached: the outbox that deposits and the fallback that pulls
//!   there ([`relay`]).
//! - Discovery on the LAN and introductions through pairs ([`discovery`]).

pub mod actor_keys;
mod backoff;
pub mod config;
pub mod consent;
pub mod directory;
pub mod discovery;
mod engine;
mod error;
pub mod feed;
pub mod handshake;
pub mod jobs;
pub mod manifest;
pub mod pairs;
mod peer;
pub mod puller;
pub mod push;
pub mod quarantine;
pub mod relay;
pub mod renewal;
mod resolve;
pub mod signers;
pub mod state;
pub mod sync_pairs;
pub mod sync_trace;
mod thread_rule;
mod threads;
mod traces;

pub use backoff::Backoff;
pub use config::{
    FederationConfig, PairingPolicy, PeerTimeouts, RelayConfig, DEFAULT_STORE_CEILING,
};
pub use engine::{own_record, signed, Federation, JobPlacement, Shared, ACTIVE_PULLS_PER_TENANT};
pub use error::{FederationError, Result};
pub use peer::{
    ChangesRequest, LiveFeed, LiveRecord, PeerClient, PeerClientOptions, PeerError, Reach,
};
pub use resolve::{replay_log, DidResolver, ResolvedDid};
/// A parsed `sync_changes` page: the API contract's type, records kept as JSON for verification.
pub use syncropel_api::ChangesPage;
pub use thread_rule::ThreadRule;
pub use threads::{never_served, pullable_thread, refuse_unpullable};
pub use traces::TraceIndex;
