//! Federation end to end: two real `spl serve` processes on 127.0.0.1, driven only through the
//! `spl` CLI and plain HTTP. B pairs with A (A auto-approves B's DID), pulls threads from A with
//! `spl sync`, follows new records, honours pause and resume, and survives a kill -9 in the
//! middle of a catch-up without losing or duplicating a record.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Connection;

use crate::common::{
    self, bootstrap_admin, checked_hub_db, eventually, exit_within, ok, run, spl, Steward,
};

/// How long a record committed on A may take to be stored on B while the pair is active.
const ARRIVAL: Duration = Duration::from_secs(15);
/// How long a restarted B may take to finish a catch-up by itself (a debug build, on a machine
/// running other tests) before the test pulls again with `spl sync`.
const RESUME: Duration = Duration::from_secs(25);
/// How long a paused pair must keep a new record away.
const PAUSED_QUIET: Duration = Duration::from_secs(2);

/// A steward's home, identity and admin token, and its running `spl serve`.
pub(crate) struct Node {
    // Dropped first: the steward is killed before its home is removed.
    steward: Option<Steward>,
    home: tempfile::TempDir,
    pub did: String,
    pub token: String,
}

impl Node {
    /// `spl init` (prints the DID) and the bootstrap admin account (prints its token).
    pub(crate) fn init() -> Node {
        let home = tempfile::tempdir().unwrap();
        let did = ok(run(home.path(), &["init"]));
        assert!(did.starts_with("did:key:"), "{did}");
        let token = bootstrap_admin(home.path());
        Node {
            steward: None,
            home,
            did,
            token,
        }
    }

    pub(crate) fn home(&self) -> &Path {
        self.home.path()
    }

    /// `spl serve --port 0 <extra>`; a SIGKILLed predecessor's `steward.json` is cleared first.
    pub(crate) fn serve(&mut self, extra: &[&str]) {
        self.serve_on(0, extra);
    }

    /// [`Node::serve`] on `port` (0: any free one).
    pub(crate) fn serve_on(&mut self, port: u16, extra: &[&str]) {
        assert!(self.steward.is_none(), "already serving");
        let _ = std::fs::remove_file(self.home().join("steward.json"));
        self.steward = Some(Steward::start_on(self.home(), port, extra));
    }

    pub(crate) fn kill_9(&mut self) {
        self.steward.take().expect("serving").kill_9();
    }

    /// `spl stop`, and the steward gone.
    pub(crate) fn stop(&mut self) {
        ok(run(self.home(), &["stop"]));
        self.steward.take().expect("serving").wait_for_exit();
    }

    /// A node for a home made elsewhere (an import), with its admin token.
    pub(crate) fn adopt(home: tempfile::TempDir, token: String) -> Node {
        let did = ok(run(home.path(), &["init"]));
        Node {
            steward: None,
            home,
            did,
            token,
        }
    }

    pub(crate) fn url(&self) -> String {
        self.steward.as_ref().expect("serving").url.clone()
    }

    /// `spl --endpoint <url> --token <admin> --json <args>`, which must succeed.
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        common::json(self.output(args))
    }

    pub(crate) fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("spl runs")
    }

    pub(crate) fn command(&self, args: &[&str]) -> std::process::Command {
        let url = self.url();
        let mut cmd = spl(self.home());
        cmd.args(["--endpoint", &url, "--token", &self.token, "--json"])
            .args(args);
        cmd
    }

    /// Every record of `thread`, in order, through `spl records list --all`.
    pub(crate) fn records(&self, thread: &str) -> Vec<Value> {
        let listed = self.json(&[
            "records", "list", "--thread", thread, "--limit", "1000", "--all",
        ]);
        assert_eq!(listed["has_more"], false, "{listed}");
        listed["data"].as_array().unwrap().clone()
    }

    /// `spl emit --act <act> --thread <thread> --body <body>` as the home's DID; the record.
    pub(crate) fn emit(&self, act: &str, thread: &str, body: Value) -> Value {
        let record = self.json(&[
            "emit",
            "--act",
            act,
            "--thread",
            thread,
            "--body",
            &body.to_string(),
        ]);
        assert_eq!(record["signer"], self.did.as_str(), "{record}");
        record
    }
}

/// A and B serving, B's DID on A's auto-approve list, B paired with A through the CLI.
pub(crate) fn paired() -> (Node, Node, String) {
    let mut a = Node::init();
    let mut b = Node::init();
    a.serve(&["--auto-approve-did", &b.did]);
    b.serve(&[]);

    let pair = b.json(&["federation", "pair", &a.url()]);
    assert_eq!(pair["state"], "active", "{pair}");
    assert_eq!(pair["peer_did"], a.did.as_str(), "{pair}");
    assert_eq!(pair["role"], "initiator", "{pair}");
    let pair_id = pair["pair_id"].as_str().unwrap().to_owned();
    assert!(pair_id.starts_with("fed_"), "{pair_id}");
    (a, b, pair_id)
}

/// The one pair `spl federation list` shows on `node`.
fn only_pair(node: &Node) -> Value {
    let listed = node.json(&["federation", "list"]);
    let pairs = listed["data"].as_array().unwrap();
    assert_eq!(pairs.len(), 1, "{listed}");
    pairs[0].clone()
}

pub(crate) fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts that B's copy of each of A's `records` is the same record, signed by A.
fn assert_same_records(a: &Node, on_a: &[Value], on_b: &[Value]) {
    for record in on_a {
        let id = &record["id"];
        let copy = on_b
            .iter()
            .find(|r| &r["id"] == id)
            .unwrap_or_else(|| panic!("{id} is not on B"));
        for field in [
            "act",
            "actor",
            "thread",
            "clock",
            "body",
            "parents",
            "data_type",
            "sig",
        ] {
            assert_eq!(copy[field], record[field], "{field} of {id}");
        }
        assert!(
            copy["sig"].as_str().is_some_and(|s| s.len() == 128),
            "{copy}"
        );
        assert_eq!(copy["signer"], a.did.as_str(), "{copy}");
    }
}

#[test]
fn two_stewards_pair_and_sync_through_the_cli() {
    let (a, b, pair_id) = paired();

    // Both sides list the same pair, active, naming each other.
    let on_b = only_pair(&b);
    assert_eq!(on_b["pair_id"], pair_id.as_str());
    assert_eq!(on_b["state"], "active", "{on_b}");
    assert_eq!(on_b["peer_did"], a.did.as_str());
    let on_a = only_pair(&a);
    assert_eq!(on_a["pair_id"], pair_id.as_str());
    assert_eq!(on_a["state"], "active", "{on_a}");
    assert_eq!(on_a["peer_did"], b.did.as_str());
    assert_eq!(on_a["role"], "responder", "{on_a}");

    // A record written before the sync is pulled by it; the rest arrive through the pull job
    // the sync leaves running.
    let mut written = vec![a.emit("DO", "th_x", json!({"n": 0}))];
    let synced = b.json(&["sync", "th_x", "from", &a.did]);
    assert_eq!(synced["object"], "sync_result", "{synced}");
    assert_eq!(synced["pulled"], 1, "{synced}");
    assert_eq!(synced["duplicates"], 0, "{synced}");
    assert_eq!(synced["quarantined"], 0, "{synced}");
    assert_eq!(ids(&b.records("th_x")), ids(&written));

    written.push(a.json(&["intend", "--thread", "th_x", "ship the sync"]));
    for n in 1..=4 {
        written.push(a.emit("DO", "th_x", json!({"n": n})));
    }
    let written_ids: HashSet<String> = ids(&written).into_iter().collect();
    assert_eq!(written_ids.len(), written.len());
    let arrived = eventually(ARRIVAL, || {
        let held: HashSet<String> = ids(&b.records("th_x")).into_iter().collect();
        written_ids.is_subset(&held)
    });
    assert!(arrived, "A's records did not reach B within {ARRIVAL:?}");
    let on_a = a.records("th_x");
    let on_b = b.records("th_x");
    assert_eq!(ids(&on_a).len(), written.len());
    assert_eq!(
        ids(&on_b).into_iter().collect::<HashSet<_>>(),
        written_ids,
        "B holds exactly A's records"
    );
    assert_eq!(on_b.len(), written.len(), "no record is listed twice on B");
    assert_same_records(&a, &on_a, &on_b);

    // Paused, B takes nothing more from A.
    let paused = b.json(&["federation", "pause", &a.did]);
    assert_eq!(paused["state"], "paused", "{paused}");
    assert_eq!(only_pair(&b)["state"], "paused");
    let late = a.emit("DO", "th_x", json!({"n": "late"}));
    let late_id = late["id"].as_str().unwrap().to_owned();
    let leaked = eventually(PAUSED_QUIET, || ids(&b.records("th_x")).contains(&late_id));
    assert!(!leaked, "a record reached B while the pair was paused");

    // Resumed, it arrives.
    let resumed = b.json(&["federation", "resume", &a.did]);
    assert_eq!(resumed["state"], "active", "{resumed}");
    assert_eq!(only_pair(&b)["state"], "active");
    let arrived = eventually(ARRIVAL, || ids(&b.records("th_x")).contains(&late_id));
    assert!(
        arrived,
        "the record did not reach B within {ARRIVAL:?} of resume"
    );
    let on_b = b.records("th_x");
    assert_eq!(
        on_b.len(),
        written.len() + 1,
        "no record is listed twice on B"
    );
    assert_same_records(&a, &[late], &on_b);

    // The trace of the pair, by the peer's DID: the job's pulls, newest first.
    let trace = b.json(&["fleet", "sync", "trace", &a.did]);
    assert_eq!(trace["pair_id"], pair_id.as_str(), "{trace}");
    let events = trace["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["thread"] == "th_x" && e["outcome"] == "pulled"),
        "{trace}"
    );
    let url = b.url();
    let printed = spl(b.home())
        .args(["--endpoint", &url, "--token", &b.token])
        .args(["fleet", "sync", "trace", &pair_id, "--limit", "5"])
        .output()
        .expect("spl runs");
    let text = ok(printed);
    assert!(text.contains("OUTCOME") && text.contains("th_x"), "{text}");
}

/// Records A holds on the big thread.
const BIG: usize = 3000;
/// The most records `POST /v1/records/batch` takes at once.
const BATCH: usize = 1000;

/// Writes `BIG` records on `thread` on A through `POST /v1/records/batch`; their ids.
async fn seed(http: &reqwest::Client, a: &Node, thread: &str) -> Vec<String> {
    let mut ids = Vec::with_capacity(BIG);
    for start in (0..BIG).step_by(BATCH) {
        let records: Vec<Value> = (start..start + BATCH)
            .map(|n| {
                json!({"act": "DO", "actor": "did:example:t", "thread": thread, "clock": n,
                       "body": {"n": n}})
            })
            .collect();
        let resp = http
            .post(format!("{}/v1/records/batch", a.url()))
            .bearer_auth(&a.token)
            .json(&json!({ "records": records }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let answer: Value = resp.json().await.unwrap();
        for item in answer["data"].as_array().unwrap() {
            assert_eq!(item["status"], 201, "{item}");
            ids.push(item["record"]["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(ids.len(), BIG);
    ids
}

/// Whether B's steward answers with at least one record of `thread` (any failure: no).
async fn holds_some(http: &reqwest::Client, url: &str, token: &str, thread: &str) -> bool {
    let resp = http
        .get(format!("{url}/v1/threads/{thread}/records?limit=1"))
        .bearer_auth(token)
        .send()
        .await;
    let Ok(resp) = resp else { return false };
    if !resp.status().is_success() {
        return false;
    }
    let page: Value = resp.json().await.unwrap_or_default();
    page["data"].as_array().is_some_and(|d| !d.is_empty())
}

/// Every id of `thread` a steward serves, paging `GET /v1/threads/{thread}/records`.
async fn served_ids(http: &reqwest::Client, url: &str, token: &str, thread: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "1000".to_owned())];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let resp = http
            .get(format!("{url}/v1/threads/{thread}/records"))
            .query(&query)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let page: Value = resp.json().await.unwrap();
        ids.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) if page["has_more"] == true => cursor = Some(next.to_owned()),
            _ => return ids,
        }
    }
}

/// What B's `hub.db` says of `thread` with no steward running, once it passes
/// `PRAGMA integrity_check` (`when` says which check failed): (rows, distinct ids).
async fn inspect_store(home: &Path, thread: &str, when: &str) -> (i64, i64) {
    let mut conn = checked_hub_db(home, when).await;
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT id) FROM records WHERE thread = ?")
            .bind(thread)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    conn.close().await.unwrap();
    (rows, distinct)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_puller_killed_mid_catch_up_loses_and_duplicates_nothing() {
    const THREAD: &str = "th_big";
    let (a, mut b, _) = paired();
    let http = reqwest::Client::new();

    let seeded = seed(&http, &a, THREAD).await;
    let on_a = ids(&a.records(THREAD));
    assert_eq!(on_a.len(), BIG);
    let a_ids: HashSet<String> = on_a.into_iter().collect();
    assert_eq!(a_ids, seeded.iter().cloned().collect::<HashSet<_>>());

    // B catches up in the background and is killed once it has stored a page.
    let mut sync = b
        .command(&["sync", THREAD, "from", &a.did])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spl sync starts");
    let (b_url, b_token) = (b.url(), b.token.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !holds_some(&http, &b_url, &b_token, THREAD).await {
        assert!(Instant::now() < deadline, "B stored nothing of {THREAD}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b.kill_9();
    if exit_within(&mut sync, Duration::from_secs(10)).is_none() {
        panic!("the background `spl sync` did not end after its steward died");
    }

    let (rows, distinct) = inspect_store(b.home(), THREAD, "after the kill").await;
    assert_eq!(rows, distinct, "a record is stored twice after the kill");
    assert!(
        rows > 0 && (rows as usize) < BIG,
        "B was not killed mid catch-up: it held {rows} of {BIG}"
    );

    // Restarted on the same home, B resumes its pull job from its cursor row.
    let restarted = Instant::now();
    b.serve(&[]);
    let b_url = b.url();
    let mut resumed_alone = false;
    let deadline = Instant::now() + RESUME;
    while Instant::now() < deadline {
        if served_ids(&http, &b_url, &b.token, THREAD).await.len() >= BIG {
            resumed_alone = true;
            eprintln!(
                "B held {rows} of {BIG} records at the kill and finished the catch-up by itself \
                 {:?} after its restart",
                restarted.elapsed()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !resumed_alone {
        eprintln!(
            "B did not finish the catch-up by itself within {RESUME:?} of its restart \
             (it held {rows} records at the kill); running `spl sync` again"
        );
        let synced = b.json(&["sync", THREAD, "from", &a.did]);
        assert_eq!(synced["quarantined"], 0, "{synced}");
    }

    // Exactly A's records: the same set, each once.
    let on_b = ids(&b.records(THREAD));
    let b_ids: HashSet<String> = on_b.iter().cloned().collect();
    assert_eq!(b_ids.len(), on_b.len(), "B lists a record twice");
    assert_eq!(
        on_b.len(),
        BIG,
        "B holds {} of A's {BIG} records",
        on_b.len()
    );
    assert_eq!(b_ids, a_ids, "B holds other records than A");
    assert_eq!(served_ids(&http, &b_url, &b.token, THREAD).await.len(), BIG);
    let sample = ok(b.output(&["records", "get", &seeded[BIG / 2]]));
    let sample: Value = serde_json::from_str(&sample).unwrap();
    assert_eq!(sample["signer"], a.did.as_str(), "{sample}");

    b.kill_9();
    let (rows, distinct) = inspect_store(b.home(), THREAD, "at the end").await;
    assert_eq!(
        (rows, distinct),
        (BIG as i64, BIG as i64),
        "B's store holds each of A's records once"
    );
}

/// `spl federation invite` takes the live pair with the peer's URL, grants a namespace at L1
/// into the peer's default namespace and serves a thread whole; run again, it changes nothing.
#[test]
fn an_invite_shares_over_the_live_pair_and_is_idempotent() {
    let (a, b, pair_id) = paired();
    b.json(&["namespace", "create", "research"]);
    let args = [
        "federation",
        "invite",
        &a.url(),
        "--grant-namespace",
        "research",
        "--grant-thread",
        "th_invited",
    ];
    let first = b.json(&args);
    assert_eq!(first["object"], "federation_invite", "{first}");
    assert_eq!(first["pair"]["pair_id"], pair_id.as_str(), "{first}");
    let granted = first["granted"].as_array().unwrap();
    assert_eq!(granted.len(), 1, "{first}");
    assert_eq!(granted[0]["source_namespace"], "research");
    assert_eq!(granted[0]["target_namespace"], "default");
    assert_eq!(granted[0]["hash_levels"], json!(["L1"]));
    assert_eq!(granted[0]["peer_did"], a.did.as_str());
    assert_eq!(first["thread_allow"], json!(["th_invited"]));

    let again = b.json(&args);
    assert_eq!(again["granted"], json!([]), "{again}");
    assert_eq!(again["thread_allow"], json!(["th_invited"]));
    let grants = b.json(&["consent", "list"]);
    assert_eq!(grants["data"].as_array().unwrap().len(), 1, "{grants}");

    // A pair named by an id that is no pair, without a URL to pair with: refused.
    let refused = b.output(&[
        "federation",
        "invite",
        "fed_nothing",
        "--grant-thread",
        "th_x",
    ]);
    assert!(!refused.status.success());
}

/// A record the puller held back (a namespace it never registered) is what `spl fleet sync
/// quarantine` shows: as JSON with its pair, code and id, as a table, narrowed to the pair by
/// its id or the peer's DID; a limit past 500 is refused before any request.
#[test]
fn spl_fleet_sync_quarantine_shows_what_a_pull_held_back() {
    let (a, b, pair_id) = paired();
    a.json(&["namespace", "create", "research"]);
    a.json(&[
        "consent",
        "grant",
        "--from-namespace",
        "research",
        "--to-namespace",
        "default",
        "--hash-levels",
        "L0,L1",
    ]);
    let record = a.emit("KNOW", "th_held", json!({"namespace": "research", "n": 1}));
    let pulled = b.json(&["sync", "th_held", "from", &a.did]);
    assert_eq!(pulled["quarantined"], 1, "{pulled}");

    for pair in [&pair_id, &a.did] {
        let listed = b.json(&[
            "fleet",
            "sync",
            "quarantine",
            "--pair",
            pair,
            "--limit",
            "10",
        ]);
        assert_eq!(listed["object"], "list", "{listed}");
        assert_eq!(listed["has_more"], false, "{listed}");
        let held = listed["data"].as_array().unwrap();
        assert_eq!(held.len(), 1, "{listed}");
        assert_eq!(held[0]["id"], record["id"], "{listed}");
        assert_eq!(held[0]["source"], pair_id.as_str(), "{listed}");
        assert_eq!(held[0]["code"], "NAMESPACE_REJECTED", "{listed}");
        assert_eq!(held[0]["thread"], "th_held", "{listed}");
    }
    assert!(b.records("th_held").is_empty());

    let url = b.url();
    let table = ok(spl(b.home())
        .args(["--endpoint", &url, "--token", &b.token])
        .args(["fleet", "sync", "quarantine"])
        .output()
        .unwrap());
    assert!(table.contains("NAMESPACE_REJECTED"), "{table}");
    assert!(table.contains(record["id"].as_str().unwrap()), "{table}");
    assert!(table.contains(&pair_id), "{table}");
    // The steward it came from holds nothing back.
    let none = ok(spl(a.home())
        .args(["--endpoint", &a.url(), "--token", &a.token])
        .args(["fleet", "sync", "quarantine"])
        .output()
        .unwrap());
    assert_eq!(none, "nothing is held in quarantine");

    for limit in ["0", "501", "100000"] {
        let refused = b.output(&["fleet", "sync", "quarantine", "--limit", limit]);
        assert!(!refused.status.success(), "--limit {limit}");
    }
}

/// Two-sided L0 consent through the CLI (federation-protocol.md §6.4): A serves with
/// `--l0-requires-acceptance`, so its L0 grant reaches B as stubs until B runs `spl consent
/// accept`; `spl consent public` shares a thread as stubs into any namespace.
#[test]
fn l0_reaches_a_puller_only_once_it_accepts_and_public_grants_share_a_thread() {
    let mut a = Node::init();
    let mut b = Node::init();
    a.serve(&["--auto-approve-did", &b.did, "--l0-requires-acceptance"]);
    b.serve(&[]);
    let pair = b.json(&["federation", "pair", &a.url()]);
    assert_eq!(pair["state"], "active", "{pair}");
    for node in [&a, &b] {
        node.json(&["namespace", "create", "research"]);
    }
    let record_on_b = |id: &str| -> Option<Value> {
        let out = b.output(&["records", "get", id]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    };
    let arrived = |id: &str| {
        let mut got = None;
        assert!(
            eventually(ARRIVAL, || {
                got = record_on_b(id);
                got.is_some()
            }),
            "record {id} never reached B"
        );
        got.unwrap()
    };

    let public = a.json(&["consent", "public", "th_cli_public", "--level", "L2"]);
    assert_eq!(public["public"], true, "{public}");
    assert_eq!(public["granted_level"], "L2", "{public}");
    let shared = a.emit("DO", "th_cli_public", json!({"namespace": "research"}));
    b.json(&["sync", "th_cli_public", "from", &a.did]);
    let stub = arrived(shared["id"].as_str().unwrap());
    assert_eq!(stub["redacted"], true, "{stub}");
    assert_eq!(stub["hash_levels"].as_object().unwrap().len(), 1, "{stub}");

    a.json(&[
        "consent",
        "grant",
        "--to-namespace",
        "default",
        "--from-namespace",
        "research",
        "--hash-levels",
        "L0",
        "--peer",
        &b.did,
    ]);
    let thread = "th_cli_l0";
    let first = a.emit("DO", thread, json!({"namespace": "research", "n": 1}));
    b.json(&["sync", thread, "from", &a.did]);
    assert_eq!(arrived(first["id"].as_str().unwrap())["redacted"], true);

    let accepted = b.json(&[
        "consent",
        "accept",
        "--peer",
        &a.did,
        "--from-namespace",
        "research",
    ]);
    assert_eq!(accepted["op"], "accept", "{accepted}");
    assert_eq!(accepted["target_namespace"], "default", "{accepted}");
    let listed = b.json(&["consent", "list"]);
    assert_eq!(listed["data"][0]["op"], "accept", "{listed}");
    // The longpoll B's job holds was asked before the acceptance: a record ends it.
    let marker = a.emit("DO", thread, json!({"marker": true}));
    arrived(marker["id"].as_str().unwrap());
    let second = a.emit("DO", thread, json!({"namespace": "research", "n": 2}));
    let whole = arrived(second["id"].as_str().unwrap());
    assert_eq!(whole["sig"], second["sig"], "{whole}");
    assert_eq!(whole["body"], second["body"], "{whole}");

    let revoked = b.json(&["consent", "revoke", accepted["grant_id"].as_str().unwrap()]);
    assert_eq!(revoked["revoked"], true, "{revoked}");
}
