//! Serving the app and shutting it down gracefully, the same way in both modes.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::StewardError;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); colours only on a terminal, so log
/// files stay plain.
pub fn init_logging() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// Serves `app` until SIGTERM or SIGINT (or until `shutdown` is cancelled), then drains: watch
/// streams see `shutdown` cancelled and say goodbye, in-flight requests get `grace` to finish.
pub async fn run(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> Result<(), StewardError> {
    let signal = shutdown.clone();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        tokio::select! {
            _ = wait_for_signal() => {}
            _ = signal.cancelled() => {}
        }
        tracing::info!("shutting down: draining requests and streams");
        signal.cancel();
    });
    let drained = shutdown.clone();
    tokio::select! {
        result = server => result.map_err(StewardError::Io),
        _ = async move {
            drained.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("requests still open after the grace period; closing them");
            Ok(())
        }
    }
}

async fn wait_for_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
