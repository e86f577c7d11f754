//! Export-and-leave between real stewards (federation-protocol.md §8.5): A, paired with C which
//! pulls a thread from it, exports to move (`--leave`: writes refused, pulls go on), is imported
//! into a new home A2 with the same DID, and A2 fences A. A then answers `410 INSTANCE_MOVED`
//! with A2's signed notice; C follows it with no re-pair and keeps receiving the thread, now
//! written on A2, with no gap and no duplicate.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{
    bootstrap_admin, eventually, failed, json, ok, run, spl, upgrade_to_sync, Directory,
};
use crate::federation_e2e::{ids, paired, Node};

const PASSPHRASE: &str = "a passphrase long enough";
/// How long C may take to notice the move and pull what A2 holds (a longpoll in flight at A
/// ends within a second of the fence).
const FOLLOW: Duration = Duration::from_secs(60);

#[test]
fn a_home_moves_and_its_peer_follows_without_a_gap_or_a_duplicate() {
    let (mut a, c, _pair) = paired();
    let mut written = Vec::new();
    for n in 0..3 {
        written.push(a.emit("DO", "th_move", json!({"n": n})));
    }
    let synced = c.json(&["sync", "th_move", "from", &a.did]);
    assert_eq!(synced["pulled"], 3, "{synced}");

    // A exports to leave; restarted where C knows it, it refuses writes but still serves C.
    let url = a.url();
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    a.stop();
    let bundle = a
        .home()
        .join("..")
        .join(format!("move-{}.tar.zst", std::process::id()));
    ok(spl(a.home())
        .env("SPL_EXPORT_PASSPHRASE", PASSPHRASE)
        .args(["export", "--leave", "--out", bundle.to_str().unwrap()])
        .output()
        .unwrap());
    a.serve_on(port, &[]);
    assert_eq!(a.url(), url);
    let refused = failed(a.output(&[
        "emit",
        "--act",
        "DO",
        "--thread",
        "th_move",
        "--body",
        r#"{"n":99}"#,
    ]));
    assert!(refused.contains("INSTANCE_LEAVING"), "{refused}");

    // The new home: the same DID, every record, its own admin token.
    let home = tempfile::tempdir().unwrap();
    ok(run(home.path(), &["init"]));
    let summary = json(
        spl(home.path())
            .env("SPL_IMPORT_PASSPHRASE", PASSPHRASE)
            .args(["--json", "import", bundle.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert_eq!(summary["identity_restored"], true, "{summary}");
    assert_eq!(summary["pairs"], 1, "{summary}");
    let token = bootstrap_admin(home.path());
    let mut a2 = Node::adopt(home, token);
    assert_eq!(a2.did, a.did, "the DID moved");
    a2.serve(&[]);
    assert_eq!(ids(&a2.records("th_move")), ids(&written));

    // A2 fences A: A answers every route with 410 and A2's signed notice.
    let fenced = json(
        spl(a2.home())
            .args(["--json", "fence", &a.url()])
            .output()
            .unwrap(),
    );
    assert_eq!(fenced["moved_to"], a2.url().as_str(), "{fenced}");
    let (status, body) = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let answer = reqwest::Client::new()
            .get(format!("{}/v1/records?thread=th_move", a.url()))
            .bearer_auth(&a.token)
            .send()
            .await
            .unwrap();
        (answer.status(), answer.json::<Value>().await.unwrap())
    });
    assert_eq!(status, 410);
    assert_eq!(body["code"], "INSTANCE_MOVED", "{body}");
    assert_eq!(body["moved_to"], a2.url().as_str());
    let notice = syncropel_protocol::moved::check_moved(&body["notice"]).unwrap();
    assert_eq!(notice.did, a.did);

    // A2 writes on; C, still paired, follows the move and receives it all once.
    for n in 3..6 {
        written.push(a2.emit("DO", "th_move", json!({"n": n})));
    }
    let expected: HashSet<String> = ids(&written).into_iter().collect();
    let followed = eventually(FOLLOW, || {
        let held: HashSet<String> = ids(&c.records("th_move")).into_iter().collect();
        expected.is_subset(&held)
    });
    assert!(followed, "C did not receive A2's records within {FOLLOW:?}");
    let on_c = c.records("th_move");
    assert_eq!(on_c.len(), written.len(), "no record twice on C");
    assert_eq!(
        ids(&on_c).into_iter().collect::<HashSet<_>>(),
        expected,
        "exactly A's and A2's records"
    );
    let pair = &c.json(&["federation", "list"])["data"][0];
    assert_eq!(pair["peer_url"], a2.url().as_str(), "{pair}");
    assert_eq!(pair["state"], "active", "{pair}");
    let _ = std::fs::remove_file(&bundle);
}

/// When the old home is gone before it could be fenced, the peer's operator names the new URL
/// (`spl federation refresh <peer> --url`): taken only where the manifest is the same DID's.
#[test]
fn a_peer_is_pointed_at_a_home_that_moved_while_the_old_one_is_gone() {
    let (mut a, c, _pair) = paired();
    let first = a.emit("DO", "th_gone", json!({"n": 0}));
    c.json(&["sync", "th_gone", "from", &a.did]);
    a.stop();
    let bundle = a
        .home()
        .join("..")
        .join(format!("gone-{}.tar.zst", std::process::id()));
    ok(spl(a.home())
        .env("SPL_EXPORT_PASSPHRASE", PASSPHRASE)
        .args(["export", "--out", bundle.to_str().unwrap()])
        .output()
        .unwrap());
    let home = tempfile::tempdir().unwrap();
    ok(run(home.path(), &["init"]));
    ok(spl(home.path())
        .env("SPL_IMPORT_PASSPHRASE", PASSPHRASE)
        .args(["import", bundle.to_str().unwrap()])
        .output()
        .unwrap());
    let token = bootstrap_admin(home.path());
    let mut a2 = Node::adopt(home, token);
    a2.serve(&[]);

    // A URL that serves another DID is refused; the new home's is taken.
    let wrong = failed(c.output(&["federation", "refresh", &a.did, "--url", &c.url()]));
    assert!(wrong.contains("not the peer"), "{wrong}");
    let pair = c.json(&["federation", "refresh", &a.did, "--url", &a2.url()]);
    assert_eq!(pair["peer_url"], a2.url().as_str(), "{pair}");
    let next = a2.emit("DO", "th_gone", json!({"n": 1}));
    let expected: HashSet<String> = ids(&[first, next]).into_iter().collect();
    let arrived = eventually(FOLLOW, || {
        let held: HashSet<String> = ids(&c.records("th_gone")).into_iter().collect();
        held == expected
    });
    assert!(arrived, "C did not pull from the new URL within {FOLLOW:?}");
    let _ = std::fs::remove_file(&bundle);
}

/// A did:sync home moves: fenced, the old steward points the DID at the new home with its
/// rotation key (federation-protocol.md §8.5 step 3). A peer that was not pulling then (paused)
/// finds the old home gone, resolves the DID at the directory and follows it there
/// (`url_refreshed` via `did_resolution`), with no re-pair.
#[test]
fn a_did_sync_home_moves_and_its_peer_finds_it_through_the_directory() {
    let directory = Directory::start();
    let mut a = Node::init();
    let upgraded = upgrade_to_sync(a.home(), &directory.url, &[]);
    a.did = upgraded["did"].as_str().unwrap().to_string();
    let mut c = Node::init();
    a.serve(&["--directory", &directory.url, "--auto-approve-did", &c.did]);
    c.serve(&["--directory", &directory.url]);
    let pair = c.json(&["federation", "pair", &a.url()]);
    assert_eq!(pair["state"], "active", "{pair}");
    let mut written = vec![emit(&a, 0)];
    assert_eq!(c.json(&["sync", "th_dir", "from", &a.did])["pulled"], 1);

    // Exported to leave through A's running steward, imported into A2.
    let bundle = a
        .home()
        .join("..")
        .join(format!("dir-{}.tar.zst", std::process::id()));
    let exported = json(
        a.command(&["export", "--leave", "--out", bundle.to_str().unwrap()])
            .env("SPL_EXPORT_PASSPHRASE", PASSPHRASE)
            .output()
            .unwrap(),
    );
    assert_eq!(exported["did_log_included"], true, "{exported}");
    let home = tempfile::tempdir().unwrap();
    ok(run(home.path(), &["init"]));
    ok(spl(home.path())
        .env("SPL_IMPORT_PASSPHRASE", PASSPHRASE)
        .args(["import", bundle.to_str().unwrap()])
        .output()
        .unwrap());
    // The DID's state came with its log: the head the next operation follows, its rotation key.
    let hash = a.did.trim_start_matches("did:sync:").to_string();
    let log = directory.get(&format!("/directory/{hash}/operations"));
    let installed: Value =
        serde_json::from_slice(&std::fs::read(home.path().join("identity.json")).unwrap()).unwrap();
    assert_eq!(
        installed["head"],
        log["operations"].as_array().unwrap().last().unwrap()["cid"]
    );
    assert_eq!(
        installed["rotation_keys"],
        log["operations"][0]["op"]["rotation_keys"]
    );
    let token = bootstrap_admin(home.path());
    let mut a2 = Node::adopt(home, token);
    assert_eq!(a2.did, a.did);
    a2.serve(&["--directory", &directory.url]);

    // C is paused: only the directory will tell it where A went.
    c.json(&["federation", "pause", &a.did]);
    let fenced = json(
        spl(a2.home())
            .args(["--json", "fence", &a.url()])
            .output()
            .unwrap(),
    );
    assert_eq!(fenced["endpoint_published"]["ok"], true, "{fenced}");
    let log = directory.get(&format!("/directory/{hash}/operations"));
    let last = log["operations"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        last["op"]["services"]["syncropel"]["endpoint"],
        a2.url().as_str(),
        "{last}"
    );
    a.stop();

    written.push(emit(&a2, 1));
    c.json(&["federation", "resume", &a.did]);
    let expected: HashSet<String> = ids(&written).into_iter().collect();
    let followed = eventually(FOLLOW, || {
        let held: HashSet<String> = ids(&c.records("th_dir")).into_iter().collect();
        expected.is_subset(&held)
    });
    assert!(followed, "C did not find A2 within {FOLLOW:?}");
    assert_eq!(c.records("th_dir").len(), written.len(), "no record twice");
    let pair = c.json(&["federation", "show", &a.did]);
    assert_eq!(pair["peer_url"], a2.url().as_str(), "{pair}");
    let refreshed: Vec<Value> = c
        .records("th_federation_pairs")
        .into_iter()
        .filter(|r| r["body"]["op"] == "url_refreshed")
        .collect();
    assert_eq!(refreshed.len(), 1, "{refreshed:?}");
    assert_eq!(refreshed[0]["body"]["fields"]["via"], "did_resolution");
    let _ = std::fs::remove_file(&bundle);
}

/// A record on `th_dir` written as the node's did:sync (signed by its key).
fn emit(node: &Node, n: u64) -> Value {
    let record = node.json(&[
        "emit",
        "--act",
        "DO",
        "--thread",
        "th_dir",
        "--body",
        &json!({"n": n}).to_string(),
    ]);
    assert_eq!(record["actor"], node.did.as_str(), "{record}");
    record
}

/// When the home that held the rotation key is gone before it could be fenced, the owner points
/// the did:sync at its new home with the recovery key (`spl identity endpoint`); a key that is
/// not a rotation key of the DID changes nothing.
#[test]
fn the_recovery_key_points_a_did_sync_at_its_new_home() {
    let directory = Directory::start();
    let home = tempfile::tempdir().unwrap();
    ok(run(home.path(), &["init"]));
    let recovery = syncropel_protocol::Keypair::generate();
    let upgraded = upgrade_to_sync(
        home.path(),
        &directory.url,
        &["--recovery-key", &recovery.did_key()],
    );
    let did = upgraded["did"].as_str().unwrap().to_string();
    let hash = did.trim_start_matches("did:sync:").to_string();
    let operations =
        || directory.get(&format!("/directory/{hash}/operations"))["operations"].clone();
    let keys = tempfile::tempdir().unwrap();
    let write_key = |name: &str, key: &syncropel_protocol::Keypair| {
        let path = keys.path().join(name);
        std::fs::write(&path, format!("{}\n", hex::encode(key.seed()))).unwrap();
        path
    };

    let stranger = write_key("stranger.key", &syncropel_protocol::Keypair::generate());
    let refused = failed(
        spl(home.path())
            .args(["identity", "endpoint", "http://127.0.0.1:9/new"])
            .arg("--key-file")
            .arg(&stranger)
            .output()
            .unwrap(),
    );
    assert!(refused.contains("holds no rotation key"), "{refused}");
    assert_eq!(operations().as_array().unwrap().len(), 1);

    let key = write_key("recovery.key", &recovery);
    let published = json(
        spl(home.path())
            .args(["--json", "identity", "endpoint", "http://127.0.0.1:9/new"])
            .arg("--key-file")
            .arg(&key)
            .output()
            .unwrap(),
    );
    assert_eq!(published["did"], did.as_str(), "{published}");
    let log = operations();
    let last = log.as_array().unwrap().last().unwrap();
    assert_eq!(last["cid"], published["head"]);
    assert_eq!(
        last["op"]["services"]["syncropel"]["endpoint"],
        "http://127.0.0.1:9/new"
    );

    let plain = tempfile::tempdir().unwrap();
    ok(run(plain.path(), &["init"]));
    let not_sync = failed(
        spl(plain.path())
            .args(["identity", "endpoint", "http://127.0.0.1:9/new"])
            .arg("--key-file")
            .arg(&key)
            .output()
            .unwrap(),
    );
    assert!(not_sync.contains("is not a did:sync"), "{not_sync}");
}
