//! The relay's integration tests, one binary: its store, its callers' authentication, its routes
//! over HTTP and the `relay` binary, on Postgres databases of their own (`DATABASE_URL`'s server).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod auth;
mod binary;
mod http;
mod process;
mod replicas;
mod store;
