//! `directory`: the did:sync directory server. Every flag has an environment fallback.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use syncropel_directory::{app, AppState, Clock, DirectoryError, Rules, Store};
use syncropel_protocol::did_sync;

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Migrate) => Store::migrate(&cli.database_url).await,
        Some(Command::Serve) | None => serve(&cli).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "directory failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: &Cli) -> Result<(), DirectoryError> {
    let store = Arc::new(Store::open(&cli.database_url).await?);
    let state = AppState {
        store: store.clone(),
        rules: Rules {
            recovery_window_secs: cli.recovery_window,
            ..Rules::default()
        },
        clock: Clock::system(),
    };
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| DirectoryError::Internal(format!("binding {}: {e}", cli.listen)))?;
    tracing::info!(listen = %cli.listen, "directory serving");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| DirectoryError::Internal(format!("serving: {e}")))?;
    store.close().await;
    Ok(())
}

/// Resolves on SIGTERM or ctrl-c; in-flight requests then finish before the server stops.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
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
