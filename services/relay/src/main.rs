//! `relay`: the relay server (federation-protocol.md §7.3). Every flag has an environment fallback.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use syncropel_federation::{DidResolver, PeerClient, PeerClientOptions};
use syncropel_relay::auth::Authenticator;
use syncropel_relay::limits::{CallLimits, Limiters};
use syncropel_relay::routes::{app, AppState};
use syncropel_relay::store::{Limits, RelayStore};
use syncropel_relay::RelayError;
use syncropel_telemetry::connections::ConnectionLimits;
use syncropel_telemetry::serve::Drain;
use syncropel_telemetry::TelemetryArgs;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "relay",
    version,
    about = "The relay for peers whose source is offline"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The relay's Postgres database (`postgres://…`); any number of replicas share it.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "RELAY_LISTEN", default_value = "127.0.0.1:9400")]
    listen: SocketAddr,
    /// Internal address for `GET /metrics`.
    #[arg(long, env = "RELAY_METRICS_BIND")]
    metrics_bind: Option<SocketAddr>,
    /// The secret relay cursors are signed with; every replica must have the same.
    #[arg(long, env = "RELAY_CURSOR_KEY", hide_env_values = true)]
    cursor_key: Option<String>,
    /// DIDs this relay serves (repeatable; comma-separated in the env); none: anyone
    #[arg(long = "allow-did", env = "RELAY_ALLOW_DIDS", value_delimiter = ',')]
    allow_dids: Vec<String>,
    /// did:sync directories to resolve callers' directory DIDs through (comma-separated in the env)
    #[arg(long = "directory", env = "RELAY_DIRECTORIES", value_delimiter = ',')]
    directories: Vec<String>,
    /// Let callers' did:web documents be fetched from loopback or private addresses
    #[arg(long, env = "RELAY_ALLOW_PRIVATE_PEERS")]
    allow_private_peers: bool,
    /// Items one source may keep queued for one destination
    #[arg(long, env = "RELAY_MAX_ITEMS_PER_DESTINATION", default_value_t = Limits::default().items_per_destination)]
    max_items_per_destination: i64,
    /// Bytes one source may keep queued for one destination
    #[arg(long, env = "RELAY_MAX_BYTES_PER_DESTINATION", default_value_t = Limits::default().bytes_per_destination)]
    max_bytes_per_destination: i64,
    /// Bytes one source may keep queued in all
    #[arg(long, env = "RELAY_MAX_BYTES_PER_SOURCE", default_value_t = Limits::default().bytes_per_source)]
    max_bytes_per_source: i64,
    /// Requests per second one DID may make, bursts of twice that; 0 = no limit
    #[arg(long, env = "RELAY_RATE_LIMIT_PER_DID", default_value_t = CallLimits::default().per_did)]
    rate_limit_per_did: u32,
    /// Requests per second from one client address, bursts of twice that; 0 = no limit
    #[arg(long, env = "RELAY_RATE_LIMIT_PER_ADDRESS", default_value_t = CallLimits::default().per_address)]
    rate_limit_per_address: u32,
    /// Pulls one DID may hold open waiting for deposits
    #[arg(long, env = "RELAY_MAX_WAITS_PER_DID", default_value_t = CallLimits::default().waits_per_did)]
    max_waits_per_did: usize,
    /// The Retry-After of a deposit refused because a queue is full
    #[arg(long, env = "RELAY_QUEUE_FULL_RETRY_AFTER", default_value = "30s", value_parser = humantime::parse_duration)]
    queue_full_retry_after: Duration,
    /// How long an envelope is kept (a queue may ask for less, at least an hour)
    #[arg(long, env = "RELAY_TTL", default_value = "30d", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// After SIGTERM: how long to keep serving before it stops taking connections.
    #[arg(long, env = "RELAY_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    shutdown_delay: Duration,
    /// Then: how long in-flight requests get to finish.
    #[arg(long, env = "RELAY_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    #[command(flatten)]
    connections: ConnectionLimits,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the relay (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let work = async {
        match (&cli.command, &cli.database_url) {
            (_, None) => Err("--database-url (DATABASE_URL) is required".to_string()),
            (Some(Command::Migrate), Some(url)) => {
                match RelayStore::open(url, limits(&cli)).await {
                    Ok(store) => {
                        store.close().await;
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            (Some(Command::Serve) | None, Some(url)) => serve(&cli, url).await,
        }
    };
    syncropel_telemetry::run_service(&cli.telemetry, "relay", work).await
}

fn limits(cli: &Cli) -> Limits {
    Limits {
        items_per_destination: cli.max_items_per_destination,
        bytes_per_destination: cli.max_bytes_per_destination,
        bytes_per_source: cli.max_bytes_per_source,
        ttl_secs: i64::try_from(cli.ttl.as_secs()).unwrap_or(i64::MAX),
        full_retry_after_secs: u32::try_from(cli.queue_full_retry_after.as_secs().max(1))
            .unwrap_or(u32::MAX),
    }
}

/// How often each replica deletes expired envelopes (the replicas share the queues) and reads
/// what the relay holds for its gauges.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

async fn sweep(store: Arc<RelayStore>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = now_ms() / 1000;
        match store.totals().await {
            Ok(held) => syncropel_relay::metrics::holding(
                held.items,
                held.bytes,
                held.oldest_enqueued_at.map_or(0, |at| now - at),
            ),
            Err(e) => tracing::warn!(error = %e, "reading what the relay holds failed"),
        }
        match store.sweep_expired(now).await {
            Ok(0) => {}
            Ok(items) => {
                syncropel_relay::metrics::items_expired(items);
                tracing::info!(items, "expired envelopes deleted");
            }
            Err(e) => tracing::warn!(error = %e, "deleting expired envelopes failed; will retry"),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn serve(cli: &Cli, database_url: &str) -> Result<(), String> {
    let Some(cursor_key) = cli.cursor_key.clone().filter(|k| k.len() >= 32) else {
        return Err(
            "--cursor-key (RELAY_CURSOR_KEY) must be a secret of 32 characters or more, \
                    the same on every replica"
                .into(),
        );
    };
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("binding {addr}: {e}"))
    };
    let listener = bind(cli.listen).await?;
    let metrics = match cli.metrics_bind {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let store = Arc::new(
        RelayStore::open(database_url, limits(cli))
            .await
            .map_err(|e: RelayError| e.to_string())?,
    );
    let stop = CancellationToken::new();
    tokio::spawn(sweep(store.clone(), stop.clone()));
    let client = PeerClient::new(PeerClientOptions {
        allow_private: cli.allow_private_peers,
        ..PeerClientOptions::default()
    });
    // The directories are the operator's own: reachable wherever they are (an in-cluster
    // Service), unlike callers' did:web hosts.
    let directory_client = PeerClient::new(PeerClientOptions {
        allow_private: true,
        ..PeerClientOptions::default()
    });
    let resolver =
        DidResolver::new(client, cli.directories.clone()).with_directory_client(directory_client);
    let state = AppState {
        store: store.clone(),
        auth: Arc::new(Authenticator::new(
            resolver,
            cli.allow_dids.iter().cloned().collect(),
        )),
        cursor_key: cursor_key.into(),
        clock: now_ms,
        limits: Arc::new(Limiters::new(CallLimits {
            per_did: cli.rate_limit_per_did,
            per_address: cli.rate_limit_per_address,
            waits_per_did: cli.max_waits_per_did,
        })),
        stopping: stop.clone(),
    };
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, metrics = ?cli.metrics_bind, "relay serving");
    let drain = Drain {
        delay: cli.shutdown_delay,
        grace: cli.shutdown_grace,
    };
    syncropel_telemetry::serve::serve(listener, app(state), metrics, stop, drain, cli.connections)
        .await
        .map_err(|e| format!("serving: {e}"))?;
    store.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_flags_hold_together() {
        Cli::command().debug_assert();
    }
}
