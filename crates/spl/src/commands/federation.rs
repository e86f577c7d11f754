//! `spl federation …` (record-bound pairs, FEDERATION §3.7, §4) and `spl sync <THREAD> from
//! <PEER>` (one-shot pull, §5.8).
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
use syncropel_client::{encode_segment, ClientError};
use tokio::time::Instant;

use super::Ctx;
use crate::cli::{FederationCommand, PairArgs, SyncArgs};
use crate::output::{display_field, fields, prefix, print_json, str_field, table};

/// How often to poll a pending pair when the steward does not say (`poll_after_ms`).
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(2000);
/// Floor on the steward's `poll_after_ms`, so a zero cannot turn polling into a busy loop.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Pair ids shown in `spl federation list` are cut to this many characters.
const PAIR_ID_CHARS: usize = 16;

pub async fn run(ctx: &Ctx, command: FederationCommand) -> Result<ExitCode> {
    match command {
        FederationCommand::Pair(args) => pair(ctx, args).await,
        FederationCommand::List => list(ctx).await,
        FederationCommand::Show { peer } => show(ctx, &peer).await,
        FederationCommand::Pause { peer } => change(ctx, &peer, "pause", json!({})).await,
        FederationCommand::Resume { peer } => change(ctx, &peer, "resume", json!({})).await,
        FederationCommand::Revoke { peer, reason } => {
            change(ctx, &peer, "revoke", json!({"reason": reason})).await
        }
        FederationCommand::Pending => pending(ctx).await,
        FederationCommand::Approve { pair_id } => decide(ctx, &pair_id, "approve", None).await,
        FederationCommand::Reject { pair_id, reason } => {
            decide(ctx, &pair_id, "reject", reason).await
        }
        FederationCommand::Introducible { peer, state } => {
            introducible(ctx, &peer, state == "on").await
        }
    }
}

/// The body of `POST /v1/federation/pairs`.
fn pair_body(args: &PairArgs) -> Value {
    let maps: Vec<Value> = args
        .maps
        .iter()
        .map(|m| json!({"local": m.local, "peer": m.peer}))
        .collect();
    json!({"peer_url": args.peer_url, "maps": maps, "namespaces": args.namespaces})
}

async fn pair(ctx: &Ctx, args: PairArgs) -> Result<ExitCode> {
    let client = ctx.client()?;
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    let (status, mut answer) = client
        .post_json_with_status("/v1/federation/pairs", &pair_body(&args))
        .await?;
    if status != 202 {
        return paired(ctx, &answer);
    }

    let pair_id = str_field(&answer, "pair_id").to_owned();
    if pair_id.is_empty() {
        return Err(ClientError::Decode("pending pair answer has no `pair_id`".into()).into());
    }
    if !ctx.json {
        eprintln!(
            "waiting for the operator of {} to approve pair {pair_id} …",
            args.peer_url
        );
    }
    let poll_path = format!("/v1/federation/pairs/{}/poll", encode_segment(&pair_id));
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        tokio::time::sleep(poll_interval(&answer).min(remaining)).await;
        // A refusal (403 PAIR_REJECTED, 410 NONCE_EXPIRED, …) ends the wait as an error.
        let (status, polled) = client.post_json_with_status(&poll_path, &json!({})).await?;
        if status != 202 {
            return paired(ctx, &polled);
        }
        answer = polled;
    }

    // Not an error: the request stays valid on the peer until its operator decides or it expires.
    if ctx.json {
        print_json(&answer);
    } else {
        println!(
            "still pending after {}s: ask the peer's operator to run `spl federation approve {pair_id}`",
            args.wait_secs
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The wait before the next poll: the steward's `poll_after_ms`, at least [`MIN_POLL_INTERVAL`].
fn poll_interval(answer: &Value) -> Duration {
    answer
        .get("poll_after_ms")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_POLL_INTERVAL, Duration::from_millis)
        .max(MIN_POLL_INTERVAL)
}

fn paired(ctx: &Ctx, view: &Value) -> Result<ExitCode> {
    if ctx.json {
        print_json(view);
    } else {
        println!(
            "paired with {} ({}), state {}",
            display_field(view, "peer_did"),
            display_field(view, "pair_id"),
            display_field(view, "state"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(ctx: &Ctx) -> Result<ExitCode> {
    let answer = ctx.client()?.get_json("/v1/federation/pairs").await?;
    if ctx.json {
        print_json(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    let pairs = list_data(&answer, "pair list")?;
    if pairs.is_empty() {
        println!("no federation pairs");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|p| {
            vec![
                prefix(&display_field(p, "pair_id"), PAIR_ID_CHARS),
                display_field(p, "peer_did"),
                display_field(p, "state"),
                display_field(p, "role"),
                display_field(p, "peer_url"),
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
    let view = ctx.client()?.get_json(&pair_path(peer, None)).await?;
    if ctx.json {
        print_json(&view);
    } else {
        println!("{}", fields(&view));
    }
    Ok(ExitCode::SUCCESS)
}

/// `pause`, `resume` and `revoke`: `POST /v1/federation/pairs/{peer}/{action}`.
async fn change(ctx: &Ctx, peer: &str, action: &str, body: Value) -> Result<ExitCode> {
    let view = ctx
        .client()?
        .post_json(&pair_path(peer, Some(action)), &body)
        .await?;
    if ctx.json {
        print_json(&view);
    } else {
        let done = match action {
            "pause" => "paused",
            "resume" => "resumed",
            _ => "revoked",
        };
        let pair_id = match str_field(&view, "pair_id") {
            "" => peer,
            id => id,
        };
        println!(
            "{done} pair {pair_id} with {}, state {}",
            display_field(&view, "peer_did"),
            display_field(&view, "state")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn introducible(ctx: &Ctx, peer: &str, on: bool) -> Result<ExitCode> {
    let answer = ctx
        .client()?
        .post_json(
            &pair_path(peer, Some("introducible")),
            &json!({"introducible": on}),
        )
        .await?;
    if ctx.json {
        print_json(&answer);
    } else {
        println!(
            "pair {} with {}: introducible {}",
            display_field(&answer, "pair_id"),
            display_field(&answer, "peer_did"),
            if on { "on" } else { "off" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn pending(ctx: &Ctx) -> Result<ExitCode> {
    let answer = ctx.client()?.get_json("/v1/federation/pending").await?;
    if ctx.json {
        print_json(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    let requests = list_data(&answer, "pending list")?;
    if requests.is_empty() {
        println!("no pending pair requests");
        return Ok(ExitCode::SUCCESS);
    }
    // Pair ids in full: they are what `approve` and `reject` take.
    let rows: Vec<Vec<String>> = requests
        .iter()
        .map(|r| {
            ["pair_id", "peer_did", "peer_url", "namespace", "expires_at"]
                .iter()
                .map(|key| display_field(r, key))
                .collect()
        })
        .collect();
    println!(
        "{}",
        table(
            &["PAIR", "PEER DID", "PEER URL", "NAMESPACE", "EXPIRES"],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// `approve` and `reject`: `POST /v1/federation/pending/{pair_id}/{decision}`.
async fn decide(
    ctx: &Ctx,
    pair_id: &str,
    decision: &str,
    reason: Option<String>,
) -> Result<ExitCode> {
    let body = match reason {
        Some(reason) => json!({"reason": reason}),
        None => json!({}),
    };
    let path = format!(
        "/v1/federation/pending/{}/{decision}",
        encode_segment(pair_id)
    );
    let answer = ctx.client()?.post_json(&path, &body).await?;
    if ctx.json {
        let answer = if answer.is_null() {
            json!({"pair_id": pair_id, "decision": decision})
        } else {
            answer
        };
        print_json(&answer);
    } else {
        let done = if decision == "approve" {
            "approved"
        } else {
            "rejected"
        };
        println!("{done} pair request {pair_id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The body of `POST /v1/sync/pull`.
fn pull_body(args: &SyncArgs) -> Value {
    let mut body = json!({"thread": args.thread, "peer": args.peer});
    if let Some(token) = &args.peer_token {
        body["peer_token"] = Value::String(token.clone());
    }
    body
}

/// `spl sync <THREAD> from <PEER>`.
pub async fn sync(ctx: &Ctx, args: SyncArgs) -> Result<ExitCode> {
    let result = ctx
        .client()?
        .post_json("/v1/sync/pull", &pull_body(&args))
        .await?;
    if ctx.json {
        print_json(&result);
    } else {
        if let Some(warning) = result.get("warning").and_then(Value::as_str) {
            eprintln!("warning: {warning}");
        }
        println!(
            "pulled {} records of {} from {}",
            display_field(&result, "pulled"),
            args.thread,
            args.peer
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `/v1/federation/pairs/{peer}[/{action}]`, the pair id or DID as one encoded segment.
fn pair_path(peer: &str, action: Option<&str>) -> String {
    let mut path = format!("/v1/federation/pairs/{}", encode_segment(peer));
    if let Some(action) = action {
        path.push('/');
        path.push_str(action);
    }
    path
}

/// The `data` array of a list answer.
pub(super) fn list_data<'a>(answer: &'a Value, what: &str) -> Result<&'a Vec<Value>> {
    Ok(answer
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| ClientError::Decode(format!("{what} has no `data` array")))?)
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
            pair_body(&args),
            json!({"peer_url": "https://bob.example",
                   "maps": [{"local": "research", "peer": "my-team"}],
                   "namespaces": ["shared"]})
        );
    }

    #[test]
    fn pull_bodies_send_the_peer_token_only_when_given() {
        let Command::Sync(args) = parse(&["spl", "sync", "th_x", "from", "did:key:z6Mk1"]) else {
            panic!("parsed into the wrong command");
        };
        assert_eq!(
            pull_body(&args),
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
        assert_eq!(pull_body(&args)["peer_token"], "t");
    }

    #[test]
    fn poll_interval_follows_the_steward_with_a_floor() {
        assert_eq!(
            poll_interval(&json!({"poll_after_ms": 2000})),
            Duration::from_secs(2)
        );
        assert_eq!(
            poll_interval(&json!({"poll_after_ms": 500})),
            Duration::from_millis(500)
        );
        assert_eq!(
            poll_interval(&json!({"poll_after_ms": 0})),
            MIN_POLL_INTERVAL
        );
        assert_eq!(poll_interval(&json!({})), DEFAULT_POLL_INTERVAL);
    }

    #[test]
    fn pair_paths_encode_dids_as_one_segment() {
        assert_eq!(
            pair_path("fed_01", Some("pause")),
            "/v1/federation/pairs/fed_01/pause"
        );
        assert_eq!(
            pair_path("did:web:example.com:alice", None),
            "/v1/federation/pairs/did%3Aweb%3Aexample.com%3Aalice"
        );
    }
}
