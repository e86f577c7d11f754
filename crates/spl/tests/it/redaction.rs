//! Logs redact credential-shaped strings (protocol.md §14): each shape sent to a running `spl
//! serve` where it ends up in a log line (the refusal it earns, with its URI) appears there only
//! as `<redacted:N-chars>`.

use crate::common::{bootstrap_admin, ok, run, Steward};

const KEYS: &[&str] = &[
    "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv",
    "sk-proj-AbCdEfGhIjKlMnOpQrStUv",
    "sk-AbCdEfGhIjKlMnOpQrStUvWx",
    "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl",
    "AKIAABCDEFGHIJKLMNOP",
    "spl_prod_sa_abcdefghijklmnop_AbCdEfGhIjKlMnOpQrStUvWxYz012345",
];

#[test]
fn credential_shaped_strings_never_reach_the_logs() {
    let home = tempfile::tempdir().unwrap();
    ok(run(home.path(), &["init"]));
    bootstrap_admin(home.path());
    let log_path = home.path().join("serve.log");
    for format in ["text", "json"] {
        let mut steward =
            Steward::start_logging(home.path(), &["--log-format", format], &[], &log_path);
        let url = steward.url.clone();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let http = reqwest::Client::new();
            for key in KEYS {
                // A bearer nobody issued, and the key again in the query: a 401 logged with its URI.
                let answer = http
                    .get(format!("{url}/v1/records?thread=th_x&api_key={key}"))
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.status(), 401);
            }
        });
        steward.kill_9();
        let logged = std::fs::read_to_string(&log_path).unwrap();
        let refusals = logged.lines().filter(|l| l.contains("refused")).count();
        assert!(refusals >= KEYS.len(), "{format}: {logged}");
        assert!(logged.contains("<redacted:"), "{format}: {logged}");
        for key in KEYS {
            assert!(
                !logged.contains(key),
                "{format}: {key} was logged: {logged}"
            );
        }
    }
}
