//! `POST /v1/records/query` (protocol.md §11.6) and `POST /v1/records/search` (§11.7) over HTTP
//! against a real steward (checklist 18-20). Queries go through the typed client (its answer's
//! status and JSON included); searches are read as sent, since their tests check the
//! protocol.md §11.7 shape and send what no typed request holds.

mod budget;
mod query;
mod search;

use futures_util::StreamExt;
use serde_json::{json, Value};
use syncropel_client::api::{QueryRequest, SearchRequest};
use syncropel_testkit::{envelope, error_code, Node, Options};

const QUERY: &str = "/v1/records/query";
const SEARCH: &str = "/v1/records/search";
const ALICE: &str = "did:example:alice";
const BOB: &str = "did:example:bob";
const CAROL: &str = "did:example:carol";

async fn node() -> Node {
    Node::start(Options::default()).await
}

/// A record envelope with its own actor and act.
fn record(thread: &str, clock: i64, actor: &str, act: &str, body: Value) -> Value {
    let mut record = envelope(thread, clock, body);
    record["actor"] = json!(actor);
    record["act"] = json!(act);
    record
}

/// Writes `count` small records on `thread` a few at a time, so group commit keeps it quick.
async fn write_many(node: &Node, thread: &str, count: i64, body: Value) {
    futures_util::stream::iter(1..=count)
        .for_each_concurrent(8, |clock| {
            let mut body = body.clone();
            body["n"] = json!(clock);
            async move {
                node.write(&envelope(thread, clock, body)).await;
            }
        })
        .await;
}

#[tokio::test]
async fn malformed_json_is_invalid_json() {
    let node = node().await;
    for body in [
        r#"{"filter":"#,
        r#"{"filter":{}} trailing"#,
        r#"{"filter":{},"filter":{}}"#,
        r#"{"filter":{"body.x":NaN}}"#,
    ] {
        for path in [QUERY, SEARCH] {
            let (status, answer) = node.steward.post_raw(&node.token, path, body).await;
            assert_eq!(status, 400, "{path} {body}: {answer}");
            assert_eq!(error_code(&answer), "INVALID_JSON", "{path} {body}");
        }
    }
}

#[tokio::test]
async fn query_and_search_need_the_read_scope() {
    let node = node().await;
    node.write(&envelope("th_acl", 1, json!({"text": "visible"})))
        .await;
    let reader = node
        .steward
        .client(&node.steward.token(&["records:read"], &[]).await);
    let writer = node.steward.token(&["records:write"], &[]).await;
    let query = QueryRequest {
        filter: Some(json!({})),
        thread: Some("th_acl".into()),
        ..QueryRequest::default()
    };
    let search = SearchRequest {
        query: "visible".into(),
        ..SearchRequest::default()
    };
    let found = reader.query::<Value>(&query).await.unwrap();
    assert_eq!(found.status(), 200, "{}", found.json());
    assert_eq!(
        found.json()["data"].as_array().unwrap().len(),
        1,
        "{}",
        found.json()
    );
    let found = reader.search::<Value>(&search).await.unwrap();
    assert_eq!(found.status(), 200, "{}", found.json());
    assert_eq!(
        found.json()["data"].as_array().unwrap().len(),
        1,
        "{}",
        found.json()
    );
    let requests = [
        (QUERY, serde_json::to_value(&query).unwrap()),
        (SEARCH, serde_json::to_value(&search).unwrap()),
    ];
    for (path, request) in requests {
        let (status, answer) = node.steward.post_anonymous(path, &request).await;
        assert_eq!(status, 401, "{path}: {answer}");
        assert_eq!(error_code(&answer), "AUTH_REQUIRED");

        let (status, answer) = node.steward.post(&writer, path, &request).await;
        assert_eq!(status, 403, "{path}: {answer}");
        assert_eq!(error_code(&answer), "SCOPE_FORBIDDEN");
    }
}
