//! `spl export`: a stopped home written as one signed bundle (federation-protocol.md §8.3), its
//! identity sealed under a passphrase (`--passphrase-file`, else `SPL_EXPORT_PASSPHRASE`) unless
//! `--no-identity`. The file appears whole or not at all.

use std::io::BufWriter;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::serve::refuse_if_running;
use super::Ctx;
use crate::cli::ExportArgs;
use crate::output::print_json;

/// The passphrase, when no file names it.
const PASSPHRASE_ENV: &str = "SPL_EXPORT_PASSPHRASE";

pub async fn run(ctx: &Ctx, args: &ExportArgs) -> Result<ExitCode> {
    refuse_if_running(&ctx.home)?;
    let passphrase = match (&args.passphrase_file, args.no_identity) {
        (_, true) => None,
        (Some(file), false) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            Some(text.lines().next().unwrap_or_default().to_string())
        }
        (None, false) => std::env::var(PASSPHRASE_ENV).ok(),
    };
    if let Some(passphrase) = &passphrase {
        if passphrase.chars().count() < 12 {
            bail!("the passphrase must have 12 characters or more");
        }
    } else if !args.no_identity {
        bail!(
            "give the passphrase the identity key is sealed under (--passphrase-file or \
             {PASSPHRASE_ENV}), or --no-identity to leave the key (and so the DID) behind"
        );
    }
    // Written beside its destination, then renamed: a cut export leaves no half bundle.
    let partial = args.out.with_extension("partial");
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let exported =
        syncropel_home::export_offline(&ctx.home, BufWriter::new(file), passphrase.as_deref())
            .await;
    let (out, summary) = match exported {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    let file = out.into_inner().context("flushing the bundle")?;
    file.sync_all().context("syncing the bundle")?;
    std::fs::rename(&partial, &args.out)
        .with_context(|| format!("moving the bundle to {}", args.out.display()))?;
    if ctx.json {
        print_json(&summary);
    } else {
        println!(
            "exported {} records on {} threads of {} to {} (identity {}, bundle sha256 {})",
            summary.records,
            summary.threads,
            summary.source_did,
            args.out.display(),
            if summary.identity_included {
                "included"
            } else {
                "left out"
            },
            summary.bundle_sha256,
        );
    }
    Ok(ExitCode::SUCCESS)
}
