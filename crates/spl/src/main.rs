//! `spl`, the Syncropel CLI.
//!
//! `main` stays thin on purpose: `spl init` must answer in well under 100 ms, so no async
//! runtime, logger or database is set up here; each command builds only what it needs.

mod cli;
mod commands;
mod endpoint;
mod output;

use std::process::ExitCode;

use clap::Parser;
use syncropel_client::ClientError;

/// The steward allocates many short-lived buffers per request; mimalloc serves them with less
/// contention between worker threads than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => report(&err),
    }
}

/// Prints an error the way users can act on: API errors by their stable code, message and hint;
/// everything else with its chain of causes.
fn report(err: &anyhow::Error) -> ExitCode {
    match err.downcast_ref::<ClientError>() {
        Some(ClientError::Api {
            code,
            message,
            hint,
            ..
        }) => {
            eprintln!("error: {code}: {message}");
            if let Some(hint) = hint {
                eprintln!("hint: {hint}");
            }
        }
        Some(ClientError::Transport(e)) if e.is_connect() => {
            eprintln!("error: {err:#}");
            eprintln!("hint: is a steward running? start one with `spl serve --daemon`");
        }
        _ => eprintln!("error: {err:#}"),
    }
    ExitCode::FAILURE
}
