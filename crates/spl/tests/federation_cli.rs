//! The federation, consent, one-shot sync and fleet sync commands.
//!
//! Two layers, neither needing the steward's federation routes:
//! - the grammar, parsed in-process (`spl` is a binary crate, so its `cli` module is compiled in
//!   here directly);
//! - the built binary against a scripted fake steward that records each request, which checks
//!   the bodies sent, the pair-approval polling and how answers and errors are printed.

// The grammar module is shared with the binary; this test reads only part of it.
#[allow(dead_code)]
#[path = "../src/cli.rs"]
mod cli;
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use cli::{
    Cli, Command, ConsentCommand, FederationCommand, FleetCommand, FleetSyncCommand, NamespaceMap,
};
use serde_json::{json, Value};

fn parse(args: &[&str]) -> Command {
    match Cli::try_parse_from(args) {
        Ok(cli) => cli.command,
        Err(err) => panic!("{args:?} should parse: {err}"),
    }
}

fn usage_error(args: &[&str]) -> ErrorKind {
    let err = Cli::try_parse_from(args).expect_err("should be refused");
    assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
    err.kind()
}

// ---- grammar ----------------------------------------------------------------------------------

#[test]
fn sync_takes_a_thread_the_word_from_and_a_peer() {
    let Command::Sync(args) = parse(&[
        "spl",
        "sync",
        "th_x",
        "from",
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
        "--peer-token",
        "t",
    ]) else {
        panic!("parsed into the wrong command");
    };
    assert_eq!(args.thread, "th_x");
    assert_eq!(
        args.peer,
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
    );
    assert_eq!(args.peer_token.as_deref(), Some("t"));

    let Command::Sync(args) = parse(&["spl", "sync", "th_y", "from", "https://bob.example"]) else {
        panic!("parsed into the wrong command");
    };
    assert_eq!(args.peer, "https://bob.example");
    assert_eq!(args.peer_token, None);
}

#[test]
fn sync_refuses_anything_but_from() {
    assert_eq!(
        usage_error(&["spl", "sync", "th_x", "to", "peer"]),
        ErrorKind::InvalidValue
    );
    assert_eq!(
        usage_error(&["spl", "sync", "th_x", "peer"]),
        ErrorKind::InvalidValue
    );
    assert_eq!(
        usage_error(&["spl", "sync", "th_x", "from"]),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        usage_error(&["spl", "sync", "", "from", "peer"]),
        ErrorKind::InvalidValue
    );
}

#[test]
fn pair_collects_maps_and_namespaces_and_waits_60s_by_default() {
    let Command::Federation(FederationCommand::Pair(args)) = parse(&[
        "spl",
        "federation",
        "pair",
        "https://bob.example",
        "--map",
        "research:my-team",
        "--namespace",
        "shared",
        "--map",
        "notes:bob-notes",
        "--namespace",
        "ops",
    ]) else {
        panic!("parsed into the wrong command");
    };
    assert_eq!(args.peer_url, "https://bob.example");
    assert_eq!(
        args.maps,
        [
            NamespaceMap {
                local: "research".into(),
                peer: "my-team".into()
            },
            NamespaceMap {
                local: "notes".into(),
                peer: "bob-notes".into()
            },
        ]
    );
    assert_eq!(args.namespaces, ["shared", "ops"]);
    assert_eq!(args.wait_secs, 60);

    let Command::Federation(FederationCommand::Pair(args)) = parse(&[
        "spl",
        "federation",
        "pair",
        "https://bob.example",
        "--wait-secs",
        "5",
    ]) else {
        panic!("parsed into the wrong command");
    };
    assert_eq!(args.wait_secs, 5);
    assert!(args.maps.is_empty() && args.namespaces.is_empty());
}

#[test]
fn wait_secs_is_hidden_from_help() {
    let mut command = Cli::command();
    let pair = command
        .find_subcommand_mut("federation")
        .and_then(|f| f.find_subcommand_mut("pair"))
        .expect("federation pair exists");
    let help = pair.render_long_help().to_string();
    assert!(help.contains("--map <LOCAL:PEER>"), "{help}");
    assert!(!help.contains("wait-secs"), "{help}");
}

#[test]
fn maps_must_be_local_colon_peer() {
    for bad in ["research", ":my-team", "research:", "a:b:c"] {
        assert_eq!(
            usage_error(&["spl", "federation", "pair", "https://b", "--map", bad]),
            ErrorKind::ValueValidation,
            "{bad}"
        );
    }
    assert_eq!(
        usage_error(&["spl", "federation", "pair"]),
        ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn pair_management_commands_take_a_peer_and_reasons() {
    let Command::Federation(FederationCommand::Revoke { peer, reason }) =
        parse(&["spl", "federation", "revoke", "did:web:bob.example"])
    else {
        panic!("parsed into the wrong command");
    };
    assert_eq!(peer, "did:web:bob.example");
    assert_eq!(reason, "operator");

    let Command::Federation(FederationCommand::Revoke { reason, .. }) = parse(&[
        "spl",
        "federation",
        "revoke",
        "fed_1",
        "--reason",
        "laptop lost",
    ]) else {
        panic!("parsed into the wrong command");
    };
    assert_eq!(reason, "laptop lost");

    let Command::Federation(FederationCommand::Reject { pair_id, reason }) =
        parse(&["spl", "federation", "reject", "fed_2"])
    else {
        panic!("parsed into the wrong command");
    };
    assert_eq!((pair_id.as_str(), reason), ("fed_2", None));

    assert!(matches!(
        parse(&["spl", "federation", "pause", "fed_1"]),
        Command::Federation(FederationCommand::Pause { peer }) if peer == "fed_1"
    ));
    assert!(matches!(
        parse(&["spl", "federation", "resume", "fed_1"]),
        Command::Federation(FederationCommand::Resume { peer }) if peer == "fed_1"
    ));
    assert!(matches!(
        parse(&["spl", "federation", "approve", "fed_3"]),
        Command::Federation(FederationCommand::Approve { pair_id }) if pair_id == "fed_3"
    ));
    assert!(matches!(
        parse(&["spl", "--json", "federation", "list"]),
        Command::Federation(FederationCommand::List)
    ));
    assert!(matches!(
        parse(&["spl", "federation", "pending", "--json"]),
        Command::Federation(FederationCommand::Pending)
    ));
    for missing in ["show", "pause", "resume", "revoke", "approve", "reject"] {
        assert_eq!(
            usage_error(&["spl", "federation", missing]),
            ErrorKind::MissingRequiredArgument,
            "{missing}"
        );
    }
}

#[test]
fn consent_grant_defaults_and_validates_levels() {
    let Command::Consent(ConsentCommand::Grant(args)) =
        parse(&["spl", "consent", "grant", "--to-namespace", "my-team"])
    else {
        panic!("parsed into the wrong command");
    };
    assert_eq!(args.to_namespace, "my-team");
    assert_eq!(args.from_namespace, "default");
    assert_eq!(args.hash_levels, ["L0", "L1", "L2", "L3"]);
    assert_eq!(args.peer, None);
    assert!(args.threads.is_empty());
    assert_eq!((args.purpose, args.expires), (None, None));

    let Command::Consent(ConsentCommand::Grant(args)) = parse(&[
        "spl",
        "consent",
        "grant",
        "--to-namespace",
        "my-team",
        "--from-namespace",
        "research",
        "--hash-levels",
        "l1,L3",
        "--peer",
        "did:web:bob.example",
        "--threads",
        "th_a,th_b",
        "--purpose",
        "weekly telemetry",
        "--expires",
        "2026-12-31T00:00:00Z",
    ]) else {
        panic!("parsed into the wrong command");
    };
    assert_eq!(args.from_namespace, "research");
    assert_eq!(args.hash_levels, ["L1", "L3"]);
    assert_eq!(args.peer.as_deref(), Some("did:web:bob.example"));
    assert_eq!(args.threads, ["th_a", "th_b"]);
    assert_eq!(args.purpose.as_deref(), Some("weekly telemetry"));
    assert_eq!(args.expires.as_deref(), Some("2026-12-31T00:00:00Z"));

    assert_eq!(
        usage_error(&["spl", "consent", "grant"]),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        usage_error(&[
            "spl",
            "consent",
            "grant",
            "--to-namespace",
            "t",
            "--hash-levels",
            "L1,L4"
        ]),
        ErrorKind::ValueValidation
    );
}

#[test]
fn consent_revoke_and_list() {
    let Command::Consent(ConsentCommand::Revoke { grant_id, reason }) =
        parse(&["spl", "consent", "revoke", "cg_1", "--reason", "done"])
    else {
        panic!("parsed into the wrong command");
    };
    assert_eq!(
        (grant_id.as_str(), reason.as_deref()),
        ("cg_1", Some("done"))
    );

    let Command::Consent(ConsentCommand::List { namespace }) =
        parse(&["spl", "consent", "list", "--namespace", "research"])
    else {
        panic!("parsed into the wrong command");
    };
    assert_eq!(namespace.as_deref(), Some("research"));
    assert!(matches!(
        parse(&["spl", "consent", "list"]),
        Command::Consent(ConsentCommand::List { namespace: None })
    ));
    assert_eq!(
        usage_error(&["spl", "consent", "revoke"]),
        ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn fleet_sync_add_takes_a_did_a_thread_and_optional_url_and_token() {
    let Command::Fleet(FleetCommand::Sync(FleetSyncCommand::Add(args))) = parse(&[
        "spl",
        "fleet",
        "sync",
        "add",
        "--peer-url",
        "https://bob.example",
        "--peer-token",
        "tok",
        "did:web:bob.example",
        "th_notes",
    ]) else {
        panic!("parsed into the wrong command");
    };
    assert_eq!(args.peer_did, "did:web:bob.example");
    assert_eq!(args.thread_id, "th_notes");
    assert_eq!(args.peer_url.as_deref(), Some("https://bob.example"));
    assert_eq!(args.peer_token.as_deref(), Some("tok"));

    assert_eq!(
        usage_error(&["spl", "fleet", "sync", "add", "did:web:bob.example"]),
        ErrorKind::MissingRequiredArgument
    );
    for (name, id) in [
        ("status", "sp_1"),
        ("pause", "sp_2"),
        ("resume", "sp_3"),
        ("kick", "sp_4"),
        ("remove", "sp_5"),
    ] {
        let parsed = match parse(&["spl", "fleet", "sync", name, id]) {
            Command::Fleet(FleetCommand::Sync(command)) => command,
            other => panic!("{name}: parsed into {other:?}"),
        };
        let got = match parsed {
            FleetSyncCommand::Status { id } => ("status", id),
            FleetSyncCommand::Pause { id } => ("pause", id),
            FleetSyncCommand::Resume { id } => ("resume", id),
            FleetSyncCommand::Kick { id } => ("kick", id),
            FleetSyncCommand::Remove { id } => ("remove", id),
            other => panic!("{name}: parsed into {other:?}"),
        };
        assert_eq!(got, (name, id.to_owned()));
    }
    assert!(matches!(
        parse(&["spl", "fleet", "sync", "list"]),
        Command::Fleet(FleetCommand::Sync(FleetSyncCommand::List))
    ));
}

#[test]
fn serve_takes_auto_approve_dids_and_a_sync_interval() {
    let Command::Serve(args) = parse(&[
        "spl",
        "serve",
        "--auto-approve-did",
        "did:web:a.example",
        "--auto-approve-did",
        "did:web:b.example,did:web:c.example",
        "--sync-interval",
        "7",
    ]) else {
        panic!("parsed into the wrong command");
    };
    assert_eq!(
        args.federation_auto_approve_dids,
        [
            "did:web:a.example",
            "did:web:b.example",
            "did:web:c.example"
        ]
    );
    assert_eq!(args.sync_interval_secs, 7);

    // Defaults; skipped if the environment running the tests sets them.
    if std::env::var_os("SPL_SYNC_INTERVAL").is_none()
        && std::env::var_os("SPL_FEDERATION_AUTO_APPROVE").is_none()
    {
        let Command::Serve(args) = parse(&["spl", "serve"]) else {
            panic!("parsed into the wrong command");
        };
        assert_eq!(args.sync_interval_secs, 2);
        assert!(args.federation_auto_approve_dids.is_empty());
    }
    assert_eq!(
        usage_error(&["spl", "serve", "--sync-interval", "0"]),
        ErrorKind::ValueValidation
    );
}

// ---- the binary against a scripted steward ----------------------------------------------------

/// One request the fake steward received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    body: Value,
}

type Script = dyn Fn(&Seen, usize) -> (u16, Value) + Send + Sync;

/// A steward stand-in: answers every request with `script(request, index)` and remembers it.
struct FakeSteward {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeSteward {
    fn start(script: impl Fn(&Seen, usize) -> (u16, Value) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let log = Arc::clone(&seen);
        // Serves until the test process exits; each test has its own port.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve_one(stream, &*script, &log);
            }
        });
        FakeSteward { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 request and answers it, closing the connection after.
fn serve_one(stream: TcpStream, script: &Script, log: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut length = 0;
    let mut authorization = None;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let seen = Seen {
        method,
        path,
        authorization,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let index = {
        let mut log = log.lock().unwrap();
        log.push(seen.clone());
        log.len() - 1
    };
    let (status, answer) = script(&seen, index);
    let answer = answer.to_string();
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    stream.flush()
}

fn api_error(code: &str, message: &str, hint: &str) -> Value {
    json!({"object":"error","type":"invalid_request_error","code":code,"message":message,
           "hint":hint})
}

/// `spl --endpoint <fake> --token op <args>` on a fresh home.
fn spl_at(steward: &FakeSteward, home: &Path, args: &[&str]) -> Output {
    common::spl(home)
        .args(["--endpoint", &steward.url, "--token", "op"])
        .args(args)
        .output()
        .expect("spl runs")
}

fn pair_view(state: &str) -> Value {
    json!({"object":"federation_pair","pair_id":"fed_0123456789abcdef0123","peer_did":"did:web:bob.example",
           "peer_url":"https://bob.example","role":"initiator","state":state})
}

fn pending_answer(poll_after_ms: u64) -> Value {
    json!({"object":"pair_handshake","status":"pending","pair_id":"fed_0123456789abcdef0123",
           "poll_after_ms":poll_after_ms})
}

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
