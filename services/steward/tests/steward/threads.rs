//! Opening and closing threads (`threads:write`): an opened thread starts with the steward's
//! record; a closed one keeps its records readable and takes no new client record, also after a
//! restart.

use serde_json::json;
use syncropel_testkit::{error_code, know, Options, TestSteward};

#[tokio::test]
async fn a_closed_thread_is_read_only_and_stays_closed() {
    let steward = TestSteward::start().await;
    let admin = steward.admin().await;
    let opener = steward.token(&["threads:write"], &[]).await;

    let (status, opened) = steward
        .post(&opener, "/v1/threads", &json!({"title": "release 1.2"}))
        .await;
    assert_eq!(status, 201, "{opened}");
    let thread = opened["thread"].as_str().unwrap().to_string();
    assert!(thread.starts_with("th_") && thread.len() == 67, "{thread}");
    assert_eq!(opened["body"]["kind"], "core.thread.opened.v1");
    assert_eq!(opened["actor"], steward.did().as_str());
    let (status, body) = steward
        .post(&opener, "/v1/threads", &json!({"id": thread}))
        .await;
    assert_eq!((status, error_code(&body)), (409, "precondition_failed"));
    let (status, body) = steward
        .post(&opener, "/v1/threads", &json!({"id": "th_audit_x"}))
        .await;
    assert_eq!((status, error_code(&body)), (403, "RESERVED_THREAD"));
    let (status, body) = steward
        .post(&opener, "/v1/threads", &json!({"namespace": "nowhere"}))
        .await;
    assert_eq!((status, error_code(&body)), (403, "NAMESPACE_REJECTED"));

    let write = |clock: i64| know(&thread, "did:sync:user:ana", clock, json!({"n": clock}));
    let (status, _) = steward.post(&admin, "/v1/records", &write(1)).await;
    assert_eq!(status, 201);

    let path = format!("/v1/threads/{thread}");
    let close = || {
        steward
            .http
            .delete(format!("{}{path}", steward.url))
            .bearer_auth(&opener)
    };
    let (status, closed) = steward.send(close()).await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["already_closed"], false);
    let (status, body) = steward.post(&admin, "/v1/records", &write(2)).await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "precondition_failed"),
        "{body}"
    );
    let (status, batch) = steward
        .post(&admin, "/v1/records/batch", &json!({"records": [write(3)]}))
        .await;
    assert_eq!(
        (status, &batch["data"][0]["status"]),
        (200, &json!(409)),
        "{batch}"
    );
    let (status, page) = steward
        .get(&admin, &format!("/v1/threads/{thread}/records"))
        .await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"]["kind"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        kinds,
        ["core.thread.opened.v1", "-", "core.thread.closed.v1"]
    );
    let (status, again) = steward.send(close()).await;
    assert_eq!((status, &again["already_closed"]), (200, &json!(true)));
    let unknown = steward
        .http
        .delete(format!("{}/v1/threads/th_never", steward.url))
        .bearer_auth(&opener);
    assert_eq!(steward.send(unknown).await.0, 404);
    let audit = steward
        .get(&admin, "/v1/records?thread=th_audit_threads")
        .await
        .1;
    assert_eq!(audit["data"].as_array().unwrap().len(), 2, "{audit}");

    let stopped = steward.stop().await;
    let steward = TestSteward::start_with(Options::restart(stopped)).await;
    let (status, body) = steward.post(&admin, "/v1/records", &write(4)).await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "precondition_failed"),
        "after a restart"
    );
}
