//! The Syncropel steward: the axum application that `spl serve` runs locally and the hosted binary
//! (`steward`, see `main.rs`) runs for many tenants.

pub mod app;
pub mod auth;
pub mod error;
pub mod hosted;
pub mod local;
pub mod pairing;
pub mod rate_limit;
pub mod refusals;
pub mod routes;
pub mod state;
pub mod streams;
pub mod tenant;

/// Errors that stop a steward from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum StewardError {
    #[error("{0} is already in use (is another steward running? see `spl status`); choose another port with --port")]
    PortInUse(std::net::SocketAddr),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Home(#[from] syncropel_home::HomeError),
    #[error(transparent)]
    Store(#[from] syncropel_store::StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Telemetry(#[from] syncropel_telemetry::TelemetryError),
    #[error("the did:sync directory's store: {0}")]
    Directory(#[from] syncropel_directory::DirectoryError),
}
