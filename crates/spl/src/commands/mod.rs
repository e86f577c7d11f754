//! Command implementations. `run` dispatches and decides, per command, whether an async runtime
//! is needed at all: `init`, `stop` and `token save` are plain file operations and stay fast.

mod accounts;
mod consent;
mod federation;
mod fleet;
mod identity;
mod init;
mod membership;
mod namespaces;
mod portability;
mod process;
mod records;
mod relay;
mod serve;
mod status;

use std::future::Future;
use std::process::ExitCode;

use anyhow::Result;
use syncropel_client::Client;
use syncropel_home::{Home, HomeError};

use crate::cli::{Cli, Command, ConfigCommand, ThreadCommand, TokenCommand};
use crate::endpoint;

/// What every command may need: the home and the global options.
pub struct Ctx {
    pub home: Home,
    endpoint: Option<String>,
    token: Option<String>,
    pub json: bool,
}

impl Ctx {
    /// The bearer to send: `--token`/`SPL_TOKEN`, else the token saved in the home.
    pub fn token(&self) -> Result<Option<String>, HomeError> {
        match &self.token {
            Some(token) => Ok(Some(token.clone())),
            None => self.home.load_token(),
        }
    }

    /// Where to find the steward (see [`endpoint::resolve`]).
    pub fn endpoint(&self) -> Result<endpoint::Endpoint, HomeError> {
        endpoint::resolve(self.endpoint.as_deref(), &self.home)
    }

    /// A client for the resolved steward with the resolved token.
    pub fn client(&self) -> Result<Client> {
        let endpoint = self.endpoint()?;
        Ok(Client::new(&endpoint.url, self.token()?)?)
    }
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Ctx {
        json: cli.wants_json(),
        home: Home::new(cli.home.unwrap_or_else(Home::default_root)),
        endpoint: cli.endpoint,
        token: cli.token,
    };
    match cli.command {
        Command::Init(args) => init::run(&ctx, &args),
        Command::Serve(args) => serve::run(ctx, &args),
        Command::Stop => serve::stop(&ctx),
        Command::Status => block_on(status::run(&ctx)),
        Command::ServiceAccount(command) => block_on(accounts::service_account(&ctx, command)),
        Command::Token(TokenCommand::Save { token }) => accounts::save_token(&ctx, &token),
        Command::Token(TokenCommand::Revoke { token_id }) => {
            block_on(accounts::revoke_token(&ctx, &token_id))
        }
        Command::Namespace(command) => block_on(namespaces::run(&ctx, command)),
        Command::Invite(command) => block_on(membership::invite(&ctx, command)),
        Command::Member(command) => block_on(membership::member(&ctx, command)),
        Command::Intend(args) => block_on(records::intend(&ctx, args)),
        Command::Do(args) => block_on(records::act(&ctx, "DO", args)),
        Command::Know(args) => block_on(records::act(&ctx, "KNOW", args)),
        Command::Learn(args) => block_on(records::act(&ctx, "LEARN", args)),
        Command::Emit(args) => block_on(records::emit(&ctx, args)),
        Command::Records(command) => block_on(records::records(&ctx, command)),
        Command::Threads(args) => block_on(records::threads(&ctx, &args)),
        Command::Thread(ThreadCommand::Snapshot(args)) => {
            block_on(portability::snapshot(&ctx, &args))
        }
        Command::Thread(ThreadCommand::Restore(args)) => {
            block_on(portability::restore(&ctx, &args))
        }
        Command::Federation(command) => block_on(federation::run(&ctx, command)),
        Command::Consent(command) => block_on(consent::run(&ctx, command)),
        Command::Sync(args) => block_on(federation::sync(&ctx, args)),
        Command::Fleet(command) => block_on(fleet::run(&ctx, command)),
        Command::Discover(args) => block_on(fleet::discover_peer(&ctx, args)),
        Command::Identity(command) => block_on(identity::run(&ctx, command)),
        Command::Relay(command) => block_on(relay::run(&ctx, command)),
        Command::Export(args) => block_on(portability::export(&ctx, &args)),
        Command::Import(args) => block_on(portability::import(&ctx, &args)),
        Command::Fence(args) => block_on(portability::fence(&ctx, &args)),
        Command::Config(ConfigCommand::Relay(command)) => block_on(relay::config(&ctx, command)),
    }
}

/// Runs one client command on a single-threaded runtime: a CLI call makes a few sequential
/// requests, so worker threads would only add start-up time.
fn block_on<F: Future<Output = Result<ExitCode>>>(future: F) -> Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}
