//! Talking to peers over HTTP, safely: bounded response sizes, per-call deadlines, no private
//! targets in hosted mode, and failures sorted into the classes of federation-protocol.md §5.5.

mod client;
mod error;
mod live;
mod target;

pub use client::{ChangesRequest, PeerClient, PeerClientOptions};
pub use error::PeerError;
pub use live::{LiveFeed, LiveRecord};

use std::net::IpAddr;

/// Where the fetches a request causes may go. An anonymous caller (a pair request) on a public
/// address must not make the steward fetch from its private networks, which that caller could
/// not reach itself, even where peers may be private (a local steward on its LAN); a caller
/// already inside those networks (loopback, private, link-local) may.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Wherever the steward's peers may be (`allow_private_peers`).
    Peers,
    /// Public addresses only.
    PublicOnly,
}

impl Reach {
    /// The reach of a request from `caller` (unknown: public).
    pub fn of_caller(caller: Option<IpAddr>) -> Reach {
        match caller {
            Some(ip) if target::is_forbidden_ip(ip) => Reach::Peers,
            _ => Reach::PublicOnly,
        }
    }
}
