//! Helpers shared by the `spl` integration tests: the built binary against a test's own home,
//! its output checked, and a foreground `spl serve` that never outlives the test.

// Each test binary compiles its own copy of this module and uses only part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a steward gets to start, or to exit once told to.
const STEWARD_TIMEOUT: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

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

    /// [`Steward::start`] on a chosen port (0 picks a free one).
    pub fn start_on(home: &Path, port: u16, extra_args: &[&str]) -> Steward {
        let child = spl(home)
            .args(["serve", "--port", &port.to_string()])
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spl serve starts");
        let mut steward = Steward {
            child,
            url: String::new(),
        };
        let deadline = Instant::now() + STEWARD_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(text) = std::fs::read_to_string(home.join("steward.json")) {
                if let Ok(info) = serde_json::from_str::<Value>(&text) {
                    if info["pid"] == steward.child.id() {
                        steward.url = info["url"].as_str().unwrap().to_owned();
                        return steward;
                    }
                }
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        panic!("spl serve did not start");
    }

    /// Kills the steward with SIGKILL, as a crash would, and reaps it.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the steward to exit on its own (after `spl stop`, say) and returns its status.
    pub fn wait_for_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + STEWARD_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "spl serve did not exit");
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Steward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
            let state = syncropel_directory::AppState {
                store: std::sync::Arc::new(syncropel_directory::Store::open(&db).await.unwrap()),
                rules: syncropel_directory::Rules::default(),
                clock: syncropel_directory::Clock::system(),
                stopping: Default::default(),
            };
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
