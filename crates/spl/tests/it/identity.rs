//! `spl identity show|upgrade|rotate` against a real directory on 127.0.0.1: a did:sync
//! registered and rotated (the directory's document follows), a did:web served by the steward
//! itself on the port it names, and refusals that change nothing.

use std::path::Path;

use serde_json::Value;

use crate::common::{json, ok, run, upgrade_to_sync, Directory, ReservedPort};

fn show(home: &Path) -> Value {
    json(run(home, &["--json", "identity", "show"]))
}

fn fails(home: &Path, args: &[&str]) -> String {
    let output = run(home, args);
    assert!(!output.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_did_sync_is_registered_and_rotated_and_the_directory_follows() {
    let directory = Directory::start();
    let home = tempfile::tempdir().unwrap();
    let did_key = ok(run(home.path(), &["init"]));
    assert_eq!(show(home.path())["did"], did_key.as_str());
    // A did:key cannot rotate; nothing changes.
    assert!(fails(home.path(), &["identity", "rotate"]).contains("cannot rotate"));
    assert_eq!(show(home.path())["did"], did_key.as_str());

    let upgraded = upgrade_to_sync(
        home.path(),
        &directory.url,
        &[
            "--handle",
            "alice-cli",
            "--service-endpoint",
            "https://spl.example.com",
        ],
    );
    let did = upgraded["did"].as_str().unwrap().to_string();
    assert!(did.starts_with("did:sync:"), "{upgraded}");
    assert_eq!(upgraded["signer"], did_key.as_str(), "the key stays");
    assert_eq!(
        directory.get("/directory/handle/alice-cli")["did"],
        did.as_str()
    );
    let hash = did.trim_start_matches("did:sync:");
    let document = directory.get(&format!("/directory/{hash}/did.json"));
    assert_eq!(
        document["service"][0]["serviceEndpoint"],
        "https://spl.example.com"
    );
    // `spl init` keeps the published DID.
    assert_eq!(ok(run(home.path(), &["init"])), did);
    // Upgrading twice is refused.
    assert!(fails(
        home.path(),
        &[
            "identity",
            "upgrade",
            "--method",
            "sync",
            "--directory",
            &directory.url
        ]
    )
    .contains("already published"));

    let rotated = json(run(home.path(), &["--json", "identity", "rotate"]));
    assert_eq!(rotated["did"], did.as_str());
    let new_signer = rotated["signer"].as_str().unwrap();
    assert_ne!(new_signer, did_key);
    let document = directory.get(&format!("/directory/{hash}/did.json"));
    let methods: Vec<&str> = document["verificationMethod"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["publicKeyMultibase"].as_str().unwrap())
        .collect();
    assert!(
        methods.contains(&did_key.trim_start_matches("did:key:")),
        "{document}"
    );
    assert!(
        methods.contains(&new_signer.trim_start_matches("did:key:")),
        "{document}"
    );
    assert_eq!(
        document["assertionMethod"],
        serde_json::json!([format!("{did}#key-2")])
    );

    // Compromised: the old key leaves the document altogether.
    let rotated = json(run(
        home.path(),
        &["--json", "identity", "rotate", "--compromised"],
    ));
    assert_eq!(rotated["keys"][1]["compromised"], true, "{rotated}");
    let document = directory.get(&format!("/directory/{hash}/did.json"));
    let text = document.to_string();
    assert!(
        !text.contains(new_signer.trim_start_matches("did:key:")),
        "{document}"
    );
    assert!(
        text.contains(did_key.trim_start_matches("did:key:")),
        "{document}"
    );
}

#[test]
fn a_did_web_is_served_by_the_steward_itself() {
    let home = tempfile::tempdir().unwrap();
    ok(run(home.path(), &["init"]));
    let reserved = ReservedPort::bind();
    let (host, port) = (reserved.host(), reserved.port());
    let upgraded = json(run(
        home.path(),
        &[
            "--json", "identity", "upgrade", "--method", "web", "--domain", &host,
        ],
    ));
    let did = format!("did:web:127.0.0.1%3A{port}");
    assert_eq!(upgraded["did"], did.as_str());
    let steward = reserved.serve(home.path(), &[]);
    let document: Value = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::get(format!("{}/.well-known/did.json", steward.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(document["id"], did.as_str(), "{document}");
    assert_eq!(
        document["verificationMethod"][0]["publicKeyMultibase"],
        upgraded["signer"]
            .as_str()
            .unwrap()
            .trim_start_matches("did:key:")
    );
    assert_eq!(
        document["service"][0]["serviceEndpoint"],
        steward.url.as_str()
    );
}

/// `--output` writes the did:web document for the operator to publish: a DID document of that
/// did:web whose one key is the home's signing key, the very document the steward serves at the
/// DID's address; the path form and a named endpoint are honoured, running the command again
/// writes it anew, and `--output` goes with `--method web` only.
#[test]
fn a_did_web_document_is_written_for_the_operator_to_publish() {
    use syncropel_protocol::did_doc::parse_document;
    let home = tempfile::tempdir().unwrap();
    let signer = ok(run(home.path(), &["init"]));
    let out = home.path().join("did.json");
    let out_arg = out.to_str().unwrap();
    assert!(fails(
        home.path(),
        &[
            "identity",
            "upgrade",
            "--method",
            "sync",
            "--directory",
            "http://127.0.0.1:9",
            "--output",
            out_arg
        ],
    )
    .contains("--method web"));
    assert!(!out.exists());
    assert_eq!(
        show(home.path())["did"],
        signer.as_str(),
        "nothing was upgraded"
    );

    let reserved = ReservedPort::bind();
    let (host, port) = (reserved.host(), reserved.port());
    let upgrade = [
        "--json", "identity", "upgrade", "--method", "web", "--domain", &host, "--output", out_arg,
    ];
    let upgraded = json(run(home.path(), &upgrade));
    let did = format!("did:web:127.0.0.1%3A{port}");
    assert_eq!(upgraded["did"], did.as_str(), "{upgraded}");
    assert_eq!(upgraded["did_document"]["path"], out_arg, "{upgraded}");
    let publish_at = format!("http://127.0.0.1:{port}/.well-known/did.json");
    assert_eq!(upgraded["did_document"]["publish_at"], publish_at.as_str());

    let written: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let parsed = parse_document(&did, &written).unwrap();
    assert_eq!(parsed.keys.len(), 1, "{written}");
    assert_eq!(parsed.keys[0].did_key, signer, "the steward's own key");
    assert!(parsed.keys[0].current, "{written}");
    assert_eq!(
        parsed.endpoint.as_deref(),
        Some(format!("http://127.0.0.1:{port}").as_str())
    );

    // Run again, it only writes the document anew: the same one.
    std::fs::remove_file(&out).unwrap();
    let again = json(run(home.path(), &upgrade));
    assert_eq!(again["did"], did.as_str());
    let rewritten: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(rewritten, written);
    // Another did:web is still an upgrade of a published home, refused.
    assert!(fails(
        home.path(),
        &[
            "identity",
            "upgrade",
            "--method",
            "web",
            "--domain",
            "other.example",
            "--output",
            out_arg
        ],
    )
    .contains("already published"));

    // The steward serves that very document at the DID's address.
    let steward = reserved.serve(home.path(), &[]);
    let served: Value = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::get(&publish_at)
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(served, written);
    drop(steward);

    // After a rotation, the same command writes the new key first, in force, the old one kept.
    ok(run(home.path(), &["identity", "rotate"]));
    let rotated_signer = show(home.path())["signer"].as_str().unwrap().to_string();
    assert_ne!(rotated_signer, signer);
    json(run(home.path(), &upgrade));
    let rotated: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let parsed = parse_document(&did, &rotated).unwrap();
    let keys: Vec<(&str, bool)> = parsed
        .keys
        .iter()
        .map(|k| (k.did_key.as_str(), k.current))
        .collect();
    assert_eq!(
        keys,
        [(rotated_signer.as_str(), true), (signer.as_str(), false)]
    );

    // The path form, with an endpoint named.
    let home = tempfile::tempdir().unwrap();
    let signer = ok(run(home.path(), &["init"]));
    let out = home.path().join("alice.json");
    let upgraded = json(run(
        home.path(),
        &[
            "--json",
            "identity",
            "upgrade",
            "--method",
            "web",
            "--domain",
            "spl.example.com",
            "--path",
            "teams/alice",
            "--service-endpoint",
            "https://steward.example.com",
            "--output",
            out.to_str().unwrap(),
        ],
    ));
    let did = "did:web:spl.example.com:teams:alice";
    assert_eq!(upgraded["did"], did);
    assert_eq!(
        upgraded["did_document"]["publish_at"],
        "https://spl.example.com/teams/alice/did.json"
    );
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let parsed = parse_document(did, &written).unwrap();
    assert_eq!(parsed.keys[0].did_key, signer);
    assert_eq!(
        parsed.endpoint.as_deref(),
        Some("https://steward.example.com")
    );
}

/// A rotation keeps what was sealed or derived under the old key: the next start seals secret
/// values again under the new key (they read back the same, and open with no retired key after),
/// and a member renewed after it keeps its master DID, its acceptance signed by that key.
#[test]
fn a_rotation_loses_no_secret_and_changes_no_members_master_did() {
    use crate::common::{bootstrap_admin, Steward};
    use serde_json::json as j;
    let directory = Directory::start();
    let home = tempfile::tempdir().unwrap();
    ok(run(home.path(), &["init"]));
    upgrade_to_sync(home.path(), &directory.url, &[]);
    let admin = bootstrap_admin(home.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let call = |url: &str, path: &str, body: Value| {
        let request = http
            .post(format!("{url}{path}"))
            .bearer_auth(&admin)
            .json(&body);
        runtime.block_on(async {
            let answer = request.send().await.unwrap();
            (
                answer.status().as_u16(),
                answer.json::<Value>().await.unwrap_or(Value::Null),
            )
        })
    };

    let mut steward = Steward::start(home.path(), &[]);
    let (status, _) = call(
        &steward.url,
        "/v1/secrets/set",
        j!({"handle": "db", "value": "v1 value"}),
    );
    assert_eq!(status, 200);
    let (_, invite) = call(
        &steward.url,
        "/v1/invites",
        j!({"membership": {"preset": "reader"}}),
    );
    let redeem = j!({"holder_type": "guest", "holder_pubkey": "ab".repeat(32), "member_label": "mora", "custody": "custodial"});
    let path = format!(
        "/v1/invites/{}/redeem",
        invite["invite_id"].as_str().unwrap()
    );
    let (status, joined) = call(&steward.url, &path, redeem.clone());
    assert_eq!(status, 201, "{joined}");
    ok(run(home.path(), &["stop"]));
    steward.wait_for_exit();

    ok(run(home.path(), &["identity", "rotate"]));
    let mut steward = Steward::start(home.path(), &[]);
    let (status, got) = call(&steward.url, "/v1/secrets/get", j!({"handle": "db"}));
    assert_eq!((status, &got["value"]), (200, &j!("v1 value")), "{got}");
    let pinned = j!({"membership": {"preset": "reader", "label": "mora"}});
    let (_, invite) = call(&steward.url, "/v1/invites", pinned);
    let path = format!(
        "/v1/invites/{}/redeem",
        invite["invite_id"].as_str().unwrap()
    );
    let (status, renewed) = call(&steward.url, &path, redeem);
    assert_eq!(status, 201, "{renewed}");
    let master = joined["membership"]["master_did"].clone();
    assert_eq!(renewed["membership"]["master_did"], master);
    let records = runtime.block_on(async {
        http.get(format!(
            "{}/v1/records?thread=th_identity_mora",
            steward.url
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()
    });
    let acceptances: Vec<&Value> = records["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["body"]["kind"] == "core.identity.acceptance.v1")
        .collect();
    assert_eq!(acceptances.len(), 2, "{records}");
    for acceptance in acceptances {
        assert_eq!(acceptance["actor"], master, "{acceptance}");
        assert_eq!(acceptance["signer"], master, "signed by the custodial key");
    }
    ok(run(home.path(), &["stop"]));
    steward.wait_for_exit();

    // Sealed again under the new key: it opens with the retired keys gone.
    for entry in std::fs::read_dir(home.path().join("keys")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("retired-")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    let steward = Steward::start(home.path(), &[]);
    let (status, got) = call(&steward.url, "/v1/secrets/get", j!({"handle": "db"}));
    assert_eq!((status, &got["value"]), (200, &j!("v1 value")), "{got}");
    ok(run(home.path(), &["stop"]));
}

/// A did:sync published without an endpoint names the steward's own URL as its `syncropel`
/// service once `spl serve` starts, and the address of a later start; one the operator named
/// stays as named.
#[test]
fn a_did_sync_names_its_stewards_url_unless_told_otherwise() {
    use crate::common::Steward;
    let directory = Directory::start();
    let service_of = |did: &str| {
        let hash = did.trim_start_matches("did:sync:");
        directory.get(&format!("/directory/{hash}/did.json"))["service"][0]["serviceEndpoint"]
            .clone()
    };
    let wait_for = |did: &str, url: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while service_of(did) != url {
            assert!(
                std::time::Instant::now() < deadline,
                "{did} never named {url}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };

    let home = tempfile::tempdir().unwrap();
    ok(run(home.path(), &["init"]));
    let did = upgrade_to_sync(home.path(), &directory.url, &[])["did"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(service_of(&did), Value::Null, "no service yet");
    let mut steward = Steward::start(home.path(), &[]);
    wait_for(&did, &steward.url);
    ok(run(home.path(), &["stop"]));
    steward.wait_for_exit();
    let mut steward = Steward::start(home.path(), &[]);
    wait_for(&did, &steward.url);
    ok(run(home.path(), &["stop"]));
    steward.wait_for_exit();

    let named = tempfile::tempdir().unwrap();
    ok(run(named.path(), &["init"]));
    let upgraded = upgrade_to_sync(
        named.path(),
        &directory.url,
        &["--service-endpoint", "https://spl.example.com"],
    );
    let did = upgraded["did"].as_str().unwrap().to_string();
    let mut steward = Steward::start(named.path(), &[]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(service_of(&did), "https://spl.example.com");
    ok(run(named.path(), &["stop"]));
    steward.wait_for_exit();
}
