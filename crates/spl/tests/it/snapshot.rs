//! `spl thread snapshot|restore` (federation-protocol.md §3.6) between real stewards: B, paired
//! with A, snapshots its pair records, loses its store (identity kept), restores them. The pair
//! comes back as it was, degraded with `credential_missing` (a snapshot carries no bearer), and
//! `spl federation refresh` gets new tokens from A by B's identity signature alone, after which
//! records flow both ways again without a re-pair.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{bootstrap_admin, eventually, failed, json, ok, run, spl};
use crate::federation_e2e::{ids, paired, Node};

const SETTLE: Duration = Duration::from_secs(30);

/// Fields a pair view derives from its records (not its health, not its state).
const FOLDED: [&str; 10] = [
    "pair_id",
    "generation",
    "peer_did",
    "peer_url",
    "role",
    "scopes",
    "tokens",
    "namespaces",
    "maps",
    "cursors",
];

fn beside(node: &Node, name: &str) -> PathBuf {
    node.home()
        .join("..")
        .join(format!("{name}-{}.tar.zst", std::process::id()))
}

fn folded(view: &Value) -> Value {
    FOLDED
        .iter()
        .map(|f| (f.to_string(), view[f].clone()))
        .collect()
}

fn lose_store(home: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(home.join(format!("hub.db{suffix}")));
    }
}

#[test]
fn a_restored_pair_degrades_without_its_bearer_and_a_signed_refresh_brings_it_back() {
    let (a, mut b, pair_id) = paired();
    // Records go both ways: B pulls th_out from A, A pulls th_back from B.
    a.emit("DO", "th_out", json!({"n": 0}));
    assert_eq!(b.json(&["sync", "th_out", "from", &a.did])["pulled"], 1);
    b.emit("DO", "th_back", json!({"n": 0}));
    assert_eq!(a.json(&["sync", "th_back", "from", &b.did])["pulled"], 1);
    let before = b.json(&["federation", "show", &a.did]);

    // Through the running steward; --offline is refused while it runs.
    let snapshot = beside(&b, "pairs");
    let path = snapshot.to_str().unwrap();
    let refused = failed(b.output(&[
        "thread",
        "snapshot",
        "th_federation_pairs",
        "--offline",
        "--out",
        path,
    ]));
    assert!(refused.contains("already running"), "{refused}");
    let written = b.json(&["thread", "snapshot", "th_federation_pairs", "--out", path]);
    assert_eq!(written["threads"], 1, "{written}");
    let records = written["records"].as_u64().unwrap();
    assert!(records >= 3, "{written}");

    // B loses its store; its identity stays. A fresh store, a new admin token, served where
    // A knows it.
    let port: u16 = b.url().rsplit(':').next().unwrap().parse().unwrap();
    b.stop();
    lose_store(b.home());
    b.token = bootstrap_admin(b.home());

    // Not this home's snapshot, not a snapshot at all: refused, nothing written.
    let stranger = tempfile::tempdir().unwrap();
    ok(run(stranger.path(), &["init"]));
    let foreign = failed(
        spl(stranger.path())
            .args(["thread", "restore", path])
            .output()
            .unwrap(),
    );
    assert!(foreign.contains("this store's identity is"), "{foreign}");
    let import = failed(spl(b.home()).args(["import", path]).output().unwrap());
    assert!(import.contains("spl thread restore"), "{import}");

    let dry = json(
        spl(b.home())
            .args(["--json", "thread", "restore", "--dry-run", path])
            .output()
            .unwrap(),
    );
    assert_eq!(dry["records_inserted"], records, "{dry}");
    let restored = json(
        spl(b.home())
            .args(["--json", "thread", "restore", path])
            .output()
            .unwrap(),
    );
    assert_eq!(restored["records_inserted"], records, "{restored}");
    assert_eq!(restored["records_failed"], 0, "{restored}");
    let again = json(
        spl(b.home())
            .args(["--json", "thread", "restore", path])
            .output()
            .unwrap(),
    );
    assert_eq!(again["records_inserted"], 0, "{again}");
    assert_eq!(again["records_deduplicated"], records, "{again}");

    // The pair as it was, degraded: its bearer at A did not come back.
    b.serve_on(port, &[]);
    let degraded = eventually(SETTLE, || {
        b.json(&["federation", "show", &a.did])["state"] == "degraded"
    });
    let view = b.json(&["federation", "show", &a.did]);
    assert!(degraded, "{view}");
    assert_eq!(view["degraded_cause"], "credential_missing", "{view}");
    assert_eq!(folded(&view), folded(&before));
    assert_eq!(view["pair_id"], pair_id.as_str());

    // B's identity signature renews both bearers; the pair is active again, no re-pair.
    let refreshed = b.json(&["federation", "refresh", &a.did]);
    assert_eq!(refreshed["state"], "active", "{refreshed}");
    assert_eq!(refreshed["generation"], before["generation"]);
    assert_ne!(
        refreshed["tokens"]["outbound"]["token_id"],
        before["tokens"]["outbound"]["token_id"]
    );
    let on_a = a.json(&["federation", "show", &b.did]);
    assert_eq!(
        on_a["tokens"]["outbound"]["token_id"], refreshed["tokens"]["inbound"]["token_id"],
        "{on_a}"
    );
    assert_eq!(
        on_a["tokens"]["inbound"]["token_id"], refreshed["tokens"]["outbound"]["token_id"],
        "{on_a}"
    );

    // Both ways again: B pulls A's new record, A pulls B's.
    let from_a = a.emit("DO", "th_out", json!({"n": 1}));
    b.json(&["sync", "th_out", "from", &a.did]);
    assert!(ids(&b.records("th_out")).contains(&from_a["id"].as_str().unwrap().to_string()));
    let from_b = b.emit("DO", "th_back", json!({"n": 1}));
    let pulled = a.json(&["sync", "th_back", "from", &b.did]);
    assert_eq!(pulled["pulled"], 1, "{pulled}");
    assert_eq!(
        ids(&a.records("th_back")).last(),
        Some(&from_b["id"].as_str().unwrap().to_string())
    );
    let _ = std::fs::remove_file(&snapshot);
}

/// A stopped home is snapshot straight from its store; the snapshot holds the threads named
/// and nothing else (no identity, no bearers).
#[test]
fn a_stopped_home_is_snapshot_offline_with_only_the_threads_named() {
    let mut node = Node::init();
    node.serve(&[]);
    let kept = node.emit("DO", "th_kept", json!({"n": 0}));
    node.emit("DO", "th_other", json!({"n": 0}));
    node.stop();
    let snapshot = beside(&node, "offline");
    let written = json(
        spl(node.home())
            .args([
                "--json",
                "thread",
                "snapshot",
                "th_kept",
                "--offline",
                "--out",
                snapshot.to_str().unwrap(),
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(written["records"], 1, "{written}");
    assert_eq!(written["identity_included"], false, "{written}");
    let verified = syncropel_bundle::verify(
        std::io::BufReader::new(std::fs::File::open(&snapshot).unwrap()),
        &syncropel_bundle::Limits::default(),
    )
    .unwrap();
    assert_eq!(verified.manifest.threads, Some(vec!["th_kept".to_string()]));
    assert!(verified.sealed_key.is_none());
    let mut paths = Vec::new();
    syncropel_bundle::entries(
        std::io::BufReader::new(std::fs::File::open(&snapshot).unwrap()),
        &syncropel_bundle::Limits::default(),
        |path, _| {
            paths.push(path.to_string());
            Ok(())
        },
    )
    .unwrap();
    assert!(
        paths.contains(&format!(
            "records/th_kept/{}.json",
            kept["id"].as_str().unwrap()
        )),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .all(|p| !p.contains("th_other") && !p.contains("credentials")),
        "{paths:?}"
    );
    let _ = std::fs::remove_file(&snapshot);
}
