//! The discovery crate's integration tests, one binary: TXT lookups against a DNS server on
//! 127.0.0.1, and mDNS between daemons on the loopback interface.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod dns;
mod mdns;
