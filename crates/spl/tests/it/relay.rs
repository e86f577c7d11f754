//! Relays through the CLI: `spl config relay set|show|status|clear` keep `[relay] urls` in the
//! home's config.toml (each relay asked first), `spl serve` deposits there and names them in its
//! manifest, and `spl relay status|queues|kick` show and move the outbox.

use syncropel_testkit::Relay;

use crate::common::{bootstrap_admin, failed, json, ok, run, Steward};

#[test]
fn relays_are_named_checked_served_and_shown() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let relay = runtime.block_on(Relay::start());
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(run(&home, &["init"]));

    assert_eq!(
        json(run(&home, &["--json", "config", "relay", "show"]))["relays"],
        serde_json::json!([])
    );
    // A relay that does not answer is not saved unless asked to be; nor more than three, nor
    // anything but http(s).
    let absent = "http://127.0.0.1:9";
    let refused = failed(run(&home, &["config", "relay", "set", absent]));
    assert!(refused.contains("--no-check"), "{refused}");
    assert!(!run(&home, &["config", "relay", "set", "a", "b", "c", "d"])
        .status
        .success());
    let scheme = failed(run(
        &home,
        &[
            "config",
            "relay",
            "set",
            "ftp://relay.example",
            "--no-check",
        ],
    ));
    assert!(scheme.contains("http(s)"), "{scheme}");
    ok(run(
        &home,
        &["config", "relay", "set", absent, "--no-check"],
    ));
    let status = run(&home, &["config", "relay", "status"]);
    assert!(!status.status.success());

    // The real one answers its health and a call signed with this home's key.
    ok(run(&home, &["config", "relay", "set", &relay.url]));
    let shown = json(run(&home, &["--json", "config", "relay", "show"]));
    assert_eq!(shown["relays"], serde_json::json!([relay.url]));
    let asked = json(run(&home, &["--json", "config", "relay", "status"]));
    assert_eq!(asked["relays"][0]["reachable"], true, "{asked}");

    // `spl serve` names it in its manifest and shows it in `spl relay status`.
    let token = bootstrap_admin(&home);
    ok(run(&home, &["token", "save", &token]));
    let steward = Steward::start(&home, &[]);
    let manifest: serde_json::Value = runtime.block_on(async {
        reqwest::get(format!("{}/.well-known/syncropel", steward.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let federation = &manifest["federation_manifest"]["federation"];
    assert_eq!(
        federation["relays"],
        serde_json::json!([relay.url]),
        "{manifest}"
    );
    assert_eq!(federation["offline_capable"], true);
    let status = json(run(&home, &["--json", "relay", "status"]));
    assert_eq!(status["relays"][0]["url"], relay.url);
    assert_eq!(status["relays"][0]["reachable"], true);
    assert_eq!(status["outbox"], serde_json::json!([]));
    let text = ok(run(&home, &["relay", "status"]));
    assert!(text.contains("reachable"), "{text}");
    let kicked = json(run(&home, &["--json", "relay", "kick"]));
    assert_eq!(kicked["rows"], 0);
    let queues = json(run(&home, &["--json", "relay", "queues"]));
    assert_eq!(queues["data"], serde_json::json!([]));
    drop(steward);

    ok(run(&home, &["config", "relay", "clear"]));
    assert_eq!(
        json(run(&home, &["--json", "config", "relay", "show"]))["relays"],
        serde_json::json!([])
    );
    runtime.block_on(relay.remove());
}

#[test]
fn a_did_sync_home_names_its_relays_in_its_did_document() {
    let directory = crate::common::Directory::start();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(run(&home, &["init"]));
    // Relays named before the upgrade are in the genesis.
    ok(run(
        &home,
        &["config", "relay", "set", "https://r1.example", "--no-check"],
    ));
    let upgraded = crate::common::upgrade_to_sync(
        &home,
        &directory.url,
        &["--service-endpoint", "https://spl.example.com"],
    );
    let did = upgraded["did"].as_str().unwrap().to_string();
    let hash = did.trim_start_matches("did:sync:").to_string();
    let relays = |document: &serde_json::Value| -> Vec<String> {
        document["service"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["type"] == "syncropel-relay")
            .map(|s| s["serviceEndpoint"].as_str().unwrap().to_string())
            .collect()
    };
    let document = directory.get(&format!("/directory/{hash}/did.json"));
    assert_eq!(relays(&document), ["https://r1.example"], "{document}");

    // Set again, and cleared: an `update` each time, the steward's own service kept.
    let set = json(run(
        &home,
        &[
            "--json",
            "config",
            "relay",
            "set",
            "https://r2.example",
            "https://r3.example",
            "--no-check",
        ],
    ));
    assert_eq!(set["published_in"], did.as_str());
    let document = directory.get(&format!("/directory/{hash}/did.json"));
    assert_eq!(
        relays(&document),
        ["https://r2.example", "https://r3.example"]
    );
    assert!(document["service"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["serviceEndpoint"] == "https://spl.example.com"));
    ok(run(&home, &["config", "relay", "clear"]));
    let document = directory.get(&format!("/directory/{hash}/did.json"));
    assert!(relays(&document).is_empty(), "{document}");
    // Records are still signed with the same key.
    assert_eq!(
        json(run(&home, &["--json", "identity", "show"]))["signer"],
        upgraded["signer"]
    );
}
