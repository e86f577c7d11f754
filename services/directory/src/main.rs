//! `directory`: the did:sync directory server. Every flag has an environment fallback.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use syncropel_directory::{app, AppState, Clock, DirectoryError, Rules, Store};

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
    /// (e.g. `72h`).
    #[arg(long, env = "DIRECTORY_RECOVERY_WINDOW", default_value = "72h")]
    recovery_window: humantime::Duration,
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
    let window = i64::try_from(cli.recovery_window.as_secs())
        .map_err(|_| DirectoryError::Validation("--recovery-window is too long".into()))?;
    let store = Arc::new(Store::open(&cli.database_url).await?);
    let state = AppState {
        store: store.clone(),
        rules: Rules {
            recovery_window_secs: window,
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
