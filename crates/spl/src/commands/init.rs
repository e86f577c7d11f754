//! `spl init`: create the home and its identity. Synchronous on purpose (see `main`): only
//! `--force` over an existing identity opens the store, to find the pairs it would break.

use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::json;

use super::Ctx;
use crate::cli::InitArgs;
use crate::output::{print_json, table};

pub fn run(ctx: &Ctx, args: &InitArgs) -> Result<ExitCode> {
    if args.force && !args.yes && ctx.home.is_initialized() {
        refuse_if_paired(ctx)?;
    }
    let outcome = ctx.home.init(args.force)?;
    if let Some(previous) = &outcome.previous_did {
        eprintln!(
            "warning: replaced the identity key; records signed with the old key remain \
             verifiable only by the old DID {previous}"
        );
    }
    if ctx.json {
        print_json(&json!({
            "did": outcome.did,
            "home": ctx.home.root().display().to_string(),
            "created": outcome.created,
            "previous_did": outcome.previous_did,
        }));
    } else {
        println!("{}", outcome.did);
    }
    Ok(ExitCode::SUCCESS)
}

/// A new key is a new DID, and peers refuse a pair's records and calls under any DID but the one
/// it was made with (federation-protocol.md §1.2): re-initialising a paired home is refused,
/// naming the pairs, unless the operator confirms with `--yes`.
fn refuse_if_paired(ctx: &Ctx) -> Result<()> {
    // An unreadable key signs for no pair any more; replacing it is what `--force` is for.
    let Ok(did) = ctx.home.did() else {
        return Ok(());
    };
    let pairs = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(syncropel_home::live_pairs(&ctx.home, &did))?;
    if pairs.is_empty() {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|p| {
            vec![
                p.pair_id.clone(),
                p.peer_did.clone(),
                p.peer_url.clone().unwrap_or_else(|| "-".into()),
                p.state.as_str().to_string(),
            ]
        })
        .collect();
    eprint!(
        "{}",
        table(&["PAIR", "PEER DID", "PEER URL", "STATE"], &rows)
    );
    bail!(
        "re-initialising replaces the identity {did}; the {} pairs above were made with it and \
         would stop working (peers refuse a new DID). Revoke them first (`spl federation revoke \
         PEER`), or pass --yes to re-initialise anyway",
        pairs.len()
    )
}
