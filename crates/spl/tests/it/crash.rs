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
    method: reqwest::Method,
    path: String,
    /// `None`: a request without a body (a DELETE).
    body: Option<Value>,
    bearer: &'a str,
    thread: &'a str,
    /// A JSON pointer into the record's body and the string it must find there.
    says: (&'a str, &'a str),
}

impl<'a> Act<'a> {
    fn post(what: &'a str, path: &str, body: Value, bearer: &'a str) -> Act<'a> {
        Act {
            what,
            method: reqwest::Method::POST,
            path: path.to_string(),
            body: Some(body),
            bearer,
            thread: "",
            says: ("", ""),
        }
    }

    fn delete(what: &'a str, path: &str, bearer: &'a str) -> Act<'a> {
        Act {
            method: reqwest::Method::DELETE,
            body: None,
            ..Act::post(what, path, Value::Null, bearer)
        }
    }

    fn leaves(self, thread: &'a str, pointer: &'a str, value: &'a str) -> Act<'a> {
        Act {
            thread,
            says: (pointer, value),
            ..self
        }
    }
}

/// What the acts need made first: a reader's token, an account and a token to revoke, an open
/// invite and a thread to close.
struct Prepared {
    reader: String,
    account: String,
    doomed_token: String,
    invite: String,
}

async fn prepare(home: &std::path::Path, admin: &str, http: &reqwest::Client) -> Prepared {
    let mut steward = Steward::start(home, &[]);
    let post = |path: &str, body: Value| {
        let request = http
            .post(format!("{}{path}", steward.url))
            .bearer_auth(admin)
            .json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let made = post(
        "/v1/service-accounts",
        json!({"name": "reader", "scopes": ["records:read"]}),
    )
    .await;
    let sa = made["id"].as_str().unwrap().to_string();
    let reader = post(&format!("/v1/service-accounts/{sa}/tokens"), json!({})).await;
    let doomed = post(&format!("/v1/service-accounts/{sa}/tokens"), json!({})).await;
    let invite = post("/v1/invites", json!({"scopes": ["records:read"]})).await;
    let record = json!({"act": "KNOW", "actor": "did:sync:user:ana", "thread": "th_closing", "clock": 1, "body": {}});
    post("/v1/records", record).await;
    steward.kill_9();
    let _ = std::fs::remove_file(home.join("steward.json"));
    Prepared {
        reader: reader["token"].as_str().unwrap().to_string(),
        account: sa,
        doomed_token: doomed["token_id"].as_str().unwrap().to_string(),
        invite: invite["invite_id"].as_str().unwrap().to_string(),
    }
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
    let made = prepare(home.path(), &token, &http).await;
    let peer = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
    let guest = json!({"holder_type": "guest", "holder_pubkey": "ab".repeat(32)});
    let acts = [
        Act::post(
            "account",
            "/v1/service-accounts",
            json!({"name": "made", "scopes": ["records:read"]}),
            &token,
        )
        .leaves("th_audit_tokens", "/event", "service_account_created"),
        Act::post(
            "token",
            &format!("/v1/service-accounts/{}/tokens", made.account),
            json!({}),
            &token,
        )
        .leaves("th_audit_tokens", "/event", "token_minted"),
        Act::delete(
            "token revocation",
            &format!("/v1/tokens/{}", made.doomed_token),
            &token,
        )
        .leaves("th_audit_tokens", "/event", "token_revoked"),
        Act::post("namespace", "/v1/namespaces", json!({"id": "acme"}), &token).leaves(
            "th_namespace_registry",
            "/id",
            "acme",
        ),
        Act::post(
            "grant",
            "/v1/consent/grants",
            json!({"target_namespace": "default", "peer_did": peer}),
            &token,
        )
        .leaves("th_consent", "/kind", "core.consent.v1"),
        Act::post(
            "sync pair",
            "/v1/sync/pairs",
            json!({"peer_did": peer, "peer_url": "http://127.0.0.1:9", "thread_id": "th_x"}),
            &token,
        )
        .leaves("th_sync_control", "/topic", "pair_state"),
        Act::post(
            "config",
            "/v1/config/store_bounds",
            json!({"max_total_bytes": 1u64 << 40}),
            &token,
        )
        .leaves("th_engine_config", "/topic", "store_bounds"),
        Act::post(
            "secret",
            "/v1/secrets/set",
            json!({"handle": "db", "value": "not in any record"}),
            &token,
        )
        .leaves("th_secret_audit", "/operation", "set"),
        Act::post(
            "invite",
            "/v1/invites",
            json!({"membership": {"preset": "reader"}}),
            &token,
        )
        .leaves("th_audit_invites", "/event_kind", "issued"),
        Act::post(
            "redemption",
            &format!("/v1/invites/{}/redeem", made.invite),
            guest,
            &token,
        )
        .leaves("th_audit_invites", "/event_kind", "redeemed"),
        Act::post(
            "adoption",
            "/v1/members/adopt",
            json!({"label": "owner"}),
            &token,
        )
        .leaves("th_identity_owner", "/member/label", "owner"),
        Act::post(
            "agent grant",
            "/v1/members/owner/grants",
            json!({"aud": "did:sync:agent:crash"}),
            &token,
        )
        .leaves("th_identity_owner", "/grant/aud", "did:sync:agent:crash"),
        Act::delete("member revocation", "/v1/members/owner", &token).leaves(
            "th_identity_owner",
            "/reason",
            "member-revoked",
        ),
        Act::delete("thread closing", "/v1/threads/th_closing", &token).leaves(
            "th_audit_threads",
            "/event",
            "closed",
        ),
        Act::post(
            "refusal",
            "/v1/service-accounts",
            json!({"name": "escalate", "scopes": ["admin"]}),
            &made.reader,
        )
        .leaves("th_audit_security", "/kind", "core.security.refusal.v1"),
    ];
    for Act {
        what,
        method,
        path,
        body,
        bearer,
        thread,
        says: (field, value),
    } in acts
    {
        let mut steward = Steward::start(home.path(), &[]);
        let mut request = http
            .request(method, format!("{}{path}", steward.url))
            .bearer_auth(bearer);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let answer = request.send().await.unwrap();
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
