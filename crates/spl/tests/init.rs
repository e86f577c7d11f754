//! `spl init` as a user runs it: the built binary against a fresh home.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn spl(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spl"))
        .args(args)
        .env("SYNCROPEL_HOME", home)
        .env_remove("SPL_ENDPOINT")
        .env_remove("SPL_TOKEN")
        .output()
        .expect("spl runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "spl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .trim()
        .to_owned()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_creates_a_private_key_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");

    let did = stdout(&spl(&home, &["init"]));
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
    let first = stdout(&spl(&home, &["init"]));
    let key = fs::read(home.join("keys/identity.key")).unwrap();

    let second = spl(&home, &["init"]);
    assert_eq!(stdout(&second), first);
    assert!(second.stderr.is_empty());
    assert_eq!(fs::read(home.join("keys/identity.key")).unwrap(), key);

    let json: serde_json::Value =
        serde_json::from_str(&stdout(&spl(&home, &["--json", "init"]))).unwrap();
    assert_eq!(json["did"], first.as_str());
    assert_eq!(json["created"], false);
    assert_eq!(json["home"], home.display().to_string());
}

#[test]
fn force_replaces_the_identity_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let old = stdout(&spl(&home, &["init"]));

    let forced = spl(&home, &["init", "--force"]);
    let new = stdout(&forced);
    assert!(new.starts_with("did:key:z6Mk"), "{new}");
    assert_ne!(new, old);
    let warning = String::from_utf8_lossy(&forced.stderr);
    assert!(warning.contains("warning"), "{warning}");
    assert!(warning.contains(&old), "{warning}");
    assert_eq!(mode(&home.join("keys/identity.key")), 0o600);

    // The new key is the one that stays.
    assert_eq!(stdout(&spl(&home, &["init"])), new);
}
