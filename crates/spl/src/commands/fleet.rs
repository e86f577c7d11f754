//! `spl fleet sync …`: legacy per-thread sync pairs (federation-protocol.md §5.7). The steward the
//! pair is created on is the puller; records flow from the peer to it.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use syncropel_client::api::{CreateSyncPair, FederationManifest, SyncPair};
use syncropel_client::{encode_segment, Reply};
use syncropel_federation::{DidResolver, PeerClient, PeerClientOptions, PeerError};

use super::Ctx;
use crate::cli::{
    DiscoverArgs, DiscoveryMethod, FleetCommand, FleetPeersCommand, FleetSyncCommand,
    PeerDiscoverArgs, SyncPairArgs,
};
use crate::output::{display_field, fields, print_json, str_field, table};

pub async fn run(ctx: &Ctx, command: FleetCommand) -> Result<ExitCode> {
    let FleetCommand::Sync(command) = command;
    match command {
        FleetSyncCommand::Add(args) => add(ctx, args).await,
        FleetSyncCommand::List => list(ctx).await,
        FleetSyncCommand::Status { id } => status(ctx, &id).await,
        FleetSyncCommand::Trace { id, limit } => trace(ctx, &id, limit).await,
        FleetSyncCommand::Quarantine {
            pair,
            limit,
            cursor,
        } => quarantine(ctx, pair.as_deref(), limit, cursor.as_deref()).await,
        FleetSyncCommand::Pause { id } => action(ctx, &id, Action::Pause).await,
        FleetSyncCommand::Resume { id } => action(ctx, &id, Action::Resume).await,
        FleetSyncCommand::Kick { id } => action(ctx, &id, Action::Kick).await,
        FleetSyncCommand::Remove { id } => remove(ctx, &id).await,
        FleetSyncCommand::Peers(FleetPeersCommand::Discover(args)) => discover(ctx, args).await,
    }
}

/// What the operator does to a sync pair.
#[derive(Clone, Copy)]
enum Action {
    Pause,
    Resume,
    Kick,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Kick => "kick",
        }
    }
}

/// The body of `POST /v1/sync/pairs`; without `--peer-url` the steward resolves the DID.
fn add_body(args: &SyncPairArgs) -> CreateSyncPair {
    CreateSyncPair {
        peer_did: args.peer_did.clone(),
        thread_id: args.thread_id.clone(),
        peer_url: args.peer_url.clone(),
        peer_token: args.peer_token.clone(),
    }
}

async fn add(ctx: &Ctx, args: SyncPairArgs) -> Result<ExitCode> {
    let pair = ctx.client()?.create_sync_pair(&add_body(&args)).await?;
    if ctx.json {
        print_json(pair.json());
        return Ok(ExitCode::SUCCESS);
    }
    // E.g. this steward listens on loopback only while the peer is remote: it says how to fix it.
    if let Some(warning) = &pair.warning {
        eprintln!("warning: {warning}");
    }
    println!(
        "sync pair {}: pulling {} from {}, state {}",
        pair.pair_id, args.thread_id, args.peer_did, pair.state,
    );
    Ok(ExitCode::SUCCESS)
}

async fn list(ctx: &Ctx) -> Result<ExitCode> {
    let answer = ctx.client()?.sync_pairs().await?;
    if ctx.json {
        print_json(answer.json());
        return Ok(ExitCode::SUCCESS);
    }
    if answer.data.is_empty() {
        println!("no sync pairs");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = answer
        .data
        .iter()
        .map(|p| {
            vec![
                p.pair_id.clone(),
                p.state.clone(),
                p.thread_id.clone(),
                p.peer_did.clone(),
                p.peer_url.clone(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(&["PAIR", "STATE", "THREAD", "PEER DID", "PEER URL"], &rows)
    );
    Ok(ExitCode::SUCCESS)
}

async fn status(ctx: &Ctx, id: &str) -> Result<ExitCode> {
    let pair = ctx.client()?.sync_pair(id).await?;
    if ctx.json {
        print_json(pair.json());
    } else {
        println!("{}", fields(pair.json()));
    }
    Ok(ExitCode::SUCCESS)
}

/// `spl fleet sync trace`: a pair's recent sync events, newest first.
async fn trace(ctx: &Ctx, id: &str, limit: Option<u32>) -> Result<ExitCode> {
    let trace = ctx.client()?.sync_trace(id, limit).await?;
    if ctx.json {
        print_json(trace.json());
        return Ok(ExitCode::SUCCESS);
    }
    let trace = trace.into_value();
    if trace.events.is_empty() {
        println!(
            "no sync events of {} in this steward's memory",
            trace.pair_id
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = trace
        .events
        .iter()
        .map(|e| {
            let detail = match &e.error {
                Some(error) => format!("{}: {}", error.code, error.message),
                None if e.outcome == "pulled" => format!(
                    "{} new, {} held, {} quarantined",
                    e.pulled, e.duplicates, e.quarantined
                ),
                None => String::new(),
            };
            vec![
                syncropel_protocol::rfc3339_from_unix(e.last_at),
                e.thread.clone(),
                e.via.clone(),
                e.outcome.clone(),
                e.count.to_string(),
                format!("{} ms", e.duration_ms),
                detail,
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["LAST", "THREAD", "VIA", "OUTCOME", "TIMES", "TOOK", "DETAIL"],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// `spl fleet sync quarantine`: one page of the records held in quarantine.
async fn quarantine(
    ctx: &Ctx,
    pair: Option<&str>,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<ExitCode> {
    let page = ctx.client()?.sync_quarantine(pair, limit, cursor).await?;
    if ctx.json {
        print_json(page.json());
        return Ok(ExitCode::SUCCESS);
    }
    let page = page.into_value();
    if page.data.is_empty() && cursor.is_none() {
        println!("nothing is held in quarantine");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = page
        .data
        .iter()
        .map(|e| {
            vec![
                syncropel_protocol::rfc3339_from_unix(e.at),
                e.code.clone(),
                e.source.clone(),
                e.thread.clone(),
                e.actor.clone(),
                e.id.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["SINCE", "CODE", "PAIR", "THREAD", "ACTOR", "RECORD"],
            &rows
        )
    );
    if let Some(next) = &page.next_cursor {
        eprintln!("more: --cursor {next}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `pause`, `resume` and `kick`: `POST /v1/sync/pairs/{id}/{action}`.
async fn action(ctx: &Ctx, id: &str, action: Action) -> Result<ExitCode> {
    let client = ctx.client()?;
    let answer: Reply<Option<SyncPair>> = match action {
        Action::Pause => client.pause_sync_pair(id).await?,
        Action::Resume => client.resume_sync_pair(id).await?,
        Action::Kick => client.kick_sync_pair(id).await?,
    };
    if ctx.json {
        let answer = match answer.into_json() {
            Value::Null => json!({"pair_id": id, "action": action.name()}),
            answer => answer,
        };
        print_json(&answer);
    } else {
        let done = match action {
            Action::Pause => "paused",
            Action::Resume => "resumed",
            Action::Kick => "kicked",
        };
        match answer
            .as_ref()
            .map(|p| p.state.as_str())
            .filter(|s| !s.is_empty())
        {
            Some(state) => println!("{done} sync pair {id}, state {state}"),
            None => println!("{done} sync pair {id}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn remove(ctx: &Ctx, id: &str) -> Result<ExitCode> {
    let answer = ctx.client()?.remove_sync_pair(id).await?;
    if ctx.json {
        let answer = match answer.into_json() {
            Value::Null => json!({"pair_id": id, "removed": true}),
            answer => answer,
        };
        print_json(&answer);
    } else {
        println!("removed sync pair {id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The methods a discover run uses: the one asked for, else mDNS plus whatever the flags allow
/// (`peers_file_exists`: whether the static peers file is there).
fn discovery_methods(args: &DiscoverArgs, peers_file_exists: bool) -> Result<Vec<DiscoveryMethod>> {
    Ok(match args.method {
        Some(DiscoveryMethod::Dns) if args.domain.is_none() => bail!("--method dns needs --domain"),
        Some(DiscoveryMethod::Transitive) if args.via.is_none() => {
            bail!("--method transitive needs --via <peer-did>")
        }
        Some(DiscoveryMethod::DidWeb) if args.domain.is_none() && args.did.is_none() => {
            bail!("--method did-web needs --domain or --did")
        }
        Some(DiscoveryMethod::DidSync) if !did_sync_possible(args) => {
            bail!("--method did-sync needs --namespace and --directory")
        }
        Some(method) => vec![method],
        None => {
            let mut methods = vec![DiscoveryMethod::Mdns];
            if args.domain.is_some() {
                methods.push(DiscoveryMethod::Dns);
            }
            if args.domain.is_some() || args.did.is_some() {
                methods.push(DiscoveryMethod::DidWeb);
            }
            if args.via.is_some() {
                methods.push(DiscoveryMethod::Transitive);
            }
            if did_sync_possible(args) {
                methods.push(DiscoveryMethod::DidSync);
            }
            if peers_file_exists {
                methods.push(DiscoveryMethod::Static);
            }
            methods
        }
    })
}

fn did_sync_possible(args: &DiscoverArgs) -> bool {
    args.namespace.is_some() && !args.directories.is_empty()
}

/// `spl fleet sync peers discover`: candidates grouped by method, one entry per DID. Nothing
/// here pairs: the operator pairs with a candidate afterwards.
async fn discover(ctx: &Ctx, args: DiscoverArgs) -> Result<ExitCode> {
    // The CLI runs on the operator's machine, where LAN and loopback stewards are fair game.
    let client = PeerClient::new(PeerClientOptions {
        allow_private: true,
        ..Default::default()
    });
    let dids = DidResolver::new(client.clone(), args.directories.clone());
    let peers_file = args
        .peers_file
        .clone()
        .unwrap_or_else(|| ctx.home.root().join(PEERS_FILE));
    let mut groups = serde_json::Map::new();
    for method in discovery_methods(&args, peers_file.exists())? {
        let (name, found) = match method {
            DiscoveryMethod::Mdns => ("mdns", mdns_candidates(&args).await?),
            DiscoveryMethod::Dns => ("dns", dns_candidates(&args, &client, &dids).await?),
            DiscoveryMethod::Transitive => (
                "transitive",
                transitive_candidates(ctx, args.via.as_deref().unwrap_or_default()).await?,
            ),
            DiscoveryMethod::DidWeb => {
                ("did-web", did_web_candidates(&args, &client, &dids).await?)
            }
            DiscoveryMethod::DidSync => {
                ("did-sync", did_sync_candidates(&args, &client, &dids).await)
            }
            DiscoveryMethod::Static => (
                "static",
                static_candidates(&peers_file, &client, &dids).await?,
            ),
        };
        groups.insert(name.to_string(), Value::Array(unique_by_did(found)));
    }
    if ctx.json {
        print_json(&json!({"object": "discovery", "candidates": groups}));
        return Ok(ExitCode::SUCCESS);
    }
    for (method, found) in &groups {
        let found = found.as_array().map(Vec::as_slice).unwrap_or_default();
        if found.is_empty() {
            println!("{method}: nothing found");
            continue;
        }
        let rows: Vec<Vec<String>> = found
            .iter()
            .map(|c| {
                let url = ["url", "endpoint"]
                    .iter()
                    .map(|k| display_field(c, k))
                    .find(|v| v != "-")
                    .unwrap_or_else(|| "-".into());
                vec![
                    display_field(c, "did"),
                    url,
                    display_field(c, "manifest_verified"),
                ]
            })
            .collect();
        println!("{method}:");
        print!("{}", table(&["DID", "URL", "VERIFIED"], &rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// The first entry of each DID, verified ones first.
fn unique_by_did(mut found: Vec<Value>) -> Vec<Value> {
    found.sort_by_key(|c| c["manifest_verified"] != json!(true));
    let mut seen = std::collections::BTreeSet::new();
    found.retain(|c| seen.insert(str_field(c, "did").to_string()));
    found
}

/// Browses from this process: no steward needs to be running.
async fn mdns_candidates(args: &DiscoverArgs) -> Result<Vec<Value>> {
    let config = syncropel_discovery::MdnsConfig {
        interfaces: args.mdns_interfaces,
        ..syncropel_discovery::MdnsConfig::default()
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    let peers =
        tokio::task::spawn_blocking(move || syncropel_discovery::discover(&config, timeout))
            .await??;
    Ok(peers.iter().map(|p| json!(p)).collect())
}

/// Looks up the TXT record and keeps the candidates whose signed manifest names the same DID.
async fn dns_candidates(
    args: &DiscoverArgs,
    client: &PeerClient,
    dids: &DidResolver,
) -> Result<Vec<Value>> {
    let resolver = match args.dns_server {
        Some(addr) => syncropel_discovery::TxtResolver::with_nameserver(addr),
        None => syncropel_discovery::TxtResolver::system()?,
    };
    let domain = args.domain.as_deref().unwrap_or_default();
    let mut found = Vec::new();
    for candidate in resolver.lookup(domain).await? {
        let mut entry = json!(candidate);
        match verified_did(client, dids, &candidate.manifest_url, &candidate.url).await {
            Ok(did) if did == candidate.did => entry["manifest_verified"] = json!(true),
            Ok(did) => {
                eprintln!(
                    "warning: ignoring {}: the TXT record names {} but the manifest is signed for {did}",
                    candidate.url, candidate.did
                );
                continue;
            }
            Err(e) => {
                entry["manifest_verified"] = json!(false);
                entry["error"] = json!(e.to_string());
            }
        }
        found.push(entry);
    }
    Ok(found)
}

/// The did:web document of `--did` (else of `--domain`), its `syncropel` endpoint and whether
/// the manifest there is signed for that did:web. A domain without a document gives nothing.
async fn did_web_candidates(
    args: &DiscoverArgs,
    client: &PeerClient,
    dids: &DidResolver,
) -> Result<Vec<Value>> {
    let did = match (&args.did, &args.domain) {
        (Some(did), _) if did.starts_with("did:web:") => did.clone(),
        (Some(did), _) => bail!("--did {did} is not a did:web"),
        (None, domain) => {
            syncropel_protocol::did_doc::did_web_for(domain.as_deref().unwrap_or_default(), None)
        }
    };
    match dids.resolve(&did).await {
        Err(PeerError::DidNotFound(_)) => Ok(Vec::new()),
        Err(e) => Ok(vec![unverified(json!({"did": did}), e)]),
        Ok(resolved) => Ok(vec![
            checked_candidate(client, dids, &did, resolved.endpoint.as_deref()).await,
        ]),
    }
}

/// The peers each directory lists under `--namespace`, each re-resolved from its own op log
/// (the listing is only the DID's claim, relayed) and checked against its manifest.
/// Candidates that fail a check stay listed, unverified, with the reason.
async fn did_sync_candidates(
    args: &DiscoverArgs,
    client: &PeerClient,
    dids: &DidResolver,
) -> Vec<Value> {
    const LISTING_MAX_BYTES: usize = 1 << 20;
    let namespace = args.namespace.as_deref().unwrap_or_default();
    let mut listed = Vec::new();
    for directory in &args.directories {
        let url = format!(
            "{}/directory/namespace/{}/peers",
            directory.trim_end_matches('/'),
            encode_segment(namespace)
        );
        match client.get_document(&url, LISTING_MAX_BYTES).await {
            Ok((body, _)) => listed.extend(
                body["peers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["did"].as_str())
                    .map(|did| (did.to_string(), directory.clone())),
            ),
            // Another directory may still answer; the operator learns why this one did not.
            Err(e) => eprintln!("warning: {directory}: {e}"),
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    listed.retain(|(did, _)| seen.insert(did.clone()));

    let mut found = Vec::new();
    for (did, directory) in listed {
        let mut entry = match dids.resolve(&did).await {
            Err(e) => unverified(json!({"did": did}), e),
            Ok(resolved) if resolved.deactivated => {
                unverified(json!({"did": did}), "the DID is deactivated")
            }
            Ok(resolved) => {
                let mut entry =
                    checked_candidate(client, dids, &did, resolved.endpoint.as_deref()).await;
                entry["handles"] = json!(resolved.handles);
                entry
            }
        };
        entry["directory"] = json!(directory);
        found.push(entry);
    }
    found
}

/// The peers file in the home that `--method static` reads unless told another.
const PEERS_FILE: &str = "peers.toml";
/// Most peers a peers file may list (each costs a manifest fetch).
const MAX_STATIC_PEERS: usize = 1000;

/// A peers file: `[[peer]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersFile {
    #[serde(default)]
    peer: Vec<StaticPeer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticPeer {
    url: String,
    /// The DID the operator expects there: a manifest signed for another is not taken.
    did: Option<String>,
}

/// The peers the operator listed, each checked against the manifest at its URL (and against
/// the DID listed with it, if any). A peer that fails a check stays listed, unverified.
async fn static_candidates(
    path: &std::path::Path,
    client: &PeerClient,
    dids: &DidResolver,
) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the peers file {}", path.display()))?;
    let file: PeersFile = toml::from_str(&text)
        .with_context(|| format!("the peers file {} is not valid", path.display()))?;
    if file.peer.len() > MAX_STATIC_PEERS {
        bail!(
            "the peers file {} lists more than {MAX_STATIC_PEERS} peers",
            path.display()
        );
    }
    let mut found = Vec::new();
    for peer in file.peer {
        let url = peer.url.trim_end_matches('/');
        let mut entry = json!({"url": url});
        if let Some(did) = &peer.did {
            entry["did"] = json!(did);
        }
        let manifest_url = format!("{url}/.well-known/syncropel");
        entry = match verified_did(client, dids, &manifest_url, url).await {
            Ok(did) if peer.did.as_deref().is_none_or(|listed| listed == did) => {
                entry["did"] = json!(did);
                entry["manifest_verified"] = json!(true);
                entry
            }
            Ok(did) => unverified(entry, format!("the manifest at {url} is signed for {did}")),
            Err(e) => unverified(entry, e),
        };
        found.push(entry);
    }
    Ok(found)
}

/// `{did, url, manifest_verified}` for a DID whose document names `endpoint`: verified when
/// the manifest served there is validly signed for `did`.
async fn checked_candidate(
    client: &PeerClient,
    dids: &DidResolver,
    did: &str,
    endpoint: Option<&str>,
) -> Value {
    let Some(endpoint) = endpoint else {
        return unverified(
            json!({"did": did}),
            "the DID document names no syncropel service",
        );
    };
    let entry = json!({"did": did, "url": endpoint});
    let manifest_url = format!("{}/.well-known/syncropel", endpoint.trim_end_matches('/'));
    match verified_did(client, dids, &manifest_url, endpoint).await {
        Ok(signed_for) if signed_for == did => {
            let mut entry = entry;
            entry["manifest_verified"] = json!(true);
            entry
        }
        Ok(signed_for) => unverified(
            entry,
            format!("the manifest at {manifest_url} is signed for {signed_for}"),
        ),
        Err(e) => unverified(entry, e),
    }
}

fn unverified(mut entry: Value, error: impl std::fmt::Display) -> Value {
    entry["manifest_verified"] = json!(false);
    entry["error"] = json!(error.to_string());
    entry
}

/// Fetches the manifest at `url` and answers the DID it is validly signed for, provided it is
/// still fresh and its endpoints are at the origin of `listed_url`, the URL the candidate is
/// listed with. A signature alone proves only authorship: a copy of someone's public manifest
/// served from another host must not make that host pass for them.
async fn verified_did(
    client: &PeerClient,
    dids: &DidResolver,
    url: &str,
    listed_url: &str,
) -> Result<String> {
    Ok(verified_manifest(client, dids, url, listed_url, true)
        .await?
        .0)
}

/// The signed manifest at `url` and the DID it is verified for: signed by a key of that DID,
/// not expired (unless not `strict`), its endpoints at `listed_url`'s origin.
async fn verified_manifest(
    client: &PeerClient,
    dids: &DidResolver,
    url: &str,
    listed_url: &str,
    strict: bool,
) -> Result<(String, Value)> {
    const MANIFEST_MAX_BYTES: usize = 1 << 20;
    /// A steward's `/.well-known/syncropel`, or a manifest served bare.
    #[derive(Deserialize)]
    struct Document {
        federation_manifest: Option<Value>,
    }
    let (body, _) = client.get_document(url, MANIFEST_MAX_BYTES).await?;
    // Verified as received: the signature covers the JSON, not a typed copy of it.
    let manifest = match Document::deserialize(&body) {
        Ok(Document {
            federation_manifest: Some(manifest),
        }) => manifest,
        _ => body,
    };
    let manifest = &manifest;
    let Some(did) = syncropel_federation::manifest::daemon_did(manifest) else {
        bail!("the manifest at {url} names no DID");
    };
    // A did:key signs for itself; other DIDs sign with a key their document lists.
    let keys = if did.starts_with("did:key:") {
        Vec::new()
    } else {
        dids.resolve(did).await?.keys.clone()
    };
    // One call has no history: an upstream-form signature counts as first seen now.
    syncropel_federation::manifest::Verifier::default()
        .check(manifest, &keys, SystemTime::now(), strict)
        .map_err(|e| anyhow::anyhow!("the manifest at {url} is refused: {e}"))?;
    let federation = FederationManifest::deserialize(manifest)
        .map_err(|e| anyhow::anyhow!("the manifest at {url} is malformed: {e}"))?
        .federation;
    for (key, endpoint) in [
        ("sync_change_endpoint", &federation.sync_change_endpoint),
        ("handshake_endpoint", &federation.handshake_endpoint),
    ] {
        if endpoint.is_empty() {
            bail!("the manifest at {url} names no {key}");
        }
        if !syncropel_discovery::same_origin(endpoint, listed_url) {
            bail!("the manifest at {url} is for {endpoint}, not for {listed_url}");
        }
    }
    Ok((did.to_string(), manifest.clone()))
}

/// `spl discover --peer-url URL [--kind K]`: the steward at URL proves who it is (its signed
/// manifest, verified as pairing would) and, with `--kind`, that it advertises that body kind.
/// Any failure exits non-zero.
pub async fn discover_peer(ctx: &Ctx, args: PeerDiscoverArgs) -> Result<ExitCode> {
    let client = PeerClient::new(PeerClientOptions {
        allow_private: true,
        ..Default::default()
    });
    let dids = DidResolver::new(client.clone(), args.directories.clone());
    let base = args.peer_url.trim_end_matches('/');
    let url = format!("{base}/.well-known/syncropel");
    let (did, manifest) = verified_manifest(&client, &dids, &url, base, !args.no_strict).await?;
    let kinds: Vec<String> = manifest["advertises"]["kinds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    if let Some(kind) = &args.kind {
        if !kinds.contains(kind) {
            bail!("{did} at {base} does not advertise the kind {kind}");
        }
    }
    if ctx.json {
        print_json(&json!({
            "url": base,
            "did": did,
            "manifest_verified": true,
            "advertises": manifest["advertises"],
        }));
    } else {
        println!("{did} at {base}: manifest verified");
        println!(
            "kinds        {}",
            if kinds.is_empty() {
                "-".to_string()
            } else {
                kinds.join(", ")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the local steward, which asks the paired peer `via` with the bearer it holds.
async fn transitive_candidates(ctx: &Ctx, via: &str) -> Result<Vec<Value>> {
    let answer = ctx.client()?.introductions(via).await?;
    Ok(answer
        .into_value()
        .peers
        .iter()
        .map(|peer| json!(peer))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn add_bodies_leave_out_what_was_not_given() {
        let cli = Cli::try_parse_from([
            "spl",
            "fleet",
            "sync",
            "add",
            "did:web:bob.example",
            "th_notes",
        ])
        .unwrap();
        let Command::Fleet(FleetCommand::Sync(FleetSyncCommand::Add(args))) = cli.command else {
            panic!("parsed into the wrong command");
        };
        assert_eq!(
            serde_json::to_value(add_body(&args)).unwrap(),
            json!({"peer_did": "did:web:bob.example", "thread_id": "th_notes"})
        );

        let cli = Cli::try_parse_from([
            "spl",
            "fleet",
            "sync",
            "add",
            "--peer-url",
            "https://bob.example",
            "--peer-token",
            "tok",
            "did:web:bob.example",
            "th_notes",
        ])
        .unwrap();
        let Command::Fleet(FleetCommand::Sync(FleetSyncCommand::Add(args))) = cli.command else {
            panic!("parsed into the wrong command");
        };
        assert_eq!(
            serde_json::to_value(add_body(&args)).unwrap(),
            json!({"peer_did": "did:web:bob.example", "thread_id": "th_notes",
                   "peer_url": "https://bob.example", "peer_token": "tok"})
        );
    }

    fn discover_args(args: &[&str]) -> DiscoverArgs {
        let cli = Cli::try_parse_from(
            ["spl", "fleet", "sync", "peers", "discover"]
                .iter()
                .chain(args),
        )
        .unwrap();
        let Command::Fleet(FleetCommand::Sync(FleetSyncCommand::Peers(
            FleetPeersCommand::Discover(args),
        ))) = cli.command
        else {
            panic!("parsed into the wrong command");
        };
        args
    }

    #[test]
    fn discovery_methods_follow_the_flags() {
        use DiscoveryMethod::*;
        let methods = |args: &[&str]| discovery_methods(&discover_args(args), false).unwrap();
        assert_eq!(methods(&[]), [Mdns]);
        assert_eq!(
            discovery_methods(&discover_args(&[]), true).unwrap(),
            [Mdns, Static]
        );
        assert_eq!(methods(&["--method", "static"]), [Static]);
        assert_eq!(
            methods(&["--domain", "a.dev", "--via", "did:web:b"]),
            [Mdns, Dns, DidWeb, Transitive]
        );
        assert_eq!(methods(&["--method", "dns", "--domain", "a.dev"]), [Dns]);
        assert_eq!(methods(&["--did", "did:web:a.dev"]), [Mdns, DidWeb]);
        // did-sync needs a directory as well as the namespace.
        assert_eq!(methods(&["--namespace", "team-x"]), [Mdns]);
        assert_eq!(
            methods(&[
                "--namespace",
                "team-x",
                "--directory",
                "http://d1,http://d2"
            ]),
            [Mdns, DidSync]
        );
        assert_eq!(
            discover_args(&["--directory", "http://d1", "--directory", "http://d2"]).directories,
            ["http://d1", "http://d2"]
        );
        assert_eq!(
            methods(&["--method", "did-web", "--domain", "a.dev"]),
            [DidWeb]
        );
        for args in [
            &["--method", "transitive"][..],
            &["--method", "did-web"],
            &["--method", "did-sync", "--namespace", "team-x"],
            &["--method", "did-sync", "--directory", "http://d1"],
        ] {
            assert!(
                discovery_methods(&discover_args(args), false).is_err(),
                "{args:?}"
            );
        }
        assert_eq!(discover_args(&[]).timeout_ms, 1000);
    }

    #[test]
    fn candidates_are_unique_by_did_and_verified_ones_win() {
        let found = unique_by_did(vec![
            json!({"did": "did:web:a", "url": "https://old", "manifest_verified": false}),
            json!({"did": "did:web:b", "url": "https://b"}),
            json!({"did": "did:web:a", "url": "https://new", "manifest_verified": true}),
        ]);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0]["url"], "https://new");
        assert_eq!(found[1]["did"], "did:web:b");
    }
}
