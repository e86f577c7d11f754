//! Kill -9 of `spl serve` during a write burst: `hub.db` passes `PRAGMA integrity_check`, every
//! acknowledged record is present after a restart, and nothing is duplicated.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};
use sqlx::Connection;

fn spl(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spl"));
    cmd.env("SYNCROPEL_HOME", home)
        .env_remove("SPL_ENDPOINT")
        .env_remove("SPL_TOKEN");
    cmd
}

/// Starts `spl serve` on a free port and waits until it answers; returns the child and its URL.
// The child is handed to the caller, which kills and waits for it; clippy cannot see through
// the returned tuple.
#[allow(clippy::zombie_processes)]
fn serve(home: &Path) -> (Child, String) {
    let _ = std::fs::remove_file(home.join("steward.json"));
    let mut child = spl(home)
        .args(["serve", "--port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(home.join("steward.json")) {
            if let Ok(info) = serde_json::from_str::<Value>(&text) {
                if info["pid"] == child.id() {
                    return (child, info["url"].as_str().unwrap().to_string());
                }
            }
        }
        if Instant::now() >= deadline {
            // Reap it, so a failed start leaves no stray steward behind.
            let _ = child.kill();
            let _ = child.wait();
            panic!("spl serve did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_write_burst_loses_no_acknowledged_record() {
    let home = tempfile::tempdir().unwrap();
    assert!(spl(home.path()).arg("init").status().unwrap().success());
    let out = spl(home.path())
        .args([
            "service-account",
            "create",
            "--bootstrap",
            "--name",
            "admin",
            "--scopes",
            "admin",
            "--with-token",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let (mut child, url) = serve(home.path());
    let http = reqwest::Client::new();
    let writers = (0..16).map(|w| {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for clock in 0.. {
                let record = json!({"act": "DO", "actor": format!("did:example:w{w}"), "body": {"n": clock},
                    "clock": clock, "data_type": "SCALAR", "parents": [], "thread": "th_crash"});
                match http.post(format!("{url}/v1/records")).bearer_auth(&token).json(&record).send().await {
                    Ok(resp) if resp.status().as_u16() == 201 => {
                        let body: Value = resp.json().await.unwrap();
                        acked.push(body["id"].as_str().unwrap().to_string());
                    }
                    _ => break, // the server is gone
                }
            }
            acked
        })
    });
    let writers: Vec<_> = writers.collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acked: Vec<String> = join_all(writers)
        .await
        .into_iter()
        .flat_map(Result::unwrap)
        .collect();
    assert!(
        acked.len() > 100,
        "the burst wrote only {} records",
        acked.len()
    );

    let db = home.path().join("hub.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(check, "ok");
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM records WHERE thread = 'th_crash'")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let stored: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(stored.len(), ids.len(), "no record is stored twice");
    let missing: Vec<&String> = acked.iter().filter(|id| !stored.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records lost",
        missing.len()
    );

    // The steward restarts on the same file and serves every acknowledged record.
    let (mut child, url) = serve(home.path());
    for id in acked.iter().step_by(acked.len() / 50 + 1) {
        let resp = http
            .get(format!("{url}/v1/records/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{id}");
    }
    let next = json!({"act": "DO", "actor": "did:example:after", "body": {}, "clock": 0, "data_type": "SCALAR", "parents": [], "thread": "th_crash"});
    let resp = http
        .post(format!("{url}/v1/records"))
        .bearer_auth(&token)
        .json(&next)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    child.kill().unwrap();
    child.wait().unwrap();
}
