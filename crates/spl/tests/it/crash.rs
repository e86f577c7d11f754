//! Kill -9 of `spl serve` during a write burst: `hub.db` passes `PRAGMA integrity_check`, every
//! acknowledged record is present after a restart, and nothing is duplicated.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::common::{bootstrap_admin, checked_hub_db, ok, run, Steward};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_write_burst_loses_no_acknowledged_record() {
    let home = tempfile::tempdir().unwrap();
    ok(run(home.path(), &["init"]));
    let token = bootstrap_admin(home.path());

    let mut steward = Steward::start(home.path(), &[]);
    let url = steward.url.clone();
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
    steward.kill_9();
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

    let mut conn = checked_hub_db(home.path(), "after the kill").await;
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
    // The SIGKILLed steward left its steward.json behind.
    let _ = std::fs::remove_file(home.path().join("steward.json"));
    let mut steward = Steward::start(home.path(), &[]);
    let url = steward.url.clone();
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
    steward.kill_9();
}
