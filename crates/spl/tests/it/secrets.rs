//! A secret set and read back through `spl serve` never appears in the store file, the logs
//! (at debug level) or an export bundle (protocol.md §14): only its sealed form is stored.

use serde_json::{json, Value};

use crate::common::{bootstrap_admin, json as json_of, ok, run, spl, Steward};

/// Not shaped like a key: redaction cannot be what hides it.
const VALUE: &str = "correct horse battery staple 9137";

#[test]
fn a_secret_never_reaches_the_store_file_the_logs_or_a_bundle() {
    let home = tempfile::tempdir().unwrap();
    ok(run(home.path(), &["init"]));
    let token = bootstrap_admin(home.path());
    let log_path = home.path().join("serve.log");
    let mut steward = Steward::start_logging(home.path(), &[], &[("RUST_LOG", "debug")], &log_path);
    let url = steward.url.clone();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let http = reqwest::Client::new();
        let call = |operation: &str, body: Value| {
            http.post(format!("{url}/v1/secrets/{operation}"))
                .bearer_auth(&token)
                .json(&body)
                .send()
        };
        let set = call("set", json!({"handle": "db-password", "value": VALUE}))
            .await
            .unwrap();
        assert_eq!(set.status(), 200);
        let got: Value = call("get", json!({"handle": "db-password"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got["value"], VALUE);
    });
    let bundle = home.path().join("secrets.tar.zst");
    let exported = json_of(
        spl(home.path())
            .args([
                "--endpoint",
                &url,
                "--token",
                &token,
                "--json",
                "export",
                "--no-identity",
            ])
            .arg("--out")
            .arg(&bundle)
            .output()
            .unwrap(),
    );
    assert!(exported["records"].as_u64().unwrap() > 0, "{exported}");
    ok(run(home.path(), &["stop"]));
    steward.wait_for_exit();

    let needle = VALUE.as_bytes();
    let holds = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    for file in ["hub.db", "hub.db-wal", "hub.db-shm", "serve.log"] {
        if let Ok(bytes) = std::fs::read(home.path().join(file)) {
            assert!(!holds(&bytes), "{file} holds the value");
        }
    }
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logged.lines().count() > 5,
        "debug logs were written: {logged}"
    );
    let mut files = 0;
    syncropel_bundle::entries(
        std::io::BufReader::new(std::fs::File::open(&bundle).unwrap()),
        &syncropel_bundle::Limits::default(),
        |path, bytes| {
            files += 1;
            assert!(!holds(bytes), "{path} in the bundle holds the value");
            Ok(())
        },
    )
    .unwrap();
    assert!(files > 3);
}
