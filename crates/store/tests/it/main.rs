//! The store crate's integration tests, one binary: the conformance suite on both backends,
//! Postgres specifics, and readiness.

mod common;
mod conformance;
mod postgres;
mod ready;
