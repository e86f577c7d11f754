//! `directory`: the did:sync directory server. Every flag has an environment fallback.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use std::time::Duration;

use clap::{Parser, Subcommand};
use syncropel_directory::{app, AppState, Clock, DirectoryError, Rules, Store};
use syncropel_protocol::did_sync;
use syncropel_telemetry::connections::ConnectionLimits;
use syncropel_telemetry::serve::Drain;
use syncropel_telemetry::TelemetryArgs;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "directory", version, about = "The did:sync directory")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `sqlite://<file>?mode=rwc` (one process) or `postgres://…` (any number of replicas).
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        hide_env_values = true,
        default_value = "sqlite://directory.db?mode=rwc"
    )]
    database_url: String,
    /// Address to listen on.
    #[arg(long, env = "DIRECTORY_LISTEN", default_value = "127.0.0.1:9300")]
    listen: SocketAddr,
    /// How long after receipt an op can still be undone by a higher-priority rotation key
    /// (e.g. `24h`); at most 72 h.
    #[arg(
        long,
        env = "DIRECTORY_RECOVERY_WINDOW",
        default_value = "72h",
        value_parser = recovery_window_secs
    )]
    recovery_window: i64,
    /// New DIDs one client address may create per hour; 0 switches the limit off. A platform
    /// that registers its tenants' DIDs from one address raises it.
    #[arg(long, env = "DIRECTORY_GENESES_PER_ADDRESS_PER_HOUR", default_value_t = Rules::default().geneses_per_address_per_hour)]
    geneses_per_address_per_hour: u32,
    /// Internal address serving `GET /metrics` (Prometheus); none when unset.
    #[arg(long, env = "DIRECTORY_METRICS_BIND")]
    metrics_bind: Option<SocketAddr>,
    /// After SIGTERM: how long to keep serving while `/ready` answers 503.
    #[arg(long, env = "DIRECTORY_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    shutdown_delay: Duration,
    /// Then: how long in-flight requests get to finish.
    #[arg(long, env = "DIRECTORY_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    #[command(flatten)]
    connections: ConnectionLimits,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

/// The window in seconds. Resolvers replay logs with the fixed 72 h window, so a longer one would
/// accept forks they reject and leave the DID unresolvable; a shorter one is merely stricter.
fn recovery_window_secs(text: &str) -> Result<i64, String> {
    let window = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    let max = did_sync::RECOVERY_WINDOW_SECS;
    match i64::try_from(window.as_secs()) {
        Ok(secs) if secs <= max => Ok(secs),
        _ => Err(format!(
            "at most {} (resolvers replay logs with that window, so forks accepted after it \
             would make the DID unresolvable)",
            humantime::format_duration(std::time::Duration::from_secs(max.unsigned_abs()))
        )),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve the directory (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let work = async {
        match cli.command {
            Some(Command::Migrate) => Store::migrate(&cli.database_url).await,
            Some(Command::Serve) | None => serve(&cli).await,
        }
    };
    syncropel_telemetry::run_service(&cli.telemetry, "directory", work).await
}

async fn serve(cli: &Cli) -> Result<(), DirectoryError> {
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| DirectoryError::Internal(format!("binding {addr}: {e}")))
    };
    let listener = bind(cli.listen).await?;
    let metrics = match cli.metrics_bind {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let store = Arc::new(Store::open(&cli.database_url).await?);
    let stopping = CancellationToken::new();
    let state = AppState::new(
        store.clone(),
        Rules {
            recovery_window_secs: cli.recovery_window,
            geneses_per_address_per_hour: cli.geneses_per_address_per_hour,
            ..Rules::default()
        },
        Clock::system(),
        stopping.clone(),
    );
    tracing::info!(listen = %cli.listen, metrics = ?cli.metrics_bind, "directory serving");
    let drain = Drain {
        delay: cli.shutdown_delay,
        grace: cli.shutdown_grace,
    };
    syncropel_telemetry::serve::serve(
        listener,
        app(state),
        metrics,
        stopping,
        drain,
        cli.connections,
    )
    .await
    .map_err(|e| DirectoryError::Internal(format!("serving: {e}")))?;
    store.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_window_is_at_most_72_hours() {
        assert_eq!(recovery_window_secs("72h"), Ok(72 * 3600));
        assert_eq!(recovery_window_secs("24h"), Ok(24 * 3600));
        assert_eq!(recovery_window_secs("0s"), Ok(0));
        for too_long in ["72h 1s", "4days", "100years"] {
            let message = recovery_window_secs(too_long).unwrap_err();
            assert!(message.contains("at most 3days"), "{too_long}: {message}");
        }
        assert!(recovery_window_secs("soon").is_err());
        let cli = Cli::try_parse_from(["directory", "--recovery-window", "96h"]);
        assert!(cli.is_err());
    }
}
