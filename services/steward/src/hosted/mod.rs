//! Hosted mode: many tenants on stateless replicas over one Postgres.
//!
//! Nothing a request needs lives only in one replica's memory: tenants, keys, tokens and records are
//! in Postgres; the caches here (tenants for [`TENANT_CACHE_TTL`]) only save lookups, and committed
//! records reach every replica's watchers through LISTEN/NOTIFY (see the store).

pub mod jwt;
pub mod kek;
pub mod leases;
pub mod provision;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use syncropel_federation::{Federation, FederationConfig, Shared};
use syncropel_protocol::Keypair;
use syncropel_store::{PgStore, RecordStore};
use syncropel_telemetry::serve::Drain;
use syncropel_tenant::{Namespaces, TokenCache};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{router, AppState, Limits};
use crate::error::ApiError;
use crate::rate_limit::{RateLimiters, RateLimits};
use crate::tenant::{address, Addressing, Tenancy, Tenant, TenantStatus};
use crate::StewardError;
use jwt::JwtVerifier;
use kek::Kek;
use syncropel_tenant::Identity;

/// How long a replica trusts what it read about a tenant (status, key). A suspension made through
/// another replica holds here after at most this long; through this replica, at once.
pub const TENANT_CACHE_TTL: Duration = Duration::from_secs(2);

/// The platform's rules for tenants.
#[derive(Clone, Debug)]
pub struct PlatformConfig {
    pub addressing: Addressing,
    /// Scheme of the tenants' public URLs (`https` behind a TLS ingress).
    pub public_scheme: String,
    /// Token environment label: tokens read `spl_<env>_…`.
    pub env: String,
    /// Tenants one account may hold at once.
    pub tenant_limit: u32,
    /// How long a deleted tenant stays readable (and its label unavailable) before it is purged.
    pub deletion_grace: Duration,
    /// Labels no tenant may take.
    pub reserved_labels: Vec<String>,
    /// Where new tenants' did:sync are registered, if anywhere (FEDERATION §1.4, §8.1).
    pub registration: Option<DirectoryRegistration>,
}

/// The directory new tenants are registered at, and the platform's rotation key, listed after
/// the user's recovery key in each tenant's did:sync so that the user can always leave unaided.
#[derive(Clone)]
pub struct DirectoryRegistration {
    pub directory: String,
    pub rotation_key: Arc<Keypair>,
}

impl DirectoryRegistration {
    /// Registers a did:sync for a tenant whose records `key` signs, reachable at `url`. Its
    /// rotation keys are the user's recovery key first, when given, then the platform's
    /// (FEDERATION §1.4, §8.1). `created_at` pins the genesis time, so that a retry posts the
    /// same operation and gets the same DID.
    pub async fn register(
        &self,
        client: &syncropel_federation::PeerClient,
        key: &Keypair,
        recovery_key: Option<&str>,
        url: &str,
        created_at: Option<&str>,
    ) -> Result<String, ApiError> {
        use syncropel_protocol::did_sync::{did_from_genesis, sign_operation};
        use syncropel_protocol::ErrorCode;
        let mut rotation_keys: Vec<String> = recovery_key.map(str::to_string).into_iter().collect();
        rotation_keys.push(self.rotation_key.did_key());
        let mut genesis = syncropel_federation::directory::sync_genesis(
            key,
            rotation_keys,
            Vec::new(),
            Vec::new(),
            Some(url),
        );
        if let Some(created_at) = created_at {
            genesis.created_at = created_at.to_string();
        }
        let signed = sign_operation(&genesis, &self.rotation_key);
        let did = did_from_genesis(&signed);
        let answer =
            syncropel_federation::directory::submit(client, &self.directory, "genesis", &signed)
                .await?;
        if answer["did"].as_str() != Some(did.as_str()) {
            return Err(ApiError::new(
                ErrorCode::PeerUnreachable,
                format!(
                    "the directory registered {} instead of {did}",
                    answer["did"]
                ),
            ));
        }
        Ok(did)
    }
}

impl std::fmt::Debug for DirectoryRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryRegistration")
            .field("directory", &self.directory)
            .field("rotation_key", &self.rotation_key.did_key())
            .finish()
    }
}

/// Labels refused by default: names of the platform's own hosts and words that would mislead.
pub const DEFAULT_RESERVED_LABELS: &[&str] = &[
    "admin",
    "api",
    "app",
    "auth",
    "billing",
    "blog",
    "cdn",
    "dashboard",
    "directory",
    "dns",
    "docs",
    "ftp",
    "help",
    "imap",
    "internal",
    "login",
    "mail",
    "metrics",
    "mx",
    "ns1",
    "ns2",
    "platform",
    "pop",
    "provision",
    "relay",
    "root",
    "security",
    "signup",
    "smtp",
    "ssl",
    "staging",
    "static",
    "status",
    "steward",
    "support",
    "syncropel",
    "system",
    "test",
    "www",
];

/// The hosted platform: its database, keys and rules, and a short cache of tenants.
pub struct Platform {
    pool: PgPool,
    config: PlatformConfig,
    kek: Kek,
    jwt: JwtVerifier,
    tenants: RwLock<HashMap<String, (Arc<Tenant>, Instant)>>,
}

impl Platform {
    pub fn new(pool: PgPool, config: PlatformConfig, kek: Kek, jwt: JwtVerifier) -> Platform {
        Platform {
            pool,
            config,
            kek,
            jwt,
            tenants: RwLock::default(),
        }
    }

    /// The platform's database (tenants, provisioning), shared with the record store.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn config(&self) -> &PlatformConfig {
        &self.config
    }

    /// The public URL of a tenant, without a trailing slash.
    pub fn tenant_url(&self, label: &str) -> String {
        let scheme = &self.config.public_scheme;
        let base = &self.config.addressing.base_domain;
        match &self.config.addressing.path_prefix {
            Some(prefix) => format!("{scheme}://{base}{prefix}/{label}"),
            None => format!("{scheme}://{label}.{base}"),
        }
    }

    /// The live tenant behind a label: active, suspended, or deleted within its grace period.
    pub async fn tenant(&self, label: &str) -> Result<Option<Arc<Tenant>>, ApiError> {
        if let Some(tenant) = self.cached(label) {
            return Ok(Some(tenant));
        }
        let row = sqlx::query(
            "SELECT id, label, status, did, key_nonce, key_sealed FROM tenants \
             WHERE label = $1 AND (status IN ('active', 'suspended') \
                OR (status = 'deleted' AND deleted_at > now() - make_interval(secs => $2)))",
        )
        .bind(label)
        .bind(self.config.deletion_grace.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: String = row.get("id");
        let status = match row.get::<&str, _>("status") {
            "active" => TenantStatus::Active,
            "suspended" => TenantStatus::Suspended,
            _ => TenantStatus::Deleted,
        };
        let identity = self.identity(&id, &row)?;
        // Every hosted tenant gets its bootstrap account while it is provisioned.
        let tenant =
            Arc::new(Tenant::new(id, identity, status, true).with_url(self.tenant_url(label)));
        let mut cache = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 100_000 {
            cache.retain(|_, (_, at)| at.elapsed() < TENANT_CACHE_TTL);
        }
        cache.insert(label.to_string(), (tenant.clone(), Instant::now()));
        Ok(Some(tenant))
    }

    /// The identity of tenant `id` from its row (`label`, `did`, `key_nonce`, `key_sealed`): the
    /// sealed key opened with the KEK, checked against the stored DID. A tenant registered at a
    /// directory is known by its did:sync and also answers, on its host, for the did:web of that
    /// host, whose document names the did:sync (§1.3: never the tenant's primary identity).
    pub(crate) fn identity(&self, id: &str, row: &PgRow) -> Result<Identity, ApiError> {
        let seed = self
            .kek
            .open(id, row.get("key_nonce"), row.get("key_sealed"))
            .map_err(ApiError::internal)?;
        let key = Keypair::from_seed(&seed);
        let did: &str = row.get("did");
        if did == key.did_key() {
            return Ok(Identity::new(key));
        }
        if !syncropel_protocol::sync::has_document(did) || !did.starts_with("did:sync:") {
            return Err(ApiError::internal(format!(
                "tenant {id}: the stored DID does not match its key"
            )));
        }
        let label: &str = row.get("label");
        let did_web = self
            .tenant_host(label)
            .map(|host| syncropel_tenant::DidWeb {
                did: syncropel_protocol::did_doc::did_web_for(&host, None),
                keys: vec![(
                    "key-1".into(),
                    syncropel_federation::directory::multibase(&key),
                )],
                current: vec!["key-1".into()],
                also_known_as: vec![did.to_string()],
                endpoint: None,
            });
        Ok(Identity::published(
            key,
            did.to_string(),
            Vec::new(),
            did_web,
        ))
    }

    /// The tenant's own host (`<label>.<base-domain>`), when tenants are addressed by host.
    fn tenant_host(&self, label: &str) -> Option<String> {
        match &self.config.addressing.path_prefix {
            Some(_) => None,
            None => Some(format!("{label}.{}", self.config.addressing.base_domain)),
        }
    }

    /// Registers a did:key tenant's did:sync at the platform's directory and makes it the
    /// tenant's DID (FEDERATION §1.4: existing tenants can upgrade). Its pairs were made with
    /// the old DID, so a tenant with live pairs is refused.
    pub async fn upgrade_identity(
        &self,
        client: &syncropel_federation::PeerClient,
        tenant: &Tenant,
        recovery_key: Option<&str>,
    ) -> Result<String, ApiError> {
        use syncropel_protocol::ErrorCode;
        let registration = self.config.registration.as_ref().ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotImplemented,
                "this platform registers no DIDs (no directory configured)",
            )
        })?;
        if *tenant.identity.did != *tenant.identity.signer {
            return Err(ApiError::new(
                ErrorCode::ValidationError,
                format!("the tenant is already known as {}", tenant.identity.did),
            ));
        }
        let row = sqlx::query(
            "SELECT label, recovery_key, \
             to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created \
             FROM tenants WHERE id = $1",
        )
        .bind(&tenant.id)
        .fetch_one(&self.pool)
        .await?;
        let label: String = row.get("label");
        let stored: Option<String> = row.get("recovery_key");
        let created: String = row.get("created");
        let recovery_key = recovery_key.map(str::to_string).or(stored);
        // Pinned to the tenant's creation, the genesis of a retried (or concurrent) upgrade is
        // the same operation: the directory answers with the same DID.
        let did = registration
            .register(
                client,
                &tenant.identity.key,
                recovery_key.as_deref(),
                &self.tenant_url(&label),
                Some(&created),
            )
            .await?;
        // The stored manifest names the old DID: the next request signs a new one.
        let changed = sqlx::query(
            "UPDATE tenants SET did = $2, manifest = NULL, recovery_key = $4 WHERE id = $1 AND did = $3",
        )
        .bind(&tenant.id)
        .bind(&did)
        .bind(&*tenant.identity.did)
        .bind(&recovery_key)
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.forget(&label);
        if changed == 0 {
            // Another upgrade got there first: its DID is the tenant's.
            let current: String = sqlx::query_scalar("SELECT did FROM tenants WHERE id = $1")
                .bind(&tenant.id)
                .fetch_one(&self.pool)
                .await?;
            if current != did {
                return Err(ApiError::new(
                    ErrorCode::ValidationError,
                    format!("the tenant was upgraded meanwhile and is known as {current}"),
                ));
            }
        }
        tracing::info!(tenant = %tenant.id, %did, "tenant upgraded to a did:sync");
        Ok(did)
    }

    /// The live tenant with store id `id` (pull jobs know tenants by id).
    pub async fn tenant_by_id(&self, id: &str) -> Result<Option<Arc<Tenant>>, ApiError> {
        let label: Option<String> = sqlx::query_scalar("SELECT label FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match label {
            Some(label) => self.tenant(&label).await,
            None => Ok(None),
        }
    }

    /// The tenant's signed federation manifest: the stored one while it has more than a day to
    /// live, else a freshly signed one (stored for the other replicas).
    pub async fn manifest(&self, tenant: &Tenant) -> Result<serde_json::Value, ApiError> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT manifest FROM tenants WHERE id = $1")
                .bind(&tenant.id)
                .fetch_optional(&self.pool)
                .await?
                .flatten();
        let now = std::time::SystemTime::now();
        if let Some(manifest) =
            stored.and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
        {
            // One signed for another DID predates an identity upgrade.
            let ours = syncropel_federation::manifest::daemon_did(&manifest)
                == Some(&*tenant.identity.did);
            if ours
                && !syncropel_federation::manifest::expires_before(
                    &manifest,
                    now + Duration::from_secs(24 * 3600),
                )
            {
                return Ok(manifest);
            }
        }
        let url = tenant.url.as_deref().unwrap_or_default();
        let manifest = syncropel_federation::manifest::sign(
            &tenant.identity.key,
            &tenant.identity.did,
            url,
            now,
        );
        // Only while the row still names that DID: a replica with a stale tenant must not
        // store a manifest of the old identity.
        sqlx::query("UPDATE tenants SET manifest = $2 WHERE id = $1 AND did = $3")
            .bind(&tenant.id)
            .bind(manifest.to_string())
            .bind(&*tenant.identity.did)
            .execute(&self.pool)
            .await?;
        Ok(manifest)
    }

    fn cached(&self, label: &str) -> Option<Arc<Tenant>> {
        let cache = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        cache
            .get(label)
            .filter(|(_, at)| at.elapsed() < TENANT_CACHE_TTL)
            .map(|(t, _)| t.clone())
    }

    /// Forgets what this replica knows of a label (after its status changed here).
    pub fn forget(&self, label: &str) {
        let mut cache = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        cache.remove(label);
    }

    /// Reports the number of active tenants to the metrics (a failure only leaves the last
    /// figure in place).
    pub async fn count_active_tenants(&self) {
        let active: Result<i64, _> =
            sqlx::query_scalar("SELECT count(*) FROM tenants WHERE status = 'active'")
                .fetch_one(&self.pool)
                .await;
        match active {
            Ok(active) => syncropel_telemetry::series::active_tenants(active.max(0) as u64),
            Err(e) => tracing::debug!(error = %e, "counting active tenants failed"),
        }
    }

    /// Purges tenants whose deletion grace period has ended: their records, accounts and tokens
    /// go; the tenant row stays as `purged` (its label is free again). Replicas share the work
    /// (`FOR UPDATE SKIP LOCKED`). Returns how many were purged.
    pub async fn purge_expired(&self) -> Result<usize, sqlx::Error> {
        let mut purged = 0;
        loop {
            let mut tx = self.pool.begin().await?;
            let due: Option<String> = sqlx::query_scalar(
                "SELECT id FROM tenants WHERE status = 'deleted' \
                 AND deleted_at <= now() - make_interval(secs => $1) \
                 ORDER BY deleted_at LIMIT 1 FOR UPDATE SKIP LOCKED",
            )
            .bind(self.config.deletion_grace.as_secs_f64())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(tenant) = due else {
                return Ok(purged);
            };
            purge(&mut tx, &tenant).await?;
            tx.commit().await?;
            tracing::info!(%tenant, "purged a deleted tenant after its grace period");
            purged += 1;
        }
    }
}

/// Re-seals every tenant key that the current KEK did not seal, in one transaction: run it after
/// every replica has the new KEK with the old one as previous (`with_previous`). Idempotent; if
/// any key opens with neither, nothing changes. Returns how many keys were re-sealed.
pub async fn rotate_kek(pool: &PgPool, kek: &Kek) -> Result<usize, StewardError> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT id, key_nonce, key_sealed FROM tenants WHERE status <> 'purged' ORDER BY id FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut resealed = 0;
    for row in rows {
        let id: &str = row.get("id");
        let (nonce, sealed): (&[u8], &[u8]) = (row.get("key_nonce"), row.get("key_sealed"));
        if kek.sealed_by_current(id, nonce, sealed) {
            continue;
        }
        let seed = kek.open(id, nonce, sealed)?;
        let (nonce, sealed) = kek.seal(id, &seed);
        sqlx::query("UPDATE tenants SET key_nonce = $2, key_sealed = $3 WHERE id = $1")
            .bind(id)
            .bind(nonce)
            .bind(sealed)
            .execute(&mut *tx)
            .await?;
        resealed += 1;
    }
    tx.commit().await?;
    Ok(resealed)
}

/// Deletes everything a tenant stored and marks it purged, inside the caller's transaction.
async fn purge(tx: &mut sqlx::PgConnection, tenant: &str) -> Result<(), sqlx::Error> {
    syncropel_store::PgStore::purge_tenant(tx, tenant).await?;
    sqlx::query(
        "UPDATE tenants SET status = 'purged', key_sealed = '', key_nonce = '' WHERE id = $1",
    )
    .bind(tenant)
    .execute(tx)
    .await?;
    Ok(())
}

/// Everything a hosted steward is configured with.
pub struct HostedOptions {
    pub database_url: String,
    pub platform: PlatformConfig,
    pub kek: Kek,
    pub jwt: JwtVerifier,
    pub limits: Limits,
    pub rate_limits: RateLimits,
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
        store.pool().clone(),
        options.platform,
        options.kek,
        options.jwt,
    ));
    let shutdown = CancellationToken::new();
    let leases = Arc::new(leases::Leases::new(
        store.pool().clone(),
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
        search_enabled: true,
        heartbeat: options.heartbeat,
        shutdown,
        federation: Arc::new(federation),
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
}

/// Runs a hosted replica until SIGTERM or SIGINT, then drains (see
/// [`syncropel_telemetry::serve`]): not ready, leases handed back, streams told to reconnect.
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
    let hosted = build(options).await?;
    let config = hosted.platform.config();
    tracing::info!(
        addr = %listener.local_addr()?,
        metrics = ?metrics.as_ref().and_then(|m| m.local_addr().ok()),
        base_domain = %config.addressing.base_domain,
        path_prefix = ?config.addressing.path_prefix,
        "hosted steward listening"
    );
    let store = hosted.state.store.clone();
    let outcome = syncropel_telemetry::serve::serve(
        listener,
        hosted.app,
        metrics,
        hosted.state.shutdown.clone(),
        listeners.drain,
    )
    .await
    .map_err(StewardError::Io);
    store.close().await;
    outcome
}
