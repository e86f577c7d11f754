//! A tenant of a steward as everything below the HTTP layer sees it: the identity that signs for
//! it, the records sealed on its account, its service accounts and tokens, and its namespace
//! registry. A local steward has one tenant; the hosted platform many.

mod accounts;
pub mod config;
mod identity;
pub mod membership;
mod namespaces;
mod scopes;
mod seal;
pub mod sealed;
pub mod secrets;
mod stored;
pub mod threads;
mod token_cache;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use syncropel_protocol::{ErrorCode, Refusal};
use syncropel_store::StoreError;

pub use accounts::{
    create_service_account, create_service_account_with_id, install_token, mint, mint_token,
    mint_under_grant, new_service_account_id, parent_tokens, revoke, MintedToken,
};
pub use identity::{DidWeb, Identity, ServerClock};
pub use namespaces::{
    ancestors, parent, NamespaceEntry, NamespaceState, Namespaces, ENTRY_TOPIC, REGISTRY_THREAD,
};
pub use scopes::{parse_grain, validate_scopes, Scope};
pub use seal::{seal, sealed_own, server_record, stored_form, stored_form_at, stored_form_in};
pub use stored::stored_thread;
pub use token_cache::{TokenCache, LOCAL_TOKEN_CACHE_TTL};

/// What can go wrong with a tenant's accounts, namespaces or records.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// Refused for a reason the caller can act on.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something stored cannot be read back.
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
}

impl TenantError {
    pub fn corrupt(e: impl std::fmt::Display) -> TenantError {
        TenantError::Corrupt(e.to_string())
    }
}

pub type Result<T, E = TenantError> = std::result::Result<T, E>;

/// Where a tenant is in a move to another steward (federation-protocol.md §8.5).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Departure {
    #[default]
    Staying,
    /// Exported to move: reads and peer pulls go on, writes answer `409 INSTANCE_LEAVING`.
    Leaving,
    /// Fenced by its new home: every `/v1` route answers `410 INSTANCE_MOVED` with `moved_to`
    /// and the new home's signed notice, which peers follow.
    Moved {
        moved_to: String,
        notice: serde_json::Value,
    },
}

/// A tenant's lifecycle as far as requests are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TenantStatus {
    Active,
    /// Read-only until the platform resumes it.
    Suspended,
    /// Read-only (export still works) until the deletion grace period ends.
    Deleted,
}

impl TenantStatus {
    /// Refuses what only an active tenant may do (`doing`, e.g. "written"): a suspended or
    /// deleted one can still be read and exported.
    pub fn require_active(self, doing: &str) -> std::result::Result<(), Refusal> {
        match self {
            TenantStatus::Active => Ok(()),
            TenantStatus::Suspended => Err(Refusal::new(
                ErrorCode::TenantSuspended,
                format!("this tenant is suspended: it can be read and exported but not {doing}"),
            )),
            TenantStatus::Deleted => Err(Refusal::new(
                ErrorCode::TenantDeleted,
                format!(
                    "this tenant has been deleted: it can be read and exported but not {doing}, \
                     until its grace period ends"
                ),
            )),
        }
    }
}

/// One tenant: its partition key in the store and the identity that signs its records.
pub struct Tenant {
    /// The store's tenant key (`local` locally, `tn_…` hosted).
    pub id: String,
    pub identity: Identity,
    pub status: TenantStatus,
    /// The tenant's public URL (hosted); a local steward is reached at whatever host it is asked by.
    pub url: Option<String>,
    /// Set once the tenant has a service account; until then `/v1` answers 503 BOOTSTRAP_REQUIRED.
    bootstrapped: AtomicBool,
    /// Kept in the store (`syncropel_portability::departure`); this is the copy requests see.
    departure: RwLock<Departure>,
    /// The fold of its `th_engine_config` records (`config::load`); this is the copy requests see.
    config: RwLock<Arc<config::EngineConfig>>,
    /// Its closed threads, read on its first write (`threads::closed`), and how many closes
    /// this object has seen (a read older than a close must not replace what the close left).
    closed_threads: RwLock<(u64, Option<Arc<std::collections::HashSet<String>>>)>,
}

/// Never prints the key; the id and DID say which tenant it is.
impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("id", &self.id)
            .field("did", &self.identity.did)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Tenant {
    pub fn new(id: String, identity: Identity, status: TenantStatus, bootstrapped: bool) -> Tenant {
        Tenant {
            id,
            identity,
            status,
            url: None,
            bootstrapped: AtomicBool::new(bootstrapped),
            departure: RwLock::new(Departure::Staying),
            config: RwLock::default(),
            closed_threads: RwLock::default(),
        }
    }

    pub fn with_url(mut self, url: String) -> Tenant {
        self.url = Some(url);
        self
    }

    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped.load(Ordering::Acquire)
    }

    pub fn mark_bootstrapped(&self) {
        self.bootstrapped.store(true, Ordering::Release);
    }

    /// Writes are refused while the tenant is suspended, deleted or moving away; reads go on.
    pub fn require_writable(&self) -> std::result::Result<(), Refusal> {
        self.status.require_active("written")?;
        match self.departure() {
            Departure::Staying => Ok(()),
            Departure::Leaving => Err(Refusal::new(
                ErrorCode::InstanceLeaving,
                "this steward is moving to another home: it can be read and pulled from, not \
                 written; write to the new home once it is serving",
            )),
            Departure::Moved { moved_to, .. } => Err(Refusal::new(
                ErrorCode::InstanceMoved,
                format!("this steward has moved to {moved_to}"),
            )),
        }
    }

    pub fn departure(&self) -> Departure {
        self.departure
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_departure(&self, departure: Departure) {
        *self.departure.write().unwrap_or_else(|e| e.into_inner()) = departure;
    }

    /// The configuration in force (shared: every write reads it).
    pub fn config(&self) -> Arc<config::EngineConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_config(&self, config: config::EngineConfig) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    /// The closed threads as read, and the count of closes they reflect.
    pub fn closed_threads(&self) -> (u64, Option<Arc<std::collections::HashSet<String>>>) {
        self.closed_threads
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Keeps a read of the closed threads, unless a close happened since it began (`seen`).
    pub fn set_closed_threads(&self, seen: u64, closed: Arc<std::collections::HashSet<String>>) {
        let mut held = self
            .closed_threads
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if held.0 == seen {
            held.1 = Some(closed);
        }
    }

    /// Notes a thread closed through this object.
    pub fn note_closed(&self, thread: &str) {
        let mut held = self
            .closed_threads
            .write()
            .unwrap_or_else(|e| e.into_inner());
        held.0 += 1;
        if let Some(closed) = held.1.as_mut() {
            Arc::make_mut(closed).insert(thread.to_string());
        }
    }
}
