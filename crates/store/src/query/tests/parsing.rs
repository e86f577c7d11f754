//! Parsing: refused filters and request bodies, and what a valid request becomes.

use super::*;

// --- parse errors ------------------------------------------------------

#[test]
fn unknown_paths_are_named() {
    for path in [
        "kind",
        "body",
        "sig",
        "canonical_json",
        "sequence",
        "parents",
        "signer",
        "judged_by",
        "body.",
        "body..a",
        "body.a.",
        "body.a[0]",
        "body.a b",
        "Body.a",
    ] {
        assert_eq!(
            parse_error(json!({ path: 1 })),
            format!("unknown field path: {path}")
        );
    }
    assert_eq!(
        parse_error(json!({"$or": [{"body.ok": 1}, {"kind": 1}]})),
        "unknown field path: kind"
    );
}

#[test]
fn unknown_operators_are_named() {
    assert_eq!(parse_error(json!({"$nor": []})), "unknown operator: $nor");
    assert_eq!(
        parse_error(json!({"body.x": {"$regex": "a.*"}})),
        "unknown operator: $regex (on body.x)"
    );
    assert_eq!(
        parse_error(json!({"body.x": {"$not": {"$eq": 1}}})),
        "unknown operator: $not (on body.x)"
    );
}

#[test]
fn bad_shapes_are_refused() {
    assert_eq!(
        Filter::parse(&json!([])).unwrap_err().to_string(),
        "filter must be a JSON object"
    );
    assert_eq!(
        parse_error(json!({"$and": {"act": "INTEND"}})),
        "$and must be an array of filter objects"
    );
    assert_eq!(
        parse_error(json!({"$or": [{}, 3]})),
        "$or[1] must be a filter object"
    );
    assert_eq!(
        parse_error(json!({"$not": [{}]})),
        "$not must be a filter object"
    );
    assert_eq!(
        parse_error(json!({"body.x": {"$gt": 1, "a": 2}})),
        "value of body.x mixes $-operators with plain keys"
    );
    assert_eq!(
        parse_error(json!({"body.x": {"$in": 1}})),
        "$in on body.x requires an array"
    );
    assert_eq!(
        parse_error(json!({"act": {"$nin": "A"}})),
        "$nin on act requires an array"
    );
    assert_eq!(
        parse_error(json!({"body.x": {"$like": 1}})),
        "$like on body.x requires a string pattern"
    );
    assert_eq!(
        parse_error(json!({"body.x": {"$ilike": null}})),
        "$ilike on body.x requires a string pattern"
    );
    assert_eq!(
        parse_error(json!({"body.x": {"$exists": 1}})),
        "$exists on body.x requires a boolean"
    );
}

// --- request parsing ---------------------------------------------------

#[test]
fn request_defaults() {
    let request = QueryRequest::parse(&json!({"filter": {}})).unwrap();
    assert_eq!(
        request,
        QueryRequest {
            filter: Filter::And(vec![]),
            thread: None,
            sort: None,
            limit: DEFAULT_LIMIT,
            capped: false,
            offset: 0,
            cursor: None,
            select: None,
            explain: false,
        }
    );
    // Missing filter and explicit nulls mean "not set".
    let nulls = json!({"thread": null, "sort": null, "limit": null, "cursor": null});
    assert_eq!(QueryRequest::parse(&nulls).unwrap(), request);
}

#[test]
fn request_full() {
    let request = QueryRequest::parse(&json!({
        "filter": {"act": "INTEND"},
        "thread": "th_a",
        "sort": {"clock": -1},
        "limit": 20,
        "offset": 5,
        "cursor": "c1",
        "select": ["act", "body.kind"],
        "explain": true,
    }))
    .unwrap();
    assert_eq!(request.thread.as_deref(), Some("th_a"));
    assert_eq!(
        request.sort,
        Some(Sort {
            path: FieldPath::Column(Column::Clock),
            descending: true
        })
    );
    assert_eq!(
        (request.limit, request.capped, request.offset),
        (20, false, 5)
    );
    assert_eq!(request.cursor.as_deref(), Some("c1"));
    assert_eq!(
        request.select,
        Some(vec![
            FieldPath::Column(Column::Act),
            FieldPath::Body(vec!["kind".to_owned()]),
        ])
    );
    assert!(request.explain);
}

#[test]
fn limit_is_clamped_and_flagged() {
    let limit = |limit: Value| {
        let request = QueryRequest::parse(&json!({"filter": {}, "limit": limit})).unwrap();
        (request.limit, request.capped)
    };
    assert_eq!(limit(json!(5000)), (1000, true));
    assert_eq!(limit(json!(1000)), (1000, false));
    assert_eq!(limit(json!(1001)), (1000, true));
    assert_eq!(limit(json!(0)), (0, false));
    assert_eq!(limit(number("100000000000000000000000")), (1000, true));
}

#[test]
fn thread_folds_into_the_filter() {
    let request =
        QueryRequest::parse(&json!({"filter": {"act": "INTEND"}, "thread": "th_b"})).unwrap();
    assert_eq!(
        request.filter.column_equalities(),
        [
            (Column::Act, "INTEND".to_owned()),
            (Column::Thread, "th_b".to_owned())
        ]
    );
    assert!(!request.filter.matches(&record(1, json!({}))));
    let mut in_thread = record(1, json!({}));
    in_thread["thread"] = json!("th_b");
    assert!(request.filter.matches(&in_thread));

    let only_thread = QueryRequest::parse(&json!({"filter": {}, "thread": "th_a"})).unwrap();
    assert_eq!(
        only_thread.filter.column_equalities(),
        [(Column::Thread, "th_a".to_owned())]
    );
    assert!(only_thread.filter.matches(&record(1, json!({}))));
}

#[test]
fn aggregation_is_refused() {
    assert_eq!(
        request_error(json!({"filter": {}, "group_by": ["act"]})),
        "aggregation is not supported: group_by"
    );
    assert_eq!(
        request_error(json!({"filter": {"kind": 1}, "aggregates": {"n": {"$count": {}}}})),
        "aggregation is not supported: aggregates"
    );
}

#[test]
fn request_type_errors() {
    assert_eq!(
        request_error(json!([])),
        "query request must be a JSON object"
    );
    assert_eq!(
        request_error(json!({"filter": "x"})),
        "filter must be a JSON object"
    );
    for bad in [
        json!(-1),
        json!(2.5),
        json!("10"),
        json!(true),
        number("1e2"),
    ] {
        assert_eq!(
            request_error(json!({"filter": {}, "limit": bad})),
            "limit must be a non-negative integer"
        );
    }
    assert_eq!(
        request_error(json!({"filter": {}, "offset": -3})),
        "offset must be a non-negative integer"
    );
    assert_eq!(
        request_error(json!({"explain": "yes"})),
        "explain must be a boolean"
    );
    assert_eq!(
        request_error(json!({"thread": 1})),
        "thread must be a string"
    );
    assert_eq!(
        request_error(json!({"cursor": 1})),
        "cursor must be a string"
    );
    assert_eq!(
        request_error(json!({"select": "act"})),
        "select must be an array of field path strings"
    );
    assert_eq!(
        request_error(json!({"select": ["sig"]})),
        "unknown field path: sig"
    );
    assert_eq!(
        request_error(json!({"sort": {"kind": 1}})),
        "unknown field path: kind"
    );
    assert_eq!(
        request_error(json!({"filter": {"body.x": {"$foo": 1}}})),
        "unknown operator: $foo (on body.x)"
    );
}
