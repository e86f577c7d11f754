//! The store crate's integration tests, one binary: the conformance suite on both backends,
//! Postgres specifics, and readiness.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;
mod conformance;
mod postgres;
mod ready;
mod sqlite;
