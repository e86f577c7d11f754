//! The steward's integration tests, one binary: real stewards (local ones started as `spl serve`
//! starts them, hosted replicas as the `steward` binary builds them, and `steward` processes)
//! over HTTP on 127.0.0.1. Fixtures come from `syncropel-testkit`; the hosted tests need the
//! Postgres server of `DATABASE_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod connections;
mod directory;
mod discovery;
mod doors;
mod federation;
mod federation_hosted;
mod governance;
mod hosted;
mod identity;
mod membership;
mod moving;
mod query_search;
mod rate_limits;
mod records;
mod rolling_restart;
mod scopes;
mod secrets;
mod telemetry;
mod threads;
mod watch;

/// The hosted binary, for the tests that run it as a process.
const STEWARD_BIN: &str = env!("CARGO_BIN_EXE_steward");
