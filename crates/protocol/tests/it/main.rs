//! The protocol crate's integration tests, one binary: every vector generated with the Python SDK,
//! the protocol.md §16 checklist items of this crate, refusals of malformed input and property
//! tests of the canonical form.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod bad_input;
mod common;
mod conformance;
mod properties;
mod vectors;
