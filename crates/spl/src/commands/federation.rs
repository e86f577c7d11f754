//! `spl federation …` (record-bound pairs, federation-protocol.md §3.7, §4) and `spl sync <THREAD>
//! from <PEER>` (one-shot pull, federation-protocol.md §5.8).
//!
//! All of them call the local steward, which talks to the peer itself: the CLI never holds a
//! peer's token. `pair` answers 200 when the pair is active at once (the peer auto-approved, or
//! the pair already existed) and 202 while the peer's operator decides; the CLI then polls every
//! `poll_after_ms` (2 s) for up to 60 s, after which the request stays pending on the peer and
//! the CLI exits 0 naming the pair id.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};
use syncropel_client::api::{
    FederationPair, HandshakePending, PairGrant, PairReason, PullRequest, PushThread,
    SetIntroducible, StartPair,
};
use syncropel_client::{ClientError, Pairing, Reply};
use syncropel_home::Home;
use syncropel_protocol::consent::HashLevel;
use syncropel_protocol::{NamespaceMap, DEFAULT_NAMESPACE};
use tokio::time::Instant;

use super::Ctx;
use crate::cli::{FederationCommand, InviteArgs, PairArgs, SyncArgs};
use crate::output::{fields, or_dash, prefix, print_json, table};

/// Floor on the steward's `poll_after_ms`, so a zero cannot turn polling into a busy loop.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Pair ids shown in `spl federation list` are cut to this many characters.
const PAIR_ID_CHARS: usize = 16;

/// What the operator does to a pair.
#[derive(Clone, Copy)]
enum Change {
    Pause,
    Resume,
    Revoke,
}

pub async fn run(ctx: &Ctx, command: FederationCommand) -> Result<ExitCode> {
    match command {
        FederationCommand::Pair(args) => pair(ctx, args).await,
        FederationCommand::Invite(args) => invite(ctx, args).await,
        FederationCommand::List => list(ctx).await,
        FederationCommand::Show { peer } => show(ctx, &peer).await,
        FederationCommand::Pause { peer } => change(ctx, &peer, Change::Pause, None).await,
        FederationCommand::Resume { peer } => change(ctx, &peer, Change::Resume, None).await,
        FederationCommand::Refresh { peer, url } => refresh(ctx, &peer, url.as_deref()).await,
        FederationCommand::Revoke { peer, reason } => {
            change(ctx, &peer, Change::Revoke, Some(reason)).await
        }
        FederationCommand::Pending => pending(ctx).await,
        FederationCommand::Approve { pair_id } => decide(ctx, &pair_id, true, None).await,
        FederationCommand::Reject { pair_id, reason } => decide(ctx, &pair_id, false, reason).await,
        FederationCommand::Introducible { peer, state } => {
            introducible(ctx, &peer, state == "on").await
        }
        FederationCommand::Grant {
            peer,
            namespace,
            maps,
            hash_levels,
        } => grant(ctx, &peer, &namespace, maps, &hash_levels).await,
        FederationCommand::RevokeGrant { peer, grant_id } => {
            revoke_grant(ctx, &peer, &grant_id).await
        }
        FederationCommand::SetMode { peer, mode } => {
            configure(ctx, &peer, serde_json::json!({ "mode": mode })).await
        }
        FederationCommand::Push {
            peer,
            thread,
            namespace,
        } => push(ctx, &peer, thread, namespace).await,
        FederationCommand::SetPollInterval { peer, interval } => {
            let fields = serde_json::json!({ "poll_interval_secs": interval });
            configure(ctx, &peer, fields).await
        }
        FederationCommand::ThreadAllow {
            peer,
            threads,
            remove,
        } => {
            let field = if remove {
                "thread_allow_remove"
            } else {
                "thread_allow_add"
            };
            configure(ctx, &peer, serde_json::json!({ field: threads })).await
        }
        FederationCommand::ThreadRule {
            peer, expression, ..
        } => configure(ctx, &peer, serde_json::json!({ "thread_rule": expression })).await,
    }
}

/// `POST /v1/federation/pairs/{id}/grants`: consent grants bound to the pair's peer,
/// `namespace` here into each of `maps` there.
async fn grant(
    ctx: &Ctx,
    peer: &str,
    namespace: &str,
    maps: Vec<String>,
    hash_levels: &[String],
) -> Result<ExitCode> {
    let request = PairGrant {
        namespace: namespace.to_string(),
        maps,
        hash_levels: Some(
            hash_levels
                .iter()
                .filter_map(|l| HashLevel::parse(l))
                .collect(),
        ),
    };
    let answer = ctx.client()?.grant_to_pair(peer, &request).await?;
    if ctx.json {
        print_json(answer.json());
        return Ok(ExitCode::SUCCESS);
    }
    for granted in &answer.data {
        let levels: Vec<&str> = granted.hash_levels.iter().map(|l| l.as_str()).collect();
        println!(
            "granted {}: {} → {} for {} at {}",
            granted.grant_id,
            granted.source_namespace,
            granted.target_namespace,
            granted.peer_did.as_deref().unwrap_or(peer),
            levels.join(",")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `DELETE /v1/federation/pairs/{id}/grants/{grant_id}`: the steward refuses a grant that is not
/// bound to the pair's peer.
async fn revoke_grant(ctx: &Ctx, peer: &str, grant_id: &str) -> Result<ExitCode> {
    let answer = ctx.client()?.revoke_pair_grant(peer, grant_id).await?;
    if ctx.json {
        let answer = match answer.into_json() {
            serde_json::Value::Null => serde_json::json!({"grant_id": grant_id, "revoked": true}),
            answer => answer,
        };
        print_json(&answer);
    } else {
        println!("revoked consent grant {grant_id} of {peer}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `POST /v1/federation/pairs/{id}/config`: prints what the pair's peer is served now.
/// `spl federation push`: one thread to the pair's peer, now.
async fn push(
    ctx: &Ctx,
    peer: &str,
    thread: String,
    target_namespace: Option<String>,
) -> Result<ExitCode> {
    let request = PushThread {
        thread,
        target_namespace,
    };
    let answer = ctx.client()?.push_thread(peer, &request).await?;
    if ctx.json {
        print_json(answer.json());
        return Ok(ExitCode::SUCCESS);
    }
    let sent = answer.into_value();
    println!(
        "pushed {} records of {} in {} requests: {} new at the peer, {} it held, {} quarantined",
        sent.pushed, sent.thread, sent.requests, sent.accepted, sent.duplicates, sent.quarantined
    );
    Ok(ExitCode::SUCCESS)
}

async fn configure(ctx: &Ctx, peer: &str, fields: serde_json::Value) -> Result<ExitCode> {
    let answer = ctx.client()?.configure_pair(peer, &fields).await?;
    if ctx.json {
        print_json(answer.json());
        return Ok(ExitCode::SUCCESS);
    }
    let pair = answer.json();
    let allowed: Vec<&str> = pair["thread_allow"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str())
        .collect();
    println!(
        "pair {} with {}",
        pair["pair_id"].as_str().unwrap_or("-"),
        pair["peer_did"].as_str().unwrap_or("-")
    );
    println!("mode         {}", pair["mode"].as_str().unwrap_or("-"));
    if allowed.is_empty() && pair["thread_rule"].is_null() {
        println!("threads      every thread");
    } else {
        let named = allowed.join(", ");
        println!(
            "threads      {}",
            or_dash(Some(named.as_str()).filter(|n| !n.is_empty()))
        );
        println!("thread rule  {}", or_dash(pair["thread_rule"].as_str()));
    }
    Ok(ExitCode::SUCCESS)
}

/// The body of `POST /v1/federation/pairs`.
fn pair_body(args: &PairArgs) -> StartPair {
    StartPair {
        peer_url: args.peer_url.clone(),
        maps: args
            .maps
            .iter()
            .map(|m| NamespaceMap {
                local: m.local.clone(),
                peer: m.peer.clone(),
            })
            .collect(),
        namespaces: args.namespaces.clone(),
        no_strict: args.no_strict,
    }
}

async fn pair(ctx: &Ctx, args: PairArgs) -> Result<ExitCode> {
    if args.auto_approve {
        // The initiator cannot bypass the responder's decision, so the flag changes no request.
        eprintln!(
            "note: --auto-approve does nothing: approving a pair is the peer's operator's decision"
        );
    }
    if args.auto_generate_identity {
        if let Some(did) = ensure_identity(&ctx.home)? {
            eprintln!("created identity {did}");
        }
    }
    match start_and_wait(ctx, &pair_body(&args), args.wait_secs).await? {
        Waited::Paired(json, pair) => paired(ctx, &json, &pair),
        Waited::Pending(json, pair_id) => {
            // Not an error: the request stays valid on the peer until its operator decides.
            if ctx.json {
                print_json(&json);
            } else {
                println!(
                    "still pending after {}s: ask the peer's operator to run `spl federation approve {pair_id}`",
                    args.wait_secs
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How a pairing stood when the wait ended.
enum Waited {
    Paired(Value, Box<FederationPair>),
    /// Still waiting for the peer's operator: the answer and the pair id.
    Pending(Value, String),
}

/// Starts pairing and polls the handshake for up to `wait_secs` while the peer's operator
/// decides. A refusal (`403 PAIR_REJECTED`, `410 NONCE_EXPIRED`, …) ends the wait as an error.
async fn start_and_wait(ctx: &Ctx, request: &StartPair, wait_secs: u64) -> Result<Waited> {
    let client = ctx.client()?;
    let deadline = Instant::now() + Duration::from_secs(wait_secs);
    let (mut pending, mut answer) = match client.start_pairing(request).await?.into_parts() {
        (Pairing::Paired(pair), json) => return Ok(Waited::Paired(json, pair)),
        (Pairing::Pending(pending), json) => (pending, json),
    };
    let pair_id = pending.pair_id.clone();
    if pair_id.is_empty() {
        return Err(ClientError::Decode("pending pair answer has no `pair_id`".into()).into());
    }
    if !ctx.json {
        eprintln!(
            "waiting for the operator of {} to approve pair {pair_id} …",
            request.peer_url
        );
    }
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Ok(Waited::Pending(answer, pair_id));
        }
        tokio::time::sleep(poll_interval(&pending).min(remaining)).await;
        match client.continue_pairing(&pair_id).await?.into_parts() {
            (Pairing::Paired(pair), json) => return Ok(Waited::Paired(json, pair)),
            (Pairing::Pending(polled), json) => (pending, answer) = (polled, json),
        }
    }
}

/// `spl federation invite`: pairs (or takes the live pair already made), then grants each
/// `--grant-namespace` at L1 into the peer's `default` namespace (where its pulls land unless
/// they name another) and serves each `--grant-thread` whole. Each step is skipped when already
/// done, so running it again changes nothing; a failure stops it with what was done kept.
async fn invite(ctx: &Ctx, args: InviteArgs) -> Result<ExitCode> {
    let client = ctx.client()?;
    let live = match client.federation_pair(&args.peer).await {
        Ok(pair) => {
            let pair = pair.into_value();
            matches!(pair.state.as_str(), "active" | "degraded" | "paused").then_some(pair)
        }
        Err(ClientError::Api { status: 404, .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let pair = match live {
        Some(pair) => pair,
        None if args.peer.starts_with("http://") || args.peer.starts_with("https://") => {
            let request = StartPair {
                peer_url: args.peer.clone(),
                maps: args
                    .maps
                    .iter()
                    .map(|m| NamespaceMap {
                        local: m.local.clone(),
                        peer: m.peer.clone(),
                    })
                    .collect(),
                ..StartPair::default()
            };
            match start_and_wait(ctx, &request, args.wait_secs).await? {
                Waited::Paired(_, pair) => *pair,
                Waited::Pending(json, pair_id) => {
                    if ctx.json {
                        print_json(&json);
                    } else {
                        println!(
                            "pair {pair_id} is still pending: once the peer's operator approves it, run the invite again to share"
                        );
                    }
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
        None => anyhow::bail!(
            "no live pair with {}: name the peer by its URL to pair with it",
            args.peer
        ),
    };

    let held = client.consent_grants(None).await?.into_value().data;
    let mut granted = Vec::new();
    for namespace in &args.grant_namespaces {
        let done = held.iter().any(|g| {
            g.active
                && g.peer_did.as_deref() == Some(pair.peer_did.as_str())
                && g.source_namespace == *namespace
                && g.target_namespace == DEFAULT_NAMESPACE
                && g.hash_levels == [HashLevel::L1]
        });
        if done {
            continue;
        }
        let request = PairGrant {
            namespace: namespace.clone(),
            maps: vec![DEFAULT_NAMESPACE.to_string()],
            hash_levels: Some(vec![HashLevel::L1]),
        };
        let answer = client.grant_to_pair(&pair.pair_id, &request).await?;
        granted.extend(answer.into_value().data);
    }
    let mut pair_view = pair.clone();
    let new_threads: Vec<&String> = args
        .grant_threads
        .iter()
        .filter(|t| !pair.thread_allow.contains(*t))
        .collect();
    if !new_threads.is_empty() {
        let fields = serde_json::json!({ "thread_allow_add": new_threads });
        pair_view = client
            .configure_pair(&pair.pair_id, &fields)
            .await?
            .into_value();
    }
    if ctx.json {
        print_json(&serde_json::json!({
            "object": "federation_invite",
            "pair": pair_view,
            "granted": granted,
            "thread_allow": pair_view.thread_allow,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "pair {} with {}, state {}",
        pair_view.pair_id,
        pair_view.peer_did,
        pair_view.state.as_str()
    );
    for grant in &granted {
        println!(
            "granted {}: {} → {} at L1",
            grant.grant_id, grant.source_namespace, grant.target_namespace
        );
    }
    if !pair_view.thread_allow.is_empty() {
        println!(
            "threads served whole: {}",
            pair_view
                .thread_allow
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--auto-generate-identity`: creates the home's identity key, as `spl init` does, unless one
/// exists (an existing key, even an unreadable one, is left alone). Answers the new DID.
fn ensure_identity(home: &Home) -> Result<Option<String>> {
    if home.is_initialized() {
        return Ok(None);
    }
    Ok(Some(home.init(false)?.did))
}

/// The wait before the next poll: the steward's `poll_after_ms`, at least [`MIN_POLL_INTERVAL`].
fn poll_interval(pending: &HandshakePending) -> Duration {
    Duration::from_millis(pending.poll_after_ms).max(MIN_POLL_INTERVAL)
}

fn paired(ctx: &Ctx, json: &Value, pair: &FederationPair) -> Result<ExitCode> {
    if ctx.json {
        print_json(json);
    } else {
        println!(
            "paired with {} ({}), state {}",
            pair.peer_did,
            pair.pair_id,
            pair.state.as_str(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(ctx: &Ctx) -> Result<ExitCode> {
    let answer = ctx.client()?.federation_pairs().await?;
    if ctx.json {
        print_json(answer.json());
        return Ok(ExitCode::SUCCESS);
    }
    if answer.data.is_empty() {
        println!("no federation pairs");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = answer
        .data
        .iter()
        .map(|p| {
            vec![
                prefix(&p.pair_id, PAIR_ID_CHARS),
                p.peer_did.clone(),
                p.state.as_str().to_owned(),
                p.role.as_str().to_owned(),
                or_dash(p.peer_url.as_deref()),
            ]
        })
        .collect();
    println!(
        "{}",
        table(&["PAIR", "PEER DID", "STATE", "ROLE", "PEER URL"], &rows)
    );
    Ok(ExitCode::SUCCESS)
}

async fn show(ctx: &Ctx, peer: &str) -> Result<ExitCode> {
    let view = ctx.client()?.federation_pair(peer).await?;
    if ctx.json {
        print_json(view.json());
    } else {
        println!("{}", fields(view.json()));
    }
    Ok(ExitCode::SUCCESS)
}

/// `pause`, `resume` and `revoke`: `POST /v1/federation/pairs/{peer}/{action}`.
async fn change(ctx: &Ctx, peer: &str, change: Change, reason: Option<String>) -> Result<ExitCode> {
    let client = ctx.client()?;
    let reason = PairReason { reason };
    let view: Reply<FederationPair> = match change {
        Change::Pause => client.pause_pair(peer, &reason).await?,
        Change::Resume => client.resume_pair(peer, &reason).await?,
        Change::Revoke => client.revoke_pair(peer, &reason).await?,
    };
    if ctx.json {
        print_json(view.json());
    } else {
        let done = match change {
            Change::Pause => "paused",
            Change::Resume => "resumed",
            Change::Revoke => "revoked",
        };
        let pair_id = match view.pair_id.as_str() {
            "" => peer,
            id => id,
        };
        println!(
            "{done} pair {pair_id} with {}, state {}",
            view.peer_did,
            view.state.as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn refresh(ctx: &Ctx, peer: &str, url: Option<&str>) -> Result<ExitCode> {
    let client = ctx.client()?;
    let view = match url {
        Some(url) => client.set_pair_url(peer, url).await?,
        None => client.refresh_pair(peer).await?,
    };
    if ctx.json {
        print_json(view.json());
    } else {
        let done = match url {
            Some(_) => "now reached",
            None => "tokens renewed, reached",
        };
        // A refresh verifies the peer's manifest again, which may have degraded the pair.
        let degraded = view
            .degraded_cause
            .as_deref()
            .map(|cause| format!(" (degraded: {cause})"))
            .unwrap_or_default();
        println!(
            "pair {} with {}: {done} at {}{degraded}",
            view.pair_id,
            view.peer_did,
            view.peer_url.as_deref().unwrap_or("(no URL)")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn introducible(ctx: &Ctx, peer: &str, on: bool) -> Result<ExitCode> {
    let answer = ctx
        .client()?
        .set_introducible(peer, &SetIntroducible { introducible: on })
        .await?;
    if ctx.json {
        print_json(answer.json());
    } else {
        println!(
            "pair {} with {}: introducible {}",
            answer.pair_id,
            answer.peer_did,
            if on { "on" } else { "off" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn pending(ctx: &Ctx) -> Result<ExitCode> {
    let answer = ctx.client()?.pending_pairs().await?;
    if ctx.json {
        print_json(answer.json());
        return Ok(ExitCode::SUCCESS);
    }
    if answer.data.is_empty() {
        println!("no pending pair requests");
        return Ok(ExitCode::SUCCESS);
    }
    // Pair ids in full: they are what `approve` and `reject` take.
    let rows: Vec<Vec<String>> = answer
        .data
        .iter()
        .map(|r| {
            vec![
                r.pair_id.clone(),
                r.peer_did.clone(),
                r.peer_url.clone(),
                r.namespaces.join(","),
                shown_maps(&r.maps),
                r.expires_at.clone(),
            ]
        })
        .collect();
    // Every namespace and map: approving grants exactly what this shows.
    println!(
        "{}",
        table(
            &[
                "PAIR",
                "PEER DID",
                "PEER URL",
                "NAMESPACES",
                "MAPS (HERE=THERE)",
                "EXPIRES"
            ],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// A request's maps as `here=there`: the requester names its side `local` and ours `peer`.
fn shown_maps(maps: &[NamespaceMap]) -> String {
    if maps.is_empty() {
        return "-".into();
    }
    maps.iter()
        .map(|m| format!("{}={}", m.peer, m.local))
        .collect::<Vec<_>>()
        .join(",")
}

/// `approve` and `reject`: `POST /v1/federation/pending/{pair_id}/{decision}`.
async fn decide(
    ctx: &Ctx,
    pair_id: &str,
    approve: bool,
    reason: Option<String>,
) -> Result<ExitCode> {
    let client = ctx.client()?;
    let reason = PairReason { reason };
    let answer = if approve {
        client.approve_pair(pair_id, &reason).await?
    } else {
        client.reject_pair(pair_id, &reason).await?
    };
    let decision = if approve { "approve" } else { "reject" };
    if ctx.json {
        let answer = match answer.into_json() {
            Value::Null => json!({"pair_id": pair_id, "decision": decision}),
            answer => answer,
        };
        print_json(&answer);
    } else {
        let done = if approve { "approved" } else { "rejected" };
        println!("{done} pair request {pair_id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The body of `POST /v1/sync/pull`.
fn pull_body(args: &SyncArgs) -> PullRequest {
    PullRequest {
        thread: args.thread.clone(),
        peer: args.peer.clone(),
        peer_token: args.peer_token.clone(),
        namespace: args.namespace.clone(),
    }
}

/// `spl sync <THREAD> from <PEER>`.
pub async fn sync(ctx: &Ctx, args: SyncArgs) -> Result<ExitCode> {
    let result = ctx.client()?.pull(&pull_body(&args)).await?;
    if ctx.json {
        print_json(result.json());
    } else {
        println!(
            "pulled {} records of {} from {}",
            result.pulled, args.thread, args.peer
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(args).unwrap().command
    }

    #[test]
    fn pair_bodies_carry_maps_and_namespaces() {
        let Command::Federation(FederationCommand::Pair(args)) = parse(&[
            "spl",
            "federation",
            "pair",
            "https://bob.example",
            "--map",
            "research:my-team",
            "--namespace",
            "shared",
        ]) else {
            panic!("parsed into the wrong command");
        };
        assert_eq!(
            serde_json::to_value(pair_body(&args)).unwrap(),
            json!({"peer_url": "https://bob.example",
                   "maps": [{"local": "research", "peer": "my-team"}],
                   "namespaces": ["shared"]})
        );
        let Command::Federation(FederationCommand::Pair(args)) = parse(&[
            "spl",
            "federation",
            "pair",
            "https://bob.example",
            "--no-strict",
        ]) else {
            panic!("parsed into the wrong command");
        };
        assert_eq!(
            serde_json::to_value(pair_body(&args)).unwrap(),
            json!({"peer_url": "https://bob.example", "maps": [], "namespaces": [],
                   "no_strict": true})
        );
    }

    #[test]
    fn pull_bodies_send_the_peer_token_only_when_given() {
        let Command::Sync(args) = parse(&["spl", "sync", "th_x", "from", "did:key:z6Mk1"]) else {
            panic!("parsed into the wrong command");
        };
        assert_eq!(
            serde_json::to_value(pull_body(&args)).unwrap(),
            json!({"thread": "th_x", "peer": "did:key:z6Mk1"})
        );
        let Command::Sync(args) = parse(&[
            "spl",
            "sync",
            "th_x",
            "from",
            "https://bob.example",
            "--peer-token",
            "t",
        ]) else {
            panic!("parsed into the wrong command");
        };
        assert_eq!(pull_body(&args).peer_token.as_deref(), Some("t"));
        let Command::Sync(args) = parse(&[
            "spl",
            "sync",
            "th_x",
            "from",
            "did:key:z6Mk1",
            "--namespace",
            "research",
        ]) else {
            panic!("parsed into the wrong command");
        };
        assert_eq!(
            serde_json::to_value(pull_body(&args)).unwrap(),
            json!({"thread": "th_x", "peer": "did:key:z6Mk1", "namespace": "research"})
        );
    }

    #[test]
    fn auto_approve_is_accepted_and_changes_nothing_sent() {
        let body = |extra: &[&str]| {
            let mut args = vec!["spl", "federation", "pair", "https://bob.example"];
            args.extend_from_slice(extra);
            let Command::Federation(FederationCommand::Pair(args)) = parse(&args) else {
                panic!("parsed into the wrong command");
            };
            (
                args.auto_approve,
                serde_json::to_value(pair_body(&args)).unwrap(),
            )
        };
        let (flagged, with) = body(&["--auto-approve", "--namespace", "shared"]);
        let (unflagged, without) = body(&["--namespace", "shared"]);
        assert!(flagged && !unflagged);
        assert_eq!(with, without);
    }

    #[test]
    fn auto_generate_identity_creates_a_missing_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("home"));
        let did = ensure_identity(&home).unwrap().expect("a new identity");
        assert!(home.is_initialized());
        assert_eq!(home.did().unwrap(), did);
        // An existing key is kept: no new DID.
        assert_eq!(ensure_identity(&home).unwrap(), None);
        assert_eq!(home.did().unwrap(), did);
    }

    fn pending(answer: Value) -> HandshakePending {
        serde_json::from_value(answer).unwrap()
    }

    #[test]
    fn poll_interval_follows_the_steward_with_a_floor() {
        assert_eq!(
            poll_interval(&pending(json!({"poll_after_ms": 2000}))),
            Duration::from_secs(2)
        );
        assert_eq!(
            poll_interval(&pending(json!({"poll_after_ms": 500}))),
            Duration::from_millis(500)
        );
        assert_eq!(
            poll_interval(&pending(json!({"poll_after_ms": 0}))),
            MIN_POLL_INTERVAL
        );
        // A steward that does not say: two seconds.
        assert_eq!(
            poll_interval(&pending(json!({}))),
            Duration::from_millis(2000)
        );
    }
}
