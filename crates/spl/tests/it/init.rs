//! `spl init` as a user runs it: the built binary against a fresh home.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{ok, run};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_creates_a_private_key_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");

    let did = ok(run(&home, &["init"]));
    assert!(did.starts_with("did:key:z6Mk"), "{did}");

    let key = home.join("keys/identity.key");
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&home.join("keys")), 0o700);
    assert_eq!(fs::read_to_string(&key).unwrap().trim().len(), 64);

    let config = fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(config.contains(&format!("did = \"{did}\"")), "{config}");
    assert!(config.contains("env = \"local\""), "{config}");
    assert!(config.contains("created_at"), "{config}");
}

#[test]
fn rerunning_init_keeps_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let first = ok(run(&home, &["init"]));
    let key = fs::read(home.join("keys/identity.key")).unwrap();

    let second = run(&home, &["init"]);
    assert_eq!(ok(second.clone()), first);
    assert!(second.stderr.is_empty());
    assert_eq!(fs::read(home.join("keys/identity.key")).unwrap(), key);

    let json: serde_json::Value =
        serde_json::from_str(&ok(run(&home, &["--json", "init"]))).unwrap();
    assert_eq!(json["did"], first.as_str());
    assert_eq!(json["created"], false);
    assert_eq!(json["home"], home.display().to_string());
}

#[test]
fn force_replaces_the_identity_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let old = ok(run(&home, &["init"]));

    let forced = run(&home, &["init", "--force"]);
    let new = ok(forced.clone());
    assert!(new.starts_with("did:key:z6Mk"), "{new}");
    assert_ne!(new, old);
    let warning = String::from_utf8_lossy(&forced.stderr);
    assert!(warning.contains("warning"), "{warning}");
    assert!(warning.contains(&old), "{warning}");
    assert_eq!(mode(&home.join("keys/identity.key")), 0o600);

    // The new key is the one that stays.
    assert_eq!(ok(run(&home, &["init"])), new);
}

/// `--force` over a home whose store holds live pairs lists them and refuses (the peers would
/// refuse the new DID); `--yes` goes ahead. A home with a store but no pairs is replaced as ever.
#[test]
fn force_lists_the_pairs_it_would_break_and_needs_yes() {
    let (a, mut b, pair_id) = crate::federation_e2e::paired();
    b.stop();
    let home = b.home();
    let refused = run(home, &["init", "--force"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    for expected in [
        pair_id.as_str(),
        a.did.as_str(),
        "active",
        "--yes",
        b.did.as_str(),
    ] {
        assert!(said.contains(expected), "{expected}: {said}");
    }
    assert!(refused.stdout.is_empty());
    assert_eq!(ok(run(home, &["init"])), b.did, "the identity stays");
    // `--yes` means nothing without `--force`.
    assert!(!run(home, &["init", "--yes"]).status.success());

    let forced = run(home, &["--json", "init", "--force", "--yes"]);
    let forced: serde_json::Value = serde_json::from_str(&ok(forced)).unwrap();
    assert_eq!(forced["previous_did"], b.did.as_str());
    assert_ne!(forced["did"], b.did.as_str());

    // A store without pairs: replaced without asking.
    let lone = crate::federation_e2e::Node::init();
    let forced = ok(run(lone.home(), &["init", "--force"]));
    assert_ne!(forced, lone.did);
}
