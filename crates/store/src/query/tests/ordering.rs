//! Sorting, pushed-down equalities, explain plans and projections.

use super::*;

// --- sort --------------------------------------------------------------

fn sorted_sequences(records: &[Value], sort: Value) -> Vec<u64> {
    let sort = Sort::parse(&sort).unwrap();
    let mut records = records.to_vec();
    records.sort_by(|a, b| compare_records(a, b, &sort));
    records
        .iter()
        .map(|r| r["sequence"].as_u64().unwrap())
        .collect()
}

#[test]
fn top_k_keeps_the_first_k_of_the_full_sort() {
    // Keys repeat (ties by sequence), some are absent, types mix.
    let records: Vec<Value> = (1..=500u64)
        .map(|seq| {
            let body = match seq % 7 {
                0 => json!({}),
                1 => json!({"p": "text"}),
                _ => json!({"p": (seq * 37) % 11}),
            };
            record(seq, body)
        })
        .collect();
    for (sort, k) in [
        (json!({"body.p": 1}), 10),
        (json!({"body.p": -1}), 25),
        (json!({"clock": -1}), 1),
    ] {
        let full = sorted_sequences(&records, sort.clone());
        let mut top = TopK::new(Sort::parse(&sort).unwrap(), k);
        for r in &records {
            let seq = r["sequence"].as_i64().unwrap();
            top.offer(r, seq, r["id"].as_str().unwrap());
        }
        let kept: Vec<u64> = top.finish().iter().map(|c| c.seq as u64).collect();
        assert_eq!(kept, full[..k], "{sort}");
    }
}

#[test]
fn sort_both_directions_with_ties_by_sequence() {
    let records = [
        record(4, json!({"p": 2})),
        record(1, json!({"p": 2})),
        record(3, json!({"p": 1})),
        record(2, json!({"p": 3})),
        record(5, json!({})),
    ];
    assert_eq!(
        sorted_sequences(&records, json!({"body.p": 1})),
        [5, 3, 1, 4, 2]
    );
    assert_eq!(
        sorted_sequences(&records, json!({"body.p": -1})),
        [2, 1, 4, 3, 5]
    );
    // All clocks equal: pure sequence order in both directions.
    assert_eq!(
        sorted_sequences(&records, json!({"clock": -1})),
        [1, 2, 3, 4, 5]
    );
}

#[test]
fn sort_orders_mixed_types_and_big_numbers() {
    let records = [
        record(1, json!({"v": {"a": 1}})),
        record(2, json!({"v": [1]})),
        record(3, json!({"v": "s"})),
        record(4, json!({ "v": number("18446744073709551617") })),
        record(5, json!({ "v": number("18446744073709551616") })),
        record(6, json!({"v": 2.5})),
        record(7, json!({"v": true})),
        record(8, json!({"v": null})),
        record(9, json!({})),
    ];
    assert_eq!(
        sorted_sequences(&records, json!({"body.v": 1})),
        [9, 8, 7, 6, 5, 4, 3, 2, 1]
    );
}

#[test]
fn sort_parse_errors() {
    let error = |sort: Value| Sort::parse(&sort).unwrap_err().to_string();
    assert_eq!(
        Sort::parse(&json!({"clock": -1})).unwrap(),
        Sort {
            path: FieldPath::Column(Column::Clock),
            descending: true
        }
    );
    assert_eq!(
        error(json!({})),
        "sort must be an object with exactly one field path"
    );
    assert_eq!(
        error(json!({"clock": 1, "act": 1})),
        "sort must be an object with exactly one field path"
    );
    assert_eq!(
        error(json!("clock")),
        "sort must be an object with exactly one field path"
    );
    assert_eq!(
        error(json!({"clock": 2})),
        "sort direction for clock must be 1 or -1"
    );
    assert_eq!(
        error(json!({"clock": "desc"})),
        "sort direction for clock must be 1 or -1"
    );
    assert_eq!(
        error(json!({"clock": 1.0})),
        "sort direction for clock must be 1 or -1"
    );
    assert_eq!(error(json!({"sig": 1})), "unknown field path: sig");
}

// --- pushdown, plan, projection ---------------------------------------

#[test]
fn column_equalities_come_from_top_level_and_only() {
    let filter = Filter::parse(&json!({
        "thread": "th_a",
        "act": {"$eq": "INTEND"},
        "actor": {"$ne": "did:x"},
        "clock": 7,
        "namespace": 3,
        "body.kind": "task",
        "$and": [{"data_type": "SCALAR"}, {"id": "abc"}],
        "$or": [{"thread": "th_b"}],
        "$not": {"actor": "did:y"},
    }))
    .unwrap();
    let mut equalities = filter.column_equalities();
    equalities.sort_by_key(|(column, _)| column.as_str());
    assert_eq!(
        equalities,
        [
            (Column::Act, "INTEND".to_owned()),
            (Column::DataType, "SCALAR".to_owned()),
            (Column::Id, "abc".to_owned()),
            (Column::Thread, "th_a".to_owned()),
        ]
    );
    let single = Filter::parse(&json!({"actor": "did:z"})).unwrap();
    assert_eq!(
        single.column_equalities(),
        [(Column::Actor, "did:z".to_owned())]
    );
    let or_only = Filter::parse(&json!({"$or": [{"actor": "a"}]})).unwrap();
    assert!(or_only.column_equalities().is_empty());
}

#[test]
fn fields_are_deduplicated_in_mention_order() {
    let filter = Filter::parse(&json!({
        "$or": [{"body.p": 1}, {"actor": "a"}],
        "actor": "a",
        "body.p": {"$gt": 0},
        "$not": {"body.q": 1},
    }))
    .unwrap();
    // Object members iterate in key order: "$not", "$or", "actor", "body.p".
    assert_eq!(
        filter.fields(),
        [
            FieldPath::Body(vec!["q".to_owned()]),
            FieldPath::Body(vec!["p".to_owned()]),
            FieldPath::Column(Column::Actor),
        ]
    );
}

#[test]
fn plan_splits_indexed_and_unindexed() {
    let filter = Filter::parse(&json!({
        "act": "INTEND",
        "actor": "did:sync:agent:dev",
        "body.kind": {"$in": ["core.task.record"]},
        "$or": [{"body.priority": {"$gte": 2}}, {"body.awaits": {"$exists": true}}],
    }))
    .unwrap();
    assert_eq!(
        plan(&filter),
        json!({
            "indexed_fields": ["act", "actor"],
            "unindexed_fields": ["body.priority", "body.awaits", "body.kind"],
        })
    );
    assert_eq!(
        plan(&Filter::And(vec![])),
        json!({"indexed_fields": [], "unindexed_fields": []})
    );
}

#[test]
fn project_keeps_id_and_selected_paths() {
    let r = record(1, json!({"a": {"b": 1, "c": 2}, "d": 3}));
    let select = [
        FieldPath::parse("act").unwrap(),
        FieldPath::parse("body.a.b").unwrap(),
        FieldPath::parse("body.d").unwrap(),
        FieldPath::parse("body.missing.x").unwrap(),
    ];
    assert_eq!(
        project(&r, &select),
        json!({"id": r["id"], "act": "INTEND", "body": {"a": {"b": 1}, "d": 3}})
    );
    assert_eq!(project(&r, &[]), json!({"id": r["id"]}));
    // A whole object and a path inside it, in either order, give the whole object.
    let whole = FieldPath::parse("body.a").unwrap();
    let inner = FieldPath::parse("body.a.b").unwrap();
    let expected = json!({"id": r["id"], "body": {"a": {"b": 1, "c": 2}}});
    assert_eq!(project(&r, &[whole.clone(), inner.clone()]), expected);
    assert_eq!(project(&r, &[inner, whole]), expected);
}

#[test]
fn field_path_display_round_trips() {
    for path in ["thread", "created_at", "body.a", "body.a-b.c_d.0"] {
        assert_eq!(FieldPath::parse(path).unwrap().to_string(), path);
    }
}
