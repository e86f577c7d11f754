//! The arguments of the federation commands: `spl federation`, `spl consent`, `spl sync` and
//! `spl fleet`.

use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum FederationCommand {
    /// Pair with the steward at PEER_URL; waits up to 60 s for its operator to approve
    Pair(PairArgs),
    /// Pair (or take the pair already made) and share in one go: namespaces at L1, threads
    /// whole; running it again changes nothing more
    Invite(InviteArgs),
    /// List federation pairs
    List,
    /// Show one pair
    Show {
        /// Pair id or peer DID
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        peer: String,
    },
    /// Stop syncing with a peer until `resume`
    Pause {
        /// Pair id or peer DID
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        peer: String,
    },
    /// Resume a paused pair
    Resume {
        /// Pair id or peer DID
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        peer: String,
    },
    /// Renew the pair's tokens now; with --url, follow a peer that moved to a new URL (its
    /// manifest there must be signed by the same DID)
    Refresh {
        /// Pair id or peer DID
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        peer: String,
        /// Where the peer lives now
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// End a pair for good: its tokens stop working on both sides
    Revoke {
        /// Pair id or peer DID
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        peer: String,

        /// Why, kept in the pair's audit trail
        #[arg(long, default_value = "operator", value_name = "TEXT")]
        reason: String,
    },
    /// List pair requests from other stewards waiting for a decision here
    Pending,
    /// Approve a pending pair request
    Approve {
        /// Pair id, from `spl federation pending`
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        pair_id: String,
    },
    /// Reject a pending pair request
    Reject {
        /// Pair id, from `spl federation pending`
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        pair_id: String,

        /// Why, kept in the pair's audit trail
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Let a namespace's records reach the pair's peer in namespaces of other names (a consent
    /// grant bound to that peer, one per target)
    Grant {
        /// Pair id or peer DID
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        peer: String,

        /// The namespace shared from here
        #[arg(long, value_name = "NS", value_parser = NonEmptyStringValueParser::new())]
        namespace: String,

        /// The peer's namespaces it lands in, comma-separated [default: the same name]
        #[arg(long, value_delimiter = ',', value_name = "NS1,NS2", value_parser = NonEmptyStringValueParser::new())]
        maps: Vec<String>,

        /// Hash levels granted, comma-separated; without L0 the peer gets redacted stubs, so
        /// bodies cross only when a grant names L0 (pair-scoped grants default to L1, §6.4)
        #[arg(
            long = "hash-level",
            value_delimiter = ',',
            value_name = "LEVELS",
            default_values = ["L1"],
            value_parser = parse_hash_level
        )]
        hash_levels: Vec<String>,
    },
    /// Revoke one of the pair's peer's consent grants
    RevokeGrant {
        /// Pair id or peer DID
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        peer: String,

        /// The grant, from `spl consent list`
        #[arg(long, value_name = "ID", value_parser = NonEmptyStringValueParser::new())]
        grant_id: String,
    },
    /// How this side pulls from the pair's peer: `polling` (longpolls), `continuous` (the
    /// peer's continuous feed, held open) or `on-demand` (only `spl sync`)
    SetMode {
        /// Pair id or peer DID
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        peer: String,

        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["polling", "continuous", "on-demand"]))]
        mode: String,
    },
    /// How long this side waits between polls of the pair's peer when the peer answers at once
    /// (polls are longpolls, so a peer that holds them is asked again as soon as it answers)
    SetPollInterval {
        /// Pair id or peer DID
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        peer: String,

        /// `30s`, `1m`, `2h`: from 1 s to 24 h
        #[arg(long, value_name = "DURATION", value_parser = poll_interval)]
        interval: u64,
    },
    /// Send the pair's peer a thread now: every record its pull would be served, in batches
    /// (it takes them only for a thread it pulls from here, an on-demand pair's say)
    Push {
        /// Pair id or peer DID
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        peer: String,

        #[arg(long, value_name = "THREAD", value_parser = NonEmptyStringValueParser::new())]
        thread: String,

        /// The peer's namespace the records land in, as its pull names it [default: default]
        #[arg(long, value_name = "NS")]
        namespace: Option<String>,
    },
    /// Serve the pair's peer these threads whole; once a pair names threads, other threads are
    /// served only as its rule admits (`--remove` takes threads off the list)
    ThreadAllow {
        /// Pair id or peer DID
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        peer: String,

        /// A thread (repeatable)
        #[arg(long = "thread", required = true, value_name = "THREAD", value_parser = NonEmptyStringValueParser::new())]
        threads: Vec<String>,

        /// Take the threads off the list instead
        #[arg(long)]
        remove: bool,
    },
    /// Serve the pair's peer, of threads it does not name, the records a CEL expression over
    /// `record` and `thread()` answers true for
    ThreadRule {
        /// Pair id or peer DID
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        peer: String,

        /// The rule, e.g. 'record.body.kind == "note"'
        #[arg(
            long,
            value_name = "CEL",
            required_unless_present = "clear",
            conflicts_with = "clear"
        )]
        expression: Option<String>,

        /// Drop the pair's rule
        #[arg(long)]
        clear: bool,
    },
    /// Whether other paired peers may be introduced to this pair's peer (when `spl serve
    /// --introduce` is on)
    Introducible {
        /// Pair id or peer DID
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        peer: String,

        /// `on` or `off`
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(["on", "off"]))]
        state: String,
    },
}

#[derive(Debug, Args)]
pub struct PairArgs {
    /// Base URL of the peer steward, e.g. https://bob.example
    #[arg(value_parser = NonEmptyStringValueParser::new())]
    pub peer_url: String,

    /// Map a local namespace onto a differently named one of the peer (repeatable)
    #[arg(long = "map", value_name = "LOCAL:PEER", value_parser = parse_namespace_map)]
    pub maps: Vec<NamespaceMap>,

    /// Share a namespace that has the same name on both sides (repeatable)
    #[arg(
        long = "namespace",
        value_name = "NS",
        value_parser = NonEmptyStringValueParser::new()
    )]
    pub namespaces: Vec<String>,

    /// Take the peer's manifest even if it has expired (its signature must still verify)
    #[arg(long)]
    pub no_strict: bool,

    /// Seconds to wait for the peer's operator before giving up (the request stays pending)
    #[arg(long, hide = true, default_value_t = 60, value_name = "N")]
    pub wait_secs: u64,

    /// Create this home's identity key first if it has none, as `spl init` does
    #[arg(long)]
    pub auto_generate_identity: bool,

    /// Does nothing: only the peer's operator (or the peer's own allow-list) approves a pair
    #[arg(long)]
    pub auto_approve: bool,
}

#[derive(Debug, Args)]
pub struct InviteArgs {
    /// The peer's base URL (paired with, unless a live pair with it exists), or a pair's id or
    /// peer DID
    #[arg(value_parser = NonEmptyStringValueParser::new())]
    pub peer: String,

    /// Let the peer have this namespace's records as L1 digests (redacted stubs) in the
    /// namespace its pulls land in by default (repeatable)
    #[arg(long = "grant-namespace", value_name = "NS", value_parser = NonEmptyStringValueParser::new())]
    pub grant_namespaces: Vec<String>,

    /// Serve the peer this thread whole (repeatable)
    #[arg(long = "grant-thread", value_name = "THREAD", value_parser = NonEmptyStringValueParser::new())]
    pub grant_threads: Vec<String>,

    /// Map a local namespace onto a differently named one of the peer, when pairing (repeatable)
    #[arg(long = "map", value_name = "LOCAL:PEER", value_parser = parse_namespace_map)]
    pub maps: Vec<NamespaceMap>,

    /// Seconds to wait for the peer's operator before giving up (the request stays pending)
    #[arg(long, hide = true, default_value_t = 60, value_name = "N")]
    pub wait_secs: u64,
}

/// A `--map LOCAL:PEER` pair of namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceMap {
    pub local: String,
    pub peer: String,
}

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Let records of one namespace reach a peer's namespace of another name
    Grant(GrantArgs),
    /// Revoke a grant; records already shared stay where they are
    Revoke {
        /// Grant id, from `spl consent list`
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        grant_id: String,

        /// Why, kept in the consent audit trail
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// List consent grants
    List {
        /// Only grants whose source or target is this namespace
        #[arg(long, value_name = "NS")]
        namespace: Option<String>,
    },
    /// Share one thread with anyone who pulls it, into any namespace, for at most 7 days
    Public(PublicArgs),
    /// Accept full (L0) records from a source that requires two-sided L0 consent
    Accept(AcceptArgs),
}

#[derive(Debug, Args)]
pub struct PublicArgs {
    /// Thread to share
    #[arg(value_parser = NonEmptyStringValueParser::new())]
    pub thread: String,

    /// L0 shares full records; L2 only redacted stubs with the L2 digest
    #[arg(long, value_name = "LEVEL", default_value = "L2", value_parser = ["L0", "L2"])]
    pub level: String,

    /// When the grant lapses, ISO 8601, within 7 days [default: in 7 days]
    #[arg(long, value_name = "ISO8601")]
    pub expires: Option<String>,
}

#[derive(Debug, Args)]
pub struct AcceptArgs {
    /// The source steward's DID (the peer that grants L0)
    #[arg(long, value_name = "DID", value_parser = NonEmptyStringValueParser::new())]
    pub peer: String,

    /// The source's namespace the records come from
    #[arg(
        long,
        value_name = "NS",
        default_value = "default",
        value_parser = NonEmptyStringValueParser::new()
    )]
    pub from_namespace: String,

    /// Our namespace the records land in
    #[arg(
        long,
        value_name = "NS",
        default_value = "default",
        value_parser = NonEmptyStringValueParser::new()
    )]
    pub to_namespace: String,

    /// When the acceptance lapses, ISO 8601 [default: never]
    #[arg(long, value_name = "ISO8601")]
    pub expires: Option<String>,
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    /// Namespace the records are shared into (on the peer)
    #[arg(long, value_name = "NS", value_parser = NonEmptyStringValueParser::new())]
    pub to_namespace: String,

    /// Namespace the records come from (here)
    #[arg(
        long,
        value_name = "NS",
        default_value = "default",
        value_parser = NonEmptyStringValueParser::new()
    )]
    pub from_namespace: String,

    /// Hash levels granted, comma-separated; without L0 peers get redacted stubs
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "LEVELS",
        default_values = ["L0", "L1", "L2", "L3"],
        value_parser = parse_hash_level
    )]
    pub hash_levels: Vec<String>,

    /// Only this peer DID [default: any peer]
    #[arg(long, value_name = "DID", value_parser = NonEmptyStringValueParser::new())]
    pub peer: Option<String>,

    /// Only these threads, comma-separated [default: all]
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "IDS",
        value_parser = NonEmptyStringValueParser::new()
    )]
    pub threads: Vec<String>,

    /// What the grant is for
    #[arg(long, value_name = "TEXT")]
    pub purpose: Option<String>,

    /// When the grant lapses, ISO 8601 (e.g. 2026-12-31T00:00:00Z) [default: never]
    #[arg(long, value_name = "ISO8601")]
    pub expires: Option<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "spl sync [OPTIONS] <THREAD> from <PEER>")]
pub struct SyncArgs {
    /// Thread to pull
    #[arg(value_parser = NonEmptyStringValueParser::new())]
    pub thread: String,

    /// The word `from`
    #[arg(id = "from", value_name = "from", value_parser = ["from"], hide_possible_values = true)]
    _from: String,

    /// Peer DID or URL
    #[arg(value_parser = NonEmptyStringValueParser::new())]
    pub peer: String,

    /// Bearer for a peer with no pair here (legacy; an existing pair's token always wins)
    #[arg(long, value_name = "TOKEN")]
    pub peer_token: Option<String>,

    /// Our namespace the thread's records land in, one the pair agreed on (a same-name
    /// namespace or the local side of a map); kept by the thread's job
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Legacy per-thread sync pairs: this steward keeps pulling one thread from a peer
    #[command(subcommand)]
    Sync(FleetSyncCommand),
}

#[derive(Debug, Subcommand)]
pub enum FleetSyncCommand {
    /// Start pulling THREAD_ID from PEER_DID
    Add(SyncPairArgs),
    /// List sync pairs
    List,
    /// Show one sync pair: state, cursor, last error
    Status {
        /// Sync pair id (sp_…)
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        id: String,
    },
    /// Recent sync events of a pair, newest first: each pull, what it brought or why it failed
    /// (in the steward's memory; alike idle polls in a row are one event with a count)
    Trace {
        /// Sync pair id (sp_…), or a pair's id or peer DID
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        id: String,

        /// Most events to show (at most 100)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: Option<u32>,
    },
    /// Records peers sent that are held in quarantine, never stored: why (the code), from which
    /// pair, since when
    Quarantine {
        /// Only those of this pair: its id (or a legacy pair's `sp_…`) or its peer's DID
        #[arg(long, value_name = "ID", value_parser = NonEmptyStringValueParser::new())]
        pair: Option<String>,

        /// Most entries to show (at most 500) [default: 50]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: Option<u32>,

        /// Where to go on from: the `next_cursor` of the page before
        #[arg(long, value_name = "CURSOR", value_parser = NonEmptyStringValueParser::new())]
        cursor: Option<String>,
    },
    /// Stop pulling until `resume`
    Pause {
        /// Sync pair id (sp_…)
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        id: String,
    },
    /// Resume a paused sync pair
    Resume {
        /// Sync pair id (sp_…)
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        id: String,
    },
    /// Pull now instead of at the next interval
    Kick {
        /// Sync pair id (sp_…)
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        id: String,
    },
    /// Stop and remove a sync pair; records already pulled stay
    Remove {
        /// Sync pair id (sp_…)
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        id: String,
    },
    /// Find stewards to pair with
    #[command(subcommand)]
    Peers(FleetPeersCommand),
}

#[derive(Debug, Subcommand)]
pub enum FleetPeersCommand {
    /// List candidate stewards (unverified unless marked); nothing is paired
    Discover(DiscoverArgs),
}

/// `spl discover --peer-url URL`: verify one steward.
#[derive(Debug, Args)]
pub struct PeerDiscoverArgs {
    /// Base URL of the steward, e.g. https://bob.example
    #[arg(long, value_name = "URL", value_parser = NonEmptyStringValueParser::new())]
    pub peer_url: String,

    /// Fail unless its manifest advertises this body kind
    #[arg(long, value_name = "KIND", value_parser = NonEmptyStringValueParser::new())]
    pub kind: Option<String>,

    /// did:sync directory to resolve its DID through (repeatable)
    #[arg(
        long = "directory",
        env = "SPL_DIRECTORIES",
        value_delimiter = ',',
        value_name = "URL",
        value_parser = NonEmptyStringValueParser::new()
    )]
    pub directories: Vec<String>,

    /// Take a manifest even if it has expired (its signature must still verify)
    #[arg(long)]
    pub no_strict: bool,
}

/// A discovery method of `spl fleet sync peers discover`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DiscoveryMethod {
    /// Stewards announcing themselves on the LAN
    Mdns,
    /// The `_syncropel.<domain>` TXT record, checked against the signed manifest
    Dns,
    /// The peers a paired steward introduces
    Transitive,
    /// The `syncropel` service of a domain's did:web document, checked against the manifest
    DidWeb,
    /// The peers a did:sync directory lists under a namespace, each DID re-resolved
    DidSync,
    /// The peers listed in the operator's peers file, each checked against its manifest
    Static,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Method to use [default: mdns, plus dns and did-web with --domain, transitive with --via,
    /// did-sync with --namespace and a directory, static when the peers file exists]
    #[arg(long, env = "SPL_DISCOVER_METHOD", value_enum)]
    pub method: Option<DiscoveryMethod>,

    /// Domain whose `_syncropel` TXT record and did:web document to look up (HOST[:PORT])
    #[arg(long, env = "SPL_DISCOVER_DOMAIN", value_name = "DOMAIN")]
    pub domain: Option<String>,

    /// did:web whose document to look up, instead of the one --domain gives
    #[arg(long, value_name = "DID", value_parser = NonEmptyStringValueParser::new())]
    pub did: Option<String>,

    /// did:sync: the namespace whose listed peers to look up
    #[arg(long, env = "SPL_DISCOVER_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,

    /// did:sync directory to list peers at and resolve DIDs through (repeatable, asked in
    /// order; the env variable takes a comma-separated list)
    #[arg(
        long = "directory",
        env = "SPL_DIRECTORIES",
        value_delimiter = ',',
        value_name = "URL",
        value_parser = NonEmptyStringValueParser::new()
    )]
    pub directories: Vec<String>,

    /// DNS server to ask instead of the system's resolvers, as IP:PORT
    #[arg(long, env = "SPL_DNS_SERVER", value_name = "IP:PORT")]
    pub dns_server: Option<std::net::SocketAddr>,

    /// The peers file of `--method static`: TOML, one `[[peer]]` table per peer with its `url`
    /// and optionally the `did` expected there [default: peers.toml in the home]
    #[arg(long, env = "SPL_PEERS_FILE", value_name = "PATH")]
    pub peers_file: Option<std::path::PathBuf>,

    /// DID of the paired peer to ask for introductions
    #[arg(long, env = "SPL_DISCOVER_VIA", value_name = "DID")]
    pub via: Option<String>,

    /// How long to listen on the LAN, in milliseconds
    #[arg(
        long,
        env = "SPL_DISCOVER_TIMEOUT_MS",
        default_value_t = 1000,
        value_name = "N"
    )]
    pub timeout_ms: u64,

    /// Interfaces mDNS uses: `all`, or `loopback` to stay on this machine
    #[arg(
        long,
        env = "SPL_MDNS_INTERFACES",
        default_value = "all",
        value_name = "all|loopback"
    )]
    pub mdns_interfaces: syncropel_discovery::MdnsInterfaces,
}

#[derive(Debug, Args)]
pub struct SyncPairArgs {
    /// Peer base URL [default: resolved from the DID]
    #[arg(long, value_name = "URL", value_parser = NonEmptyStringValueParser::new())]
    pub peer_url: Option<String>,

    /// Bearer to send to the peer (unused when an active federation pair with it exists)
    #[arg(long, value_name = "TOKEN")]
    pub peer_token: Option<String>,

    /// Peer DID
    #[arg(value_parser = NonEmptyStringValueParser::new())]
    pub peer_did: String,

    /// Thread to pull
    #[arg(value_parser = NonEmptyStringValueParser::new())]
    pub thread_id: String,
}

/// Parses `--map LOCAL:PEER`. Namespace ids never contain `:`, so exactly one is expected.
fn parse_namespace_map(text: &str) -> Result<NamespaceMap, String> {
    match text.split_once(':') {
        Some((local, peer)) if !local.is_empty() && !peer.is_empty() && !peer.contains(':') => {
            Ok(NamespaceMap {
                local: local.to_owned(),
                peer: peer.to_owned(),
            })
        }
        _ => Err("expected LOCAL:PEER, two namespace ids joined by one `:`".to_owned()),
    }
}

/// Parses one hash level, case-insensitively, into its canonical `L0`..`L3` form.
fn parse_hash_level(text: &str) -> Result<String, String> {
    let level = text.trim().to_ascii_uppercase();
    if matches!(level.as_str(), "L0" | "L1" | "L2" | "L3") {
        Ok(level)
    } else {
        Err("expected L0, L1, L2 or L3".to_owned())
    }
}

/// A poll interval in whole seconds, from 1 s to a day.
fn poll_interval(text: &str) -> Result<u64, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    match duration.as_secs() {
        secs @ 1..=86_400 if duration.subsec_nanos() == 0 => Ok(secs),
        _ => Err("a whole number of seconds from 1s to 24h".into()),
    }
}
