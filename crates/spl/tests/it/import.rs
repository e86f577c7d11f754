//! `spl import`: a bundle of one home taken into another, which then is that home (its DID,
//! every record id in the same order); idempotent; refused whole (nothing written) for a wrong
//! passphrase, a cut or altered bundle and a store of its own; finished by a rerun after a
//! SIGKILL midway, ending in the same store as an import never stopped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use syncropel_home::Home;
use syncropel_protocol::{Act, DataType, Envelope};
use syncropel_store::{ListFilter, RecordStore, SqliteStore};

use crate::common::{eventually, failed, json, ok, run, spl};

const PASSPHRASE: &str = "a passphrase long enough";

/// Writes `count` records of the home's own, signed by its key, on `threads` threads, straight
/// into its store (the CLI would take minutes for the large cases).
fn seed(home: &Path, threads: usize, count: usize) {
    let key = Home::new(home.to_path_buf()).keypair().unwrap();
    let did = key.did_key();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = SqliteStore::open_file(&home.join("hub.db")).await.unwrap();
        let records: Vec<_> = (0..count)
            .map(|n| {
                let mut body = serde_json::Map::new();
                body.insert("n".into(), json!(n));
                let envelope = Envelope {
                    act: Act::Do,
                    actor: did.clone(),
                    body,
                    clock: n as i64 + 1,
                    data_type: DataType::Scalar,
                    parents: Vec::new(),
                    thread: format!("th_move_{}", n % threads),
                    judged_by: None,
                };
                syncropel_tenant::seal(&envelope, &key, &did)
            })
            .collect();
        for batch in records.chunks(1000) {
            for result in store
                .write("local", batch.to_vec(), Vec::new())
                .await
                .unwrap()
            {
                result.unwrap();
            }
        }
        store.close().await;
    });
}

/// `(id, thread)` of every record of the home's store, in sequence order.
fn stored(home: &Path) -> Vec<(String, String)> {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = SqliteStore::open_file(&home.join("hub.db")).await.unwrap();
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let filter = ListFilter {
                after_seq: after,
                limit: 1000,
                ..ListFilter::default()
            };
            let page = store.list("local", &filter).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            all.extend(page.into_iter().map(|r| (r.id, r.thread)));
        }
        store.close().await;
        all
    })
}

/// How many records the home's store holds, read without migrating it (the store may be in the
/// middle of being made by another process): 0 until it has its tables.
fn held(home: &Path) -> usize {
    use sqlx::{ConnectOptions, Connection};
    let db = home.join("hub.db");
    if !db.exists() {
        return 0;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .read_only(true);
        let Ok(mut conn) = options.connect().await else {
            return 0;
        };
        let count: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM records")
            .fetch_one(&mut conn)
            .await;
        let _ = conn.close().await;
        count.map_or(0, |n| n as usize)
    })
}

/// A home with `count` records, stopped, exported with its identity: the bundle's path.
fn exported_home(dir: &Path, count: usize) -> (PathBuf, String) {
    let home = dir.join("source");
    let did = ok(run(&home, &["init"]));
    seed(&home, 3, count);
    let bundle = dir.join("source.tar.zst");
    ok(spl(&home)
        .env("SPL_EXPORT_PASSPHRASE", PASSPHRASE)
        .args(["export", "--out", bundle.to_str().unwrap()])
        .output()
        .unwrap());
    (bundle, did)
}

fn import(home: &Path, bundle: &Path, args: &[&str]) -> Command {
    let mut command = spl(home);
    command
        .env("SPL_IMPORT_PASSPHRASE", PASSPHRASE)
        .args(["--json", "import", bundle.to_str().unwrap()])
        .args(args);
    command
}

/// The source's records, in their order, as found in `home` (which may hold its own too).
fn moved_records(source: &[(String, String)], home: &Path) -> Vec<(String, String)> {
    let ids: std::collections::HashSet<&String> = source.iter().map(|(id, _)| id).collect();
    stored(home)
        .into_iter()
        .filter(|(id, _)| ids.contains(id))
        .collect()
}

#[test]
fn a_home_moves_into_another_with_its_did_and_every_record_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, did) = exported_home(dir.path(), 500);
    let source = stored(&dir.path().join("source"));
    let target = dir.path().join("target");
    let own_did = ok(run(&target, &["init"]));
    assert_ne!(own_did, did);

    let dry = json(import(&target, &bundle, &["--dry-run"]).output().unwrap());
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["records_inserted"], source.len() as u64, "{dry}");
    assert_eq!(
        ok(run(&target, &["init"])),
        own_did,
        "a dry run installs nothing"
    );
    assert!(stored(&target).is_empty(), "a dry run stores nothing");

    let summary = json(import(&target, &bundle, &[]).output().unwrap());
    assert_eq!(summary["object"], "import_summary");
    assert_eq!(summary["identity_restored"], true);
    assert_eq!(summary["source_did"], did.as_str());
    assert_eq!(
        summary["records_inspected"],
        source.len() as u64,
        "{summary}"
    );
    assert_eq!(summary["records_inserted"], source.len() as u64);
    assert_eq!(summary["records_failed"], 0);
    assert_eq!(
        ok(run(&target, &["init"])),
        did,
        "the home is now the source's DID"
    );
    assert_eq!(
        moved_records(&source, &target),
        source,
        "every id, in order"
    );
    // Its own key is kept aside, not lost.
    let aside = target.join("keys/replaced");
    let replaced = own_did.trim_start_matches("did:key:");
    assert!(aside.join(format!("{replaced}.key")).is_file());

    // Again: nothing new.
    let again = json(import(&target, &bundle, &[]).output().unwrap());
    assert_eq!(again["records_inserted"], 0, "{again}");
    assert_eq!(again["records_deduplicated"], source.len() as u64);
    assert_eq!(moved_records(&source, &target), source);

    // The moved home serves what it holds, signed as it was.
    let mut steward = crate::common::Steward::start(&target, &[]);
    let status = ok(run(&target, &["status"]));
    assert!(status.contains(&did), "{status}");
    ok(run(&target, &["stop"]));
    steward.wait_for_exit();
}

#[test]
fn a_bundle_that_cannot_be_trusted_or_opened_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, _) = exported_home(dir.path(), 50);
    let target = dir.path().join("target");
    let own_did = ok(run(&target, &["init"]));
    let unchanged = |why: &str| {
        assert_eq!(ok(run(&target, &["init"])), own_did, "{why}: the identity");
        assert!(
            !target.join("hub.db").exists() || stored(&target).is_empty(),
            "{why}: the store"
        );
    };

    let wrong = spl(&target)
        .env("SPL_IMPORT_PASSPHRASE", "not the passphrase at all")
        .args(["import", bundle.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(failed(wrong).contains("wrong passphrase"));
    unchanged("wrong passphrase");

    let bytes = std::fs::read(&bundle).unwrap();
    let cut = dir.path().join("cut.tar.zst");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let message = failed(import(&target, &cut, &[]).output().unwrap());
    assert!(message.contains("malformed bundle"), "{message}");
    unchanged("a cut bundle");

    // One record changed inside an otherwise well-formed archive.
    let altered = dir.path().join("altered.tar.zst");
    rewrite(&bundle, &altered, |path, bytes| {
        if path.starts_with("records/") && !bytes.is_empty() {
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            return text.replacen("\"n\":", "\"n\":1", 1).into_bytes();
        }
        bytes.to_vec()
    });
    let message = failed(import(&target, &altered, &[]).output().unwrap());
    assert!(message.contains("altered"), "{message}");
    unchanged("an altered record");

    // The manifest made to name the altered files: its signature no longer holds.
    let message = failed(
        import(&target, &resigned_manifest(dir.path(), &altered), &[])
            .output()
            .unwrap(),
    );
    assert!(
        message.contains("signature verification failed"),
        "{message}"
    );
    unchanged("a manifest not signed by the DID");

    let missing = failed(
        spl(&target)
            .args(["import", "/nonexistent.tar.zst"])
            .output()
            .unwrap(),
    );
    assert!(missing.contains("No such file"), "{missing}");
    unchanged("no bundle");
}

#[test]
fn a_store_of_its_own_is_not_imported_into_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, did) = exported_home(dir.path(), 20);
    let source = stored(&dir.path().join("source"));
    let target = dir.path().join("target");
    ok(run(&target, &["init"]));
    seed(&target, 1, 5);
    let message = failed(import(&target, &bundle, &[]).output().unwrap());
    assert!(
        message.contains("the store has 5 records; pass --force-overwrite"),
        "{message}"
    );
    assert_eq!(stored(&target).len(), 5);
    let forced = json(
        import(&target, &bundle, &["--force-overwrite"])
            .output()
            .unwrap(),
    );
    assert_eq!(forced["records_inserted"], source.len() as u64);
    assert_eq!(moved_records(&source, &target), source);
    assert_eq!(ok(run(&target, &["init"])), did);
}

#[test]
fn an_import_killed_midway_is_finished_by_a_rerun_into_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, did) = exported_home(dir.path(), 10_000);
    let source = stored(&dir.path().join("source"));

    // The reference: the same bundle imported without interruption.
    let clean = dir.path().join("clean");
    ok(run(&clean, &["init"]));
    ok(import(&clean, &bundle, &[]).output().unwrap());

    let target = dir.path().join("target");
    ok(run(&target, &["init"]));
    let mut child = import(&target, &bundle, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let midway = eventually(Duration::from_secs(60), || {
        let held = held(&target);
        held > 1000 && held < source.len() / 2
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(midway, "the import was seen neither started nor half done");
    let partial = stored(&target).len();
    assert!(
        partial < source.len(),
        "killed before it finished ({partial})"
    );

    let resumed = json(import(&target, &bundle, &[]).output().unwrap());
    assert_eq!(resumed["records_inspected"], source.len() as u64);
    assert_eq!(
        resumed["records_inserted"].as_u64().unwrap()
            + resumed["records_deduplicated"].as_u64().unwrap(),
        source.len() as u64,
        "{resumed}"
    );
    assert_eq!(ok(run(&target, &["init"])), did);
    assert_eq!(
        moved_records(&source, &target),
        source,
        "nothing lost, nothing twice"
    );
    assert_eq!(
        moved_records(&source, &target),
        moved_records(&source, &clean),
        "the same store as an import never stopped"
    );
}

/// Copies the bundle at `from` to `to` with each file's bytes passed through `change`, the
/// manifest kept as it was.
fn rewrite(from: &Path, to: &Path, mut change: impl FnMut(&str, &[u8]) -> Vec<u8>) {
    let input = std::fs::read(from).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    syncropel_bundle::entries(
        input.as_slice(),
        &syncropel_bundle::Limits::default(),
        |path, bytes| {
            files.push((path.to_string(), change(path, bytes)));
            Ok(())
        },
    )
    .unwrap();
    let encoder = zstd::Encoder::new(std::fs::File::create(to).unwrap(), 1).unwrap();
    let mut tar = tar::Builder::new(encoder);
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, path, bytes.as_slice())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

/// `altered` with its manifest's `bundle_sha256` made to match its files in archive order, as a
/// forger would, and the signature left as it was.
fn resigned_manifest(dir: &Path, altered: &Path) -> PathBuf {
    let mut hashes = Vec::new();
    let input = std::fs::read(altered).unwrap();
    syncropel_bundle::entries(
        input.as_slice(),
        &syncropel_bundle::Limits::default(),
        |path, bytes| {
            if !path.starts_with("manifest.") {
                use sha2::Digest;
                let hash: String = sha2::Sha256::digest(bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                hashes.push(format!("{hash}  {path}\n"));
            }
            Ok(())
        },
    )
    .unwrap();
    use sha2::Digest;
    let total: String = sha2::Sha256::digest(hashes.concat().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = dir.join("forged.tar.zst");
    rewrite(altered, &out, |path, bytes| {
        if path == syncropel_bundle::MANIFEST {
            let mut manifest: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            manifest["bundle_sha256"] = json!(total);
            return serde_json::to_vec_pretty(&manifest).unwrap();
        }
        bytes.to_vec()
    });
    out
}
