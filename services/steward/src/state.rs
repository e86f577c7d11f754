//! What every handler gets: the steward's state, the limits on what a request may carry, and
//! where tenants come from.

use std::sync::Arc;
use std::time::Duration;

use syncropel_federation::directory::Publisher;
use syncropel_federation::Federation;
use syncropel_store::RecordStore;
use syncropel_tenant::{Namespaces, Tenant, TokenCache};
use tokio_util::sync::CancellationToken;

use crate::hosted::platform::{Platform, TENANT_CACHE_TTL};
use crate::rate_limit::{RateLimiters, RefusalLog};
use crate::streams::{StreamLimits, StreamSlots};

/// Limits on what a request may carry and what it may cost.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bodies over this many bytes are refused with 413 before they are parsed.
    pub max_body_bytes: usize,
    /// JSON nested deeper than this is refused with 400 INVALID_JSON.
    pub max_json_depth: usize,
    /// A page of records (listings, thread pages, watch replay, query results) stops at the
    /// first record that reaches this many bytes, cut in the store before it is read; the cursor
    /// carries on.
    pub max_page_bytes: usize,
    pub query: QueryBudget,
    pub streams: StreamLimits,
    /// Hosted: the largest bundle `POST /v1/portability/import` takes (413 beyond).
    pub max_import_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_json_depth: syncropel_protocol::DEFAULT_MAX_DEPTH,
            max_page_bytes: 4 * 1024 * 1024,
            query: QueryBudget::default(),
            streams: StreamLimits::default(),
            max_import_bytes: 1 << 30,
        }
    }
}

/// What one rich query may cost: past either bound it is refused with
/// `422 QUERY_BUDGET_EXCEEDED` rather than hold a replica's CPU.
#[derive(Clone, Copy, Debug)]
pub struct QueryBudget {
    /// Stored rows one query may read (after the column equalities narrowed them in SQL).
    pub max_rows_scanned: u64,
    /// Time one query may take.
    pub max_time: Duration,
}

impl Default for QueryBudget {
    fn default() -> QueryBudget {
        QueryBudget {
            max_rows_scanned: 500_000,
            max_time: Duration::from_secs(5),
        }
    }
}

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn RecordStore>,
    /// Where each request's tenant (and the identity that signs its records) comes from.
    pub tenancy: Tenancy,
    /// Token environment label (`spl_<env>_…`).
    pub env: Arc<str>,
    pub auth_enforced: bool,
    pub tokens: Arc<TokenCache>,
    pub namespaces: Arc<Namespaces>,
    pub limits: Limits,
    /// Token buckets per client address and per token (see [`crate::rate_limit`]).
    pub rate_limits: Arc<RateLimiters>,
    /// The watches and longpolls open on this replica (see [`crate::streams`]).
    pub streams: Arc<StreamSlots>,
    /// Exports running on this replica: one per tenant and token, each reads the whole store.
    pub exports: Arc<StreamSlots>,
    /// Who may create a local steward's first service account over HTTP.
    pub bootstrap: BootstrapDoor,
    /// Browser origins allowed to call this steward (CORS); none means no CORS headers at all.
    pub cors_origins: Arc<[String]>,
    /// Serve `GET /metrics` on the main listener (a local steward on loopback, or asked to).
    pub metrics_on_main: bool,
    /// A local steward bound to a loopback address: peers elsewhere cannot reach it.
    pub loopback_only: bool,
    pub search_enabled: bool,
    pub heartbeat: Duration,
    /// Cancelled when the steward begins a graceful shutdown; watch streams say goodbye.
    pub shutdown: CancellationToken,
    /// Pairing, consent and the pull jobs.
    pub federation: Arc<Federation>,
    /// The rotation key this steward may sign its tenants' did:sync operations with (a home's
    /// own; the platform's, listed in every tenant DID it registered): after a fence, it points
    /// the DID at the new home.
    pub did_publisher: Option<Arc<Publisher>>,
    /// The buckets that bound how many refusals are recorded (protocol.md §13.3).
    pub refusals: Arc<RefusalLog>,
    /// The did:sync directory this steward serves at `/directory/*` (`spl serve
    /// --directory-enabled`); none answers there 404.
    pub directory: Option<syncropel_directory::AppState>,
}

/// `POST /v1/bootstrap/service-account`, open until the first account exists, hands out an admin
/// token to whoever calls first, so it is open only where nobody else can call: on a loopback
/// listener, or to a caller who presents the configured secret (`x-bootstrap-secret`).
#[derive(Clone, Debug)]
pub enum BootstrapDoor {
    Open,
    Secret(Arc<str>),
    /// Listening beyond loopback without a secret (and hosted, where tenants are bootstrapped by
    /// provisioning): the first account is made with `spl service-account create --bootstrap`.
    Closed,
}

/// Where tenants come from.
#[derive(Clone)]
pub enum Tenancy {
    /// `spl serve`: the home's one tenant.
    Single(Arc<Tenant>),
    /// The hosted platform: tenants live in Postgres and are found by address.
    Hosted(Arc<Platform>),
}

impl Tenancy {
    /// How long a change to a tenant (its status, its departure) may go unseen by a request
    /// somewhere: a hosted replica trusts its cached tenant this long; the one local tenant is
    /// shared.
    pub fn staleness(&self) -> Duration {
        match self {
            Tenancy::Single(_) => Duration::ZERO,
            Tenancy::Hosted(_) => TENANT_CACHE_TTL,
        }
    }
}
