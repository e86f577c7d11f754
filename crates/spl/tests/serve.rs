//! The local steward's life cycle through the CLI: `serve --daemon`, bootstrap, write, read,
//! `status`, `stop`.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn spl(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spl"))
        .args(args)
        .env("SYNCROPEL_HOME", home)
        .env_remove("SPL_ENDPOINT")
        .env_remove("SPL_TOKEN")
        .env_remove("SPL_HOST")
        .env_remove("SPL_PORT")
        .output()
        .expect("spl runs")
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "spl failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn json(output: Output) -> Value {
    serde_json::from_str(&ok(output)).unwrap()
}

/// Stops the daemon even when an assertion fails halfway (a no-op once it is stopped).
struct Daemon<'a>(&'a Path);

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let _ = spl(self.0, &["stop"]);
    }
}

#[test]
fn daemon_serves_records_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");

    let url = ok(spl(&home, &["serve", "--daemon", "--port", "0"]));
    let daemon = Daemon(&home);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("steward.json")).unwrap()).unwrap();
    assert_eq!(info["url"], url.as_str());

    // A second steward on the same home is refused.
    let second = spl(&home, &["serve", "--daemon", "--port", "0"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"));

    // Until a service account exists, /v1 tells the user how to create one.
    let refused = spl(&home, &["threads"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("BOOTSTRAP_REQUIRED"));

    let did = ok(spl(&home, &["init"]));
    let token = ok(spl(
        &home,
        &[
            "service-account",
            "create",
            "--bootstrap",
            "--name",
            "admin",
            "--scopes",
            "admin",
            "--actors",
            &did,
            "--with-token",
        ],
    ));
    assert!(token.starts_with("spl_local_"), "{token}");
    assert_eq!(token.lines().count(), 1);
    ok(spl(&home, &["token", "save", &token]));

    let status = json(spl(&home, &["--json", "status"]));
    assert_eq!(status["reachable"], true);
    assert_eq!(status["endpoint"], url.as_str());
    assert_eq!(status["health"]["status"], "ok");
    assert!(status["status"].is_object(), "{status}");

    let intent = json(spl(
        &home,
        &["--json", "intend", "--kind", "core.task", "ship it"],
    ));
    let thread = intent["thread"].as_str().unwrap().to_owned();
    assert!(thread.starts_with("th_") && thread.len() == 67, "{thread}");
    assert_eq!(intent["actor"], did.as_str());
    assert_eq!(intent["body"]["goal"], "ship it");
    assert_eq!(intent["body"]["kind"], "core.task");

    let done = ok(spl(&home, &["do", "--thread", &thread, "done"]));
    assert!(done.contains(&thread), "{done}");

    let listed = json(spl(
        &home,
        &[
            "--json", "records", "list", "--thread", &thread, "--limit", "1", "--all",
        ],
    ));
    let acts: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["act"].as_str().unwrap())
        .collect();
    assert_eq!(acts, ["INTEND", "DO"]);
    assert_eq!(listed["has_more"], false);

    let id = intent["id"].as_str().unwrap();
    let fetched = json(spl(&home, &["--json", "records", "get", id]));
    assert_eq!(fetched["id"], id);

    let missing = spl(&home, &["records", "get", &"0".repeat(64)]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NOT_FOUND"));

    let stopped = ok(spl(&home, &["stop"]));
    assert!(stopped.contains("stopped"), "{stopped}");
    assert!(!home.join("steward.json").exists());
    drop(daemon);

    let down = spl(&home, &["--endpoint", &url, "status"]);
    assert_eq!(down.status.code(), Some(1));
}
