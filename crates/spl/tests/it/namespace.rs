//! The namespace registry through the CLI: a write to an unregistered namespace is refused with
//! a hint naming `spl namespace create`, which then makes it writable; archiving closes it again.

use crate::common::{bootstrap_admin_acting_as, failed, json, ok, run, Steward};

#[test]
fn namespaces_gate_writes_until_created_and_again_once_archived() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");

    let did = ok(run(&home, &["init"]));
    let token = bootstrap_admin_acting_as(&home, &did);
    ok(run(&home, &["token", "save", &token]));
    let _steward = Steward::start(&home, &[]);

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
