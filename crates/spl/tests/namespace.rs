//! The namespace registry through the CLI: a write to an unregistered namespace is refused with
//! a hint naming `spl namespace create`, which then makes it writable; archiving closes it again.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn spl(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spl"));
    cmd.env("SYNCROPEL_HOME", home)
        .env_remove("SPL_ENDPOINT")
        .env_remove("SPL_TOKEN")
        .env_remove("SPL_HOST")
        .env_remove("SPL_PORT");
    cmd
}

fn run(home: &Path, args: &[&str]) -> Output {
    spl(home).args(args).output().expect("spl runs")
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

/// Asserts that `output` is an API failure (exit 1) and returns its stderr.
fn failed(output: Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected a failure: {stderr}"
    );
    stderr
}

/// A foreground `spl serve`, killed and reaped on drop so a failed assertion leaves no steward
/// behind.
struct Steward(Child);

impl Steward {
    fn start(home: &Path) -> Steward {
        let child = spl(home)
            .args(["serve", "--port", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spl serve starts");
        let steward = Steward(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(text) = std::fs::read_to_string(home.join("steward.json")) {
                if let Ok(info) = serde_json::from_str::<Value>(&text) {
                    if info["pid"] == steward.0.id() {
                        return steward;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("spl serve did not start");
    }
}

impl Drop for Steward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn namespaces_gate_writes_until_created_and_again_once_archived() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");

    let did = ok(run(&home, &["init"]));
    let token = ok(run(
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
    ok(run(&home, &["token", "save", &token]));
    let _steward = Steward::start(&home);

    // Distinct clocks keep every attempt a new record rather than a replay of an earlier one.
    let emit = |clock: &str| {
        run(
            &home,
            &[
                "emit",
                "--act",
                "DO",
                "--thread",
                "th_ns",
                "--clock",
                clock,
                "--body",
                r#"{"namespace":"acme/payments"}"#,
            ],
        )
    };

    let refused = failed(emit("1"));
    assert!(refused.contains("NAMESPACE_REJECTED"), "{refused}");
    assert!(refused.contains("spl namespace create acme`"), "{refused}");

    let orphan = failed(run(&home, &["namespace", "create", "acme/payments"]));
    assert!(orphan.contains("NAMESPACE_REJECTED"), "{orphan}");

    let acme = json(run(
        &home,
        &[
            "--json",
            "namespace",
            "create",
            "acme",
            "--description",
            "the acme tenant",
        ],
    ));
    assert_eq!(acme["object"], "namespace");
    assert_eq!(acme["id"], "acme");
    assert_eq!(acme["state"], "active");
    assert_eq!(acme["description"], "the acme tenant");
    let line = ok(run(&home, &["namespace", "create", "acme/payments"]));
    assert_eq!(line, "acme/payments  active  -");

    let written = ok(emit("2"));
    assert!(written.contains("th_ns"), "{written}");

    let listed = json(run(&home, &["--json", "namespace", "list"]));
    assert_eq!(listed["object"], "list");
    let states: Vec<(&str, &str)> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("acme", "active"), ("acme/payments", "active")]);

    let archived = ok(run(&home, &["namespace", "archive", "acme"]));
    assert_eq!(archived, "archived namespace acme");
    let closed = failed(emit("3"));
    assert!(closed.contains("NAMESPACE_REJECTED"), "{closed}");

    let shown = json(run(
        &home,
        &["--json", "namespace", "show", "acme/payments"],
    ));
    assert_eq!(shown["id"], "acme/payments");
    assert_eq!(shown["state"], "active");
    assert!(
        shown["record"].as_str().is_some_and(|r| !r.is_empty()),
        "{shown}"
    );
    let text = ok(run(&home, &["namespace", "show", "acme"]));
    assert!(text.contains("state        archived"), "{text}");

    let missing = failed(run(&home, &["namespace", "show", "nope"]));
    assert!(missing.contains("NOT_FOUND"), "{missing}");
}
