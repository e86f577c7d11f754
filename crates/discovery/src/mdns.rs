//! LAN discovery over mDNS / DNS-SD (`_syncropel._tcp.local.`).
//!
//! An [`Announcer`] publishes one steward; a [`Browser`] keeps a roster of the stewards that
//! answer; [`discover`] is a one-shot browse for the CLI. Everything learnt here is a
//! candidate only (`manifest_verified: false`): nothing is trusted until the manifest at the
//! announced endpoint has been fetched and verified.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mdns_sd::{
    IfKind, RecvTimeoutError, ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo,
    TxtProperties,
};
use sha2::{Digest, Sha256};

use crate::DiscoveryError;

/// The DNS-SD service type every steward announces under.
pub const SERVICE_TYPE: &str = "_syncropel._tcp.local.";
/// The standard mDNS port.
pub const MDNS_PORT: u16 = mdns_sd::MDNS_PORT;
/// TTL of the announced SRV and address records, and how often the browser re-queries.
pub const RECORD_TTL: Duration = Duration::from_secs(120);
/// A roster entry not seen for three TTLs is dropped.
pub const ROSTER_EXPIRY: Duration = Duration::from_secs(3 * 120);
/// The most peers a roster holds. Announcements are unauthenticated and `spl serve` listens by
/// default, so a LAN host announcing ever new DIDs must not grow the steward's memory; this is
/// far more stewards than one LAN segment carries.
pub const ROSTER_CAP: usize = 1024;

/// Which interfaces the mDNS daemon binds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MdnsInterfaces {
    /// Every interface, as a LAN daemon should.
    #[default]
    All,
    /// Only IPv4 loopback: stewards on the same host see each other and nothing leaves it.
    Loopback,
}

impl FromStr for MdnsInterfaces {
    type Err = DiscoveryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Self::All),
            "loopback" => Ok(Self::Loopback),
            other => Err(DiscoveryError::InvalidAnnouncement(format!(
                "mdns interfaces must be `all` or `loopback`, not `{other}`"
            ))),
        }
    }
}

impl fmt::Display for MdnsInterfaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::All => "all",
            Self::Loopback => "loopback",
        })
    }
}

/// How an mDNS daemon is started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdnsConfig {
    /// Interfaces to bind.
    pub interfaces: MdnsInterfaces,
    /// UDP port; 5353 on a real LAN, another one keeps tests away from other responders.
    pub port: u16,
}

impl Default for MdnsConfig {
    fn default() -> Self {
        Self {
            interfaces: MdnsInterfaces::All,
            port: MDNS_PORT,
        }
    }
}

impl MdnsConfig {
    /// A fresh daemon with the interface choice applied before any query or announcement.
    fn daemon(&self) -> Result<ServiceDaemon, DiscoveryError> {
        let daemon = ServiceDaemon::new_with_port(self.port)?;
        if self.interfaces == MdnsInterfaces::Loopback {
            // Selections apply in order, the last match wins.
            daemon.disable_interface(IfKind::All)?;
            daemon.enable_interface(IfKind::LoopbackV4)?;
        }
        Ok(daemon)
    }
}

/// First 16 hex digits of the SHA-256 of the signed manifest JSON (the `mf` TXT key).
pub fn manifest_fingerprint(manifest_json: &[u8]) -> String {
    let mut hex = hex::encode(Sha256::digest(manifest_json));
    hex.truncate(16);
    hex
}

/// What a steward announces about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The steward's DID.
    pub did: String,
    /// The base URL the steward is reachable at.
    pub endpoint: String,
    /// The namespace it serves, when configured.
    pub namespace: Option<String>,
    /// Its handle, when configured.
    pub handle: Option<String>,
    /// Capability names (`sync`, `handshake`, …).
    pub capabilities: Vec<String>,
    /// [`manifest_fingerprint`] of the current signed manifest.
    pub manifest_fingerprint: Option<String>,
}

impl Announcement {
    /// The DNS-SD instance name: the handle, else the last 12 characters of the DID.
    pub fn instance_name(&self) -> String {
        match self.handle.as_deref().filter(|h| !h.is_empty()) {
            Some(handle) => handle.to_string(),
            None => did_tail(&self.did),
        }
    }

    fn service_info(&self) -> Result<ServiceInfo, DiscoveryError> {
        if !is_did(&self.did) {
            return Err(DiscoveryError::InvalidAnnouncement(format!(
                "`{}` is not a DID",
                self.did
            )));
        }
        let endpoint = parse_endpoint(&self.endpoint)
            .map_err(|e| DiscoveryError::InvalidAnnouncement(e.to_string()))?;
        let port = endpoint.port_or_known_default().unwrap_or(443);
        let mut txt = vec![
            ("v".to_string(), "1".to_string()),
            ("did".to_string(), self.did.clone()),
            ("endpoint".to_string(), self.endpoint.clone()),
        ];
        let optional = [
            ("namespace", self.namespace.clone()),
            ("handle", self.handle.clone()),
            ("mf", self.manifest_fingerprint.clone()),
        ];
        txt.extend(
            optional
                .into_iter()
                .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k.to_string(), v))),
        );
        txt.push(("capabilities".to_string(), self.capabilities.join(",")));

        let instance = self.instance_name();
        // Host names allow letters, digits and hyphens only; the DID tail keeps two stewards
        // on one machine from claiming the same host name.
        let host_label: String = format!("spl-{}", did_tail(&self.did))
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            &instance,
            &format!("{host_label}.local."),
            (),
            port,
            &txt[..],
        )
        .map_err(|e| DiscoveryError::InvalidAnnouncement(e.to_string()))?;
        // Addresses follow the selected interfaces, so a loopback daemon announces 127.0.0.1.
        Ok(info.enable_addr_auto())
    }
}

/// Publishes one steward on the LAN until dropped; dropping sends the goodbye packets.
pub struct Announcer {
    daemon: ServiceDaemon,
    fullname: String,
}

impl Announcer {
    /// Starts a daemon and registers `announcement` on it.
    pub fn start(config: &MdnsConfig, announcement: &Announcement) -> Result<Self, DiscoveryError> {
        let info = announcement.service_info()?;
        let fullname = info.get_fullname().to_string();
        let daemon = config.daemon()?;
        daemon.register(info)?;
        Ok(Self { daemon, fullname })
    }

    /// The registered DNS-SD instance name (`<instance>._syncropel._tcp.local.`).
    pub fn fullname(&self) -> &str {
        &self.fullname
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        // Best effort: the goodbye lets browsers drop us now instead of after the TTL.
        let _ = self.daemon.unregister(&self.fullname);
        let _ = self.daemon.shutdown();
    }
}

/// One steward seen on the LAN, in the shape the roster answer shows it.
pub use syncropel_api::MdnsPeer;

/// The fields of a TXT record that passed [`parse_txt`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct PeerTxt {
    did: String,
    endpoint: String,
    namespace: Option<String>,
    handle: Option<String>,
    capabilities: Vec<String>,
    manifest_fingerprint: Option<String>,
}

fn did_tail(did: &str) -> String {
    let skip = did.chars().count().saturating_sub(12);
    did.chars().skip(skip).collect()
}

pub(crate) fn is_did(s: &str) -> bool {
    let mut parts = s.splitn(3, ':');
    parts.next() == Some("did")
        && parts.next().is_some_and(|m| !m.is_empty())
        && parts.next().is_some_and(|id| !id.is_empty())
}

pub(crate) fn parse_endpoint(text: &str) -> Result<url::Url, DiscoveryError> {
    let url = url::Url::parse(text)
        .map_err(|e| DiscoveryError::InvalidTxt(format!("`{text}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(DiscoveryError::InvalidTxt(format!(
            "`{text}` is not an http(s) URL with a host"
        )));
    }
    Ok(url)
}

fn parse_txt(props: &TxtProperties) -> Result<PeerTxt, DiscoveryError> {
    let get = |key: &str| {
        props
            .get_property_val_str(key)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if get("v") != Some("1") {
        return Err(DiscoveryError::InvalidTxt("`v` must be 1".into()));
    }
    let did = get("did").ok_or_else(|| DiscoveryError::InvalidTxt("no `did`".into()))?;
    if !is_did(did) {
        return Err(DiscoveryError::InvalidTxt(format!("`{did}` is not a DID")));
    }
    let endpoint =
        get("endpoint").ok_or_else(|| DiscoveryError::InvalidTxt("no `endpoint`".into()))?;
    parse_endpoint(endpoint)?;
    let manifest_fingerprint = match get("mf") {
        Some(mf) if mf.len() != 16 || !mf.bytes().all(|b| b.is_ascii_hexdigit()) => {
            return Err(DiscoveryError::InvalidTxt(format!(
                "`mf={mf}` is not 16 hex digits"
            )))
        }
        mf => mf.map(str::to_ascii_lowercase),
    };
    Ok(PeerTxt {
        did: did.to_string(),
        endpoint: endpoint.to_string(),
        namespace: get("namespace").map(str::to_string),
        handle: get("handle").map(str::to_string),
        capabilities: get("capabilities")
            .map(|c| {
                c.split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        manifest_fingerprint,
    })
}

struct Seen {
    txt: PeerTxt,
    fullname: String,
    last_seen: SystemTime,
}

/// Peers by DID, so a steward re-announcing under a new instance name stays one entry.
#[derive(Default)]
struct Roster {
    own_did: Option<String>,
    by_did: HashMap<String, Seen>,
}

impl Roster {
    fn observe(&mut self, service: &ResolvedService, now: SystemTime) {
        let txt = match parse_txt(&service.txt_properties) {
            Ok(txt) => txt,
            Err(e) => {
                tracing::debug!(instance = %service.fullname, error = %e, "mdns: ignoring announcement");
                return;
            }
        };
        if self.own_did.as_deref() == Some(txt.did.as_str()) {
            return;
        }
        self.prune(now);
        if self.by_did.len() >= ROSTER_CAP && !self.by_did.contains_key(&txt.did) {
            // The stalest peer gives way: a live one re-announces and comes back.
            let oldest = self
                .by_did
                .iter()
                .min_by_key(|(_, seen)| seen.last_seen)
                .map(|(did, _)| did.clone());
            if let Some(oldest) = oldest {
                self.by_did.remove(&oldest);
            }
        }
        self.by_did.insert(
            txt.did.clone(),
            Seen {
                txt,
                fullname: service.fullname.clone(),
                last_seen: now,
            },
        );
    }

    fn forget(&mut self, fullname: &str) {
        self.by_did.retain(|_, seen| seen.fullname != fullname);
    }

    /// Drops the entries not seen within [`ROSTER_EXPIRY`] of `now`.
    fn prune(&mut self, now: SystemTime) {
        self.by_did.retain(|_, seen| {
            now.duration_since(seen.last_seen)
                .map_or(true, |age| age <= ROSTER_EXPIRY)
        });
    }

    fn peers(&mut self, now: SystemTime) -> Vec<MdnsPeer> {
        self.prune(now);
        let mut peers: Vec<MdnsPeer> = self
            .by_did
            .values()
            .map(|seen| MdnsPeer {
                did: seen.txt.did.clone(),
                endpoint: seen.txt.endpoint.clone(),
                namespace: seen.txt.namespace.clone(),
                handle: seen.txt.handle.clone(),
                capabilities: seen.txt.capabilities.clone(),
                last_seen: syncropel_protocol::rfc3339_from_unix(
                    seen.last_seen
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64),
                ),
                manifest_verified: false,
                manifest_fingerprint: seen.txt.manifest_fingerprint.clone(),
            })
            .collect();
        peers.sort_by(|a, b| a.did.cmp(&b.did));
        peers
    }

    fn apply(&mut self, event: ServiceEvent) {
        match event {
            ServiceEvent::ServiceResolved(service) => self.observe(&service, SystemTime::now()),
            ServiceEvent::ServiceRemoved(_, fullname) => self.forget(&fullname),
            _ => {}
        }
    }
}

fn lock(roster: &Mutex<Roster>) -> std::sync::MutexGuard<'_, Roster> {
    // The roster stays consistent even if a holder panicked mid-insert.
    roster.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Listens for stewards on the LAN and keeps a roster of them until dropped.
pub struct Browser {
    daemon: ServiceDaemon,
    roster: Arc<Mutex<Roster>>,
}

impl Browser {
    /// Starts a daemon and browses; `own_did` is left out of the roster.
    pub fn start(config: &MdnsConfig, own_did: Option<&str>) -> Result<Self, DiscoveryError> {
        let daemon = config.daemon()?;
        let events = daemon.browse(SERVICE_TYPE)?;
        let roster = Arc::new(Mutex::new(Roster {
            own_did: own_did.map(str::to_string),
            ..Roster::default()
        }));
        let worker_daemon = daemon.clone();
        let worker_roster = Arc::clone(&roster);
        std::thread::Builder::new()
            .name("spl-mdns-browser".into())
            .spawn(move || browse_loop(&worker_daemon, events, &worker_roster))
            .map_err(|e| DiscoveryError::Mdns(mdns_sd::Error::Msg(e.to_string())))?;
        Ok(Self { daemon, roster })
    }

    /// The current roster, sorted by DID, without entries older than [`ROSTER_EXPIRY`].
    pub fn peers(&self) -> Vec<MdnsPeer> {
        lock(&self.roster).peers(SystemTime::now())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the daemon thread; its event channel closes and the browse loop returns.
        let _ = self.daemon.shutdown();
    }
}

fn browse_loop(
    daemon: &ServiceDaemon,
    mut events: mdns_sd::Receiver<ServiceEvent>,
    roster: &Mutex<Roster>,
) {
    let mut next_refresh = Instant::now() + RECORD_TTL;
    loop {
        match events.recv_deadline(next_refresh) {
            Ok(event) => lock(roster).apply(event),
            // Browsing again re-queries the LAN and replays every instance still fresh in the
            // daemon's cache, which is what keeps a live peer's `last_seen` moving.
            Err(RecvTimeoutError::Timeout) => match daemon.browse(SERVICE_TYPE) {
                Ok(fresh) => {
                    events = fresh;
                    next_refresh = Instant::now() + RECORD_TTL;
                }
                Err(_) => return,
            },
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Browses for `timeout` and returns every steward that answered, sorted by DID.
///
/// Blocks the calling thread; async callers run it on a blocking thread.
pub fn discover(config: &MdnsConfig, timeout: Duration) -> Result<Vec<MdnsPeer>, DiscoveryError> {
    let daemon = config.daemon()?;
    let events = daemon.browse(SERVICE_TYPE)?;
    let deadline = Instant::now() + timeout;
    let mut roster = Roster::default();
    while let Ok(event) = events.recv_deadline(deadline) {
        roster.apply(event);
    }
    let _ = daemon.shutdown();
    Ok(roster.peers(SystemTime::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> TxtProperties {
        let info = ServiceInfo::new(SERVICE_TYPE, "t", "t.local.", (), 1, pairs).unwrap();
        info.get_properties().clone()
    }

    const GOOD: &[(&str, &str)] = &[
        ("v", "1"),
        ("did", "did:key:z6MkTest"),
        ("endpoint", "http://127.0.0.1:8080"),
        ("capabilities", "sync, handshake,,"),
        ("mf", "0123456789ABCDEF"),
    ];

    /// A resolved announcement of `did`, as the daemon hands it to the roster.
    fn announced(did: &str) -> ResolvedService {
        let pairs = [
            ("v", "1"),
            ("did", did),
            ("endpoint", "http://127.0.0.1:8080"),
        ];
        ServiceInfo::new(SERVICE_TYPE, did, "t.local.", (), 1, &pairs[..])
            .unwrap()
            .as_resolved_service()
    }

    fn dids(roster: &Roster) -> Vec<String> {
        let mut dids: Vec<String> = roster.by_did.keys().cloned().collect();
        dids.sort();
        dids
    }

    #[test]
    fn observing_prunes_expired_peers() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut roster = Roster::default();
        roster.observe(&announced("did:key:old"), start);
        roster.observe(&announced("did:key:recent"), start + ROSTER_EXPIRY);
        // Nobody reads the roster in between: observing alone drops what expired.
        roster.observe(
            &announced("did:key:new"),
            start + ROSTER_EXPIRY + Duration::from_secs(1),
        );
        assert_eq!(dids(&roster), ["did:key:new", "did:key:recent"]);
    }

    #[test]
    fn a_full_roster_drops_the_stalest_peer() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |i: usize| start + Duration::from_millis(i as u64);
        let mut roster = Roster::default();
        for i in 0..ROSTER_CAP {
            roster.observe(&announced(&format!("did:key:z{i}")), at(i));
        }
        // Seen again, so no longer the stalest.
        roster.observe(&announced("did:key:z0"), at(ROSTER_CAP));
        roster.observe(&announced("did:key:extra"), at(ROSTER_CAP + 1));
        assert_eq!(roster.by_did.len(), ROSTER_CAP);
        assert!(roster.by_did.contains_key("did:key:extra"));
        assert!(roster.by_did.contains_key("did:key:z0"));
        assert!(!roster.by_did.contains_key("did:key:z1"));
        // Re-announcing a DID already held evicts nobody.
        roster.observe(&announced("did:key:z2"), at(ROSTER_CAP + 2));
        assert_eq!(roster.by_did.len(), ROSTER_CAP);
        assert!(roster.by_did.contains_key("did:key:z3"));
    }

    #[test]
    fn txt_parses_and_normalizes() {
        let txt = parse_txt(&props(GOOD)).unwrap();
        assert_eq!(txt.did, "did:key:z6MkTest");
        assert_eq!(txt.capabilities, vec!["sync", "handshake"]);
        assert_eq!(
            txt.manifest_fingerprint.as_deref(),
            Some("0123456789abcdef")
        );
        assert_eq!(txt.namespace, None);
    }

    #[test]
    fn txt_rejects_each_broken_rule() {
        let broken = |key: &str, value: Option<&str>| {
            let mut pairs: Vec<(&str, &str)> =
                GOOD.iter().copied().filter(|(k, _)| *k != key).collect();
            if let Some(v) = value {
                pairs.push((key, v));
            }
            parse_txt(&props(&pairs)).unwrap_err()
        };
        broken("v", None);
        broken("v", Some("2"));
        broken("did", None);
        broken("did", Some("alice"));
        broken("endpoint", None);
        broken("endpoint", Some("not a url"));
        broken("endpoint", Some("ftp://host/"));
        broken("mf", Some("xyz"));
    }

    #[test]
    fn instance_name_is_handle_or_did_tail() {
        let mut a = Announcement {
            did: "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK".into(),
            endpoint: "http://127.0.0.1:1".into(),
            namespace: None,
            handle: None,
            capabilities: vec![],
            manifest_fingerprint: None,
        };
        assert_eq!(a.instance_name(), "pbnnEGta2doK");
        a.handle = Some("alice".into());
        assert_eq!(a.instance_name(), "alice");
    }

    #[test]
    fn fingerprint_is_16_hex() {
        let fp = manifest_fingerprint(b"{}");
        assert_eq!(fp, "44136fa355b3678a");
    }

    #[test]
    fn interfaces_parse() {
        assert_eq!(
            "loopback".parse::<MdnsInterfaces>().unwrap(),
            MdnsInterfaces::Loopback
        );
        assert_eq!(
            "all".parse::<MdnsInterfaces>().unwrap(),
            MdnsInterfaces::All
        );
        assert!("eth0".parse::<MdnsInterfaces>().is_err());
    }
}
