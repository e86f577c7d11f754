//! The federation, consent, one-shot sync and fleet sync commands, in two layers, neither
//! needing the steward's federation routes: the grammar, and the built binary against a scripted
//! fake steward.

mod grammar;
mod requests;
mod scripted;
