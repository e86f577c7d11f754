//! The federation crate's integration tests, one binary: the guarded peer client and the DID
//! resolver against real tiny servers on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod peer;
mod resolve;
