//! The local steward's life cycle through the CLI: `serve --daemon`, bootstrap, write, read,
//! `status`, `stop`.

use std::path::Path;

use serde_json::Value;

use crate::common::{bootstrap_admin_acting_as, json, ok, run};

/// Stops the daemon even when an assertion fails halfway (a no-op once it is stopped).
struct Daemon<'a>(&'a Path);

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let _ = run(self.0, &["stop"]);
    }
}

#[test]
fn daemon_serves_records_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");

    let url = ok(run(&home, &["serve", "--daemon", "--port", "0"]));
    let daemon = Daemon(&home);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("steward.json")).unwrap()).unwrap();
    assert_eq!(info["url"], url.as_str());

    // A second steward on the same home is refused.
    let second = run(&home, &["serve", "--daemon", "--port", "0"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"));

    // Until a service account exists, /v1 tells the user how to create one.
    let refused = run(&home, &["threads"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("BOOTSTRAP_REQUIRED"));

    let did = ok(run(&home, &["init"]));
    let token = bootstrap_admin_acting_as(&home, &did);
    assert!(token.starts_with("spl_local_"), "{token}");
    assert_eq!(token.lines().count(), 1);
    ok(run(&home, &["token", "save", &token]));

    let status = json(run(&home, &["--json", "status"]));
    assert_eq!(status["reachable"], true);
    assert_eq!(status["endpoint"], url.as_str());
    assert_eq!(status["health"]["status"], "ok");
    assert!(status["status"].is_object(), "{status}");

    let intent = json(run(
        &home,
        &["--json", "intend", "--kind", "core.task", "ship it"],
    ));
    let thread = intent["thread"].as_str().unwrap().to_owned();
    assert!(thread.starts_with("th_") && thread.len() == 67, "{thread}");
    assert_eq!(intent["actor"], did.as_str());
    assert_eq!(intent["body"]["goal"], "ship it");
    assert_eq!(intent["body"]["kind"], "core.task");

    let done = ok(run(&home, &["do", "--thread", &thread, "done"]));
    assert!(done.contains(&thread), "{done}");

    let listed = json(run(
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
    let fetched = json(run(&home, &["--json", "records", "get", id]));
    assert_eq!(fetched["id"], id);

    let missing = run(&home, &["records", "get", &"0".repeat(64)]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NOT_FOUND"));

    let stopped = ok(run(&home, &["stop"]));
    assert!(stopped.contains("stopped"), "{stopped}");
    assert!(!home.join("steward.json").exists());
    drop(daemon);

    let down = run(&home, &["--endpoint", &url, "status"]);
    assert_eq!(down.status.code(), Some(1));
}
