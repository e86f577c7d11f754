//! `spl export` and `spl import` (federation-protocol.md §8.3–8.4): a home written as one signed
//! bundle (through the steward's route while it runs, read directly when stopped or with
//! `--offline`), its identity sealed under a passphrase unless `--no-identity`, and such a bundle
//! taken into a stopped home. `spl thread snapshot|restore` (§3.6) write and take back the same
//! kind of bundle for a few threads, without identity or bearers. A bundle file appears whole
//! or not at all; an import or restore stopped midway is finished by running it again.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use syncropel_portability::{ExportOptions, ExportSummary, ImportOptions, Progress};

use super::serve::{refuse_if_running, running};
use super::Ctx;
use crate::cli::{ExportArgs, FenceArgs, ImportArgs, RestoreArgs, SnapshotArgs};
use crate::output::print_json;

/// The passphrases, when no file names them.
const EXPORT_PASSPHRASE_ENV: &str = "SPL_EXPORT_PASSPHRASE";
const IMPORT_PASSPHRASE_ENV: &str = "SPL_IMPORT_PASSPHRASE";

/// Shorter passphrases are refused: the sealed key is only as strong as this.
const MIN_PASSPHRASE: usize = 12;

pub async fn export(ctx: &Ctx, args: &ExportArgs) -> Result<ExitCode> {
    let passphrase = match args.no_identity {
        true => None,
        false => passphrase(args.passphrase_file.as_deref(), EXPORT_PASSPHRASE_ENV)?,
    };
    if let Some(passphrase) = &passphrase {
        if passphrase.chars().count() < MIN_PASSPHRASE {
            bail!("the passphrase must have {MIN_PASSPHRASE} characters or more");
        }
    } else if !args.no_identity {
        bail!(
            "give the passphrase the identity key is sealed under (--passphrase-file or \
             {EXPORT_PASSPHRASE_ENV}), or --no-identity to leave the key (and so the DID) behind"
        );
    }
    let options = ExportOptions {
        passphrase,
        carry_tokens: args.carry_tokens,
        intent: args.leave.then(|| "leave".to_string()),
        ..ExportOptions::default()
    };
    let summary = write_bundle(ctx, options, &args.out, args.offline).await?;
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

/// `spl thread snapshot`: the threads' records as a signed bundle (federation-protocol.md §3.6).
pub async fn snapshot(ctx: &Ctx, args: &SnapshotArgs) -> Result<ExitCode> {
    let options = ExportOptions {
        threads: Some(args.threads.clone()),
        ..ExportOptions::default()
    };
    let summary = write_bundle(ctx, options, &args.out, args.offline).await?;
    if ctx.json {
        print_json(&summary);
    } else {
        println!(
            "snapshot of {} records on {} threads written to {} (bundle sha256 {})",
            summary.records,
            summary.threads,
            args.out.display(),
            summary.bundle_sha256,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the bundle `options` describe to `out`: through the running steward's route (and
/// checked whole), else (or with `offline`) read from the stopped home's store. It is written
/// beside `out` and renamed, so a cut export leaves no half bundle.
async fn write_bundle(
    ctx: &Ctx,
    mut options: ExportOptions,
    out: &Path,
    offline: bool,
) -> Result<ExportSummary> {
    options.check().map_err(anyhow::Error::msg)?;
    if offline {
        refuse_if_running(&ctx.home)?;
    }
    let progress = Arc::new(Progress::default());
    options.progress = Some(progress.clone());
    let partial = out.with_extension("partial");
    let written = match running(&ctx.home)? {
        Some(steward) => through_steward(ctx, &steward.url, &options, &partial).await,
        None => {
            with_bar(
                ctx,
                "exporting",
                progress,
                offline_export(ctx, &options, &partial),
            )
            .await
        }
    };
    let summary = match written {
        Ok(summary) => summary,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, out)
        .with_context(|| format!("moving the bundle to {}", out.display()))?;
    Ok(summary)
}

/// A stopped home's store, read directly.
async fn offline_export(
    ctx: &Ctx,
    options: &ExportOptions,
    partial: &Path,
) -> Result<ExportSummary> {
    let file = std::fs::File::create(partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let (out, summary) =
        syncropel_home::export_offline(&ctx.home, BufWriter::new(file), options).await?;
    let file = out.into_inner().context("flushing the bundle")?;
    file.sync_all().context("syncing the bundle")?;
    Ok(summary)
}

/// The running steward's `POST /v1/portability/export`, streamed to the file, then checked
/// whole (what arrived is what the steward signed).
async fn through_steward(
    ctx: &Ctx,
    url: &str,
    options: &ExportOptions,
    partial: &Path,
) -> Result<ExportSummary> {
    let mut request = json!({"carry_tokens": options.carry_tokens, "intent": options.intent});
    if let Some(threads) = &options.threads {
        request["threads"] = json!(threads);
    }
    match &options.passphrase {
        Some(passphrase) => request["passphrase"] = json!(passphrase),
        None => request["no_identity"] = json!(true),
    }
    let client = syncropel_client::Client::new(url, ctx.token()?)?;
    let mut response = client.export_bundle(&request).await?;
    let mut file = std::fs::File::create(partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    while let Some(chunk) = response.chunk().await.context("receiving the bundle")? {
        file.write_all(&chunk).context("writing the bundle")?;
    }
    file.sync_all().context("syncing the bundle")?;
    let path = partial.to_path_buf();
    let verified = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        syncropel_bundle::verify(
            std::io::BufReader::new(file),
            &syncropel_bundle::Limits::default(),
        )
        .map_err(anyhow::Error::from)
    })
    .await
    .context("checking the bundle")?
    .context("the bundle the steward sent does not check")?;
    Ok(ExportSummary::of(verified))
}

pub async fn import(ctx: &Ctx, args: &ImportArgs) -> Result<ExitCode> {
    refuse_if_running(&ctx.home)?;
    let passphrase = passphrase(args.passphrase_file.as_deref(), IMPORT_PASSPHRASE_ENV)?;
    let progress = Arc::new(Progress::default());
    let options = ImportOptions {
        force_overwrite: args.force_overwrite,
        dry_run: args.dry_run,
        progress: Some(progress.clone()),
        ..ImportOptions::default()
    };
    let importing = syncropel_home::import_offline(&ctx.home, &args.bundle, passphrase, options);
    let summary = with_bar(ctx, "importing", progress, importing).await?;
    if ctx.json {
        print_json(&summary);
    } else {
        let verb = if summary.dry_run {
            "would import"
        } else {
            "imported"
        };
        println!(
            "{verb} {} records of {}: {} inserted, {} already here, {} skipped, {} refused; \
             identity {}",
            summary.records_inspected,
            summary.source_did,
            summary.records_inserted,
            summary.records_deduplicated,
            summary.records_skipped,
            summary.records_failed,
            if summary.identity_restored {
                "restored"
            } else if summary.dry_run {
                "not installed (dry run)"
            } else {
                "not in the bundle"
            },
        );
        for (reason, count) in &summary.refusals_by_reason {
            println!("  refused {count}: {reason}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `spl thread restore`: a snapshot of this home's threads taken back into its stopped store.
pub async fn restore(ctx: &Ctx, args: &RestoreArgs) -> Result<ExitCode> {
    refuse_if_running(&ctx.home)?;
    let progress = Arc::new(Progress::default());
    let options = ImportOptions {
        dry_run: args.dry_run,
        progress: Some(progress.clone()),
        ..ImportOptions::default()
    };
    let restoring = syncropel_home::restore_offline(&ctx.home, &args.snapshot, options);
    let summary = with_bar(ctx, "restoring", progress, restoring).await?;
    if ctx.json {
        print_json(&summary);
    } else {
        println!(
            "{} {} records: {} inserted, {} already here, {} skipped, {} refused",
            if summary.dry_run {
                "would restore"
            } else {
                "restored"
            },
            summary.records_inspected,
            summary.records_inserted,
            summary.records_deduplicated,
            summary.records_skipped,
            summary.records_failed,
        );
        for (reason, count) in &summary.refusals_by_reason {
            println!("  refused {count}: {reason}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `work` with a bar of its `progress` on stderr, when that is a terminal and the output is
/// for people.
async fn with_bar<T>(
    ctx: &Ctx,
    what: &'static str,
    progress: Arc<Progress>,
    work: impl std::future::Future<Output = T>,
) -> T {
    if ctx.json || !std::io::stderr().is_terminal() {
        return work.await;
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} records, {per_sec}, {eta} left")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    let drawn = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            drawn.set_length(progress.total().max(progress.done()));
            drawn.set_position(progress.done());
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    let done = work.await;
    ticker.abort();
    bar.finish_and_clear();
    done
}

/// The first line of `file`, else the variable `env`.
fn passphrase(file: Option<&Path>, env: &str) -> Result<Option<String>> {
    match file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            Ok(Some(text.lines().next().unwrap_or_default().to_string()))
        }
        None => Ok(std::env::var(env).ok()),
    }
}

/// Signs the notice that this home is where the identity lives now and hands it to the old
/// home (federation-protocol.md §8.5, step 4).
pub async fn fence(ctx: &Ctx, args: &FenceArgs) -> Result<ExitCode> {
    let moved_to =
        match &args.moved_to {
            Some(url) => url.clone(),
            None => ctx.home.read_steward_info()?.map(|info| info.url).context(
                "no steward runs in this home: start it (`spl serve`) or give --moved-to",
            )?,
        };
    let key = ctx.home.keypair()?;
    let did = ctx.home.did()?;
    let notice = syncropel_protocol::moved::sign_moved(
        &did,
        &moved_to,
        syncropel_protocol::unix_now(),
        &key,
    );
    let old = syncropel_client::Client::new(&args.old_url, None)?;
    let answer = old
        .fence(&notice)
        .await
        .with_context(|| format!("fencing {}", args.old_url))?;
    if ctx.json {
        print_json(answer.json());
    } else {
        println!(
            "{} now answers that {did} moved to {}",
            args.old_url,
            moved_to.trim_end_matches('/')
        );
        let published = &answer.json()["endpoint_published"];
        match published["ok"].as_bool() {
            Some(true) => println!("{did} now names {moved_to} at its directory"),
            Some(false) => println!(
                "{did} still names its old home at its directory ({}): fence again, or \
                 publish the new endpoint with the recovery key",
                published["error"].as_str().unwrap_or("refused")
            ),
            None => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}
