//! The `relay` binary as a process of its own: migrated, started (its address read from its
//! log), killed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use syncropel_store::testing::TestDb;

pub const RELAY: &str = env!("CARGO_BIN_EXE_relay");
const START_DEADLINE: Duration = Duration::from_secs(30);

/// `relay migrate` on `db`.
pub fn migrate(db: &TestDb) -> ExitStatus {
    Command::new(RELAY)
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .status()
        .unwrap()
}

/// A `relay` process; killed with SIGKILL when dropped.
pub struct RelayProcess {
    child: Child,
    pub addr: String,
}

impl RelayProcess {
    /// Serves `db` on `listen` (`127.0.0.1:0` for any port), with `env` set too.
    pub fn start(db: &TestDb, listen: &str, env: &[(&str, &str)]) -> RelayProcess {
        let mut child = Command::new(RELAY)
            .env("DATABASE_URL", &db.url)
            .env("RELAY_LISTEN", listen)
            .env("RELAY_CURSOR_KEY", "the cursor key every replica shares")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let deadline = Instant::now() + START_DEADLINE;
        let addr = loop {
            assert!(Instant::now() < deadline, "the relay did not start");
            let line = lines.next().unwrap().unwrap();
            if let Some(rest) = line.split("addr=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Its log is read to the end, so that a full pipe never stops it.
        std::thread::spawn(move || lines.for_each(drop));
        RelayProcess { child, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL, as a crash would.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
