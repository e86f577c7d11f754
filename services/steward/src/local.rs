//! Local mode: `spl serve` runs the steward for the one tenant of a home, on its SQLite store.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use syncropel_federation::{renewal, Federation, FederationConfig, Shared};
use syncropel_protocol::unix_now;
use syncropel_store::{RecordStore, SqliteStore};
use syncropel_telemetry::connections::ConnectionLimits;
use syncropel_telemetry::serve::Drain;
use syncropel_tenant::{
    create_service_account, mint, validate_scopes, Namespaces, TokenCache, LOCAL_TOKEN_CACHE_TTL,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::router;
use crate::rate_limit::{RateLimiters, RateLimits};
use crate::state::Tenancy;
use crate::state::{AppState, BootstrapDoor, Limits};
use crate::streams::StreamSlots;
use crate::tenant::{Tenant, TenantStatus};
use crate::StewardError;
use syncropel_federation::directory::Publisher;
use syncropel_home::{Home, StewardInfo};

pub use syncropel_home::LOCAL_TENANT;
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
    pub limits: Limits,
    pub heartbeat: Duration,
    /// How the steward stops after SIGTERM.
    pub drain: Drain,
    /// What one client may hold of the listener.
    pub connections: ConnectionLimits,
    /// Serve `POST /v1/records/search`; off answers 503 SEARCH_DISABLED.
    pub search: bool,
    /// Rate limits per client address and per token; off by default in local mode (see
    /// [`RateLimits`]).
    pub rate_limits: RateLimits,
    /// The secret `POST /v1/bootstrap/service-account` asks for; without one the route is open
    /// on a loopback listener only.
    pub bootstrap_secret: Option<String>,
    /// Browser origins allowed by CORS; none sends no CORS headers.
    pub cors_origins: Vec<String>,
    /// Serve `GET /metrics` (unauthenticated) also when listening beyond loopback.
    pub public_metrics: bool,
    pub federation: FederationConfig,
    /// Serve a did:sync directory at `/directory/*`, its store `directory.db` in the home.
    pub directory: bool,
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

/// Opens the directory the steward serves at `/directory/*`: `directory.db` in the home (WAL,
/// durable commits), with the standalone directory's rules.
async fn open_directory(
    home: &Home,
    stopping: CancellationToken,
) -> Result<syncropel_directory::AppState, StewardError> {
    let path = home.directory_db_path();
    let store = syncropel_directory::Store::open_file(&path).await?;
    tracing::info!(store = %path.display(), "serving a did:sync directory at /directory");
    Ok(syncropel_directory::AppState::new(
        Arc::new(store),
        syncropel_directory::Rules::default(),
        syncropel_directory::Clock::system(),
        stopping,
    ))
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
        Ok::<_, syncropel_tenant::TenantError>(BootstrapOutcome {
            sa_id: sa.id,
            token: token.map(|t| t.token),
        })
    }
    .await;
    store.close().await;
    result.map_err(|e| match e {
        syncropel_tenant::TenantError::Refused(refusal) => StewardError::Invalid(refusal.message),
        other => StewardError::Invalid(other.to_string()),
    })
}

/// Binds the address the options name (`--port 0` picks a free port).
pub async fn bind(options: &ServeOptions) -> Result<TcpListener, StewardError> {
    let ip: IpAddr = options.host.parse().map_err(|_| {
        StewardError::Invalid(format!("--host '{}' is not an IP address", options.host))
    })?;
    if options.insecure_localhost && !ip.is_loopback() {
        return Err(StewardError::Invalid(format!(
            "--insecure-localhost turns authentication off and only binds a loopback address, not {ip}"
        )));
    }
    let addr = SocketAddr::new(ip, options.port);
    TcpListener::bind(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => StewardError::PortInUse(addr),
        _ => StewardError::Io(e),
    })
}

/// A local steward built on its listener, ready to [`run`](LocalSteward::run).
pub struct LocalSteward {
    pub state: AppState,
    /// `http://<bound address>`.
    pub url: String,
    listener: TcpListener,
    home: Home,
    drain: Drain,
    connections: ConnectionLimits,
}

/// A home published as a did:sync signs its operations with its own rotation key, at its
/// directory.
fn did_publisher(home: &Home) -> Result<Option<Arc<Publisher>>, StewardError> {
    let Some(published) = home.published()? else {
        return Ok(None);
    };
    match (published.method.as_str(), published.directory) {
        ("sync", Some(directory)) => Ok(Some(Arc::new(Publisher {
            directory,
            rotation_key: Arc::new(home.rotation_keypair()?),
        }))),
        _ => Ok(None),
    }
}

/// Builds the local steward of a home on `listener`: opens its store, starts discovery, and
/// resumes the pull jobs and token renewal in the background. Nothing is served yet.
pub async fn start(
    options: ServeOptions,
    listener: TcpListener,
) -> Result<LocalSteward, StewardError> {
    // DIDs registered at a directory must outlive its process, or they stop resolving.
    if options.directory && options.memory {
        return Err(StewardError::Invalid(
            "--directory-enabled keeps its DIDs in directory.db in the home; it cannot run with --memory"
                .into(),
        ));
    }
    let identity = options.home.identity()?;
    let bound = listener.local_addr()?;
    let store = open_store(&options.home, options.memory).await?;
    let url = format!("http://{bound}");
    // The manifest names the address this steward bound, never one a caller's Host header claims.
    let tenant = Arc::new(
        Tenant::new(
            LOCAL_TENANT.to_string(),
            identity,
            TenantStatus::Active,
            false,
        )
        .with_url(url.clone()),
    );
    tenant.set_departure(
        syncropel_portability::departure::load(store.as_ref(), LOCAL_TENANT)
            .await
            .map_err(|e| {
                StewardError::Invalid(format!("reading where this home is moving: {e}"))
            })?,
    );
    tenant.set_config(
        syncropel_tenant::config::load(store.as_ref(), LOCAL_TENANT)
            .await
            .map_err(|e| StewardError::Invalid(format!("reading the engine config: {e}")))?,
    );
    reseal_after_rotation(store.as_ref(), &tenant.identity).await?;
    let shutdown = CancellationToken::new();
    let directory = match options.directory {
        true => Some(open_directory(&options.home, shutdown.clone()).await?),
        false => None,
    };
    let tokens = Arc::new(TokenCache::new(LOCAL_TOKEN_CACHE_TTL));
    let namespaces = Arc::new(Namespaces::default());
    let federation = Arc::new(Federation::new(
        options.federation.clone(),
        Shared {
            store: store.clone(),
            namespaces: namespaces.clone(),
            tokens: tokens.clone(),
            env: LOCAL_ENV.into(),
            shutdown: shutdown.clone(),
        },
    ));
    let state = AppState {
        store: store.clone(),
        tenancy: Tenancy::Single(tenant.clone()),
        env: LOCAL_ENV.into(),
        auth_enforced: !options.insecure_localhost,
        tokens,
        namespaces,
        limits: options.limits,
        rate_limits: Arc::new(RateLimiters::new(options.rate_limits)),
        streams: Arc::new(StreamSlots::new(options.limits.streams)),
        exports: Arc::new(StreamSlots::new(crate::streams::EXPORT_LIMITS)),
        bootstrap: match (&options.bootstrap_secret, bound.ip().is_loopback()) {
            (Some(secret), _) => BootstrapDoor::Secret(secret.as_str().into()),
            (None, true) => BootstrapDoor::Open,
            (None, false) => BootstrapDoor::Closed,
        },
        cors_origins: options.cors_origins.clone().into(),
        metrics_on_main: options.public_metrics || bound.ip().is_loopback(),
        loopback_only: bound.ip().is_loopback(),
        search_enabled: options.search,
        heartbeat: options.heartbeat,
        shutdown,
        federation: federation.clone(),
        did_publisher: did_publisher(&options.home)?,
        refusals: Arc::default(),
        directory,
    };
    syncropel_federation::discovery::start(&federation, &tenant);
    let moved = matches!(
        tenant.departure(),
        syncropel_tenant::Departure::Moved { .. }
    );
    if !bound.ip().is_unspecified() && !moved {
        publish_own_url(&options.home, &state, &url);
    }
    // Pull jobs resume from their cursor rows.
    tokio::spawn(async move {
        if let Err(e) = federation.resume_jobs(tenant.clone()).await {
            tracing::error!(error = %e, "could not resume the pull jobs");
        }
        let every = federation.config.renewal_interval;
        renewal::spawn(federation, tenant, every);
    });

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
    Ok(LocalSteward {
        state,
        url,
        listener,
        home: options.home,
        drain: options.drain,
        connections: options.connections,
    })
}

impl LocalSteward {
    /// Serves until SIGTERM or SIGINT (or until `state.shutdown` is cancelled), then drains:
    /// watch streams get `server_shutdown`, in-flight requests get the drain's grace to finish,
    /// queued writes commit. `steward.json` names the steward while it runs.
    pub async fn run(self) -> Result<(), StewardError> {
        let LocalSteward {
            state,
            url,
            listener,
            home,
            drain,
            connections,
        } = self;
        home.write_steward_info(&StewardInfo {
            url: url.clone(),
            pid: std::process::id(),
            started_at: unix_now() as u64,
        })?;
        let did = match &state.tenancy {
            Tenancy::Single(tenant) => tenant.identity.did.to_string(),
            Tenancy::Hosted(_) => String::new(),
        };
        tracing::info!(%url, %did, "steward listening");
        let (store, shutdown) = (state.store.clone(), state.shutdown.clone());
        let directory = state.directory.as_ref().map(|d| d.store.clone());
        let outcome = syncropel_telemetry::serve::serve(
            listener,
            router(state),
            None,
            shutdown,
            drain,
            connections,
        )
        .await
        .map_err(StewardError::Io);
        store.close().await;
        if let Some(directory) = directory {
            directory.close().await;
        }
        home.remove_steward_info();
        outcome
    }
}

/// Runs the local steward of a home until SIGTERM or SIGINT, then drains.
pub async fn serve(options: ServeOptions) -> Result<(), StewardError> {
    let listener = bind(&options).await?;
    start(options, listener).await?.run().await
}

/// After `spl identity rotate`, the values sealed at rest under the retired key (secret values,
/// the bearers peers issued) are sealed again under the current one before anything reads them.
/// Retired keys stay in the home, so this also finishes a restart interrupted midway.
async fn reseal_after_rotation(
    store: &dyn RecordStore,
    identity: &syncropel_tenant::Identity,
) -> Result<(), StewardError> {
    if identity.retired_keys.is_empty() {
        return Ok(());
    }
    let failed = |e: &dyn std::fmt::Display| {
        StewardError::Invalid(format!("sealing values again after a key rotation: {e}"))
    };
    let secrets = syncropel_tenant::secrets::reseal(store, LOCAL_TENANT, identity)
        .await
        .map_err(|e| failed(&e))?;
    let bearers = syncropel_federation::state::reseal(store, LOCAL_TENANT, identity)
        .await
        .map_err(|e| failed(&e))?;
    if secrets + bearers > 0 {
        tracing::info!(
            secrets,
            bearers,
            "values sealed under a retired identity key are sealed under the current one"
        );
    }
    Ok(())
}

/// A did:sync nobody named an endpoint for (`spl identity upgrade` without
/// `--service-endpoint`) names this steward's own URL as its `syncropel` service at its
/// directory, so that peers resolving it find the steward; a start at another address publishes
/// that one. An endpoint the operator chose is left alone, and so is the DID of a home that
/// moved away (its new home publishes) or that listens on every address (no URL names that). In
/// the background: a directory that does not answer delays nothing (the next start tries again).
fn publish_own_url(home: &Home, state: &AppState, url: &str) {
    let Ok(Some(published)) = home.published() else {
        return;
    };
    let Some(publisher) = state.did_publisher.clone() else {
        return;
    };
    let named_elsewhere = published.endpoint.is_some() && !published.endpoint_auto;
    if published.method != "sync" || named_elsewhere || published.endpoint.as_deref() == Some(url) {
        return;
    }
    let (home, fed, url) = (home.clone(), state.federation.clone(), url.to_string());
    tokio::spawn(async move {
        let client = fed.directory_client();
        match publisher
            .publish_endpoint(client, &published.did, &url)
            .await
        {
            Ok(head) => {
                let mut published = published;
                published.endpoint = Some(url.clone());
                published.endpoint_auto = true;
                published.head = Some(head);
                match home.publish(&published) {
                    Ok(()) => {
                        tracing::info!(%url, did = %published.did, "published this steward's URL as the DID's service")
                    }
                    Err(e) => tracing::warn!(error = %e, "recording the published endpoint"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "publishing this steward's URL at the directory"),
        }
    });
}
