//! `spl relay …` and `spl config relay …` (federation-protocol.md §7.2, §7.6): the relays this
//! steward deposits at for peers that cannot reach it, its outbox, the queues waiting there,
//! and the `[relay] urls` of the home's config.toml.

use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use syncropel_client::api::{OutboxRow, RelayEndpoint};
use syncropel_federation::relay::RelayClient;
use syncropel_federation::{PeerClient, PeerClientOptions};

use super::serve::check_relays;
use super::Ctx;
use crate::cli::{ConfigRelayCommand, RelayCommand};
use crate::output::{print_json, table};

pub async fn run(ctx: &Ctx, command: RelayCommand) -> Result<ExitCode> {
    let client = ctx.client()?;
    match command {
        RelayCommand::Status => {
            let status = client.relay_status().await?;
            if ctx.json {
                print_json(status.json());
                return Ok(ExitCode::SUCCESS);
            }
            print_relays(&status.relays);
            if status.outbox.is_empty() {
                println!("outbox: nothing deposited (no peer has pulled a thread with a relay)");
            } else {
                let rows: Vec<Vec<String>> = status.outbox.iter().map(outbox_row).collect();
                let header = [
                    "PEER",
                    "THREAD",
                    "RELAY",
                    "STATE",
                    "DEPOSITED",
                    "CONFIRMED",
                    "LAST ERROR",
                ];
                println!("{}", table(&header, &rows));
            }
        }
        RelayCommand::Queues { peer, thread } => {
            let listed = client
                .relay_queues(peer.as_deref(), thread.as_deref())
                .await?;
            if ctx.json {
                print_json(listed.json());
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = listed.data.iter().map(queue_row).collect();
            let header = ["RELAY", "QUEUE", "FROM", "TO", "THREAD", "ITEMS", "EXPIRED"];
            println!("{}", table(&header, &rows));
            for relay in &listed.unreachable {
                println!(
                    "{}: not asked: {}",
                    relay.url,
                    relay.error.as_deref().unwrap_or("")
                );
            }
        }
        RelayCommand::Kick => {
            let kicked = client.relay_kick().await?;
            if ctx.json {
                print_json(kicked.json());
            } else {
                println!("retrying {} outbox rows now", kicked.rows);
            }
        }
        RelayCommand::Purge { peer } => {
            let purged = client.relay_purge(&peer).await?;
            if ctx.json {
                print_json(purged.json());
            } else {
                println!(
                    "purging {} queues of {peer}; what it may still see is deposited again",
                    purged.rows
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn config(ctx: &Ctx, command: ConfigRelayCommand) -> Result<ExitCode> {
    match command {
        ConfigRelayCommand::Set { urls, no_check } => {
            check_relays(&urls)?;
            if !no_check {
                let asked = ask(ctx, &urls).await?;
                if let Some(bad) = asked.iter().find(|r| !r.reachable) {
                    bail!(
                        "{}: {} (save anyway with --no-check)",
                        bad.url,
                        bad.error.as_deref().unwrap_or("no answer")
                    );
                }
            }
            ctx.home.set_relays(urls.clone())?;
            let published = publish(ctx).await?;
            if ctx.json {
                print_json(&json!({"relays": urls, "published_in": published}));
            } else {
                println!(
                    "relays: {} (takes effect when `spl serve` next starts)",
                    urls.join(", ")
                );
            }
        }
        ConfigRelayCommand::Show => {
            let urls = ctx.home.relays()?;
            if ctx.json {
                print_json(&json!({"relays": urls}));
            } else if urls.is_empty() {
                println!("no relays");
            } else {
                println!("{}", urls.join("\n"));
            }
        }
        ConfigRelayCommand::Status => {
            let asked = ask(ctx, &ctx.home.relays()?).await?;
            if ctx.json {
                print_json(&json!({"relays": asked}));
            } else {
                print_relays(&asked);
            }
            if asked.iter().any(|r| !r.reachable) {
                return Ok(ExitCode::FAILURE);
            }
        }
        ConfigRelayCommand::Clear => {
            ctx.home.set_relays(Vec::new())?;
            let published = publish(ctx).await?;
            if ctx.json {
                print_json(&json!({"relays": Value::Array(Vec::new()), "published_in": published}));
            } else {
                println!("no relays (takes effect when `spl serve` next starts)");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A did:sync home names its relays in its DID document too (an `update` at its directory):
/// the DID it did so for, if any. A did:web's document names them as `spl serve` serves it.
async fn publish(ctx: &Ctx) -> Result<Option<String>> {
    // The directory is the operator's own: reachable wherever it is.
    let client = PeerClient::new(PeerClientOptions::default());
    let published = syncropel_home::publish_relays(&ctx.home, &client).await?;
    let did = published.map(|p| p.did);
    if let (Some(did), false) = (&did, ctx.json) {
        println!("published in the DID document of {did}");
    }
    Ok(did)
}

/// Each relay asked for its health and for a call signed with this home's identity (which it
/// answers only for a DID it serves).
async fn ask(ctx: &Ctx, urls: &[String]) -> Result<Vec<RelayEndpoint>> {
    let identity = ctx.home.identity()?;
    let client = PeerClient::new(PeerClientOptions::default());
    let mut asked = Vec::new();
    for url in urls {
        let relay = RelayClient {
            client: &client,
            identity: &identity,
            base: url,
        };
        let error = match relay.health().await {
            Err(f) => Some(format!("health: {f}")),
            Ok(_) => relay
                .list("source")
                .await
                .err()
                .map(|f| format!("a signed call: {f}")),
        };
        asked.push(RelayEndpoint {
            url: url.clone(),
            reachable: error.is_none(),
            error,
        });
    }
    Ok(asked)
}

fn print_relays(relays: &[RelayEndpoint]) {
    if relays.is_empty() {
        println!("relays: none");
    }
    for relay in relays {
        match &relay.error {
            None => println!("relay {}: reachable", relay.url),
            Some(error) => println!("relay {}: unreachable: {error}", relay.url),
        }
    }
}

fn outbox_row(row: &OutboxRow) -> Vec<String> {
    let state = match row.stalled_since {
        Some(_) => format!("{} (stalled)", row.state),
        None => row.state.clone(),
    };
    vec![
        row.peer_did.clone(),
        row.thread.clone(),
        row.relay.clone(),
        state,
        row.deposited_through.to_string(),
        row.confirmed_through.to_string(),
        row.last_error.clone().unwrap_or_default(),
    ]
}

fn queue_row(status: &Value) -> Vec<String> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let queue = &status["queue"];
    vec![
        text(&status["relay"]),
        text(&status["queue_id"]),
        text(&queue["source_did"]),
        text(&queue["dest_did"]),
        text(&queue["thread"]),
        status["items"].as_i64().unwrap_or(0).to_string(),
        status["expired_items"].as_i64().unwrap_or(0).to_string(),
    ]
}
