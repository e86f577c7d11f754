//! `spl serve` (foreground or `--daemon`) and `spl stop`.
//!
//! The steward itself is the library's `local::serve`, which binds, writes `steward.json`, and
//! runs until SIGTERM/SIGINT. `--daemon` re-executes this binary without `--daemon` in its own
//! process group, then waits until that child has both published itself in `steward.json` and
//! answered `GET /health`, so a zero exit means the steward is really usable.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use syncropel_client::Client;
use syncropel_discovery::MdnsConfig;
use syncropel_federation::discovery::DiscoveryConfig;
use syncropel_federation::{FederationConfig, RelayConfig};
use syncropel_home::{Home, StewardInfo};
use syncropel_steward::local::{self, ServeOptions};
use syncropel_steward::rate_limit::RateLimits;
use syncropel_steward::state::{Limits, QueryBudget};
use syncropel_steward::streams::StreamLimits;
use syncropel_telemetry::serve::Drain;

use super::{process, Ctx};
use crate::cli::ServeArgs;
use crate::output::print_json;

/// How long `--daemon` waits for the child to become healthy before giving up on it.
const DAEMON_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `spl stop` waits for the steward to finish its graceful shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Lines of `steward.log` shown when a daemon fails to start.
const LOG_TAIL_LINES: usize = 20;

pub fn run(ctx: Ctx, args: &ServeArgs) -> Result<ExitCode> {
    ctx.home.init(false)?;
    refuse_if_running(&ctx.home)?;
    // `--relay` wins over the home's `[relay] urls` (`spl config relay set`).
    let relays = match args.relays.is_empty() {
        true => ctx.home.relays()?,
        false => args.relays.clone(),
    };
    check_relays(&relays)?;
    // Either the flag or the home's `[consent] l0_requires_acceptance` switches it on.
    let l0_requires_acceptance =
        args.l0_requires_acceptance || ctx.home.l0_requires_acceptance()?;
    let pairing = args.pairing.policy().map_err(anyhow::Error::msg)?;
    if args.daemon {
        return daemonize(&ctx);
    }

    let options = ServeOptions {
        home: ctx.home,
        host: args.host.clone(),
        port: args.port,
        memory: args.memory,
        insecure_localhost: args.insecure_localhost,
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_json_depth: args.max_json_depth,
            max_page_bytes: args.max_page_bytes,
            streams: StreamLimits {
                per_token: args.max_streams_per_token,
                per_address: args.max_streams_per_address,
                ..StreamLimits::default()
            },
            query: QueryBudget {
                max_rows_scanned: args.query_max_rows,
                max_time: Duration::from_millis(args.query_max_ms),
            },
            ..Limits::default()
        },
        heartbeat: Duration::from_secs(args.heartbeat_secs),
        drain: Drain {
            delay: Duration::ZERO,
            grace: Duration::from_secs(args.shutdown_grace_secs),
        },
        connections: args.connections,
        search: !args.no_search,
        rate_limits: RateLimits::per_second(args.rate_limit_per_address, args.rate_limit_per_token),
        bootstrap_secret: args.bootstrap_secret.clone(),
        cors_origins: args.cors_origins.clone(),
        public_metrics: args.public_metrics,
        directory: args.directory_enabled,
        federation: FederationConfig {
            poll_interval: Duration::from_secs(args.sync_interval_secs),
            store_ceiling: args.sync_store_ceiling,
            auto_approve: args.federation_auto_approve_dids.clone(),
            pairing,
            l0_requires_acceptance,
            // A steward on a laptop or behind NAT: peers should turn to its relays at once.
            relay: RelayConfig {
                offline_capable: !relays.is_empty(),
                urls: relays,
                ..RelayConfig::default()
            },
            directories: args.directories.clone(),
            discovery: DiscoveryConfig {
                mdns_listen: !args.no_mdns,
                mdns_broadcast: args.mdns_broadcast,
                mdns: MdnsConfig {
                    interfaces: args.mdns_interfaces,
                    ..MdnsConfig::default()
                },
                handle: args.mdns_handle.clone(),
                namespace: args.mdns_namespace.clone(),
                introduce: args.introduce,
            },
            ..FederationConfig::default()
        },
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let telemetry = syncropel_telemetry::init(&args.telemetry, "spl-serve")?;
            let outcome = local::serve(options).await;
            telemetry.shutdown();
            outcome
        })?;
    Ok(ExitCode::SUCCESS)
}

/// At most three relays, each an http(s) URL (federation-protocol.md §7.2).
pub fn check_relays(relays: &[String]) -> Result<()> {
    if relays.len() > 3 {
        bail!("at most three relays, not {}", relays.len());
    }
    if let Some(bad) = relays
        .iter()
        .find(|url| !(url.starts_with("https://") || url.starts_with("http://")))
    {
        bail!("{bad}: a relay is an http(s) URL");
    }
    Ok(())
}

/// Two stewards on one home would fight over `steward.json` and the store, so refuse to start a
/// second one. A stale file (its process gone) is ignored; the new steward overwrites it.
pub(super) fn refuse_if_running(home: &Home) -> Result<()> {
    if let Some(info) = running(home)? {
        bail!(
            "a steward is already running at {} (pid {}); stop it with `spl stop`",
            info.url,
            info.pid
        );
    }
    Ok(())
}

/// The steward running in this home, if one is.
pub(super) fn running(home: &Home) -> Result<Option<StewardInfo>> {
    let Some(info) = home.read_steward_info()? else {
        return Ok(None);
    };
    // A recorded pid of our own, or of init, is a stale file from an earlier run in this pid
    // namespace (a container restarted after an unclean stop), not a running steward.
    if info.pid <= 1 || info.pid == std::process::id() {
        return Ok(None);
    }
    Ok(process::is_steward(process::pid(info.pid)?).then_some(info))
}

fn daemonize(ctx: &Ctx) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the spl executable")?;
    let args: Vec<OsString> = std::env::args_os()
        .skip(1)
        .filter(|arg| arg != "--daemon")
        .collect();
    let log_path = ctx.home.log_path();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    // Where this start's output begins, so a failure shows this child's lines, not old runs'.
    let log_start = log.metadata()?.len();

    let mut child = Command::new(exe)
        .args(args)
        // The child must find the same home even if it came from a default the parent computed.
        .env("SYNCROPEL_HOME", ctx.home.root())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C in the launching terminal must not reach the daemon.
        .process_group(0)
        .spawn()
        .context("cannot start the steward process")?;

    let url = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(wait_until_ready(&ctx.home, &mut child));
    let pid = child.id();
    match url {
        Ok(url) => {
            if ctx.json {
                print_json(&json!({
                    "url": url,
                    "pid": pid,
                    "log": log_path.display().to_string(),
                }));
            } else {
                println!("{url}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => bail!(
            "{err:#}\nits output in {}:\n{}",
            log_path.display(),
            log_tail(&ctx.home, log_start)
        ),
    }
}

/// Waits until `child` is named in `steward.json` and its `/health` answers; returns its URL.
/// A child that does not get there in time is terminated so no half-started daemon lingers.
async fn wait_until_ready(home: &Home, child: &mut Child) -> Result<String> {
    let deadline = Instant::now() + DAEMON_READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the steward exited during start-up ({status})");
        }
        if let Some(info) = home.read_steward_info().ok().flatten() {
            if info.pid == child.id() {
                let client = Client::new(&info.url, None)?;
                let remaining = deadline.saturating_duration_since(Instant::now());
                if let Ok(Ok(_)) = tokio::time::timeout(remaining, client.health()).await {
                    return Ok(info.url);
                }
            }
        }
        if Instant::now() >= deadline {
            process::terminate(process::pid(child.id())?)?;
            bail!(
                "the steward did not become healthy within {} s and was stopped",
                DAEMON_READY_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The last lines written to the log from byte `start` on.
fn log_tail(home: &Home, start: u64) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut log) = fs::File::open(home.log_path()) {
        if log.seek(SeekFrom::Start(start)).is_ok() {
            let _ = log.read_to_end(&mut bytes);
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

pub fn stop(ctx: &Ctx) -> Result<ExitCode> {
    let Some(info) = ctx.home.read_steward_info()? else {
        bail!(
            "no steward is running (no steward.json in {})",
            ctx.home.root().display()
        );
    };
    let pid = process::pid(info.pid)?;
    if !process::is_steward(pid) {
        ctx.home.remove_steward_info();
        bail!(
            "no steward is running (removed a stale steward.json naming pid {})",
            info.pid
        );
    }

    process::terminate(pid)?;
    let deadline = Instant::now() + STOP_TIMEOUT;
    while process::is_running(pid) {
        if Instant::now() >= deadline {
            bail!(
                "the steward (pid {pid}) is still running {} s after SIGTERM; \
                 `kill -KILL {pid}` forces it",
                STOP_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    // A steward killed mid-shutdown leaves its file behind; a new one may have replaced it.
    if ctx.home.read_steward_info().ok().flatten().map(|i| i.pid) == Some(info.pid) {
        ctx.home.remove_steward_info();
    }

    if ctx.json {
        print_json(&json!({"stopped": true, "pid": info.pid, "url": info.url}));
    } else {
        println!("stopped the steward at {} (pid {})", info.url, info.pid);
    }
    Ok(ExitCode::SUCCESS)
}
