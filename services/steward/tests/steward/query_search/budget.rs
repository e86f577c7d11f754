//! What one rich query may cost (protocol.md §11.6, "Budget"): `$like` matches in time linear in
//! the text, and a query past its rows, time or sort reach is refused, not run to the end; a page
//! stops at its byte budget and the cursor carries on.

use std::time::Duration;

use serde_json::{json, Value};
use syncropel_steward::state::{Limits, QueryBudget};
use syncropel_testkit::{envelope, error_code, Node, Options};

use super::{write_many, QUERY};

async fn with_budget(query: QueryBudget) -> Node {
    Node::start(Options {
        limits: Limits {
            query,
            ..Limits::default()
        },
        ..Options::default()
    })
    .await
}

fn refused_over_budget(status: u16, answer: &Value) {
    assert_eq!(status, 422, "{answer}");
    assert_eq!(error_code(answer), "QUERY_BUDGET_EXCEEDED", "{answer}");
}

/// The review's CPU attack: a 900 KB string and the longest pattern that can never match it,
/// sent at once from as many callers as the machine has cores, and more. Each answers (no
/// match) while the server keeps serving; an over-long pattern is refused before any scan.
#[tokio::test]
async fn like_patterns_cannot_stall_the_server() {
    let node = Node::start(Options::default()).await;
    node.write(&envelope("th_big", 1, json!({"s": "a".repeat(900_000)})))
        .await;
    let pattern = format!("%{}b", "a".repeat(254));
    let attack = json!({"filter": {"body.s": {"$like": pattern}}});
    let attacks = (0..4).map(|_| node.post(QUERY, &attack));
    let health = async {
        let (status, _) = node.get("/health").await;
        status
    };
    let (answers, health) = tokio::join!(futures_util::future::join_all(attacks), health);
    assert_eq!(health, 200);
    for (status, answer) in answers {
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["data"], json!([]), "{answer}");
    }
    let ilike = json!({"filter": {"body.s": {"$ilike": "%A%"}}});
    let (status, answer) = node.post(QUERY, &ilike).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["matched_total"], 1, "{answer}");

    let too_long = format!("%{}b", "a".repeat(100_000));
    let (status, answer) = node
        .post(QUERY, &json!({"filter": {"body.s": {"$like": too_long}}}))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_code(&answer), "INVALID_FILTER", "{answer}");
}

#[tokio::test]
async fn queries_past_their_row_or_time_budget_are_refused() {
    let node = with_budget(QueryBudget {
        max_rows_scanned: 50,
        ..QueryBudget::default()
    })
    .await;
    write_many(&node, "th_many", 40, json!({})).await;
    write_many(&node, "th_few", 20, json!({})).await;
    // Every record of the tenant: more rows than the budget.
    let (status, answer) = node
        .post(QUERY, &json!({"filter": {"body.n": {"$gte": 0}}}))
        .await;
    refused_over_budget(status, &answer);
    // The thread's equality narrows the rows in the store first: within budget.
    let (status, answer) = node
        .post(
            QUERY,
            &json!({"filter": {"body.n": {"$gte": 0}}, "thread": "th_few"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["matched_total"], 20, "{answer}");

    let node = with_budget(QueryBudget {
        max_time: Duration::ZERO,
        ..QueryBudget::default()
    })
    .await;
    write_many(&node, "th_slow", 5, json!({})).await;
    let (status, answer) = node.post(QUERY, &json!({"filter": {}})).await;
    refused_over_budget(status, &answer);
}

#[tokio::test]
async fn a_sorted_query_keeps_only_its_reach() {
    let node = Node::start(Options::default()).await;
    write_many(&node, "th_sorted", 30, json!({})).await;
    let (status, answer) = node
        .post(
            QUERY,
            &json!({"filter": {}, "sort": {"body.n": -1}, "offset": 9_500, "limit": 1000}),
        )
        .await;
    refused_over_budget(status, &answer);
    // Within reach: the order of the full sort, page by page.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request =
            json!({"filter": {}, "thread": "th_sorted", "sort": {"body.n": -1}, "limit": 7});
        if let Some(cursor) = &cursor {
            request["cursor"] = json!(cursor);
        }
        let (status, answer) = node.post(QUERY, &request).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["matched_total"], 30, "{answer}");
        for record in answer["data"].as_array().unwrap() {
            seen.push(record["body"]["n"].as_i64().unwrap());
        }
        match answer["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, (1..=30).rev().collect::<Vec<i64>>());
}

#[tokio::test]
async fn a_page_of_large_records_stops_at_its_byte_budget() {
    let node = Node::start(Options::default()).await;
    for clock in 1..=6 {
        node.write(&envelope(
            "th_large",
            clock,
            json!({"s": "x".repeat(900_000)}),
        ))
        .await;
    }
    for sort in [Value::Null, json!({"clock": 1})] {
        let mut clocks = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut request =
                json!({"filter": {}, "thread": "th_large", "limit": 10, "sort": sort});
            if let Some(cursor) = &cursor {
                request["cursor"] = json!(cursor);
            }
            let (status, answer) = node.post(QUERY, &request).await;
            assert_eq!(status, 200);
            let data = answer["data"].as_array().unwrap();
            // 4 MiB holds four of these records, not five.
            assert!(data.len() <= 4, "{} records in one page", data.len());
            clocks.extend(data.iter().map(|r| r["clock"].as_i64().unwrap()));
            pages += 1;
            match answer["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        assert_eq!(pages, 2, "{sort}");
        assert_eq!(clocks, (1..=6).collect::<Vec<i64>>(), "{sort}");
    }
}
