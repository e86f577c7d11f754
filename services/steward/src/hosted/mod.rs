//! Hosted mode: many tenants on stateless replicas over one Postgres.
//!
//! Nothing a request needs lives only in one replica's memory: tenants, keys, tokens and records
//! are in Postgres; the caches here (tenants for [`TENANT_CACHE_TTL`]) only save lookups, and
//! committed records reach every replica's watchers through LISTEN/NOTIFY (see the store).

pub mod addressing;
pub mod jwt;
pub mod kek;
pub mod leases;
pub mod platform;
pub mod provision;

pub use platform::{
    DirectoryRegistration, Platform, PlatformConfig, DEFAULT_RESERVED_LABELS, TENANT_CACHE_TTL,
};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use syncropel_federation::{Federation, FederationConfig, Shared};
use syncropel_store::platform::PlatformStore;
use syncropel_store::{PgStore, RecordStore};
use syncropel_telemetry::connections::ConnectionLimits;
use syncropel_telemetry::serve::Drain;
use syncropel_tenant::{Namespaces, TokenCache};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::router;
use crate::rate_limit::{RateLimiters, RateLimits};
use crate::state::Tenancy;
use crate::state::{AppState, BootstrapDoor, Limits};
use crate::streams::StreamSlots;
use crate::StewardError;
use addressing::address;
use jwt::JwtVerifier;
use kek::Kek;

/// Re-seals every tenant key that the current KEK did not seal, in one transaction: run it after
/// every replica has the new KEK with the old one as previous (`with_previous`). Idempotent; if
/// any key opens with neither, nothing changes. Returns how many keys were re-sealed.
pub async fn rotate_kek(store: &PlatformStore, kek: &Kek) -> Result<usize, StewardError> {
    store
        .reseal_keys(|id, nonce, sealed| {
            if kek.sealed_by_current(id, nonce, sealed) {
                return Ok(None);
            }
            let seed = kek.open(id, nonce, sealed)?;
            Ok(Some(kek.seal(id, &seed)))
        })
        .await
}

/// Everything a hosted steward is configured with.
pub struct HostedOptions {
    pub database_url: String,
    pub platform: PlatformConfig,
    pub kek: Kek,
    pub jwt: JwtVerifier,
    pub limits: Limits,
    pub rate_limits: RateLimits,
    /// Browser origins allowed by CORS; none sends no CORS headers.
    pub cors_origins: Vec<String>,
    pub heartbeat: Duration,
    /// How often each replica looks for deleted tenants past their grace period.
    pub purge_interval: Duration,
    pub federation: FederationConfig,
}

/// A hosted steward ready to serve: its state and the service to run.
pub struct Hosted {
    pub state: AppState,
    pub platform: Arc<Platform>,
    pub app: Router,
    /// This replica's leases on pull jobs.
    pub leases: Arc<leases::Leases>,
}

/// Connects to Postgres (applying migrations) and builds the app.
pub async fn build(options: HostedOptions) -> Result<Hosted, StewardError> {
    let store = Arc::new(PgStore::open(&options.database_url).await?);
    let platform = Arc::new(Platform::new(
        store.platform(),
        options.platform,
        options.kek,
        options.jwt,
        store.clone(),
    ));
    let shutdown = CancellationToken::new();
    let leases = Arc::new(leases::Leases::new(
        store.platform(),
        options.federation.lease_ttl,
    ));
    let store = store as Arc<dyn RecordStore>;
    // No token cache: a revocation through any replica holds on every replica at once.
    let tokens = Arc::new(TokenCache::new(Duration::ZERO));
    let namespaces = Arc::new(Namespaces::default());
    let env: Arc<str> = platform.config.env.as_str().into();
    let federation = Federation::new(
        options.federation,
        Shared {
            store: store.clone(),
            namespaces: namespaces.clone(),
            tokens: tokens.clone(),
            env: env.clone(),
            shutdown: shutdown.clone(),
        },
    )
    .with_placement(leases.clone());
    let state = AppState {
        store,
        tenancy: Tenancy::Hosted(platform.clone()),
        env,
        auth_enforced: true,
        tokens,
        namespaces,
        limits: options.limits,
        rate_limits: Arc::new(RateLimiters::new(options.rate_limits)),
        streams: Arc::new(StreamSlots::new(options.limits.streams)),
        exports: Arc::new(StreamSlots::new(crate::streams::EXPORT_LIMITS)),
        bootstrap: BootstrapDoor::Closed,
        cors_origins: options.cors_origins.clone().into(),
        // Replicas serve metrics on an internal listener only, never on a tenant host.
        metrics_on_main: false,
        // Tenants are reached through their hosts, whatever address a replica binds.
        loopback_only: false,
        search_enabled: true,
        heartbeat: options.heartbeat,
        shutdown,
        federation: Arc::new(federation),
        did_publisher: platform
            .config
            .registration
            .as_ref()
            .map(|registration| Arc::new(registration.publisher())),
        refusals: Arc::default(),
        // The platform runs the directory as a service of its own.
        directory: None,
    };
    leases::spawn(state.federation.clone(), platform.clone(), leases.clone());
    let addressing = Arc::new(platform.config.addressing.clone());
    // The addressing middleware may rewrite the URI, so it wraps the whole router (a layer on the
    // router itself would run after routing).
    let app = Router::new()
        .fallback_service(router(state.clone()))
        .layer(axum::middleware::from_fn_with_state(addressing, address));
    let purge_every = options.purge_interval;
    let sweeper = platform.clone();
    let stop = state.shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(purge_every);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = sweeper.delete_moved().await {
                tracing::warn!(error = %e, "deleting tenants that moved away failed; will retry");
            }
            if let Err(e) = sweeper.purge_expired().await {
                tracing::warn!(error = %e, "purging deleted tenants failed; will retry");
            }
            sweeper.count_active_tenants().await;
        }
    });
    Ok(Hosted {
        state,
        platform,
        app,
        leases,
    })
}

/// Where a hosted replica listens and how it stops.
pub struct Listeners {
    pub bind: SocketAddr,
    /// The internal listener for `GET /metrics` (never reachable through a tenant host).
    pub metrics: Option<SocketAddr>,
    pub drain: Drain,
    pub connections: ConnectionLimits,
}

impl Hosted {
    /// Serves on `listener` (and `GET /metrics` on `metrics`) until SIGTERM or SIGINT, or until
    /// `state.shutdown` is cancelled, then drains (see [`syncropel_telemetry::serve`]): not
    /// ready, leases handed back, streams told to reconnect. The listeners are bound by the
    /// caller, so that whoever needs the address knows it before serving begins.
    pub async fn run(
        self,
        listener: TcpListener,
        metrics: Option<TcpListener>,
        drain: Drain,
        connections: ConnectionLimits,
    ) -> Result<(), StewardError> {
        let config = self.platform.config();
        tracing::info!(
            addr = %listener.local_addr()?,
            metrics = ?metrics.as_ref().and_then(|m| m.local_addr().ok()),
            base_domain = %config.addressing.base_domain,
            path_prefix = ?config.addressing.path_prefix,
            "hosted steward listening"
        );
        let store = self.state.store.clone();
        let outcome = syncropel_telemetry::serve::serve(
            listener,
            self.app,
            metrics,
            self.state.shutdown.clone(),
            drain,
            connections,
        )
        .await
        .map_err(StewardError::Io);
        store.close().await;
        outcome
    }
}

/// Runs a hosted replica until SIGTERM or SIGINT, then drains (see [`Hosted::run`]).
pub async fn serve(options: HostedOptions, listeners: Listeners) -> Result<(), StewardError> {
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => StewardError::PortInUse(addr),
            _ => StewardError::Io(e),
        })
    };
    let listener = bind(listeners.bind).await?;
    let metrics = match listeners.metrics {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    build(options)
        .await?
        .run(listener, metrics, listeners.drain, listeners.connections)
        .await
}
