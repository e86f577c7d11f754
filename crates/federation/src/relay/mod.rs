//! Relays (federation-protocol.md §7): a steward that may be unreachable deposits, at relays it
//! names, what each peer pulls from it ([`outbox`]); a peer whose pulls fail pulls the same
//! queues there and returns to the source once it answers ([`fallback`]). Every call to a relay
//! is signed with the steward's identity ([`client`]); the operator's view and levers are in
//! [`operate`]; envelopes are signed by their source, so a
//! relay can delay or lose records, never forge, alter or move them.

pub mod client;
pub mod fallback;
pub mod operate;
pub mod outbox;

pub use client::{RelayClient, RelayFailure};
pub use fallback::PeerRelays;
pub use outbox::Outbox;
