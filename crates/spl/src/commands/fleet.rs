//! `spl fleet sync …`: legacy per-thread sync pairs (FEDERATION §5.7). The steward the pair is
//! created on is the puller; records flow from the peer to it.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Value};
use syncropel_client::encode_segment;

use super::federation::list_data;
use super::Ctx;
use crate::cli::{FleetCommand, FleetSyncCommand, SyncPairArgs};
use crate::output::{display_field, fields, print_json, str_field, table};

pub async fn run(ctx: &Ctx, command: FleetCommand) -> Result<ExitCode> {
    let FleetCommand::Sync(command) = command;
    match command {
        FleetSyncCommand::Add(args) => add(ctx, args).await,
        FleetSyncCommand::List => list(ctx).await,
        FleetSyncCommand::Status { id } => status(ctx, &id).await,
        FleetSyncCommand::Pause { id } => action(ctx, &id, "pause").await,
        FleetSyncCommand::Resume { id } => action(ctx, &id, "resume").await,
        FleetSyncCommand::Kick { id } => action(ctx, &id, "kick").await,
        FleetSyncCommand::Remove { id } => remove(ctx, &id).await,
    }
}

/// The body of `POST /v1/sync/pairs`; without `--peer-url` the steward resolves the DID.
fn add_body(args: &SyncPairArgs) -> Value {
    let mut body = json!({"peer_did": args.peer_did, "thread_id": args.thread_id});
    if let Some(url) = &args.peer_url {
        body["peer_url"] = json!(url);
    }
    if let Some(token) = &args.peer_token {
        body["peer_token"] = json!(token);
    }
    body
}

async fn add(ctx: &Ctx, args: SyncPairArgs) -> Result<ExitCode> {
    let pair = ctx
        .client()?
        .post_json("/v1/sync/pairs", &add_body(&args))
        .await?;
    if ctx.json {
        print_json(&pair);
        return Ok(ExitCode::SUCCESS);
    }
    // E.g. this steward listens on loopback only while the peer is remote: it says how to fix it.
    if let Some(warning) = pair.get("warning").and_then(Value::as_str) {
        eprintln!("warning: {warning}");
    }
    println!(
        "sync pair {}: pulling {} from {}, state {}",
        str_field(&pair, "pair_id"),
        args.thread_id,
        args.peer_did,
        display_field(&pair, "state"),
    );
    Ok(ExitCode::SUCCESS)
}

async fn list(ctx: &Ctx) -> Result<ExitCode> {
    let answer = ctx.client()?.get_json("/v1/sync/pairs").await?;
    if ctx.json {
        print_json(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    let pairs = list_data(&answer, "sync pair list")?;
    if pairs.is_empty() {
        println!("no sync pairs");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|p| {
            vec![
                display_field(p, "pair_id"),
                display_field(p, "state"),
                display_field(p, "thread_id"),
                display_field(p, "peer_did"),
                display_field(p, "peer_url"),
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
    let pair = ctx.client()?.get_json(&sync_pair_path(id, None)).await?;
    if ctx.json {
        print_json(&pair);
    } else {
        println!("{}", fields(&pair));
    }
    Ok(ExitCode::SUCCESS)
}

/// `pause`, `resume` and `kick`: `POST /v1/sync/pairs/{id}/{action}`.
async fn action(ctx: &Ctx, id: &str, action: &str) -> Result<ExitCode> {
    let answer = ctx
        .client()?
        .post_json(&sync_pair_path(id, Some(action)), &json!({}))
        .await?;
    if ctx.json {
        let answer = if answer.is_null() {
            json!({"pair_id": id, "action": action})
        } else {
            answer
        };
        print_json(&answer);
    } else {
        let done = match action {
            "pause" => "paused",
            "resume" => "resumed",
            _ => "kicked",
        };
        match answer.get("state").and_then(Value::as_str) {
            Some(state) => println!("{done} sync pair {id}, state {state}"),
            None => println!("{done} sync pair {id}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn remove(ctx: &Ctx, id: &str) -> Result<ExitCode> {
    let answer = ctx.client()?.delete_json(&sync_pair_path(id, None)).await?;
    if ctx.json {
        let answer = if answer.is_null() {
            json!({"pair_id": id, "removed": true})
        } else {
            answer
        };
        print_json(&answer);
    } else {
        println!("removed sync pair {id}");
    }
    Ok(ExitCode::SUCCESS)
}

fn sync_pair_path(id: &str, action: Option<&str>) -> String {
    let mut path = format!("/v1/sync/pairs/{}", encode_segment(id));
    if let Some(action) = action {
        path.push('/');
        path.push_str(action);
    }
    path
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
            add_body(&args),
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
            add_body(&args),
            json!({"peer_did": "did:web:bob.example", "thread_id": "th_notes",
                   "peer_url": "https://bob.example", "peer_token": "tok"})
        );
    }

    #[test]
    fn sync_pair_paths_encode_the_id() {
        assert_eq!(
            sync_pair_path("sp_1", Some("kick")),
            "/v1/sync/pairs/sp_1/kick"
        );
        assert_eq!(sync_pair_path("sp/1", None), "/v1/sync/pairs/sp%2F1");
    }
}
