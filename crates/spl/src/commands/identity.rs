//! `spl identity show|upgrade|rotate|endpoint`: the home's DID beyond its did:key
//! (federation-protocol.md §1.3, §1.4, §8.5).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use syncropel_federation::directory::Publisher;
use syncropel_federation::{PeerClient, PeerClientOptions};
use syncropel_home::SyncRegistration;
use syncropel_protocol::did_doc::did_web_for;
use syncropel_protocol::Keypair;

use super::serve::refuse_if_running;
use super::Ctx;
use crate::cli::{EndpointArgs, IdentityCommand, UpgradeArgs};
use crate::output::print_json;

pub async fn run(ctx: &Ctx, command: IdentityCommand) -> Result<ExitCode> {
    // The CLI talks to the directory the operator names, wherever it is.
    let client = PeerClient::new(PeerClientOptions {
        allow_private: true,
        ..PeerClientOptions::default()
    });
    let shown = match command {
        IdentityCommand::Show => show(ctx)?,
        IdentityCommand::Upgrade(args) => {
            if args.did_json.is_some() && args.method != "web" {
                bail!("--output writes a did:web document: it goes with --method web");
            }
            let web = (args.method == "web").then(|| {
                did_web_for(
                    args.domain.as_deref().unwrap_or_default(),
                    args.path.as_deref(),
                )
            });
            // The same command run again with --output (after a rotation, say) only writes the
            // document anew.
            let rewrite = args.did_json.is_some()
                && ctx
                    .home
                    .published()?
                    .is_some_and(|p| Some(&p.did) == web.as_ref());
            if !rewrite {
                upgrade(ctx, &client, &args).await?;
            }
            let mut shown = show(ctx)?;
            if let Some(path) = &args.did_json {
                let (document, url) = syncropel_home::did_web_file(&ctx.home)?;
                let text = serde_json::to_string_pretty(&document)? + "\n";
                std::fs::write(path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                shown["did_document"] = json!({"path": path, "publish_at": url});
            }
            shown
        }
        IdentityCommand::Endpoint(args) => return endpoint(ctx, &client, &args).await,
        IdentityCommand::Rotate(args) => {
            refuse_if_running(&ctx.home)?;
            syncropel_home::rotate(&ctx.home, &client, args.compromised).await?;
            show(ctx)?
        }
    };
    if ctx.json {
        print_json(&shown);
    } else {
        println!("did       {}", shown["did"].as_str().unwrap_or(""));
        println!("method    {}", shown["method"].as_str().unwrap_or(""));
        println!("signer    {}", shown["signer"].as_str().unwrap_or(""));
        if let Some(directory) = shown["directory"].as_str() {
            println!("directory {directory}");
        }
        if let Some(path) = shown["did_document"]["path"].as_str() {
            println!(
                "document  {path}, to publish at {}",
                shown["did_document"]["publish_at"].as_str().unwrap_or("")
            );
        }
        for key in shown["keys"].as_array().into_iter().flatten() {
            println!(
                "key       {} {}{}",
                key["id"].as_str().unwrap_or(""),
                key["did_key"].as_str().unwrap_or(""),
                if key["current"] == true {
                    " (current)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Publishes the home's did:key as a did:sync or a did:web.
async fn upgrade(ctx: &Ctx, client: &PeerClient, args: &UpgradeArgs) -> Result<()> {
    // A running steward would go on signing as the old identity (and pairing with it).
    refuse_if_running(&ctx.home)?;
    if ctx.home.published()?.is_some() {
        bail!("this home is already published; see `spl identity show`");
    }
    syncropel_home::refuse_if_paired(&ctx.home).await?;
    let endpoint = args.service_endpoint.clone();
    match args.method.as_str() {
        "sync" => {
            let registration = SyncRegistration {
                directory: args.directory.clone().unwrap_or_default(),
                handles: args.handles.clone(),
                namespaces: args.namespaces.clone(),
                endpoint,
                recovery_key: args.recovery_key.clone(),
            };
            syncropel_home::upgrade_to_sync(&ctx.home, client, registration).await?;
        }
        _ => {
            let host = args.domain.as_deref().unwrap_or_default();
            syncropel_home::upgrade_to_web(&ctx.home, host, args.path.as_deref(), endpoint)?;
        }
    }
    Ok(())
}

fn show(ctx: &Ctx) -> Result<Value> {
    let signer = ctx.home.keypair()?.did_key();
    Ok(match ctx.home.published()? {
        None => json!({
            "did": signer, "method": "key", "signer": signer,
            "keys": [{"id": "key-1", "did_key": signer, "current": true}],
        }),
        Some(published) => json!({
            "did": published.did,
            "method": published.method,
            "signer": signer,
            "directory": published.directory,
            "handles": published.handles,
            "namespaces": published.namespaces,
            "service_endpoint": published.endpoint,
            "rotation_keys": published.rotation_keys,
            "keys": published.keys.iter().map(|(id, multibase)| json!({
                "id": id,
                "did_key": format!("did:key:{multibase}"),
                "current": *id == published.current,
                "compromised": published.compromised.contains(id),
            })).collect::<Vec<_>>(),
        }),
    })
}

/// Points the home's did:sync at `args.url` with the rotation key in `args.key_file`
/// (federation-protocol.md §8.5 step 3, when no fenced home did it), and keeps what it published.
async fn endpoint(ctx: &Ctx, client: &PeerClient, args: &EndpointArgs) -> Result<ExitCode> {
    let did = ctx.home.did()?;
    if !did.starts_with("did:sync:") {
        bail!("{did} is not a did:sync: a did:key names no endpoint, a did:web's document does");
    }
    let mut published = ctx.home.published()?;
    let directory = args
        .directory
        .clone()
        .or_else(|| published.as_ref().and_then(|p| p.directory.clone()))
        .context("name the directory the DID lives at: --directory")?;
    let text = std::fs::read_to_string(&args.key_file)
        .with_context(|| format!("reading {}", args.key_file.display()))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed)
        .with_context(|| format!("{}: not a 64-hex-character seed", args.key_file.display()))?;
    let publisher = Publisher {
        directory: directory.clone(),
        rotation_key: Arc::new(Keypair::from_seed(&seed)),
    };
    let head = publisher.publish_endpoint(client, &did, &args.url).await?;
    if let Some(published) = published.as_mut() {
        published.endpoint = Some(args.url.clone());
        published.directory = Some(directory);
        published.head = Some(head.clone());
        ctx.home.publish(published)?;
    }
    let answer = json!({"did": did, "endpoint": args.url, "head": head});
    if ctx.json {
        print_json(&answer);
    } else {
        println!("{did} now names {} (head {head})", args.url);
    }
    Ok(ExitCode::SUCCESS)
}
