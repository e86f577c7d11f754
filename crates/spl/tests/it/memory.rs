//! `spl serve --memory --insecure-localhost`: records are written and read without a token,
//! nothing reaches the disk, and a restart starts from an empty store. Without authentication
//! the steward refuses any address that is not loopback.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::common::{exit_within, json, ok, run, spl, Steward};

const MEMORY: &[&str] = &["--memory", "--insecure-localhost"];

/// The records of `thread`, oldest first, as `spl records list --json` shows them.
fn records(home: &Path, thread: &str) -> Vec<Value> {
    let listed = json(run(
        home,
        &["records", "list", "--thread", thread, "--json"],
    ));
    assert_eq!(listed["object"], "list", "{listed}");
    assert_eq!(listed["has_more"], false, "{listed}");
    listed["data"].as_array().unwrap().clone()
}

/// The id `spl emit` printed on its `id` line.
fn emitted_id(out: &str) -> String {
    let line = out.lines().find(|line| line.starts_with("id ")).unwrap();
    line["id".len()..].trim().to_owned()
}

/// Whether `home` holds `hub.db` or one of its side files.
fn has_hub_db(home: &Path) -> bool {
    std::fs::read_dir(home).unwrap().any(|entry| {
        entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("hub.db")
    })
}

#[test]
fn memory_steward_keeps_records_only_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");

    let mut steward = Steward::start(&home, MEMORY);
    let emit = |n: &str| {
        let body = format!(r#"{{"n":{n}}}"#);
        let out = ok(run(
            &home,
            &["emit", "--act", "DO", "--thread", "th_m", "--body", &body],
        ));
        assert!(out.contains("th_m"), "{out}");
        emitted_id(&out)
    };
    let first = emit("1");
    let second = emit("2");
    assert_ne!(first, second);

    let listed = records(&home, "th_m");
    let seen: Vec<(&str, &str, &Value)> = listed
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap(),
                r["act"].as_str().unwrap(),
                &r["body"]["n"],
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (first.as_str(), "DO", &Value::from(1)),
            (second.as_str(), "DO", &Value::from(2)),
        ]
    );
    assert!(!has_hub_db(&home), "spl serve --memory wrote hub.db");

    let stopped = ok(run(&home, &["stop"]));
    assert!(stopped.contains("stopped"), "{stopped}");
    let status = steward.wait_for_exit();
    assert!(status.success(), "spl serve exited with {status}");
    assert!(!home.join("steward.json").exists());
    drop(steward);

    let _steward = Steward::start(&home, MEMORY);
    assert_eq!(records(&home, "th_m"), Vec::<Value>::new());
    assert!(!has_hub_db(&home), "spl serve --memory wrote hub.db");
}

#[test]
fn insecure_localhost_refuses_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");

    // Spawned rather than run to completion: a steward that wrongly starts must not hang the test.
    let mut child = spl(&home)
        .args([
            "serve",
            "--insecure-localhost",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spl serve starts");
    if exit_within(&mut child, Duration::from_secs(20)).is_none() {
        panic!("spl serve --insecure-localhost --host 0.0.0.0 started");
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("loopback"), "{stderr}");
    assert!(!home.join("steward.json").exists());
}

/// An `auth_required` record (protocol.md §13) turns authentication on for a steward started
/// without it; a record turning it off is stored but changes nothing a flag did not.
#[test]
fn an_auth_required_record_turns_authentication_on() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let mut steward = Steward::start(&home, MEMORY);
    let url = steward.url.clone();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let http = reqwest::Client::new();
        let records = || http.get(format!("{url}/v1/records?limit=1")).send();
        assert_eq!(records().await.unwrap().status(), 200, "open at first");
        let config = |enabled: bool| {
            http.post(format!("{url}/v1/config/auth_required"))
                .json(&serde_json::json!({"enabled": enabled}))
                .send()
        };
        assert_eq!(config(true).await.unwrap().status(), 201);
        let refused = records().await.unwrap();
        assert_eq!(refused.status(), 503, "no account yet: BOOTSTRAP_REQUIRED");
        let made: Value = http
            .post(format!("{url}/v1/bootstrap/service-account"))
            .json(&serde_json::json!({"name": "admin", "scopes": ["admin"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = made["token"]["token"].as_str().unwrap().to_string();
        assert_eq!(records().await.unwrap().status(), 401);
        let health: Value = http
            .get(format!("{url}/v1/health"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let scope = &health["authorization"]["deciders"][0];
        assert_eq!(
            (&scope["decider"], &scope["state"]),
            (&"scope".into(), &"live".into()),
            "{health}"
        );
        let off = http
            .post(format!("{url}/v1/config/auth_required"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"enabled": "no"}))
            .send()
            .await
            .unwrap();
        assert_eq!(off.status(), 400, "enabled is a boolean");
    });
    ok(run(&home, &["stop"]));
    steward.wait_for_exit();
}
