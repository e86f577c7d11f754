//! The CLI's integration tests, one binary: the built `spl` against homes of its own, real
//! stewards and directories on 127.0.0.1, and a scripted fake steward.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

// The grammar module is shared with the binary; these tests read only part of it.
#[allow(dead_code)]
#[path = "../../src/cli.rs"]
mod cli;
mod common;
mod crash;
mod directory;
mod discover;
mod export;
mod federation_cli;
mod federation_e2e;
mod identity;
mod import;
mod init;
mod membership;
mod memory;
mod moving;
mod namespace;
mod redaction;
mod relay;
mod secrets;
mod serve;
mod snapshot;
