//! The built binary against the scripted steward: the bodies sent, the pair-approval polling,
//! and how answers and errors are printed.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::scripted::{api_error, pair_view, pending_answer, spl_at, FakeSteward};
use crate::common;

#[test]
fn pair_polls_until_the_peer_approves() {
    let steward = FakeSteward::start(|_, index| match index {
        0 => (202, pending_answer(50)),
        1 => (202, pending_answer(50)),
        _ => (200, pair_view("active")),
    });
    let home = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = common::ok(spl_at(
        &steward,
        home.path(),
        &[
            "federation",
            "pair",
            "https://bob.example",
            "--map",
            "research:my-team",
            "--namespace",
            "shared",
        ],
    ));
    assert_eq!(
        out,
        "paired with did:web:bob.example (fed_0123456789abcdef0123), state active"
    );
    // Two polls, each after at least the 200 ms floor on `poll_after_ms`.
    assert!(started.elapsed() >= Duration::from_millis(400));

    let seen = steward.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/v1/federation/pairs")
    );
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer op"));
    assert_eq!(
        seen[0].body,
        json!({"peer_url":"https://bob.example","maps":[{"local":"research","peer":"my-team"}],
               "namespaces":["shared"]})
    );
    for poll in &seen[1..] {
        assert_eq!(
            (poll.method.as_str(), poll.path.as_str()),
            ("POST", "/v1/federation/pairs/fed_0123456789abcdef0123/poll")
        );
    }
}

#[test]
fn pair_that_stays_pending_exits_zero_naming_the_pair() {
    let steward = FakeSteward::start(|_, _| (202, pending_answer(200)));
    let home = tempfile::tempdir().unwrap();
    let output = spl_at(
        &steward,
        home.path(),
        &[
            "federation",
            "pair",
            "https://bob.example",
            "--wait-secs",
            "1",
        ],
    );
    let out = common::ok(output);
    assert_eq!(
        out,
        "still pending after 1s: ask the peer's operator to run \
         `spl federation approve fed_0123456789abcdef0123`"
    );
    let polls = steward.seen().len() - 1;
    assert!((3..=6).contains(&polls), "{polls} polls in 1 s at 200 ms");

    let answer = common::json(spl_at(
        &steward,
        home.path(),
        &[
            "--json",
            "federation",
            "pair",
            "https://bob.example",
            "--wait-secs",
            "0",
        ],
    ));
    assert_eq!(answer, pending_answer(200));
}

#[test]
fn pair_rejected_by_the_peer_fails_with_its_error() {
    let steward = FakeSteward::start(|_, index| match index {
        0 => (202, pending_answer(0)),
        _ => (
            403,
            api_error(
                "PAIR_REJECTED",
                "the peer's operator rejected the pair request",
                "ask them why",
            ),
        ),
    });
    let home = tempfile::tempdir().unwrap();
    let stderr = common::failed(spl_at(
        &steward,
        home.path(),
        &["federation", "pair", "https://bob.example"],
    ));
    assert!(
        stderr.contains("error: PAIR_REJECTED: the peer's operator rejected the pair request"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: ask them why"), "{stderr}");
}

#[test]
fn pair_answered_at_once_needs_no_poll() {
    let steward = FakeSteward::start(|_, _| (200, pair_view("active")));
    let home = tempfile::tempdir().unwrap();
    let view = common::json(spl_at(
        &steward,
        home.path(),
        &["--json", "federation", "pair", "https://bob.example"],
    ));
    assert_eq!(view, pair_view("active"));
    assert_eq!(steward.seen().len(), 1);
}

#[test]
fn pair_management_sends_the_documented_requests() {
    let steward = FakeSteward::start(|seen, _| match seen.path.as_str() {
        "/v1/federation/pairs" => (200, json!({"object":"list","data":[pair_view("active")]})),
        "/v1/federation/pending" => (
            200,
            json!({"object":"list","data":[{"pair_id":"fed_9","peer_did":"did:web:carol.example",
                   "peer_url":"https://carol.example","namespace":"default",
                   "expires_at":"2026-05-02T12:00:00Z"}]}),
        ),
        path if path.starts_with("/v1/federation/pending/") => (200, json!({})),
        path if path.ends_with("/pause") => (200, pair_view("paused")),
        path if path.ends_with("/revoke") => (200, pair_view("revoked")),
        _ => (200, pair_view("active")),
    });
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| common::ok(spl_at(&steward, home.path(), args));

    let listed = run(&["federation", "list"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].starts_with("PAIR "), "{listed}");
    // The pair id is cut to 16 characters.
    assert!(
        lines[1].starts_with("fed_0123456789ab  did:web:bob.example  active"),
        "{listed}"
    );
    assert!(lines[1].ends_with("https://bob.example"), "{listed}");

    let shown = run(&["federation", "show", "did:web:bob.example"]);
    assert!(shown.contains("peer_did  did:web:bob.example"), "{shown}");
    assert_eq!(
        run(&["federation", "pause", "fed_1"]),
        "paused pair fed_0123456789abcdef0123 with did:web:bob.example, state paused"
    );
    run(&["federation", "resume", "fed_1"]);
    run(&["federation", "revoke", "fed_1"]);
    run(&["federation", "revoke", "fed_1", "--reason", "lost laptop"]);
    let pending = run(&["federation", "pending"]);
    assert!(
        pending.contains("fed_9  did:web:carol.example"),
        "{pending}"
    );
    assert_eq!(
        run(&["federation", "approve", "fed_9"]),
        "approved pair request fed_9"
    );
    assert_eq!(
        run(&["federation", "reject", "fed_9", "--reason", "who?"]),
        "rejected pair request fed_9"
    );

    let requests: Vec<(String, String, Value)> = steward
        .seen()
        .into_iter()
        .map(|s| (s.method, s.path, s.body))
        .collect();
    let expected = [
        ("GET", "/v1/federation/pairs", Value::Null),
        (
            "GET",
            "/v1/federation/pairs/did%3Aweb%3Abob.example",
            Value::Null,
        ),
        ("POST", "/v1/federation/pairs/fed_1/pause", json!({})),
        ("POST", "/v1/federation/pairs/fed_1/resume", json!({})),
        (
            "POST",
            "/v1/federation/pairs/fed_1/revoke",
            json!({"reason":"operator"}),
        ),
        (
            "POST",
            "/v1/federation/pairs/fed_1/revoke",
            json!({"reason":"lost laptop"}),
        ),
        ("GET", "/v1/federation/pending", Value::Null),
        ("POST", "/v1/federation/pending/fed_9/approve", json!({})),
        (
            "POST",
            "/v1/federation/pending/fed_9/reject",
            json!({"reason":"who?"}),
        ),
    ];
    let expected: Vec<(String, String, Value)> = expected
        .into_iter()
        .map(|(m, p, b)| (m.to_owned(), p.to_owned(), b))
        .collect();
    assert_eq!(requests, expected);
}

#[test]
fn sync_pulls_once_and_prints_errors_with_their_hint() {
    let steward = FakeSteward::start(|seen, _| {
        if seen.body["peer"] == "did:web:stranger.example" {
            (
                404,
                api_error(
                    "unpaired_peer",
                    "no pair with did:web:stranger.example",
                    "pair first: spl federation pair <url>",
                ),
            )
        } else {
            (
                200,
                json!({"object":"sync_result","thread":"th_x","pulled":3,"cursor":"c1"}),
            )
        }
    });
    let home = tempfile::tempdir().unwrap();
    let out = common::ok(spl_at(
        &steward,
        home.path(),
        &["sync", "th_x", "from", "did:web:bob.example"],
    ));
    assert_eq!(out, "pulled 3 records of th_x from did:web:bob.example");
    let answer = common::json(spl_at(
        &steward,
        home.path(),
        &[
            "--json",
            "sync",
            "th_x",
            "from",
            "https://bob.example",
            "--peer-token",
            "t",
        ],
    ));
    assert_eq!(answer["pulled"], 3);
    assert_eq!(answer["cursor"], "c1");

    let stderr = common::failed(spl_at(
        &steward,
        home.path(),
        &["sync", "th_x", "from", "did:web:stranger.example"],
    ));
    assert!(
        stderr.contains("error: unpaired_peer: no pair with did:web:stranger.example"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: pair first: spl federation pair <url>"),
        "{stderr}"
    );

    let seen = steward.seen();
    assert!(seen
        .iter()
        .all(|s| s.method == "POST" && s.path == "/v1/sync/pull"));
    assert_eq!(
        seen[0].body,
        json!({"thread":"th_x","peer":"did:web:bob.example"})
    );
    assert_eq!(
        seen[1].body,
        json!({"thread":"th_x","peer":"https://bob.example","peer_token":"t"})
    );
}

#[test]
fn consent_commands_send_the_documented_requests() {
    let steward = FakeSteward::start(|seen, _| match seen.method.as_str() {
        "POST" => (
            200,
            json!({"object":"consent_grant","grant_id":"cg_1","active":true}),
        ),
        "DELETE" => (
            200,
            json!({"object":"consent_grant","grant_id":"cg_1","active":false}),
        ),
        _ => (
            200,
            json!({"object":"list","data":[{"grant_id":"cg_1","source_namespace":"research",
                   "target_namespace":"my-team","hash_levels":["L1"],"peer_did":null,
                   "active":true}]}),
        ),
    });
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| common::ok(spl_at(&steward, home.path(), args));

    assert_eq!(
        run(&[
            "consent",
            "grant",
            "--to-namespace",
            "my-team",
            "--from-namespace",
            "research",
            "--hash-levels",
            "L1",
            "--threads",
            "th_a",
        ]),
        "granted cg_1: research → my-team at L1"
    );
    run(&["consent", "grant", "--to-namespace", "my-team"]);
    assert_eq!(
        run(&["consent", "revoke", "cg_1", "--reason", "no longer needed"]),
        "revoked consent grant cg_1"
    );
    let listed = run(&["consent", "list", "--namespace", "research"]);
    assert!(
        listed
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("cg_1   research → my-team  L1"),
        "{listed}"
    );

    let seen = steward.seen();
    assert_eq!(
        seen[0].body,
        json!({"source_namespace":"research","target_namespace":"my-team",
               "hash_levels":["L1"],"threads":["th_a"]})
    );
    assert_eq!(
        seen[1].body,
        json!({"source_namespace":"default","target_namespace":"my-team",
               "hash_levels":["L0","L1","L2","L3"]})
    );
    assert_eq!(
        (seen[2].method.as_str(), seen[2].path.as_str()),
        (
            "DELETE",
            "/v1/consent/grants/cg_1?reason=no%20longer%20needed"
        )
    );
    assert_eq!(
        (seen[3].method.as_str(), seen[3].path.as_str()),
        ("GET", "/v1/consent/grants?namespace=research")
    );
}

#[test]
fn fleet_sync_commands_send_the_documented_requests() {
    let steward = FakeSteward::start(|seen, _| match (seen.method.as_str(), seen.path.as_str()) {
        ("POST", "/v1/sync/pairs") => (
            200,
            json!({"object":"sync_pair","pair_id":"sp_1","state":"starting",
                   "warning":"this steward listens on 127.0.0.1 only; the peer cannot reach it"}),
        ),
        ("GET", "/v1/sync/pairs") => (
            200,
            json!({"object":"list","data":[{"pair_id":"sp_1","state":"running",
                   "thread_id":"th_notes","peer_did":"did:web:bob.example",
                   "peer_url":"https://bob.example"}]}),
        ),
        ("DELETE", _) => (200, Value::Null),
        _ => (
            200,
            json!({"object":"sync_pair","pair_id":"sp_1","state":"running"}),
        ),
    });
    let home = tempfile::tempdir().unwrap();
    let output = spl_at(
        &steward,
        home.path(),
        &[
            "fleet",
            "sync",
            "add",
            "--peer-url",
            "https://bob.example",
            "did:web:bob.example",
            "th_notes",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        common::ok(output),
        "sync pair sp_1: pulling th_notes from did:web:bob.example, state starting"
    );
    assert!(
        stderr.contains("warning: this steward listens on 127.0.0.1 only"),
        "{stderr}"
    );

    let run = |args: &[&str]| common::ok(spl_at(&steward, home.path(), args));
    assert!(run(&["fleet", "sync", "list"]).contains("sp_1  running  th_notes"));
    assert!(run(&["fleet", "sync", "status", "sp_1"]).contains("state    running"));
    assert_eq!(
        run(&["fleet", "sync", "kick", "sp_1"]),
        "kicked sync pair sp_1, state running"
    );
    run(&["fleet", "sync", "pause", "sp_1"]);
    run(&["fleet", "sync", "resume", "sp_1"]);
    assert_eq!(
        run(&["fleet", "sync", "remove", "sp_1"]),
        "removed sync pair sp_1"
    );
    let removed = common::json(spl_at(
        &steward,
        home.path(),
        &["--json", "fleet", "sync", "remove", "sp_1"],
    ));
    assert_eq!(removed, json!({"pair_id":"sp_1","removed":true}));

    let requests: Vec<(String, String)> = steward
        .seen()
        .into_iter()
        .map(|s| (s.method, s.path))
        .collect();
    let expected = [
        ("POST", "/v1/sync/pairs"),
        ("GET", "/v1/sync/pairs"),
        ("GET", "/v1/sync/pairs/sp_1"),
        ("POST", "/v1/sync/pairs/sp_1/kick"),
        ("POST", "/v1/sync/pairs/sp_1/pause"),
        ("POST", "/v1/sync/pairs/sp_1/resume"),
        ("DELETE", "/v1/sync/pairs/sp_1"),
        ("DELETE", "/v1/sync/pairs/sp_1"),
    ];
    assert_eq!(
        requests,
        expected.map(|(m, p)| (m.to_owned(), p.to_owned()))
    );
    assert_eq!(
        steward.seen()[0].body,
        json!({"peer_did":"did:web:bob.example","thread_id":"th_notes",
               "peer_url":"https://bob.example"})
    );
}

#[test]
fn thread_allow_and_thread_rule_send_a_pair_config() {
    let steward = FakeSteward::start(|_, index| {
        let mut view = pair_view("active");
        if index == 0 {
            view["thread_allow"] = json!(["th_a", "th_b"]);
        } else {
            view["thread_rule"] = json!("record.body.n > 1");
        }
        (200, view)
    });
    let home = tempfile::tempdir().unwrap();
    let out = common::ok(spl_at(
        &steward,
        home.path(),
        &[
            "federation",
            "thread-allow",
            "did:web:bob.example",
            "--thread",
            "th_a",
            "--thread",
            "th_b",
        ],
    ));
    assert!(out.contains("threads      th_a, th_b"), "{out}");
    let out = common::ok(spl_at(
        &steward,
        home.path(),
        &[
            "federation",
            "thread-rule",
            "did:web:bob.example",
            "--expression",
            "record.body.n > 1",
        ],
    ));
    assert!(out.contains("thread rule  record.body.n > 1"), "{out}");
    common::ok(spl_at(
        &steward,
        home.path(),
        &[
            "federation",
            "thread-allow",
            "did:web:bob.example",
            "--thread",
            "th_a",
            "--remove",
        ],
    ));
    common::ok(spl_at(
        &steward,
        home.path(),
        &[
            "federation",
            "thread-rule",
            "did:web:bob.example",
            "--clear",
        ],
    ));
    let out = common::ok(spl_at(
        &steward,
        home.path(),
        &[
            "federation",
            "set-mode",
            "did:web:bob.example",
            "--mode",
            "continuous",
        ],
    ));
    assert!(out.contains("mode"), "{out}");
    let seen = steward.seen();
    let path = "/v1/federation/pairs/did%3Aweb%3Abob.example/config";
    let bodies: Vec<&Value> = seen.iter().map(|r| &r.body).collect();
    assert!(
        seen.iter().all(|r| r.method == "POST" && r.path == path),
        "{seen:?}"
    );
    assert_eq!(
        bodies,
        [
            &json!({"thread_allow_add": ["th_a", "th_b"]}),
            &json!({"thread_rule": "record.body.n > 1"}),
            &json!({"thread_allow_remove": ["th_a"]}),
            &json!({"thread_rule": null}),
            &json!({"mode": "continuous"}),
        ]
    );
}

#[test]
fn grant_and_revoke_grant_go_through_the_pairs_grant_routes() {
    let grant = |id: &str, target: &str| {
        json!({"object":"consent_grant","kind":"core.consent.v1","op":"grant","grant_id":id,
               "source_namespace":"research","target_namespace":target,"hash_levels":["L1"],
               "peer_did":"did:web:bob.example","threads":"*","active":true})
    };
    let pair_grants = "/v1/federation/pairs/did%3Aweb%3Abob.example/grants";
    let steward =
        FakeSteward::start(
            move |seen, _| match (seen.method.as_str(), seen.path.as_str()) {
                ("POST", path) if path == pair_grants => {
                    let data: Vec<Value> = seen.body["maps"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|target| grant(&format!("cg_{target}"), target))
                        .collect();
                    (201, json!({"object":"list","data":data}))
                }
                ("DELETE", path) if path == format!("{pair_grants}/cg_team") => (
                    200,
                    json!({"object":"consent_grant","grant_id":"cg_team","revoked":true}),
                ),
                _ => (
                    404,
                    api_error("NOT_FOUND", "no grant bound to did:web:bob.example", "none"),
                ),
            },
        );
    let home = tempfile::tempdir().unwrap();
    let out = common::ok(spl_at(
        &steward,
        home.path(),
        &[
            "federation",
            "grant",
            "did:web:bob.example",
            "--namespace",
            "research",
            "--maps",
            "team,lab",
        ],
    ));
    assert!(
        out.contains("granted cg_team: research → team for did:web:bob.example at L1")
            && out.contains("granted cg_lab: research → lab"),
        "{out}"
    );
    let posted: Vec<Value> = steward
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST")
        .map(|s| s.body)
        .collect();
    // One request; the default levels are sent as L1.
    assert_eq!(
        posted,
        [json!({"namespace": "research", "maps": ["team", "lab"], "hash_levels": ["L1"]})]
    );

    common::ok(spl_at(
        &steward,
        home.path(),
        &[
            "federation",
            "revoke-grant",
            "did:web:bob.example",
            "--grant-id",
            "cg_team",
        ],
    ));
    let failed = spl_at(
        &steward,
        home.path(),
        &[
            "federation",
            "revoke-grant",
            "did:web:bob.example",
            "--grant-id",
            "cg_other",
        ],
    );
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("NOT_FOUND"),
        "{failed:?}"
    );
    assert!(!failed.status.success());
    let deletes: Vec<String> = steward
        .seen()
        .into_iter()
        .filter(|s| s.method == "DELETE")
        .map(|s| s.path)
        .collect();
    assert_eq!(
        deletes,
        [
            format!("{pair_grants}/cg_team"),
            format!("{pair_grants}/cg_other")
        ]
    );
}
