//! `spl export`: a home as one signed bundle that verifies, holds every record and the identity
//! sealed under the passphrase (or not, with `--no-identity`), read directly once the steward is
//! stopped and through its route while it runs; refused without a passphrase.

use std::process::Command;

use syncropel_bundle::seal::open_seed;
use syncropel_bundle::{entries, verify, Limits};
use syncropel_protocol::Keypair;

use crate::common::{bootstrap_admin_acting_as, json, ok, run, spl, Steward};

const PASSPHRASE: &str = "a passphrase long enough";

fn export(home: &std::path::Path, args: &[&str]) -> Command {
    let mut command = spl(home);
    command
        .env("SPL_EXPORT_PASSPHRASE", PASSPHRASE)
        .args(["--json", "export"])
        .args(args);
    command
}

#[test]
fn a_stopped_home_exports_as_a_bundle_that_verifies_and_holds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let did = ok(run(&home, &["init"]));
    let token = bootstrap_admin_acting_as(&home, &did);
    ok(run(&home, &["token", "save", &token]));
    let mut steward = Steward::start(&home, &[]);
    for (thread, clock) in [("th_one", "1"), ("th_one", "2"), ("th_two", "1")] {
        let body = format!(r#"{{"n":{clock}}}"#);
        let args = [
            "emit", "--act", "DO", "--thread", thread, "--clock", clock, "--body", &body,
        ];
        ok(run(&home, &args));
    }
    let out = dir.path().join("home.tar.zst");
    let out_arg = out.to_str().unwrap();
    // While it runs, the steward exports (its route, the saved admin token); the file checks.
    let online = dir.path().join("online.tar.zst");
    let summary = json(
        export(&home, &["--out", online.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert_eq!(summary["source_did"], did.as_str(), "{summary}");
    assert!(summary["records"].as_u64().unwrap() >= 3, "{summary}");
    assert!(summary["audit_record"].is_null(), "{summary}");
    let verified = verify(
        std::fs::read(&online).unwrap().as_slice(),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(
        verified.manifest.bundle_sha256,
        summary["bundle_sha256"].as_str().unwrap()
    );
    ok(run(&home, &["stop"]));
    steward.wait_for_exit();

    let summary = json(export(&home, &["--out", out_arg]).output().unwrap());
    assert_eq!(summary["source_did"], did.as_str());
    assert!(summary["records"].as_u64().unwrap() >= 3, "{summary}");
    assert_eq!(summary["identity_included"], true);
    let bytes = std::fs::read(&out).unwrap();
    let verified = verify(bytes.as_slice(), &Limits::default()).unwrap();
    assert_eq!(verified.manifest.source_did, did);
    assert_eq!(
        verified.manifest.record_count,
        summary["records"].as_u64().unwrap()
    );
    assert_eq!(
        verified.manifest.bundle_sha256,
        summary["bundle_sha256"].as_str().unwrap()
    );
    assert_eq!(verified.signer, did);
    let seed = open_seed(verified.sealed_key.as_ref().unwrap(), PASSPHRASE).unwrap();
    assert_eq!(
        Keypair::from_seed(&seed).did_key(),
        did,
        "the key of this DID"
    );
    // Every record as it was signed, per thread, each thread in its order.
    let mut records = Vec::new();
    entries(bytes.as_slice(), &Limits::default(), |path, bytes| {
        if path.starts_with("records/") {
            let item: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            assert!(path.ends_with(&format!("/{}.json", item["id"].as_str().unwrap())));
            records.push(item);
        }
        Ok(())
    })
    .unwrap();
    let clocks: Vec<i64> = records
        .iter()
        .filter(|r| r["record"]["thread"] == "th_one")
        .map(|r| r["record"]["clock"].as_i64().unwrap())
        .collect();
    assert_eq!(clocks, [1, 2]);
    assert!(records.iter().all(|r| r["record"]["sig"].is_string()));

    // Without the identity; and not without a passphrase.
    let bare = dir.path().join("bare.tar.zst");
    let summary = json(
        export(&home, &["--out", bare.to_str().unwrap(), "--no-identity"])
            .output()
            .unwrap(),
    );
    assert_eq!(summary["identity_included"], false);
    let verified = verify(std::fs::read(&bare).unwrap().as_slice(), &Limits::default()).unwrap();
    assert!(verified.sealed_key.is_none());
    let none = spl(&home)
        .env_remove("SPL_EXPORT_PASSPHRASE")
        .args([
            "export",
            "--out",
            dir.path().join("x.tar.zst").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("--no-identity"));
}
