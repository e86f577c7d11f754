//! `spl init`: create the home and its identity. Synchronous on purpose (see `main`).

use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use super::Ctx;
use crate::cli::InitArgs;
use crate::output::print_json;

pub fn run(ctx: &Ctx, args: &InitArgs) -> Result<ExitCode> {
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
