//! The Syncropel steward: the axum application that `spl serve` runs locally and the hosted binary
//! (`steward`, see `main.rs`) runs for many tenants.

pub mod accounts;
pub mod app;
pub mod auth;
pub mod discovery;
pub mod error;
pub mod federation;
pub mod home;
pub mod hosted;
pub mod identity;
pub mod ingest;
pub mod local;
pub mod manifest;
pub mod metrics;
pub mod namespaces;
pub mod rate_limit;
pub mod routes;
pub mod tenant;

/// Errors that stop a steward from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum StewardError {
    #[error("{0} is already in use (is another steward running? see `spl status`); choose another port with --port")]
    PortInUse(std::net::SocketAddr),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Home(#[from] home::HomeError),
    #[error(transparent)]
    Store(#[from] syncropel_store::StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Telemetry(#[from] syncropel_telemetry::TelemetryError),
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
