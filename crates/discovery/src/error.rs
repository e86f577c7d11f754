//! The one error type of the crate.

/// A discovery failure: the caller logs it and carries on, discovery is never fatal.
#[derive(thiserror::Error, Debug)]
pub enum DiscoveryError {
    /// The mDNS daemon could not be started or refused a command.
    #[error("mdns: {0}")]
    Mdns(#[from] mdns_sd::Error),
    /// What we were asked to announce cannot be put in a TXT record.
    #[error("invalid announcement: {0}")]
    InvalidAnnouncement(String),
    /// An mDNS TXT record or a `_syncropel` DNS TXT record broke a format rule.
    #[error("invalid TXT record: {0}")]
    InvalidTxt(String),
    /// The DNS resolver could not be built or the lookup failed (other than "no such record").
    #[error("dns lookup of {name}: {message}")]
    Dns {
        /// The name that was looked up.
        name: String,
        /// What the resolver said.
        message: String,
    },
}
