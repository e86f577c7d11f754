//! Talking to peers over HTTP, safely: bounded response sizes, per-call deadlines, no private
//! targets in hosted mode, and failures sorted into the classes of federation-protocol.md §5.5.

mod client;
mod error;
mod target;

pub use client::{ChangesRequest, PeerClient, PeerClientOptions};
pub use error::PeerError;
