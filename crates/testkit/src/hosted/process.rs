//! `steward` processes: the hosted binary as a Deployment runs it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{probe_ready, AUDIENCE, BASE_DOMAIN, ISSUER, JWT_SECRET, KEK_HEX};

/// How long a process may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A `steward` process serving a database; killed when dropped. It logs JSON lines, and its
/// address is read from the line that says it listens.
pub struct Process {
    pub url: String,
    child: Child,
    /// The `hosted steward listening` log line.
    listening: Value,
    log: tempfile::NamedTempFile,
}

impl Process {
    /// Starts the binary at `bin` (`env!("CARGO_BIN_EXE_steward")`) on 127.0.0.1:0 over
    /// `database_url`, with rate limits off, and waits until it listens.
    pub async fn start(bin: &str, database_url: &str) -> Process {
        Process::start_with(bin, database_url, &[]).await
    }

    /// [`Process::start`] with more flags (e.g. the drain timing:
    /// `&["--shutdown-delay", "1s", "--shutdown-grace", "10s"]`).
    pub async fn start_with(bin: &str, database_url: &str, args: &[&str]) -> Process {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(Path::new(bin))
            .args([
                "--bind",
                "127.0.0.1:0",
                "--base-domain",
                BASE_DOMAIN,
                "--public-scheme",
                "http",
                "--jwt-issuer",
                ISSUER,
                "--jwt-audience",
                AUDIENCE,
                "--rate-limit-per-address",
                "0",
                "--rate-limit-per-token",
                "0",
                "--log-format",
                "json",
            ])
            .args(args)
            .env("DATABASE_URL", database_url)
            .env("STEWARD_KEK", KEK_HEX)
            .env("STEWARD_JWT_SECRET", JWT_SECRET)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("the steward binary runs");
        let mut process = Process {
            url: String::new(),
            child,
            listening: Value::Null,
            log,
        };
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let line = process
                .log_lines()
                .into_iter()
                .find(|line| line["message"] == "hosted steward listening");
            if let Some(line) = line {
                process.url = format!("http://{}", line["addr"].as_str().unwrap());
                process.listening = line;
                return process;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!(
                    "the steward exited ({status}) before listening:\n{}",
                    process.log()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the steward did not listen within {START_TIMEOUT:?}:\n{}",
                process.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://<addr>/metrics` of the internal metrics listener, when it was given one.
    pub fn metrics_url(&self) -> Option<String> {
        let named = self.listening["metrics"].as_str()?;
        let addr = named.strip_prefix("Some(")?.strip_suffix(')')?;
        Some(format!("http://{addr}/metrics"))
    }

    /// SIGKILL: no drain, no shutdown hooks.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the graceful stop a Kubernetes pod gets (not ready, drain, exit).
    pub fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
                .expect("the steward takes a signal");
        }
    }

    /// Waits (polling) until the process exits; its status, or `None` if it still runs after
    /// `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether `GET /ready` answers 200.
    pub async fn ready(&self) -> bool {
        probe_ready(&reqwest::Client::new(), &self.url).await
    }

    /// What the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The log lines so far that are JSON objects (a line being written is not yet one).
    pub fn log_lines(&self) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
