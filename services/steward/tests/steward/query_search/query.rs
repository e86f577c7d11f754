//! The rich query: filters, order, paging, projection, plans and refusals.

use serde_json::{json, Value};
use syncropel_client::api::{QueryAnswer, QueryRequest};
use syncropel_client::Reply;
use syncropel_testkit::{error_code, Node};

use super::{node, record, write_many, ALICE, BOB, CAROL, QUERY};

/// The query fixture: five records on `th_q`, told apart by their clock (1..=5) and written in
/// the sequence order 2, 5, 1, 4, 3 so that clock order and the default (sequence) order differ.
/// One more record lives on `th_q2` and one, in namespace `acme`, on `th_ns`.
async fn seed_query_fixture(node: &Node) -> Vec<Value> {
    let (status, answer) = node.post("/v1/namespaces", &json!({"id": "acme"})).await;
    assert_eq!(status, 201, "{answer}");
    let records = [
        record(
            "th_q",
            2,
            ALICE,
            "DO",
            json!({"kind": "core.task.record", "title": "write tests", "priority": 1, "awaits": "review"}),
        ),
        record(
            "th_q",
            5,
            CAROL,
            "DO",
            json!({"title": "no kind", "priority": null}),
        ),
        record(
            "th_q",
            1,
            ALICE,
            "INTEND",
            json!({"kind": "core.task.record", "title": "Write the spec", "priority": 3,
                   "tags": ["a", "b"], "meta": {"owner": "alice", "size": {"n": 1}}}),
        ),
        record(
            "th_q",
            4,
            BOB,
            "KNOW",
            json!({"kind": "core.task.record.v1", "title": "WRITE docs", "priority": 2, "done": true}),
        ),
        record(
            "th_q",
            3,
            BOB,
            "INTEND",
            json!({"kind": "core.note.v1", "title": "Lunch", "priority": "high"}),
        ),
        record(
            "th_q2",
            1,
            ALICE,
            "INTEND",
            json!({"kind": "core.task.record", "title": "Write elsewhere"}),
        ),
        record(
            "th_ns",
            1,
            ALICE,
            "DO",
            json!({"namespace": "acme", "title": "namespaced"}),
        ),
    ];
    let mut stored = Vec::new();
    for r in &records {
        stored.push(node.write(r).await);
    }
    stored
}

/// A successful query answer: `200`, and a list (the typed answer reads its `object`).
async fn query(node: &Node, request: Value) -> Reply<QueryAnswer> {
    let typed: QueryRequest = serde_json::from_value(request.clone()).unwrap();
    let answer = node
        .client
        .query(&typed)
        .await
        .unwrap_or_else(|e| panic!("{request}: {e}"));
    assert_eq!(answer.status(), 200, "{request}: {}", answer.json());
    assert_eq!(answer.json()["object"], "list", "{}", answer.json());
    answer
}

fn clocks(answer: &Reply<QueryAnswer>) -> Vec<i64> {
    let sent = answer.json();
    assert!(sent["data"].is_array(), "no data: {sent}");
    answer
        .data
        .iter()
        .map(|r| r["clock"].as_i64().unwrap())
        .collect()
}

/// Clocks of the `th_q` records matching `filter`, in answer order.
async fn matching(node: &Node, filter: Value) -> Vec<i64> {
    clocks(&query(node, json!({"filter": filter, "thread": "th_q"})).await)
}

/// Checks every `(filter, expected clocks)` case and reports all failures at once.
async fn check_filters(node: &Node, cases: Vec<(Value, Vec<i64>)>) {
    let mut failures = Vec::new();
    for (filter, expected) in cases {
        let got = matching(node, filter.clone()).await;
        if got != expected {
            failures.push(format!("{filter}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// Query: filters
// ---------------------------------------------------------------------------

#[tokio::test]
async fn each_comparison_operator_selects_the_expected_records() {
    let node = node().await;
    seed_query_fixture(&node).await;
    // Sequence order of th_q is clocks 2, 5, 1, 4, 3. Priorities: 1, null, 3, 2, "high".
    check_filters(
        &node,
        vec![
            (json!({"body.priority": {"$eq": 2}}), vec![4]),
            (json!({"body.priority": 2}), vec![4]),
            // Typed: the string "2" is not the number 2.
            (json!({"body.priority": {"$eq": "2"}}), vec![]),
            // $ne skips the record without a kind.
            (
                json!({"body.kind": {"$ne": "core.task.record"}}),
                vec![4, 3],
            ),
            (json!({"body.priority": {"$gt": 1}}), vec![1, 4]),
            (json!({"body.priority": {"$gte": 2}}), vec![1, 4]),
            (json!({"body.priority": {"$gte": 1}}), vec![2, 1, 4]),
            (json!({"body.priority": {"$lt": 3}}), vec![2, 4]),
            (json!({"body.priority": {"$lte": 3}}), vec![2, 1, 4]),
            // Strings order among strings only.
            (json!({"body.priority": {"$gt": "a"}}), vec![3]),
            // Several operators in one document AND together.
            (json!({"body.priority": {"$gte": 1, "$lt": 3}}), vec![2, 4]),
            (
                json!({"body.kind": {"$in": ["core.task.record", "core.task.record.v1"]}}),
                vec![2, 1, 4],
            ),
            (json!({"body.kind": {"$in": []}}), vec![]),
            (
                json!({"body.kind": {"$nin": ["core.task.record"]}}),
                vec![4, 3],
            ),
            (json!({"body.title": {"$like": "write%"}}), vec![2]),
            (json!({"body.title": {"$like": "%rite%"}}), vec![2, 1]),
            (json!({"body.title": {"$like": "Lunc_"}}), vec![3]),
            (json!({"body.title": {"$like": "Lun_"}}), vec![]),
            (json!({"body.title": {"$ilike": "write%"}}), vec![2, 1, 4]),
            (json!({"body.title": {"$ilike": "LUNCH"}}), vec![3]),
            (json!({"body.awaits": {"$exists": true}}), vec![2]),
            (json!({"body.awaits": {"$exists": false}}), vec![5, 1, 4, 3]),
            // An explicit null is present.
            (
                json!({"body.priority": {"$exists": true}}),
                vec![2, 5, 1, 4, 3],
            ),
            (json!({"body.priority": null}), vec![5]),
        ],
    )
    .await;
}

#[tokio::test]
async fn logical_operators_combine_filters() {
    let node = node().await;
    seed_query_fixture(&node).await;
    check_filters(
        &node,
        vec![
            (json!({}), vec![2, 5, 1, 4, 3]),
            // Members of one object AND together.
            (json!({"act": "INTEND", "body.priority": {"$gt": 2}}), vec![1]),
            (json!({"$and": [{"act": "INTEND"}, {"actor": BOB}]}), vec![3]),
            (
                json!({"$or": [{"body.priority": {"$gte": 3}}, {"body.awaits": {"$exists": true}}]}),
                vec![2, 1],
            ),
            (json!({"$not": {"act": "DO"}}), vec![1, 4, 3]),
            (json!({"$not": {"body.awaits": {"$exists": true}}}), vec![5, 1, 4, 3]),
            (
                json!({"$or": [
                    {"$and": [{"actor": ALICE}, {"act": "DO"}]},
                    {"$not": {"body.kind": {"$exists": true}}},
                ]}),
                vec![2, 5],
            ),
            // The request of protocol.md §11.6, less the thread.
            (
                json!({"act": "INTEND", "actor": ALICE,
                       "body.kind": {"$in": ["core.task.record", "core.task.record.v1"]},
                       "$or": [{"body.priority": {"$gte": 2}}, {"body.awaits": {"$exists": true}}]}),
                vec![1],
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn body_paths_walk_nested_objects() {
    let node = node().await;
    seed_query_fixture(&node).await;
    check_filters(
        &node,
        vec![
            (json!({"body.meta.owner": "alice"}), vec![1]),
            (json!({"body.meta.size.n": {"$gte": 1}}), vec![1]),
            // An object without $ keys is deep equality, not a subset match.
            (json!({"body.meta.size": {"n": 1}}), vec![1]),
            (json!({"body.meta": {"owner": "alice"}}), vec![]),
            // An array value is equality with the whole array.
            (json!({"body.tags": ["a", "b"]}), vec![1]),
            (json!({"body.tags": ["b", "a"]}), vec![]),
            // Paths walk object members only: no array indexing.
            (json!({"body.tags.0": "a"}), vec![]),
            (
                json!({"body.meta.owner.name": {"$exists": false}}),
                vec![2, 5, 1, 4, 3],
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn column_paths_filter_on_the_envelope() {
    let node = node().await;
    let stored = seed_query_fixture(&node).await;
    check_filters(
        &node,
        vec![
            (json!({"actor": CAROL}), vec![5]),
            (json!({"actor": {"$ne": ALICE}}), vec![5, 4, 3]),
            (json!({"act": "KNOW"}), vec![4]),
            (json!({"act": {"$in": ["KNOW", "DO"]}}), vec![2, 5, 4]),
            (json!({"clock": {"$gte": 2, "$lte": 4}}), vec![2, 4, 3]),
            (json!({"clock": 5}), vec![5]),
            (json!({"namespace": "default"}), vec![2, 5, 1, 4, 3]),
            (json!({"data_type": "SCALAR"}), vec![2, 5, 1, 4, 3]),
            (json!({"id": stored[4]["id"]}), vec![3]),
        ],
    )
    .await;

    // Without the thread shorthand, `thread` and `namespace` select across the tenant.
    let ids = |answer: Reply<QueryAnswer>| -> Vec<Value> {
        let sent = answer.json();
        assert!(sent["data"].is_array(), "no data: {sent}");
        answer.data.iter().map(|r| r["id"].clone()).collect()
    };
    let answer = query(&node, json!({"filter": {"thread": "th_q2"}})).await;
    assert_eq!(ids(answer), [stored[5]["id"].clone()]);
    let answer = query(&node, json!({"filter": {"namespace": "acme"}})).await;
    assert_eq!(ids(answer), [stored[6]["id"].clone()]);
    let answer = query(
        &node,
        json!({"filter": {"thread": {"$in": ["th_q2", "th_ns"]}, "actor": ALICE}}),
    )
    .await;
    assert_eq!(
        ids(answer),
        [stored[5]["id"].clone(), stored[6]["id"].clone()]
    );
}

// ---------------------------------------------------------------------------
// Query: order, paging, projection, plan
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sort_orders_both_ways_with_limit_and_offset() {
    let node = node().await;
    seed_query_fixture(&node).await;
    let cases = [
        (json!({}), vec![2, 5, 1, 4, 3]),
        (json!({"sort": {"clock": 1}}), vec![1, 2, 3, 4, 5]),
        (json!({"sort": {"clock": -1}}), vec![5, 4, 3, 2, 1]),
        (
            json!({"sort": {"clock": -1}, "limit": 2, "offset": 1}),
            vec![4, 3],
        ),
        (
            json!({"sort": {"clock": 1}, "limit": 10, "offset": 3}),
            vec![4, 5],
        ),
        (json!({"sort": {"clock": 1}, "offset": 9}), vec![]),
        (json!({"limit": 2, "offset": 1}), vec![5, 1]),
        (json!({"limit": 0}), vec![]),
        // A body path; ties (equal acts) fall back to sequence order.
        (
            json!({"filter": {"body.priority": {"$gte": 0}}, "sort": {"body.priority": 1}}),
            vec![2, 4, 1],
        ),
        (
            json!({"filter": {"body.priority": {"$gte": 0}}, "sort": {"body.priority": -1}}),
            vec![1, 4, 2],
        ),
        (json!({"sort": {"act": 1}}), vec![2, 5, 1, 3, 4]),
    ];
    for (mut request, expected) in cases {
        request["thread"] = json!("th_q");
        let answer = query(&node, request.clone()).await;
        assert_eq!(clocks(&answer), expected, "{request}");
    }
}

/// Follows `next_cursor` from `request` and returns each page's clocks.
async fn pages(node: &Node, request: Value) -> Vec<Vec<i64>> {
    let mut pages = Vec::new();
    let mut request = request;
    loop {
        let answer = query(node, request.clone()).await;
        pages.push(clocks(&answer));
        assert!(pages.len() <= 10, "cursor paging does not end: {pages:?}");
        match &answer.next_cursor {
            Some(cursor) => {
                assert_eq!(answer.json()["has_more"], true, "{}", answer.json());
                assert!(answer.has_more, "{answer:?}");
                request["cursor"] = json!(cursor);
            }
            None => {
                assert_eq!(answer.json()["has_more"], false, "{}", answer.json());
                assert!(!answer.has_more, "{answer:?}");
                return pages;
            }
        }
    }
}

#[tokio::test]
async fn cursor_pages_cover_every_match_once_sorted_and_unsorted() {
    let node = node().await;
    seed_query_fixture(&node).await;
    assert_eq!(
        pages(&node, json!({"thread": "th_q", "limit": 2})).await,
        [vec![2, 5], vec![1, 4], vec![3]]
    );
    assert_eq!(
        pages(
            &node,
            json!({"thread": "th_q", "limit": 2, "sort": {"clock": -1}})
        )
        .await,
        [vec![5, 4], vec![3, 2], vec![1]]
    );
    // With a filter, the cursor walks the matches only.
    assert_eq!(
        pages(
            &node,
            json!({"thread": "th_q", "limit": 1, "filter": {"act": "INTEND"}, "sort": {"clock": 1}})
        )
        .await,
        [vec![1], vec![3]]
    );

    // `offset` is ignored once a cursor is given.
    let first = query(&node, json!({"thread": "th_q", "limit": 2})).await;
    let cursor = first.next_cursor.clone();
    let with_offset = query(
        &node,
        json!({"thread": "th_q", "limit": 2, "cursor": cursor, "offset": 4}),
    )
    .await;
    assert_eq!(clocks(&with_offset), [1, 4]);

    let (status, answer) = node
        .post(
            QUERY,
            &json!({"thread": "th_q", "cursor": "%%not a cursor%%"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    error_code(&answer);
}

#[tokio::test]
async fn select_projects_the_named_paths() {
    let node = node().await;
    seed_query_fixture(&node).await;
    let answer = query(
        &node,
        json!({"thread": "th_q", "sort": {"clock": 1}, "limit": 2,
               "select": ["act", "body.title", "body.meta.owner"]}),
    )
    .await;
    let rows = &answer.data;
    assert_eq!(rows.len(), 2, "{answer:?}");
    for row in rows {
        let keys: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            keys.iter().all(|k| ["id", "act", "body"].contains(k)),
            "unselected members in {row}"
        );
    }
    assert_eq!(rows[0]["act"], "INTEND");
    assert_eq!(
        rows[0]["body"],
        json!({"title": "Write the spec", "meta": {"owner": "alice"}})
    );
    // An absent selected path is left out, not invented.
    assert_eq!(rows[1]["act"], "DO");
    assert_eq!(rows[1]["body"], json!({"title": "write tests"}));

    let (status, answer) = node
        .post(QUERY, &json!({"thread": "th_q", "select": ["sig"]}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&answer), "INVALID_FILTER");
}

#[tokio::test]
async fn explain_adds_a_plan_only_when_asked() {
    let node = node().await;
    seed_query_fixture(&node).await;
    let filter = json!({"act": "INTEND", "actor": ALICE,
                        "body.kind": {"$in": ["core.task.record"]},
                        "$or": [{"body.priority": {"$gte": 2}}, {"body.awaits": {"$exists": true}}]});

    let answer = query(&node, json!({"filter": filter, "explain": true})).await;
    assert_eq!(clocks(&answer), [1], "explain still answers the query");
    let plan = answer.plan.clone().expect("a plan");
    let sorted = |names: &[String]| -> Vec<String> {
        let mut names = names.to_vec();
        names.sort();
        names
    };
    assert_eq!(sorted(&plan.indexed_fields), ["act", "actor"]);
    assert_eq!(
        sorted(&plan.unindexed_fields),
        ["body.awaits", "body.kind", "body.priority"]
    );

    // Read as sent: without `explain` the answer has no `plan` member at all.
    for request in [
        json!({"filter": filter}),
        json!({"filter": filter, "explain": false}),
    ] {
        let (status, answer) = node.post(QUERY, &request).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer.get("plan").is_none(), "{answer}");
    }
}

#[tokio::test]
async fn a_large_limit_is_capped_at_1000() {
    let node = node().await;
    write_many(&node, "th_big", 1005, json!({})).await;

    let answer = query(&node, json!({"thread": "th_big", "limit": 5000})).await;
    assert_eq!(answer.data.len(), 1000);
    assert!(answer.capped);
    assert_eq!(answer.matched_total, 1005);
    let cursor = answer.next_cursor.clone().expect("more rows remain");
    let rest = query(
        &node,
        json!({"thread": "th_big", "limit": 5000, "cursor": cursor}),
    )
    .await;
    assert_eq!(rest.data.len(), 5);
    assert_eq!(rest.json()["next_cursor"], Value::Null);
    assert_eq!(rest.next_cursor, None);

    // As sent: `capped` is there and false, not left out.
    let exact = query(&node, json!({"thread": "th_big", "limit": 1000})).await;
    assert_eq!(exact.data.len(), 1000);
    assert_eq!(exact.json()["capped"], false, "{}", exact.json()["capped"]);

    let default = query(&node, json!({"thread": "th_big"})).await;
    assert_eq!(default.data.len(), 100);
    assert_eq!(
        default.json()["capped"],
        false,
        "{}",
        default.json()["capped"]
    );
}

#[tokio::test]
async fn matched_total_counts_every_match_not_just_the_page() {
    let node = node().await;
    seed_query_fixture(&node).await;
    for sort in [Value::Null, json!({"clock": -1})] {
        let answer = query(
            &node,
            json!({"thread": "th_q", "filter": {"body.kind": {"$exists": true}}, "limit": 1, "sort": sort}),
        )
        .await;
        assert_eq!(answer.data.len(), 1, "{answer:?}");
        assert_eq!(answer.matched_total, 4, "{answer:?}");
        assert!(answer.has_more, "{answer:?}");
    }
    let none = query(&node, json!({"filter": {"act": "SUBMIT_NOTHING"}})).await;
    // As sent: the members are there, not defaulted.
    assert_eq!(none.json()["matched_total"], 0, "{}", none.json());
    assert_eq!(none.json()["data"], json!([]), "{}", none.json());
    assert_eq!(none.json()["next_cursor"], Value::Null, "{}", none.json());
}

// ---------------------------------------------------------------------------
// Query: refusals and access
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bad_filters_are_invalid_filter_errors_naming_the_path() {
    let node = node().await;
    let cases = [
        (json!({"filter": {"kind": 1}}), "kind"),
        (json!({"filter": {"body": 1}}), "body"),
        (json!({"filter": {"sig": "x"}}), "sig"),
        (json!({"filter": {"canonical_json": "x"}}), "canonical_json"),
        (json!({"filter": {"body.tags[0]": "a"}}), "body.tags[0]"),
        (json!({"filter": {"body.": 1}}), "body."),
        (json!({"filter": {"$or": [{"bogus": 1}]}}), "bogus"),
        (json!({"filter": {"body.x": {"$regex": "a.*"}}}), "$regex"),
        (json!({"filter": {"$nor": [{"act": "DO"}]}}), "$nor"),
        (json!({"filter": {"body.x": {"$in": "a"}}}), "$in"),
        (json!({"filter": {"body.x": {"$gt": 1, "y": 2}}}), "body.x"),
        (json!({"filter": {"$not": [{"act": "DO"}]}}), "$not"),
        (json!({"filter": "act"}), "filter"),
        (json!({"sort": {"kind": 1}}), "kind"),
    ];
    for (request, named) in cases {
        let (status, answer) = node.post(QUERY, &request).await;
        assert_eq!(status, 400, "{request}: {answer}");
        assert_eq!(error_code(&answer), "INVALID_FILTER", "{request}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(named), "{request}: {message}");
    }
}

#[tokio::test]
async fn aggregation_is_refused_as_invalid_filter() {
    let node = node().await;
    for request in [
        json!({"filter": {}, "group_by": ["act"]}),
        json!({"filter": {}, "group_by": ["act"], "aggregates": {"n": {"$count": {}}}}),
        json!({"filter": {}, "aggregates": {"n": {"$count": {}}}}),
    ] {
        let (status, answer) = node.post(QUERY, &request).await;
        assert_eq!(status, 400, "{request}: {answer}");
        assert_eq!(error_code(&answer), "INVALID_FILTER", "{request}");
    }
}
