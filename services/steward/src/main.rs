//! `steward`, the hosted binary: many tenants on one Postgres, any number of replicas.
//! Every flag has an environment fallback so that a Kubernetes Deployment configures it by env.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use syncropel_federation::{FederationConfig, DEFAULT_STORE_CEILING};
use syncropel_steward::hosted::addressing::Addressing;
use syncropel_steward::hosted::jwt::{JwtKey, JwtVerifier};
use syncropel_steward::hosted::kek::Kek;
use syncropel_steward::hosted::{
    DirectoryRegistration, HostedOptions, Listeners, PlatformConfig, DEFAULT_RESERVED_LABELS,
};
use syncropel_steward::rate_limit::{RateLimit, RateLimits};
use syncropel_steward::state::{Limits, QueryBudget};
use syncropel_steward::streams::StreamLimits;
use syncropel_steward::StewardError;
use syncropel_telemetry::connections::ConnectionLimits;
use syncropel_telemetry::serve::Drain;
use syncropel_telemetry::TelemetryArgs;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "steward", version, about = "The hosted Syncropel steward")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve tenants (the default).
    Serve,
    /// Apply pending database migrations and exit (run once per release, e.g. as a Job).
    Migrate,
    /// Re-seal every tenant key with --kek, opening the older ones with --previous-kek; run it once
    /// every replica runs with both, then drop --previous-kek.
    RotateKek,
}

#[derive(Args)]
struct ServeArgs {
    /// Postgres URL of the record store.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "STEWARD_BIND", default_value = "0.0.0.0:8080")]
    bind: SocketAddr,
    /// Internal address serving `GET /metrics` (Prometheus); none when unset. Tenant hosts
    /// never serve metrics.
    #[arg(long, env = "STEWARD_METRICS_BIND")]
    metrics_bind: Option<SocketAddr>,
    /// Tenants are `<label>.<base-domain>`; the base domain itself is the platform host
    /// (provisioning).
    #[arg(long, env = "STEWARD_BASE_DOMAIN", default_value = "localhost")]
    base_domain: String,
    /// Address tenants as `<prefix>/<label>/…` instead of by host (e.g. `/t`).
    #[arg(long, env = "STEWARD_PATH_PREFIX")]
    path_prefix: Option<String>,
    /// Scheme of tenants' public URLs (in manifests).
    #[arg(long, env = "STEWARD_PUBLIC_SCHEME", default_value = "https")]
    public_scheme: String,
    /// Token environment label: tokens read `spl_<env>_…`.
    #[arg(long, env = "STEWARD_TOKEN_ENV", default_value = "prod")]
    token_env: String,
    /// Key-encryption key for tenant keys: 32 bytes as base64 or hex (`openssl rand -base64 32`).
    #[arg(long, env = "STEWARD_KEK", hide_env_values = true)]
    kek: Option<String>,
    /// The key-encryption key before a rotation: still opens tenant keys it sealed, never seals.
    #[arg(long, env = "STEWARD_PREVIOUS_KEK", hide_env_values = true)]
    previous_kek: Option<String>,
    /// HS256 secret the signup platform signs its JWTs with (at least 32 bytes).
    #[arg(long, env = "STEWARD_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Or: the platform's Ed25519 public key (PEM file) for EdDSA JWTs.
    #[arg(
        long,
        env = "STEWARD_JWT_PUBLIC_KEY_FILE",
        conflicts_with = "jwt_secret"
    )]
    jwt_public_key_file: Option<PathBuf>,
    /// The `iss` the platform's JWTs must carry.
    #[arg(long, env = "STEWARD_JWT_ISSUER", default_value = "syncropel-platform")]
    jwt_issuer: String,
    /// The `aud` the platform's JWTs must carry.
    #[arg(
        long,
        env = "STEWARD_JWT_AUDIENCE",
        default_value = "syncropel-steward"
    )]
    jwt_audience: String,
    /// Tenants one account may hold.
    #[arg(long, env = "STEWARD_TENANT_LIMIT", default_value_t = 3)]
    tenant_limit: u32,
    /// How long a deleted tenant stays readable (and its label unavailable), e.g. `30d`.
    #[arg(long, env = "STEWARD_DELETION_GRACE", default_value = "30d", value_parser = humantime::parse_duration)]
    deletion_grace: Duration,
    /// How long a tenant that moved away answers `410 INSTANCE_MOVED` after its fence before it
    /// is deleted (its deletion grace follows), e.g. `30d`.
    #[arg(long, env = "STEWARD_MOVED_KEPT", default_value = "30d", value_parser = humantime::parse_duration)]
    moved_kept: Duration,
    /// How often to purge tenants whose grace period has ended.
    #[arg(long, env = "STEWARD_PURGE_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    purge_interval: Duration,

    /// Spacing of pull-job polls to peers that do not hold longpolls, and after errors
    #[arg(long, env = "STEWARD_SYNC_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    sync_interval: Duration,

    /// Bytes a tenant's records may take before its pull jobs stop taking records from peers
    #[arg(long, env = "STEWARD_SYNC_STORE_CEILING", default_value_t = DEFAULT_STORE_CEILING)]
    sync_store_ceiling: u64,

    /// Peer DIDs whose pair requests are approved without an operator (comma-separated in the env)
    #[arg(long, env = "STEWARD_AUTO_APPROVE_DIDS", value_delimiter = ',')]
    auto_approve_did: Vec<String>,

    #[command(flatten)]
    pairing: syncropel_steward::pairing::PairingArgs,

    /// Two-sided L0 consent for every tenant: a grant with L0 delivers full records only to a
    /// puller that shows its signed acceptance, else digests
    #[arg(long, env = "STEWARD_L0_REQUIRES_ACCEPTANCE")]
    l0_requires_acceptance: bool,

    /// Let peer URLs be loopback or private addresses (off: a tenant cannot make the steward
    /// call into the platform's own network)
    #[arg(long, env = "STEWARD_ALLOW_PRIVATE_PEERS")]
    allow_private_peers: bool,
    /// did:sync directories to resolve directory DIDs through, asked in order (comma-separated
    /// in the env); new tenants are registered at the first when --directory-rotation-key is set
    #[arg(long = "directory", env = "STEWARD_DIRECTORIES", value_delimiter = ',')]
    directories: Vec<String>,
    /// The platform's did:sync rotation key (32-byte seed, hex): registers each new tenant's
    /// did:sync with it, ranked after the user's recovery key
    #[arg(long, env = "STEWARD_DIRECTORY_ROTATION_KEY", hide_env_values = true)]
    directory_rotation_key: Option<String>,
    /// Labels refused in addition to the built-in list (comma-separated).
    #[arg(long, env = "STEWARD_RESERVED_LABELS", value_delimiter = ',')]
    reserved_labels: Vec<String>,
    /// Largest request body in bytes.
    #[arg(long, env = "STEWARD_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// Deepest JSON nesting accepted.
    #[arg(long, env = "STEWARD_MAX_JSON_DEPTH", default_value_t = syncropel_protocol::DEFAULT_MAX_DEPTH)]
    max_json_depth: usize,
    /// A page of records stops at the first record that reaches this many bytes.
    #[arg(long, env = "STEWARD_MAX_PAGE_BYTES", default_value_t = Limits::default().max_page_bytes)]
    max_page_bytes: usize,
    /// The largest bundle a tenant may import (`POST /v1/portability/import`), in bytes.
    #[arg(long, env = "STEWARD_MAX_IMPORT_BYTES", default_value_t = Limits::default().max_import_bytes)]
    max_import_bytes: u64,
    /// Watches and longpolls one token may hold open on a replica (429 beyond).
    #[arg(long, env = "STEWARD_MAX_STREAMS_PER_TOKEN", default_value_t = StreamLimits::default().per_token)]
    max_streams_per_token: usize,
    /// Watches and longpolls one tenant may hold open on a replica (429 beyond).
    #[arg(long, env = "STEWARD_MAX_STREAMS_PER_TENANT", default_value_t = StreamLimits::default().per_tenant)]
    max_streams_per_tenant: usize,
    /// Watches and longpolls one client address may hold open on a replica (429 beyond).
    #[arg(long, env = "STEWARD_MAX_STREAMS_PER_ADDRESS", default_value_t = StreamLimits::default().per_address)]
    max_streams_per_address: usize,
    /// Stored rows one rich query may read before it is refused (422 QUERY_BUDGET_EXCEEDED).
    #[arg(long, env = "STEWARD_QUERY_MAX_ROWS", default_value_t = QueryBudget::default().max_rows_scanned)]
    query_max_rows: u64,
    /// Time one rich query may take before it is refused (422 QUERY_BUDGET_EXCEEDED).
    #[arg(long, env = "STEWARD_QUERY_MAX_TIME", default_value = "5s", value_parser = humantime::parse_duration)]
    query_max_time: Duration,
    /// Requests per second per client address (burst twice that); 0 switches it off.
    #[arg(long, env = "STEWARD_RATE_LIMIT_PER_ADDRESS", default_value_t = 200)]
    rate_limit_per_address: u32,
    /// Requests per second per token (burst twice that); 0 switches it off.
    #[arg(long, env = "STEWARD_RATE_LIMIT_PER_TOKEN", default_value_t = 500)]
    rate_limit_per_token: u32,
    /// Requests per second per tenant, from all its addresses and tokens together (burst twice
    /// that); 0 switches it off.
    #[arg(long, env = "STEWARD_RATE_LIMIT_PER_TENANT", default_value_t = 2000)]
    rate_limit_per_tenant: u32,
    /// Exports one tenant may start per hour (each reads its whole store); 0 switches it off.
    #[arg(long, env = "STEWARD_EXPORTS_PER_HOUR", default_value_t = 12)]
    exports_per_hour: u32,
    /// Reverse proxies in front that append to X-Forwarded-For (the client is that many entries
    /// from the right); 0 keys the address limit on the connection's peer. Only set it when the
    /// steward cannot be reached except through those proxies: a direct caller writes the header.
    #[arg(long, env = "STEWARD_TRUSTED_PROXIES", default_value_t = 0)]
    trusted_proxies: u8,
    /// Browser origins allowed to call tenants (CORS), comma-separated; none sends no CORS headers.
    #[arg(
        long = "cors-origin",
        env = "STEWARD_CORS_ORIGINS",
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,
    /// Heartbeat interval of watch streams.
    #[arg(long, env = "STEWARD_HEARTBEAT", default_value = "15s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// After SIGTERM: how long the replica keeps serving while `/ready` answers 503, so that
    /// load balancers stop sending it requests before it stops accepting them.
    #[arg(long, env = "STEWARD_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    shutdown_delay: Duration,
    /// Then: how long in-flight requests get to finish.
    #[arg(long, env = "STEWARD_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    #[command(flatten)]
    connections: ConnectionLimits,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let telemetry = syncropel_telemetry::init(&cli.serve.telemetry, "steward")?;
        let outcome = match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(cli.serve).await,
            Command::Migrate => migrate(cli.serve).await,
            Command::RotateKek => rotate_kek(cli.serve).await,
        };
        telemetry.shutdown();
        outcome
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn database_url(args: &ServeArgs) -> Result<String, StewardError> {
    args.database_url.clone().ok_or_else(|| {
        StewardError::Invalid("set --database-url or DATABASE_URL (a postgres:// URL)".into())
    })
}

async fn migrate(args: ServeArgs) -> Result<(), StewardError> {
    let store = syncropel_store::PgStore::open(&database_url(&args)?).await?;
    tracing::info!("migrations applied");
    syncropel_store::RecordStore::close(&store).await;
    Ok(())
}

/// The configured KEK, with the previous one when a rotation is under way.
fn kek(args: &ServeArgs) -> Result<Kek, StewardError> {
    let kek = Kek::parse(args.kek.as_deref().ok_or_else(|| {
        StewardError::Invalid("set --kek or STEWARD_KEK (32 bytes, base64 or hex)".into())
    })?)?;
    Ok(match &args.previous_kek {
        Some(previous) => kek.with_previous(Kek::parse(previous)?),
        None => kek,
    })
}

async fn rotate_kek(args: ServeArgs) -> Result<(), StewardError> {
    let kek = kek(&args)?;
    let store = syncropel_store::PgStore::open(&database_url(&args)?).await?;
    let outcome = syncropel_steward::hosted::rotate_kek(&store.platform(), &kek).await;
    syncropel_store::RecordStore::close(&store).await;
    let resealed = outcome?;
    tracing::info!(
        resealed,
        "every tenant key is sealed with the current key-encryption key"
    );
    Ok(())
}

/// Where new tenants' did:sync are registered: the first directory, with the platform's key.
fn registration(args: &ServeArgs) -> Result<Option<DirectoryRegistration>, StewardError> {
    let Some(seed) = &args.directory_rotation_key else {
        return Ok(None);
    };
    let directory = args.directories.first().ok_or_else(|| {
        StewardError::Invalid("--directory-rotation-key needs a --directory to register at".into())
    })?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(seed.trim(), &mut bytes).map_err(|_| {
        StewardError::Invalid("--directory-rotation-key must be 32 bytes of hex".into())
    })?;
    Ok(Some(DirectoryRegistration {
        directory: directory.clone(),
        rotation_key: std::sync::Arc::new(syncropel_protocol::Keypair::from_seed(&bytes)),
    }))
}

async fn serve(args: ServeArgs) -> Result<(), StewardError> {
    let database_url = database_url(&args)?;
    let kek = kek(&args)?;
    let jwt_key =
        match (&args.jwt_secret, &args.jwt_public_key_file) {
            (Some(secret), None) => JwtKey::Hs256(secret.as_bytes().to_vec()),
            (None, Some(path)) => JwtKey::Ed25519Pem(std::fs::read(path)?),
            _ => return Err(StewardError::Invalid(
                "set the platform's JWT key: --jwt-secret (HS256) or --jwt-public-key-file (EdDSA)"
                    .into(),
            )),
        };
    let jwt = JwtVerifier::new(jwt_key, &args.jwt_issuer, &args.jwt_audience)?;
    let path_prefix = match args.path_prefix.as_deref().map(|p| p.trim_end_matches('/')) {
        Some(p) if p.starts_with('/') && p.len() > 1 => Some(p.to_string()),
        Some(p) => {
            return Err(StewardError::Invalid(format!(
                "--path-prefix '{p}' must start with '/' and name a segment, e.g. /t"
            )))
        }
        None => None,
    };
    let mut reserved: Vec<String> = DEFAULT_RESERVED_LABELS
        .iter()
        .map(|s| s.to_string())
        .collect();
    reserved.extend(
        args.reserved_labels
            .iter()
            .map(|s| s.trim().to_ascii_lowercase()),
    );
    let registration = registration(&args)?;
    let options = HostedOptions {
        database_url,
        platform: PlatformConfig {
            addressing: Addressing {
                base_domain: args.base_domain.trim().to_ascii_lowercase(),
                path_prefix,
            },
            public_scheme: args.public_scheme,
            env: args.token_env,
            tenant_limit: args.tenant_limit,
            deletion_grace: args.deletion_grace,
            moved_kept: args.moved_kept,
            reserved_labels: reserved,
            registration,
        },
        kek,
        jwt,
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_json_depth: args.max_json_depth,
            max_page_bytes: args.max_page_bytes,
            streams: StreamLimits {
                per_token: args.max_streams_per_token,
                per_tenant: args.max_streams_per_tenant,
                per_address: args.max_streams_per_address,
            },
            query: QueryBudget {
                max_rows_scanned: args.query_max_rows,
                max_time: args.query_max_time,
            },
            max_import_bytes: args.max_import_bytes,
        },
        rate_limits: RateLimits {
            per_address: RateLimit::per_second(args.rate_limit_per_address),
            per_token: RateLimit::per_second(args.rate_limit_per_token),
            per_tenant: RateLimit::per_second(args.rate_limit_per_tenant),
            exports_per_hour: std::num::NonZeroU32::new(args.exports_per_hour),
            trusted_proxies: args.trusted_proxies,
        },
        cors_origins: args.cors_origins.clone(),
        heartbeat: args.heartbeat,
        purge_interval: args.purge_interval,
        federation: FederationConfig {
            poll_interval: args.sync_interval,
            store_ceiling: args.sync_store_ceiling,
            auto_approve: args.auto_approve_did.clone(),
            pairing: args.pairing.policy().map_err(StewardError::Invalid)?,
            allow_private_peers: args.allow_private_peers,
            directories: args.directories.clone(),
            l0_requires_acceptance: args.l0_requires_acceptance,
            ..FederationConfig::default()
        },
    };
    let listeners = Listeners {
        bind: args.bind,
        metrics: args.metrics_bind,
        drain: Drain {
            delay: args.shutdown_delay,
            grace: args.shutdown_grace,
        },
        connections: args.connections,
    };
    syncropel_steward::hosted::serve(options, listeners).await
}
