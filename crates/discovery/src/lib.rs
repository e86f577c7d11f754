//! Finding Syncropel stewards (FEDERATION discovery): mDNS announcements on the LAN and
//! `_syncropel.<domain>` TXT records in DNS.
//!
//! Both only produce candidates. Whoever acts on one fetches the candidate's signed manifest
//! and checks it names the same DID; nothing here creates a pair.

mod dns;
mod error;
mod mdns;
#[cfg(feature = "testing")]
pub mod testing;

pub use dns::{
    parse_txt_record, same_origin, txt_name, DnsCandidate, TxtResolver, DEFAULT_MANIFEST_PATH,
    TXT_VERSION,
};
pub use error::DiscoveryError;
pub use mdns::{
    discover, manifest_fingerprint, Announcement, Announcer, Browser, MdnsConfig, MdnsInterfaces,
    MdnsPeer, MDNS_PORT, RECORD_TTL, ROSTER_CAP, ROSTER_EXPIRY, SERVICE_TYPE,
};
