//! Helpers shared by the `spl` integration tests: the built binary against a test's own home,
//! its output checked, a foreground `spl serve` that never outlives the test, a steward serving
//! an address the test chose, a did:sync directory, and polling.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::{Connection, SqliteConnection};
use syncropel_federation::FederationConfig;
use syncropel_home::Home;
use syncropel_steward::local::{self, ServeOptions};
use syncropel_steward::rate_limit::RateLimits;
use syncropel_steward::state::Limits;
use syncropel_telemetry::connections::ConnectionLimits;
use syncropel_telemetry::serve::Drain;

/// How long a steward gets to start, or to exit once told to.
const STEWARD_TIMEOUT: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// `spl` on `home`, free of the caller's endpoint, token, host and port settings.
pub fn spl(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spl"));
    cmd.env("SYNCROPEL_HOME", home)
        .env_remove("SPL_ENDPOINT")
        .env_remove("SPL_TOKEN")
        .env_remove("SPL_HOST")
        .env_remove("SPL_PORT")
        // mDNS stays on this machine: tests send nothing onto a real network.
        .env("SPL_MDNS_INTERFACES", "loopback");
    cmd
}

/// Runs `spl args` on `home` to completion.
pub fn run(home: &Path, args: &[&str]) -> Output {
    spl(home).args(args).output().expect("spl runs")
}

/// Asserts that `output` is a success and returns its trimmed stdout.
pub fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "spl failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Asserts that `output` is a success and parses its stdout as JSON.
pub fn json(output: Output) -> Value {
    serde_json::from_str(&ok(output)).unwrap()
}

/// Asserts that `output` is an API failure (exit 1) and returns its stderr.
pub fn failed(output: Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected a failure: {stderr}"
    );
    stderr
}

/// Creates the first service account, `admin` with the `admin` scope, and returns its token.
pub fn bootstrap_admin(home: &Path) -> String {
    bootstrap(home, None)
}

/// As [`bootstrap_admin`], with the account allowed to write as `actor`.
pub fn bootstrap_admin_acting_as(home: &Path, actor: &str) -> String {
    bootstrap(home, Some(actor))
}

fn bootstrap(home: &Path, actor: Option<&str>) -> String {
    let mut args = vec![
        "service-account",
        "create",
        "--bootstrap",
        "--name",
        "admin",
        "--scopes",
        "admin",
    ];
    if let Some(actor) = actor {
        args.extend(["--actors", actor]);
    }
    args.push("--with-token");
    ok(run(home, &args))
}

/// `spl --json identity upgrade --method sync --directory <directory> <extra>` on `home`, which
/// must succeed.
pub fn upgrade_to_sync(home: &Path, directory: &str, extra: &[&str]) -> Value {
    let args = [
        "--json",
        "identity",
        "upgrade",
        "--method",
        "sync",
        "--directory",
        directory,
    ];
    json(run(home, &[&args[..], extra].concat()))
}

/// Polls `held` every 50 ms until it is true or `within` passes; whether it became true.
pub fn eventually(within: Duration, mut held: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if held() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Waits up to `within` for `child` to exit on its own and returns its status; `None` if it did
/// not, the child then killed and reaped.
pub fn exit_within(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    if eventually(within, || child.try_wait().unwrap().is_some()) {
        return Some(child.wait().unwrap());
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A foreground `spl serve --port 0`, killed and reaped on drop so a failed assertion leaves no
/// steward behind.
pub struct Steward {
    child: Child,
    /// Where it listens, as published in `steward.json`.
    pub url: String,
}

impl Steward {
    /// Starts `spl serve --port 0 <extra_args>` on `home` and waits until `steward.json` names
    /// its pid.
    pub fn start(home: &Path, extra_args: &[&str]) -> Steward {
        Steward::start_on(home, 0, extra_args)
    }

    /// [`Steward::start`] on `port` (0: any free one).
    pub fn start_on(home: &Path, port: u16, extra_args: &[&str]) -> Steward {
        let mut serve = spl(home);
        serve
            .args(["serve", "--port", &port.to_string()])
            .args(extra_args)
            .stderr(Stdio::null());
        Steward::spawned(home, serve)
    }

    /// `spl serve --port 0 <extra_args>` with its log lines (stderr) written to `log`.
    pub fn start_logging(
        home: &Path,
        extra_args: &[&str],
        envs: &[(&str, &str)],
        log: &Path,
    ) -> Steward {
        let _ = std::fs::remove_file(home.join("steward.json"));
        let mut serve = spl(home);
        serve
            .args(["serve", "--port", "0"])
            .args(extra_args)
            .envs(envs.iter().copied())
            .stderr(Stdio::from(std::fs::File::create(log).unwrap()));
        Steward::spawned(home, serve)
    }

    /// Spawns `serve` and waits until `steward.json` names its pid.
    fn spawned(home: &Path, mut serve: Command) -> Steward {
        let child = serve
            .stdout(Stdio::null())
            .spawn()
            .expect("spl serve starts");
        let mut steward = Steward {
            child,
            url: String::new(),
        };
        let pid = steward.child.id();
        let published = eventually(STEWARD_TIMEOUT, || {
            let Ok(text) = std::fs::read_to_string(home.join("steward.json")) else {
                return false;
            };
            match serde_json::from_str::<Value>(&text) {
                Ok(info) if info["pid"] == pid => {
                    steward.url = info["url"].as_str().unwrap().to_owned();
                    true
                }
                _ => false,
            }
        });
        assert!(published, "spl serve did not start");
        steward
    }

    /// Kills the steward with SIGKILL, as a crash would, and reaps it.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the steward to exit on its own (after `spl stop`, say) and returns its status.
    pub fn wait_for_exit(&mut self) -> ExitStatus {
        exit_within(&mut self.child, STEWARD_TIMEOUT).expect("spl serve did not exit")
    }
}

impl Drop for Steward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1, bound now and served later by a steward of its own: for a home whose
/// identity must name its steward's address before the steward starts (a did:web's domain, a
/// did:sync's endpoint). `spl serve` would pick its port only when it starts, and a port let go
/// in between could be taken by any other test.
pub struct ReservedPort(std::net::TcpListener);

impl ReservedPort {
    pub fn bind() -> ReservedPort {
        ReservedPort(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.0.local_addr().unwrap().to_string()
    }

    pub fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }

    /// Serves `home` on this port with the steward `spl serve --no-mdns` runs, built and run by
    /// the same library calls but inside the test process, which hands over its listener.
    /// `directories` are its did:sync directories (`--directory`).
    pub fn serve(self, home: &Path, directories: &[&str]) -> InProcessSteward {
        let options = ServeOptions {
            home: Home::new(home.to_path_buf()),
            host: "127.0.0.1".into(),
            port: self.port(),
            memory: false,
            insecure_localhost: false,
            limits: Limits::default(),
            heartbeat: Duration::from_secs(30),
            drain: Drain {
                delay: Duration::ZERO,
                grace: Duration::from_secs(10),
            },
            connections: ConnectionLimits::default(),
            search: true,
            rate_limits: RateLimits::default(),
            bootstrap_secret: None,
            cors_origins: Vec::new(),
            public_metrics: false,
            directory: false,
            federation: FederationConfig {
                directories: directories.iter().map(|d| d.to_string()).collect(),
                ..FederationConfig::default()
            },
        };
        self.0.set_nonblocking(true).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let url = runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(self.0).unwrap();
            let steward = local::start(options, listener)
                .await
                .expect("the steward starts");
            let url = steward.url.clone();
            tokio::spawn(async move { steward.run().await.expect("the steward serves") });
            url
        });
        InProcessSteward {
            url,
            _runtime: runtime,
        }
    }
}

/// A steward started by [`ReservedPort::serve`]; it stops when dropped.
pub struct InProcessSteward {
    pub url: String,
    _runtime: tokio::runtime::Runtime,
}

/// An address on 127.0.0.1 that refuses connections: bound but never listening, and held by the
/// returned socket so no other test can take it meanwhile.
pub fn refusing_address() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// A did:sync directory on its own thread and runtime (SQLite in a temporary directory), for as
/// long as the test holds it.
pub struct Directory {
    pub url: String,
    _dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
}

impl Directory {
    pub fn start() -> Directory {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let db = format!("sqlite://{}?mode=rwc", dir.path().join("d.db").display());
        let url = runtime.block_on(async move {
            let state = syncropel_directory::AppState::new(
                std::sync::Arc::new(syncropel_directory::Store::open(&db).await.unwrap()),
                syncropel_directory::Rules::default(),
                syncropel_directory::Clock::system(),
                Default::default(),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move {
                axum::serve(listener, syncropel_directory::app(state))
                    .await
                    .unwrap()
            });
            url
        });
        Directory {
            url,
            _dir: dir,
            runtime,
        }
    }

    /// `GET` a path of the directory as JSON.
    pub fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.url);
        self.runtime
            .block_on(async move { reqwest::get(url).await.unwrap().json().await.unwrap() })
    }
}

/// `hub.db` of `home`, opened while no steward runs, once it passes `PRAGMA integrity_check`
/// (`when` says which check failed).
pub async fn checked_hub_db(home: &Path, when: &str) -> SqliteConnection {
    let db = home.join("hub.db");
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(check, "ok", "hub.db {when}");
    conn
}
