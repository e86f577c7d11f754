//! Local mode: `spl serve` runs the steward for the one tenant of a home, on its SQLite store.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use syncropel_store::{RecordStore, SqliteStore};
use syncropel_telemetry::serve::Drain;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{router, AppState, Limits};
use crate::auth::{TokenCache, LOCAL_TOKEN_CACHE_TTL};
use crate::federation::{Federation, FederationConfig};
use crate::home::{Home, StewardInfo};
use crate::rate_limit::{RateLimiters, RateLimits};
use crate::tenant::{Tenancy, Tenant, TenantStatus};
use crate::StewardError;
use syncropel_protocol::unix_now;
use syncropel_tenant::validate_scopes;
use syncropel_tenant::{create_service_account, mint};

/// The single tenant of a local steward.
pub const LOCAL_TENANT: &str = "local";
/// The token environment label of local stewards (`spl_local_…`).
pub const LOCAL_ENV: &str = "local";

pub struct ServeOptions {
    pub home: Home,
    pub host: String,
    pub port: u16,
    /// Keep the store in memory: nothing survives the process.
    pub memory: bool,
    /// Switch authentication off; only allowed on a loopback address.
    pub insecure_localhost: bool,
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    pub heartbeat: Duration,
    /// How the steward stops after SIGTERM.
    pub drain: Drain,
    /// Serve `POST /v1/records/search`; off answers 503 SEARCH_DISABLED.
    pub search: bool,
    /// Rate limits per client address and per token; off by default in local mode (see
    /// [`RateLimits`]).
    pub rate_limits: RateLimits,
    pub federation: FederationConfig,
}

pub struct BootstrapRequest {
    pub name: String,
    pub scopes: Vec<String>,
    pub allowed_actors: Vec<String>,
    pub with_token: bool,
}

pub struct BootstrapOutcome {
    pub sa_id: String,
    pub token: Option<String>,
}

/// Opens the home's store: `hub.db` (WAL, durable commits), or a private in-memory database.
pub async fn open_store(home: &Home, memory: bool) -> Result<Arc<dyn RecordStore>, StewardError> {
    let store = if memory {
        SqliteStore::open_in_memory().await?
    } else {
        SqliteStore::open_file(&home.db_path()).await?
    };
    Ok(Arc::new(store))
}

/// Creates a service account directly in the home's store, whether or not a steward is running
/// (SQLite serializes the two writers). With `with_token`, mints its first token.
pub async fn bootstrap_service_account(
    home: &Home,
    request: &BootstrapRequest,
) -> Result<BootstrapOutcome, StewardError> {
    validate_scopes(&request.scopes).map_err(|e| StewardError::Invalid(e.message))?;
    let identity = home.identity()?;
    let store = open_store(home, false).await?;
    let result = async {
        let sa = create_service_account(
            store.as_ref(),
            LOCAL_TENANT,
            &identity,
            &request.name,
            request.scopes.clone(),
            request.allowed_actors.clone(),
        )
        .await?;
        let token = if request.with_token {
            Some(
                mint(
                    store.as_ref(),
                    LOCAL_TENANT,
                    &identity,
                    LOCAL_ENV,
                    &sa.id,
                    None,
                )
                .await?,
            )
        } else {
            None
        };
        Ok::<_, crate::error::ApiError>(BootstrapOutcome {
            sa_id: sa.id,
            token: token.map(|t| t.token),
        })
    }
    .await;
    store.close().await;
    result.map_err(|e| StewardError::Invalid(e.message))
}

/// Runs the local steward until SIGTERM or SIGINT, then drains: watch streams get
/// `server_shutdown`, in-flight requests get the drain's grace to finish, queued writes commit.
pub async fn serve(options: ServeOptions) -> Result<(), StewardError> {
    let ip: IpAddr = options.host.parse().map_err(|_| {
        StewardError::Invalid(format!("--host '{}' is not an IP address", options.host))
    })?;
    if options.insecure_localhost && !ip.is_loopback() {
        return Err(StewardError::Invalid(format!(
            "--insecure-localhost turns authentication off and only binds a loopback address, not {ip}"
        )));
    }
    let identity = options.home.identity()?;
    let did = identity.did.clone();
    let addr = SocketAddr::new(ip, options.port);
    let listener = TcpListener::bind(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => StewardError::PortInUse(addr),
        _ => StewardError::Io(e),
    })?;
    let bound = listener.local_addr()?;
    let store = open_store(&options.home, options.memory).await?;

    let shutdown = CancellationToken::new();
    // The manifest names the address this steward bound, never one a caller's Host header claims.
    let tenant = Tenant::new(
        LOCAL_TENANT.to_string(),
        identity,
        TenantStatus::Active,
        false,
    )
    .with_url(format!("http://{bound}"));
    let state = AppState {
        store: store.clone(),
        tenancy: Tenancy::Single(Arc::new(tenant)),
        env: LOCAL_ENV.into(),
        auth_enforced: !options.insecure_localhost,
        tokens: Arc::new(TokenCache::new(LOCAL_TOKEN_CACHE_TTL)),
        namespaces: Arc::default(),
        limits: Limits {
            max_body_bytes: options.max_body_bytes,
            max_json_depth: options.max_json_depth,
        },
        rate_limits: Arc::new(RateLimiters::new(options.rate_limits)),
        search_enabled: options.search,
        heartbeat: options.heartbeat,
        shutdown: shutdown.clone(),
        federation: Arc::new(Federation::new(
            options.federation.clone(),
            shutdown.clone(),
        )),
    };
    crate::discovery::start(&state);
    // Pull jobs resume from their cursor rows.
    if let Tenancy::Single(tenant) = &state.tenancy {
        let (state, tenant) = (state.clone(), tenant.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::federation::resume_jobs(&state, tenant.clone()).await {
                tracing::error!(error = %e.message, "could not resume the pull jobs");
            }
            let every = state.federation.config.renewal_interval;
            crate::federation::renewal::spawn(state, tenant, every);
        });
    }

    if options.insecure_localhost {
        tracing::warn!("authentication is OFF (--insecure-localhost): anyone on this machine can read and write");
    } else if !store.has_service_accounts(LOCAL_TENANT).await? {
        tracing::warn!(
            "no service account yet: /v1 answers 503 until you run `{}`",
            crate::auth::BOOTSTRAP_COMMAND
        );
    }

    let limits = options.rate_limits;
    if limits != RateLimits::default() {
        tracing::info!(per_address = ?limits.per_address, per_token = ?limits.per_token, "rate limits on");
    }

    let url = format!("http://{bound}");
    options.home.write_steward_info(&StewardInfo {
        url: url.clone(),
        pid: std::process::id(),
        started_at: unix_now() as u64,
    })?;
    tracing::info!(%url, %did, "steward listening");

    let outcome =
        syncropel_telemetry::serve::serve(listener, router(state), None, shutdown, options.drain)
            .await
            .map_err(StewardError::Io);
    store.close().await;
    options.home.remove_steward_info();
    outcome
}
