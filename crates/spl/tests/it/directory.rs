//! `spl serve --directory-enabled`: the steward serves the did:sync directory at `/directory/*`,
//! the routes and JSON of the `directory` service, over `directory.db` in its home. A home
//! registers and rotates its DID there with the CLI, ops posted directly are answered as the
//! service answers them, everything survives a restart, the directory's bounds hold, and a
//! steward without the flag serves no directory.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;

use serde_json::Value;
use sqlx::{Connection, SqliteConnection};
use syncropel_directory::MAX_BODY_BYTES;
use syncropel_protocol::did_sync::{self, sign_operation, OpType, Operation, Service};
use syncropel_protocol::Keypair;

use crate::common::{json, ok, run, upgrade_to_sync, Steward};

fn block<F: Future>(work: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(work)
}

/// An HTTP answer: status, JSON body (the text as a string when it is not JSON), `Retry-After`.
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<String>,
}

fn send(method: reqwest::Method, url: &str, body: Option<String>) -> Answer {
    block(async {
        let mut request = reqwest::Client::new().request(method, url);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            body,
            retry_after,
        }
    })
}

fn get(url: &str) -> Answer {
    send(reqwest::Method::GET, url, None)
}

fn post(url: &str, body: impl Into<String>) -> Answer {
    send(reqwest::Method::POST, url, Some(body.into()))
}

/// Asserts an answer in the ApiError shape with `status` and `code`.
fn assert_error(answer: &Answer, status: u16, code: &str) {
    let body = &answer.body;
    assert_eq!(answer.status, status, "{body}");
    assert_eq!(body["object"], "error", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["type"].is_string(), "{body}");
    assert!(body["message"].is_string(), "{body}");
}

/// A DID's rotation key (`host`) and record key, and the ops they sign.
struct Keys {
    host: Keypair,
    record: Keypair,
}

impl Keys {
    fn new(seed: u8) -> Keys {
        Keys {
            host: Keypair::from_seed(&[seed; 32]),
            record: Keypair::from_seed(&[seed.wrapping_add(1); 32]),
        }
    }

    fn op(&self, kind: OpType, prev: Option<&str>, handle: &str) -> Operation {
        let record = self.record.did_key();
        Operation {
            kind,
            prev: prev.map(str::to_owned),
            signing_keys: BTreeMap::from([(
                "key-1".to_owned(),
                record.trim_start_matches("did:key:").to_owned(),
            )]),
            rotation_keys: vec![self.host.did_key()],
            handles: vec![handle.to_owned()],
            namespaces: Vec::new(),
            services: BTreeMap::from([(
                "syncropel".to_owned(),
                Service {
                    kind: "syncropel".to_owned(),
                    endpoint: format!("https://{handle}.example"),
                },
            )]),
            compromised: Vec::new(),
            created_at: "2026-05-01T12:00:00Z".to_owned(),
            sig: None,
        }
    }

    fn genesis(&self, handle: &str) -> Value {
        sign_operation(&self.op(OpType::Genesis, None, handle), &self.host)
    }

    fn update(&self, prev: &str, handle: &str) -> Value {
        sign_operation(&self.op(OpType::Update, Some(prev), handle), &self.host)
    }
}

fn hash_of(genesis: &Value) -> String {
    did_sync::did_from_genesis(genesis)
        .trim_start_matches("did:sync:")
        .to_owned()
}

/// The journal mode recorded in the SQLite file at `path` (read while nothing has it open).
fn journal_mode(path: &Path) -> String {
    block(async {
        let url = format!("sqlite://{}", path.display());
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        mode
    })
}

#[test]
fn a_steward_with_the_flag_serves_the_directory_and_keeps_it_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("steward");
    let mut steward = Steward::start(&home, &["--directory-enabled"]);
    assert!(
        home.join("directory.db").is_file(),
        "created on first start"
    );
    let base = steward.url.clone();

    // Another home registers its did:sync here with the CLI, this steward named as its directory
    // exactly as a `directory` service would be, and rotates its key there.
    let bob = dir.path().join("bob");
    let bob_key = ok(run(&bob, &["init"]));
    let upgraded = upgrade_to_sync(
        &bob,
        &base,
        &[
            "--handle",
            "bob-dir",
            "--service-endpoint",
            "https://bob.example",
        ],
    );
    let bob_did = upgraded["did"].as_str().unwrap().to_owned();
    let bob_hash = bob_did.trim_start_matches("did:sync:").to_owned();
    assert_eq!(upgraded["directory"], base.as_str());
    let found = get(&format!("{base}/directory/handle/bob-dir"));
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.body["did"], bob_did.as_str());
    let document = get(&format!("{base}/directory/{bob_hash}/did.json"));
    assert_eq!(document.status, 200, "{}", document.body);
    assert_eq!(document.body["id"], bob_did.as_str());
    assert_eq!(
        document.body["service"][0]["serviceEndpoint"],
        "https://bob.example"
    );
    let rotated = json(run(&bob, &["--json", "identity", "rotate"]));
    let new_key = rotated["signer"].as_str().unwrap().to_owned();
    assert_ne!(new_key, bob_key);
    let resolved = get(&format!("{base}/directory/resolve?did={bob_did}"));
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    assert_eq!(
        resolved.body["assertionMethod"],
        serde_json::json!([format!("{bob_did}#key-2")])
    );
    assert!(
        resolved
            .body
            .to_string()
            .contains(new_key.trim_start_matches("did:key:")),
        "{}",
        resolved.body
    );

    // A genesis and an update that changes the handle, posted directly: the service's answers.
    let alice = Keys::new(40);
    let genesis = alice.genesis("alice-dir");
    let hash = hash_of(&genesis);
    let created = post(&format!("{base}/directory/genesis"), genesis.to_string());
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["object"], "did_operation");
    assert_eq!(created.body["did"], format!("did:sync:{hash}"));
    assert_eq!(created.body["cid"], did_sync::cid(&genesis));
    let retried = post(&format!("{base}/directory/genesis"), genesis.to_string());
    assert_eq!(
        retried.status, 200,
        "a byte-identical retry: {}",
        retried.body
    );
    let update = alice.update(&did_sync::cid(&genesis), "alice-renamed");
    let updated = post(
        &format!("{base}/directory/update/{hash}"),
        update.to_string(),
    );
    assert_eq!(updated.status, 200, "{}", updated.body);
    let renamed = get(&format!("{base}/directory/handle/alice-renamed"));
    assert_eq!(renamed.body["did"], format!("did:sync:{hash}"));
    assert_error(
        &get(&format!("{base}/directory/handle/alice-dir")),
        404,
        "NOT_FOUND",
    );

    let before: Vec<Value> = [&bob_hash, &hash]
        .iter()
        .flat_map(|h| {
            [
                get(&format!("{base}/directory/{h}/operations")).body,
                get(&format!("{base}/directory/{h}/did.json")).body,
            ]
        })
        .collect();
    assert_eq!(before[0]["operations"].as_array().unwrap().len(), 2);
    assert_eq!(before[2]["operations"].as_array().unwrap().len(), 2);
    let export = get(&format!("{base}/directory/export"));
    assert_eq!(export.body.as_str().unwrap().lines().count(), 4);

    // Stopped, the store is a WAL file; started again (the flag from the environment), it
    // serves the same logs and documents.
    ok(run(&home, &["stop"]));
    steward.wait_for_exit();
    assert_eq!(journal_mode(&home.join("directory.db")), "wal");
    let log = dir.path().join("restart.log");
    let steward = Steward::start_logging(&home, &[], &[("SPL_DIRECTORY_ENABLED", "true")], &log);
    let base = steward.url.clone();
    let after: Vec<Value> = [&bob_hash, &hash]
        .iter()
        .flat_map(|h| {
            [
                get(&format!("{base}/directory/{h}/operations")).body,
                get(&format!("{base}/directory/{h}/did.json")).body,
            ]
        })
        .collect();
    assert_eq!(after, before);
    let found = get(&format!("{base}/directory/handle/bob-dir"));
    assert_eq!(found.body["did"], bob_did.as_str());
}

#[test]
fn without_the_flag_directory_routes_answer_404() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("steward");
    let steward = Steward::start(&home, &[]);
    let base = &steward.url;
    let genesis = Keys::new(50).genesis("nobody");
    let hash = hash_of(&genesis);

    assert_error(
        &post(&format!("{base}/directory/genesis"), genesis.to_string()),
        404,
        "NOT_FOUND",
    );
    for path in [
        format!("/directory/{hash}/did.json"),
        format!("/directory/{hash}/operations"),
        "/directory/handle/nobody".to_owned(),
        format!("/directory/resolve?did=did:sync:{hash}"),
    ] {
        assert_error(&get(&format!("{base}{path}")), 404, "NOT_FOUND");
    }
    assert!(!home.join("directory.db").exists());

    // A directory in memory would lose the DIDs registered at it: the flags are refused together.
    let memory = run(
        &dir.path().join("memory"),
        &["serve", "--memory", "--directory-enabled", "--port", "0"],
    );
    assert_eq!(memory.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&memory.stderr).contains("cannot be used with"));
}

#[test]
fn the_mounted_directory_keeps_its_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("steward");
    let steward = Steward::start(&home, &["--directory-enabled"]);
    let base = &steward.url;
    let keys = Keys::new(60);
    let genesis = keys.genesis("bounded");
    let hash = hash_of(&genesis);

    // Over the directory's own 16 KiB, though far under the steward's 1 MiB: 413, nothing kept.
    let padded = format!(
        "{:<width$}",
        genesis.to_string(),
        width = MAX_BODY_BYTES + 1
    );
    assert_error(
        &post(&format!("{base}/directory/genesis"), padded),
        413,
        "PAYLOAD_TOO_LARGE",
    );
    let flood = "x".repeat(MAX_BODY_BYTES * 4);
    assert_error(
        &post(&format!("{base}/directory/update/{hash}"), flood),
        413,
        "PAYLOAD_TOO_LARGE",
    );
    assert_error(
        &get(&format!("{base}/directory/{hash}/did.json")),
        404,
        "NOT_FOUND",
    );
    let export = get(&format!("{base}/directory/export"));
    assert_eq!(export.status, 200);
    assert_eq!(export.body, "", "nothing stored");

    // The per-DID rate limit (10 ops an hour) holds too: the eleventh op is refused with 429.
    let created = post(&format!("{base}/directory/genesis"), genesis.to_string());
    assert_eq!(created.status, 201, "{}", created.body);
    let mut prev = did_sync::cid(&genesis);
    for n in 1..10 {
        let update = keys.update(&prev, &format!("bounded-{n}"));
        let answer = post(
            &format!("{base}/directory/update/{hash}"),
            update.to_string(),
        );
        assert_eq!(answer.status, 200, "update {n}: {}", answer.body);
        prev = did_sync::cid(&update);
    }
    let refused = post(
        &format!("{base}/directory/update/{hash}"),
        keys.update(&prev, "bounded-10").to_string(),
    );
    assert_error(&refused, 429, "RATE_LIMITED");
    assert!(refused.retry_after.is_some(), "Retry-After is sent");
    let log = get(&format!("{base}/directory/{hash}/operations"));
    assert_eq!(log.body["operations"].as_array().unwrap().len(), 10);
}
