//! The steward's HTTP API as types: the body of every request and the answer of every route,
//! shared by the steward that serves them and by everything that calls it (`syncropel-client`,
//! `spl`, the bench, peer stewards).
//!
//! Serializing an answer gives exactly the JSON the steward sends: the same members, `null` where
//! it sends `null`, absent where it leaves a member out. Members come out in declaration order;
//! JSON objects are unordered, and nothing may depend on the order.
//!
//! Reading is lenient so that clients keep working across versions and behind proxies: a member
//! an answer leaves out reads as its default (where its type has one), unknown members are
//! ignored, and the `object` tag is written but not checked.
//!
//! Records stay JSON: types that carry records are generic over the record (`serde_json::Value`
//! by default; `serde::de::IgnoredAny` for a caller that only counts them), and [`splice`] writes
//! the answers the steward builds around stored record text without parsing it again.

pub mod accounts;
pub mod consent;
pub mod discovery;
pub mod error;
pub mod handshake;
pub mod health;
pub mod identity;
pub mod list;
pub mod manifest;
pub mod namespaces;
pub mod pairs;
pub mod provision;
pub mod records;
pub mod relay;
pub mod splice;
pub mod sync;
pub mod watch;

pub use accounts::{
    BootstrapServiceAccount, Bootstrapped, CreateServiceAccount, MintToken, MintedToken,
    ServiceAccount, TokenRevoked,
};
pub use consent::{
    AcceptL0, ConsentGrant, CreateGrant, GrantRevoked, GrantThreads, PairGrant, PublicGrant,
};
pub use discovery::{
    IntroducedPeer, Introductions, MdnsPeer, MdnsRoster, PairIntroducible, SetIntroducible,
};
pub use error::ErrorBody;
pub use handshake::{
    HandshakeActive, HandshakeAnswer, HandshakeApproved, HandshakeConfirmed, HandshakePending,
    ObjectSignature, PairConfirm, PairInit, PairPoll, PairRefresh, PairRefreshed, RevokeNotice,
};
pub use health::{Authorization, Decider, Health, HealthReport, Ready};
pub use identity::{
    DidDocument, DidService, Identity, IdentityUpgraded, UpgradeIdentity, VerificationMethod,
};
pub use list::{List, ListPage};
pub use manifest::{Capabilities, CapabilityFlags, FederationManifest, WellKnown};
pub use namespaces::{CreateNamespace, Namespace, NamespaceState};
pub use pairs::{
    FederationPair, PairReason, PairRevoked, PendingDecision, PendingPair, PullFailure,
    PullJobHealth, StartPair, SyncEvent, SyncHealth, SyncTrace,
};
pub use provision::{Provision, ProvisionAccepted, ProvisionPhase, ProvisionRequest};
pub use records::{
    BatchItem, BatchResult, CreateRecords, ListParams, QueryAnswer, QueryPlan, QueryRequest,
    SearchAnswer, SearchHit, SearchRequest, ThreadSummary,
};
pub use relay::{OutboxRow, RelayEndpoint, RelayKicked, RelayPurge, RelayQueues, RelayStatus};
pub use sync::{
    ChangesPage, ChangesParams, CreateSyncPair, FetchRecords, PullRequest, PullResult,
    PushRejected, PushSent, PushThread, QuarantinedRecord, SyncPair, SyncRecords,
};
pub use watch::{RecordCreated, WatchEvent};
