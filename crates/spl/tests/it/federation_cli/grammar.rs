//! The grammar, parsed in-process (`spl` is a binary crate, so its `cli` module is compiled into
//! this test binary directly).

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use crate::cli::{
    Cli, Command, ConsentCommand, FederationCommand, FleetCommand, FleetSyncCommand, NamespaceMap,
};

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
fn federation_grant_defaults_to_l1_and_takes_named_levels() {
    let Command::Federation(FederationCommand::Grant {
        namespace,
        maps,
        hash_levels,
        ..
    }) = parse(&[
        "spl",
        "federation",
        "grant",
        "fed_1",
        "--namespace",
        "research",
    ])
    else {
        panic!("parsed into the wrong command");
    };
    assert_eq!(namespace, "research");
    assert!(maps.is_empty());
    // Pair-scoped: L0 (bodies) is shared only by a grant that names it.
    assert_eq!(hash_levels, ["L1"]);

    let Command::Federation(FederationCommand::Grant { hash_levels, .. }) = parse(&[
        "spl",
        "federation",
        "grant",
        "fed_1",
        "--namespace",
        "research",
        "--hash-level",
        "l0,L1",
    ]) else {
        panic!("parsed into the wrong command");
    };
    assert_eq!(hash_levels, ["L0", "L1"]);
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
