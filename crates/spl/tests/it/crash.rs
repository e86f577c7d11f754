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

/// One privileged act: what it is, the request, and the record it must have left (its thread
/// and a member of its body).
struct Act<'a> {
    what: &'a str,
    path: &'a str,
    body: Value,
    bearer: &'a str,
    thread: &'a str,
    /// A JSON pointer into the record's body and the string it must find there.
    says: (&'a str, &'a str),
}

/// Every privileged act writes its record before it answers (protocol.md §13.1): for each act,
/// `spl serve` is killed with SIGKILL as soon as the answer arrives, and the record is in
/// `hub.db`, on its thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_privileged_acts_record_is_stored_before_its_answer() {
    let home = tempfile::tempdir().unwrap();
    ok(run(home.path(), &["init"]));
    let token = bootstrap_admin(home.path());
    let http = reqwest::Client::new();
    let reader = {
        let mut steward = Steward::start(home.path(), &[]);
        let made: Value = http
            .post(format!("{}/v1/service-accounts", steward.url))
            .bearer_auth(&token)
            .json(&json!({"name": "reader", "scopes": ["records:read"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sa = made["id"].as_str().unwrap();
        let minted: Value = http
            .post(format!("{}/v1/service-accounts/{sa}/tokens", steward.url))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        steward.kill_9();
        let _ = std::fs::remove_file(home.path().join("steward.json"));
        minted["token"].as_str().unwrap().to_string()
    };
    let acts = [
        Act {
            what: "account",
            path: "/v1/service-accounts",
            body: json!({"name": "made", "scopes": ["records:read"]}),
            bearer: &token,
            thread: "th_audit_tokens",
            says: ("/event", "service_account_created"),
        },
        Act {
            what: "namespace",
            path: "/v1/namespaces",
            body: json!({"id": "acme"}),
            bearer: &token,
            thread: "th_namespace_registry",
            says: ("/id", "acme"),
        },
        Act {
            what: "grant",
            path: "/v1/consent/grants",
            body: json!({"target_namespace": "default", "peer_did": "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"}),
            bearer: &token,
            thread: "th_consent",
            says: ("/kind", "core.consent.v1"),
        },
        Act {
            what: "config",
            path: "/v1/config/store_bounds",
            body: json!({"max_total_bytes": 1u64 << 40}),
            bearer: &token,
            thread: "th_engine_config",
            says: ("/topic", "store_bounds"),
        },
        Act {
            what: "secret",
            path: "/v1/secrets/set",
            body: json!({"handle": "db", "value": "not in any record"}),
            bearer: &token,
            thread: "th_secret_audit",
            says: ("/operation", "set"),
        },
        Act {
            what: "invite",
            path: "/v1/invites",
            body: json!({"membership": {"preset": "reader"}}),
            bearer: &token,
            thread: "th_audit_invites",
            says: ("/event_kind", "issued"),
        },
        Act {
            what: "adoption",
            path: "/v1/members/adopt",
            body: json!({"label": "owner"}),
            bearer: &token,
            thread: "th_identity_owner",
            says: ("/member/label", "owner"),
        },
        Act {
            what: "agent grant",
            path: "/v1/members/owner/grants",
            body: json!({"aud": "did:sync:agent:crash"}),
            bearer: &token,
            thread: "th_identity_owner",
            says: ("/grant/aud", "did:sync:agent:crash"),
        },
        Act {
            what: "refusal",
            path: "/v1/service-accounts",
            body: json!({"name": "escalate", "scopes": ["admin"]}),
            bearer: &reader,
            thread: "th_audit_security",
            says: ("/kind", "core.security.refusal.v1"),
        },
    ];
    for Act {
        what,
        path,
        body,
        bearer,
        thread,
        says: (field, value),
    } in acts
    {
        let mut steward = Steward::start(home.path(), &[]);
        let answer = http
            .post(format!("{}{path}", steward.url))
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        steward.kill_9();
        assert!(status < 300 || what == "refusal", "{what}: {status}");
        let _ = std::fs::remove_file(home.path().join("steward.json"));
        let mut conn = checked_hub_db(home.path(), what).await;
        let bodies: Vec<String> =
            sqlx::query_scalar("SELECT record_json FROM records WHERE thread = ?")
                .bind(thread)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        conn.close().await.unwrap();
        let found = bodies.iter().any(|json| {
            let record: Value = serde_json::from_str(json).unwrap();
            record["body"].pointer(field) == Some(&json!(value))
        });
        assert!(
            found,
            "{what}: no record on {thread} with {field} = {value}"
        );
    }
}
