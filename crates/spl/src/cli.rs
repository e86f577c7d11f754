//! Command-line grammar. Only types live here; `commands` gives them behaviour.

use std::path::PathBuf;

use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Map, Value};

// A path of its own: the federation CLI tests compile this file directly.
#[path = "cli/federation.rs"]
mod federation;

// Re-exported whole: the federation CLI tests compile this file and read these through it.
#[allow(unused_imports)]
pub use federation::{
    AcceptArgs, ConsentCommand, DiscoverArgs, DiscoveryMethod, FederationCommand, FleetCommand,
    FleetPeersCommand, FleetSyncCommand, GrantArgs, InviteArgs, NamespaceMap, PairArgs,
    PeerDiscoverArgs, PublicArgs, SyncArgs, SyncPairArgs,
};

/// The Syncropel CLI: identity, a local steward, records, namespaces and service accounts.
#[derive(Debug, Parser)]
#[command(name = "spl", version, propagate_version = true)]
pub struct Cli {
    /// Home directory holding the identity key, store and daemon state [default: ~/.syncro]
    #[arg(long, global = true, env = "SYNCROPEL_HOME", value_name = "PATH")]
    pub home: Option<PathBuf>,

    /// Steward URL [default: the running local steward, else http://127.0.0.1:9100]
    #[arg(long, global = true, env = "SPL_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,

    /// Bearer token [default: the token saved with `spl token save`]
    #[arg(
        long,
        global = true,
        env = "SPL_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,

    /// `json` is `--json`; `text` is the default. Not `--output`: `spl export` and `spl thread
    /// snapshot` take that as their `--out`
    #[arg(
        short = 'o',
        long = "output-format",
        global = true,
        value_name = "FORMAT"
    )]
    pub output: Option<OutputFormat>,

    #[command(subcommand)]
    pub command: Command,
}

/// What `-o`/`--output` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Text,
}

impl Cli {
    /// Whether to print JSON: `--json` or `-o json`.
    pub fn wants_json(&self) -> bool {
        self.json || self.output == Some(OutputFormat::Json)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the home and its identity key (idempotent)
    Init(InitArgs),
    /// Run the local steward
    Serve(Box<ServeArgs>),
    /// Stop the local steward started with `spl serve`
    Stop,
    /// Show which steward answers and how it is doing
    Status,
    /// Manage service accounts
    #[command(subcommand)]
    ServiceAccount(ServiceAccountCommand),
    /// Save or revoke bearer tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage the namespace registry that gates writes to `body.namespace`
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// Issue, show, redeem and revoke invites
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Manage members and their agents' sub-grants
    #[command(subcommand)]
    Member(MemberCommand),
    /// State a goal (opens a new thread unless --thread is given)
    Intend(IntendArgs),
    /// Record an action taken on a thread
    Do(ActArgs),
    /// Record an observation or verdict on a thread
    Know(ActArgs),
    /// Record a durable insight on a thread
    Learn(ActArgs),
    /// Emit a record with any act and body
    Emit(EmitArgs),
    /// List or fetch records
    #[command(subcommand)]
    Records(RecordsCommand),
    /// List threads, most recently written first
    Threads(ThreadsArgs),
    /// Snapshot threads to a signed file and restore them from one
    #[command(subcommand)]
    Thread(ThreadCommand),
    /// Pair this steward with other stewards and decide their pair requests
    #[command(subcommand)]
    Federation(FederationCommand),
    /// Grant, list and revoke consent for records to cross namespaces
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// Pull one thread from a peer once: `spl sync <THREAD> from <PEER>`
    Sync(SyncArgs),
    /// Operate this steward's links to other stewards
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Verify the steward at a URL: its signed manifest, and optionally a body kind it advertises
    Discover(PeerDiscoverArgs),
    /// Show, publish (did:sync, did:web) and rotate this home's identity
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// What this steward deposits at relays for peers that cannot reach it, and what waits there
    #[command(subcommand)]
    Relay(RelayCommand),
    /// Settings kept in the home's config.toml
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write this home (identity, DID document, every record) as one signed bundle, to move it
    /// elsewhere: through the running steward, else read from the store
    Export(ExportArgs),
    /// Take a bundle made by `spl export` into this home: checked whole, its identity opened and
    /// installed, every record stored; rerun after an interruption to finish. The steward must
    /// be stopped
    Import(ImportArgs),
    /// After a move: tell the steward this identity left that it now lives here. It answers
    /// every route with `410 INSTANCE_MOVED` and this home's signed notice, which peers follow
    Fence(FenceArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Where to write the bundle (`.tar.zst`)
    #[arg(long, alias = "output", value_name = "PATH")]
    pub out: PathBuf,
    /// Leave the identity key out: the records move, the DID cannot
    #[arg(long)]
    pub no_identity: bool,
    /// A file whose first line is the passphrase the identity key is sealed under
    #[arg(long, value_name = "FILE", conflicts_with = "no_identity")]
    pub passphrase_file: Option<PathBuf>,
    /// Rebuild every token on import, not only those peers hold for their pairs
    #[arg(long)]
    pub carry_tokens: bool,
    /// Export to move: the home refuses writes from now on (reads and peer pulls go on) until
    /// its new home fences it
    #[arg(long)]
    pub leave: bool,
    /// Read the stopped home's store directly; refused while its steward runs
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Subcommand)]
pub enum ThreadCommand {
    /// Write threads' records as a signed snapshot (no identity, no bearers): a backup of, say,
    /// `th_federation_pairs`, which `spl thread restore` takes back
    Snapshot(SnapshotArgs),
    /// Take a snapshot of this home's threads back into its stopped store; records already
    /// there are kept once
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The threads to snapshot
    #[arg(value_name = "THREAD", required = true)]
    pub threads: Vec<String>,
    /// Where to write the snapshot (`.tar.zst`)
    #[arg(long, alias = "output", value_name = "PATH")]
    pub out: PathBuf,
    /// Read the stopped home's store directly; refused while its steward runs
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot `spl thread snapshot` wrote
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: PathBuf,
    /// Check the snapshot and count what the restore would do; write nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct FenceArgs {
    /// The URL of the steward this identity moved away from
    #[arg(value_name = "OLD_URL")]
    pub old_url: String,
    /// Where peers find this home now [default: the running steward's URL]
    #[arg(long, value_name = "URL")]
    pub moved_to: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The bundle (`.tar.zst`) `spl export` wrote
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
    /// Check the bundle and count what the import would do; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Import into a home whose store already holds records of its own
    #[arg(long)]
    pub force_overwrite: bool,
    /// A file whose first line is the passphrase the identity key was sealed under
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// The relays (each asked for its health) and the outbox: per peer, thread and relay, how
    /// far it deposited, its state and last error
    Status,
    /// The queues the relays hold for and from this steward
    Queues {
        /// Only queues with this peer (a DID or a pair id)
        #[arg(long, value_name = "PEER")]
        peer: Option<String>,
        /// Only queues of this thread
        #[arg(long, value_name = "THREAD")]
        thread: Option<String>,
    },
    /// Retry every outbox row now, whatever its backoff
    Kick,
    /// Empty a peer's queues at every relay and deposit again what it may still see
    Purge {
        /// The peer: a DID or a pair id
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        peer: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// The relays `spl serve` deposits at (`[relay] urls`; `--relay` overrides them)
    #[command(subcommand)]
    Relay(ConfigRelayCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigRelayCommand {
    /// Name the relays, in order (at most three); each is asked for its health and a signed
    /// call first. Takes effect when `spl serve` next starts
    Set {
        #[arg(required = true, num_args = 1..=3, value_name = "URL")]
        urls: Vec<String>,
        /// Save them without asking them first
        #[arg(long)]
        no_check: bool,
    },
    /// The relays config.toml names
    Show,
    /// Ask each relay named for its health and a signed call, now
    Status,
    /// Name no relays
    Clear,
}

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Show the DID, its method, its keys and where it is published
    Show,
    /// Publish the identity as a did:sync (registered at a directory) or a did:web (served by
    /// this steward); the signing key stays the same. Run it while `spl serve` is stopped.
    Upgrade(UpgradeArgs),
    /// Replace the signing key of a published identity; records signed by the old key keep
    /// verifying unless it is marked compromised. Run it while `spl serve` is stopped.
    Rotate(RotateArgs),
    /// Point this home's did:sync at a steward URL, signed by a rotation key of the DID you hold
    /// (the recovery key, say, when the home that was fenced is gone)
    Endpoint(EndpointArgs),
}

#[derive(Debug, Args)]
pub struct EndpointArgs {
    /// The steward URL to publish as the `syncropel` service
    #[arg(value_name = "URL")]
    pub url: String,
    /// A file holding the 64-hex-character seed of a rotation key of the DID
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// The directory the DID lives at [default: the one this home published it at]
    #[arg(long, env = "SPL_DIRECTORY", value_name = "URL")]
    pub directory: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// `sync` (a directory DID that can rotate and recover) or `web` (a document on your domain)
    #[arg(long, value_parser = ["sync", "web"])]
    pub method: String,
    /// did:sync: the directory to register at
    #[arg(
        long,
        env = "SPL_DIRECTORY",
        value_name = "URL",
        required_if_eq("method", "sync")
    )]
    pub directory: Option<String>,
    /// did:sync: a handle to claim (3-32 of a-z 0-9 -; repeatable, at most 3)
    #[arg(long = "handle", value_name = "HANDLE")]
    pub handles: Vec<String>,
    /// did:sync: a namespace to list this steward under for discovery (repeatable)
    #[arg(long = "namespace", value_name = "NS")]
    pub namespaces: Vec<String>,
    /// did:sync: a did:key you keep offline, ranked above this home's rotation key so it can
    /// override a compromised home within the recovery window
    #[arg(long, value_name = "DID_KEY")]
    pub recovery_key: Option<String>,
    /// did:web: the host (and port) that serves the document, e.g. `spl.example.com`
    #[arg(long, value_name = "HOST", required_if_eq("method", "web"))]
    pub domain: Option<String>,
    /// did:web: the path form (`teams/alice` gives did:web:<host>:teams:alice)
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// The steward URL to publish as the `syncropel` service [did:web default: the URL the
    /// steward serves the document at]
    #[arg(long = "service-endpoint", value_name = "URL")]
    pub service_endpoint: Option<String>,
    /// did:web: also write the DID document to FILE, to publish at
    /// https://<host>/.well-known/did.json (or /<path>/did.json) where the steward does not
    /// answer itself. Run again after `spl identity rotate` to write it anew
    // Not named `output`: that is the id of the global `--output-format`.
    #[arg(long = "output", value_name = "FILE")]
    pub did_json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The old key leaked: withdraw it, so records it signed no longer verify anywhere
    #[arg(long)]
    pub compromised: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Replace an existing identity key with a new one
    #[arg(long)]
    pub force: bool,
    /// With --force: replace it even though pairs made with the current identity would break
    #[arg(long, requires = "force")]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, env = "SPL_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0 picks a free one)
    #[arg(long, env = "SPL_PORT", default_value_t = 9100)]
    pub port: u16,

    /// Keep records in memory instead of hub.db (lost on exit)
    #[arg(long)]
    pub memory: bool,

    /// Turn authentication off; binds loopback only
    #[arg(long)]
    pub insecure_localhost: bool,

    /// Run in the background, logging to steward.log in the home
    #[arg(long)]
    pub daemon: bool,

    /// Largest accepted request body, in bytes
    #[arg(long, default_value_t = 1_048_576, value_name = "N")]
    pub max_body_bytes: usize,

    /// Deepest accepted JSON nesting
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub max_json_depth: usize,

    /// A page of records stops at the first record that reaches this many bytes
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_name = "N")]
    pub max_page_bytes: usize,

    /// Watches and longpolls one token may hold open
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_streams_per_token: usize,

    /// Watches and longpolls one client address may hold open
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_streams_per_address: usize,

    /// The secret `POST /v1/bootstrap/service-account` asks for (in x-bootstrap-secret); without
    /// one, that route is open on a loopback address only
    #[arg(
        long,
        env = "SPL_BOOTSTRAP_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub bootstrap_secret: Option<String>,

    /// Serve GET /metrics (unauthenticated) also when listening beyond loopback
    #[arg(long)]
    pub public_metrics: bool,

    /// A browser origin allowed to call this steward (CORS); repeat for more. None: no CORS
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,

    /// Stored rows one rich query may read before it is refused
    #[arg(long, default_value_t = 500_000, value_name = "N")]
    pub query_max_rows: u64,

    /// Milliseconds one rich query may take before it is refused
    #[arg(long, default_value_t = 5_000, value_name = "MS")]
    pub query_max_ms: u64,

    /// Seconds between SSE heartbeat events
    #[arg(long, default_value_t = 30, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_secs: u64,

    /// Seconds open requests and streams get to finish on shutdown
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub shutdown_grace_secs: u64,

    #[command(flatten)]
    pub connections: syncropel_telemetry::connections::ConnectionLimits,

    #[command(flatten)]
    pub telemetry: syncropel_telemetry::TelemetryArgs,

    /// Switch full-text search off (`POST /v1/records/search` answers 503 SEARCH_DISABLED)
    #[arg(long, env = "SPL_NO_SEARCH")]
    pub no_search: bool,

    /// Requests per second allowed from one client address, bursts of 2×N; 0 = no limit.
    /// Off by default: a steward on your own machine should not throttle its owner.
    #[arg(
        long,
        env = "SPL_RATE_LIMIT_PER_ADDRESS",
        default_value_t = 0,
        value_name = "N"
    )]
    pub rate_limit_per_address: u32,

    /// Requests per second allowed per token, bursts of 2×N; 0 = no limit.
    /// Off by default: a steward on your own machine should not throttle its owner.
    #[arg(
        long,
        env = "SPL_RATE_LIMIT_PER_TOKEN",
        default_value_t = 0,
        value_name = "N"
    )]
    pub rate_limit_per_token: u32,

    /// Approve pair requests from this peer DID without asking (repeatable; the env variable
    /// takes a comma-separated list)
    #[arg(
        long = "auto-approve-did",
        env = "SPL_FEDERATION_AUTO_APPROVE",
        value_delimiter = ',',
        value_name = "DID",
        value_parser = NonEmptyStringValueParser::new()
    )]
    pub federation_auto_approve_dids: Vec<String>,

    #[command(flatten)]
    pub pairing: syncropel_steward::pairing::PairingArgs,

    /// Relay to deposit at what peers pull from this steward, so they get it while it is offline
    /// (repeatable, in order, at most three; the env variable takes a comma-separated list)
    #[arg(
        long = "relay",
        env = "SPL_RELAYS",
        value_delimiter = ',',
        value_name = "URL",
        value_parser = NonEmptyStringValueParser::new()
    )]
    pub relays: Vec<String>,

    /// Seconds between sync polls to a peer (when its changes feed answers at once, and after an
    /// error)
    #[arg(
        long = "sync-interval",
        env = "SPL_SYNC_INTERVAL",
        default_value_t = 2,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub sync_interval_secs: u64,

    /// Bytes the store may take before pull jobs stop taking records from peers
    #[arg(long, env = "SPL_SYNC_STORE_CEILING", default_value_t = syncropel_federation::DEFAULT_STORE_CEILING)]
    pub sync_store_ceiling: u64,

    /// did:sync directory to resolve directory DIDs through (repeatable, asked in order; the
    /// env variable takes a comma-separated list)
    #[arg(
        long = "directory",
        env = "SPL_DIRECTORIES",
        value_delimiter = ',',
        value_name = "URL",
        value_parser = NonEmptyStringValueParser::new()
    )]
    pub directories: Vec<String>,

    /// Do not listen for stewards on the LAN (mDNS)
    #[arg(long, env = "SPL_NO_MDNS")]
    pub no_mdns: bool,

    /// Announce this steward on the LAN over mDNS (off by default)
    #[arg(long, env = "SPL_MDNS_BROADCAST")]
    pub mdns_broadcast: bool,

    /// Interfaces mDNS uses: `all`, or `loopback` to stay on this machine
    #[arg(
        long,
        env = "SPL_MDNS_INTERFACES",
        default_value = "all",
        value_name = "all|loopback"
    )]
    pub mdns_interfaces: syncropel_discovery::MdnsInterfaces,

    /// Handle announced over mDNS
    #[arg(long, env = "SPL_MDNS_HANDLE", value_name = "HANDLE")]
    pub mdns_handle: Option<String>,

    /// Namespace announced over mDNS
    #[arg(long, env = "SPL_MDNS_NAMESPACE", value_name = "NAMESPACE")]
    pub mdns_namespace: Option<String>,

    /// Introduce the peers of pairs marked introducible to paired peers that ask
    /// (`GET /v1/federation/peers`; off by default)
    #[arg(long, env = "SPL_INTRODUCE")]
    pub introduce: bool,

    /// Serve a did:sync directory at /directory/* (its store: directory.db in the home)
    #[arg(long, env = "SPL_DIRECTORY_ENABLED", conflicts_with = "memory")]
    pub directory_enabled: bool,
    /// Two-sided L0 consent: a grant with L0 delivers full records only to a puller that shows
    /// its signed acceptance, else digests (also `[consent] l0_requires_acceptance = true` in
    /// config.toml; off by default)
    #[arg(long, env = "SPL_L0_REQUIRES_ACCEPTANCE")]
    pub l0_requires_acceptance: bool,
}

#[derive(Debug, Subcommand)]
pub enum ServiceAccountCommand {
    /// Create a service account, optionally with a token
    Create(CreateServiceAccountArgs),
    /// List service accounts
    List,
}

#[derive(Debug, Args)]
pub struct CreateServiceAccountArgs {
    /// Human-readable name
    #[arg(long)]
    pub name: String,

    /// Scopes, comma-separated (e.g. records:read,records:write)
    #[arg(long, required = true, value_delimiter = ',')]
    pub scopes: Vec<String>,

    /// DIDs the account may write records as, comma-separated
    #[arg(long, value_delimiter = ',', value_name = "DIDS")]
    pub actors: Vec<String>,

    /// Write directly into the local store instead of calling the API; creates the first account
    #[arg(long)]
    pub bootstrap: bool,

    /// Also mint a token and print only the token
    #[arg(long)]
    pub with_token: bool,

    /// Token lifetime in seconds [default: the steward's]
    #[arg(
        long,
        requires = "with_token",
        conflicts_with = "bootstrap",
        value_name = "N"
    )]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Save the token other commands send by default ("-" reads it from stdin)
    Save { token: String },
    /// Revoke a token by its id
    Revoke { token_id: String },
}

#[derive(Debug, Subcommand)]
pub enum NamespaceCommand {
    /// Register a namespace, or re-activate an archived one (its parent must be active)
    Create(CreateNamespaceArgs),
    /// List registered namespaces, active and archived
    List,
    /// Show one namespace
    Show {
        /// Namespace id, e.g. acme/payments
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        id: String,
    },
    /// Archive a namespace: its subtree takes no new writes; its records stay readable
    Archive {
        /// Namespace id, e.g. acme/payments
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Issue an invite and print its id (shown once): plain with --scopes, else a membership
    Issue(IssueInviteArgs),
    /// Show what redeeming an invite would give (needs no token)
    Show {
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        id: String,
    },
    /// Redeem an invite as this home's key and print the bearer (needs no token)
    Redeem(RedeemInviteArgs),
    /// Revoke an invite
    Revoke {
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct IssueInviteArgs {
    /// A plain invite for these scopes, comma-separated (instead of a membership)
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["preset", "label", "grant_ttl_seconds", "max_depth", "max_fanout", "budget"])]
    pub scopes: Vec<String>,

    /// What a member gets: reader, contributor or admin [default: reader]
    #[arg(long)]
    pub preset: Option<String>,

    /// Pin the member's label (an existing member's label makes the invite a renewal)
    #[arg(long)]
    pub label: Option<String>,

    /// How many times it may be redeemed [default: 1]
    #[arg(long, value_name = "N")]
    pub max_uses: Option<u32>,

    /// How long the invite stays redeemable, in seconds [default: 86400]
    #[arg(long, value_name = "N")]
    pub ttl_seconds: Option<u64>,

    /// How long the member's grant lasts, in seconds [default: 180 days]
    #[arg(long, value_name = "N")]
    pub grant_ttl_seconds: Option<u64>,

    #[command(flatten)]
    pub caveats: CaveatArgs,
}

/// The caveats of a grant: limits its sub-grants inherit and may only tighten.
#[derive(Debug, Args)]
pub struct CaveatArgs {
    /// Hops of delegation allowed below the grant
    #[arg(long, value_name = "N")]
    pub max_depth: Option<u32>,

    /// Sub-grants the grant may have
    #[arg(long, value_name = "N")]
    pub max_fanout: Option<u32>,

    /// Spend ceiling carried to services that meter it
    #[arg(long, value_name = "N")]
    pub budget: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RedeemInviteArgs {
    #[arg(value_parser = NonEmptyStringValueParser::new())]
    pub id: String,

    /// The member label to join as (membership invites)
    #[arg(long)]
    pub label: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// List members (an admin sees all, anyone else their own row)
    List,
    /// Make the operator (no --sa-id) or an existing service account a member
    Adopt {
        label: String,
        /// The service account to adopt; its tokens keep working
        #[arg(long, value_name = "ID")]
        sa_id: Option<String>,
        /// How long the grant lasts, in seconds [default: 180 days]
        #[arg(long, value_name = "N")]
        ttl_seconds: Option<u64>,
    },
    /// Revoke a member: its bearer and its agents' stop working at once
    Revoke {
        label: String,
        /// Why, kept on the revocation record
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Mint an agent sub-grant below a member's grant and print its bearer
    Grant(AgentGrantArgs),
    /// Revoke one agent sub-grant
    RevokeGrant { label: String, grant_id: String },
}

#[derive(Debug, Args)]
pub struct AgentGrantArgs {
    /// The member whose grant it narrows
    pub label: String,

    /// The agent's DID (its bearer may write only as it)
    #[arg(long, value_name = "DID")]
    pub aud: String,

    /// Scopes, comma-separated, within the member's [default: the member's]
    #[arg(long, value_delimiter = ',')]
    pub scopes: Vec<String>,

    /// Lifetime in seconds, at most the member's grant's [default: the same]
    #[arg(long, value_name = "N")]
    pub ttl_seconds: Option<u64>,

    #[command(flatten)]
    pub caveats: CaveatArgs,
}

#[derive(Debug, Args)]
pub struct CreateNamespaceArgs {
    /// Namespace id: `/`-separated segments of [a-z0-9_-], e.g. acme/payments
    #[arg(value_parser = NonEmptyStringValueParser::new())]
    pub id: String,

    /// What the namespace is for
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
}

/// Options shared by the coordination acts (intend, do, know, learn).
#[derive(Debug, Args)]
pub struct RecordOptions {
    /// Author DID [default: the home's did:key]
    #[arg(long)]
    pub actor: Option<String>,

    /// Logical clock [default: wall-clock milliseconds]
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    pub clock: Option<i64>,

    /// Sets body.kind
    #[arg(long)]
    pub kind: Option<String>,

    /// JSON object merged into the body
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    pub body: Option<Map<String, Value>>,
}

#[derive(Debug, Args)]
pub struct IntendArgs {
    /// Thread to state the goal on [default: a new thread]
    #[arg(long)]
    pub thread: Option<String>,

    #[command(flatten)]
    pub options: RecordOptions,

    /// The goal
    pub text: String,
}

#[derive(Debug, Args)]
pub struct ActArgs {
    /// Thread to write to
    #[arg(long)]
    pub thread: String,

    #[command(flatten)]
    pub options: RecordOptions,

    /// The text of the record
    pub text: String,
}

#[derive(Debug, Args)]
pub struct EmitArgs {
    /// Act: INTEND, DO, KNOW, LEARN, GET, PUT, CALL or MAP
    #[arg(long)]
    pub act: String,

    /// Thread to write to
    #[arg(long)]
    pub thread: String,

    /// Body, a JSON object
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    pub body: Map<String, Value>,

    /// Data type
    #[arg(long, default_value = "SCALAR")]
    pub data_type: String,

    /// Ids of the records this one builds on, comma-separated
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub parents: Vec<String>,

    /// Author DID [default: the home's did:key]
    #[arg(long)]
    pub actor: Option<String>,

    /// Logical clock [default: wall-clock milliseconds]
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    pub clock: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum RecordsCommand {
    /// List a thread's records in order
    List(ListArgs),
    /// Fetch one record by id
    Get { id: String },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Thread to list
    #[arg(long)]
    pub thread: String,

    /// Only records by this actor
    #[arg(long)]
    pub actor: Option<String>,

    /// Only records with clock >= N
    #[arg(long, value_name = "N")]
    pub since: Option<i64>,

    /// Records per page
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,

    /// Start after this cursor (from a previous page)
    #[arg(long)]
    pub cursor: Option<String>,

    /// Follow cursors until the last page
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ThreadsArgs {
    /// Threads per page
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,

    /// Start after this cursor (from a previous page)
    #[arg(long)]
    pub cursor: Option<String>,
}

/// Parses a `--body` argument, so a malformed body is a usage error reported by clap (exit 2)
/// before anything is sent.
fn parse_json_object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("expected a JSON object".to_owned()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn output_json_is_an_alias_of_json() {
        let wants_json = |args: &[&str]| Cli::try_parse_from(args).unwrap().wants_json();
        assert!(!wants_json(&["spl", "status"]));
        assert!(wants_json(&["spl", "--json", "status"]));
        assert!(wants_json(&["spl", "-o", "json", "status"]));
        assert!(wants_json(&["spl", "status", "--output-format", "json"]));
        assert!(!wants_json(&["spl", "status", "-o", "text"]));
        let err = Cli::try_parse_from(["spl", "status", "-o", "yaml"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn body_must_be_a_json_object() {
        assert!(parse_json_object(r#"{"a":1}"#).is_ok());
        assert!(parse_json_object("[1]").is_err());
        assert!(parse_json_object("{").is_err());
    }

    #[test]
    fn do_requires_a_thread() {
        let err = Cli::try_parse_from(["spl", "do", "x"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(Cli::try_parse_from(["spl", "do", "--thread", "t", "x"]).is_ok());
    }

    #[test]
    fn scopes_and_actors_split_on_commas() {
        let cli = Cli::try_parse_from([
            "spl",
            "service-account",
            "create",
            "--name",
            "ci",
            "--scopes",
            "records:read,records:write",
            "--actors",
            "did:a,did:b",
        ])
        .unwrap();
        let Command::ServiceAccount(ServiceAccountCommand::Create(args)) = cli.command else {
            panic!("parsed into the wrong command");
        };
        assert_eq!(args.scopes, ["records:read", "records:write"]);
        assert_eq!(args.actors, ["did:a", "did:b"]);
    }

    #[test]
    fn namespace_create_takes_an_id_and_an_optional_description() {
        let cli = Cli::try_parse_from([
            "spl",
            "namespace",
            "create",
            "acme/payments",
            "--description",
            "card payments",
        ])
        .unwrap();
        let Command::Namespace(NamespaceCommand::Create(args)) = cli.command else {
            panic!("parsed into the wrong command");
        };
        assert_eq!(args.id, "acme/payments");
        assert_eq!(args.description.as_deref(), Some("card payments"));

        assert!(Cli::try_parse_from(["spl", "namespace", "create"]).is_err());
        assert!(Cli::try_parse_from(["spl", "namespace", "show", ""]).is_err());
        assert!(Cli::try_parse_from(["spl", "namespace", "archive", "acme"]).is_ok());
    }

    #[test]
    fn ttl_needs_a_token_and_no_bootstrap() {
        let base = [
            "spl",
            "service-account",
            "create",
            "--name",
            "n",
            "--scopes",
            "admin",
        ];
        let with = |extra: &[&'static str]| {
            Cli::try_parse_from(base.iter().copied().chain(extra.iter().copied()))
        };
        assert!(with(&["--ttl-seconds", "60"]).is_err());
        assert!(with(&["--with-token", "--ttl-seconds", "60"]).is_ok());
        assert!(with(&["--bootstrap", "--with-token", "--ttl-seconds", "60"]).is_err());
    }
}
