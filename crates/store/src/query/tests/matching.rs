//! Matching: logical shapes, every operator, typing, absent fields and numbers.

use super::*;

// --- shapes and logical operators -------------------------------------

#[test]
fn empty_filter_matches_everything() {
    assert_eq!(Filter::parse(&json!({})).unwrap(), Filter::And(vec![]));
    assert!(matches(json!({}), &record(1, json!({}))));
}

#[test]
fn members_and_together() {
    let r = record(1, json!({"kind": "task", "priority": 2}));
    assert!(matches(json!({"act": "INTEND", "body.kind": "task"}), &r));
    assert!(!matches(json!({"act": "INTEND", "body.kind": "note"}), &r));
    assert!(matches(json!({"body.priority": {"$gte": 2, "$lt": 3}}), &r));
    assert!(!matches(
        json!({"body.priority": {"$gte": 2, "$lt": 2}}),
        &r
    ));
}

#[test]
fn single_member_parses_to_a_bare_condition() {
    assert_eq!(
        Filter::parse(&json!({"thread": "th_a"})).unwrap(),
        Filter::Cond {
            path: FieldPath::Column(Column::Thread),
            op: Op::Eq,
            value: json!("th_a"),
        }
    );
}

#[test]
fn nested_and_or_not() {
    let r = record(1, json!({"priority": 2, "kind": "task"}));
    let spec_example = json!({
        "act": "INTEND",
        "actor": "did:sync:user:alice",
        "body.kind": {"$in": ["task", "task.v1"]},
        "$or": [{"body.priority": {"$gte": 2}}, {"body.awaits": {"$exists": true}}],
    });
    assert!(matches(spec_example, &r));
    assert!(matches(
        json!({"$and": [{"$or": [{"body.kind": "note"}, {"body.priority": 2}]},
                        {"$not": {"body.kind": "note"}}]}),
        &r
    ));
    assert!(!matches(
        json!({"$and": [{"body.kind": "task"}, {"$not": {"$or": [{"body.priority": 2}]}}]}),
        &r
    ));
    assert!(matches(
        json!({"$not": {"$not": {"body.kind": "task"}}}),
        &r
    ));
    assert!(!matches(
        json!({"$or": [{"body.kind": "x"}, {"body.kind": "y"}]}),
        &r
    ));
}

#[test]
fn empty_logical_lists_are_identities() {
    let r = record(1, json!({}));
    assert!(matches(json!({"$and": []}), &r));
    assert!(!matches(json!({"$or": []}), &r));
}

#[test]
fn not_is_logical_negation_including_absent_fields() {
    let absent = record(1, json!({}));
    let other = record(2, json!({"x": 2}));
    let same = record(3, json!({"x": 1}));
    let not_one = json!({"$not": {"body.x": 1}});
    assert!(matches(not_one.clone(), &absent));
    assert!(matches(not_one.clone(), &other));
    assert!(!matches(not_one, &same));
}

// --- operators: positive and negative ----------------------------------

#[test]
fn eq_and_shorthand() {
    assert!(x_matches(json!(1), json!(1)));
    assert!(x_matches(json!({"$eq": "a"}), json!("a")));
    assert!(!x_matches(json!({"$eq": "a"}), json!("b")));
    assert!(x_matches(json!(true), json!(true)));
    assert!(!x_matches(json!(true), json!(false)));
    assert!(x_matches(json!(null), json!(null)));
    assert!(!x_matches(json!(null), json!(0)));
}

#[test]
fn ne() {
    assert!(x_matches(json!({"$ne": 1}), json!(2)));
    assert!(!x_matches(json!({"$ne": 1}), json!(1)));
    assert!(!x_matches(json!({"$ne": 1}), json!(1.0)));
    // Another type is "not equal", consistently with `$nin: [1]`.
    assert!(x_matches(json!({"$ne": 1}), json!("1")));
}

#[test]
fn ordering_operators() {
    for (op, below, equal, above) in [
        ("$gt", false, false, true),
        ("$gte", false, true, true),
        ("$lt", true, false, false),
        ("$lte", true, true, false),
    ] {
        assert_eq!(x_matches(json!({ op: 5 }), json!(4)), below, "{op} below");
        assert_eq!(x_matches(json!({ op: 5 }), json!(5)), equal, "{op} equal");
        assert_eq!(x_matches(json!({ op: 5 }), json!(6)), above, "{op} above");
    }
}

#[test]
fn ordering_of_strings_and_booleans() {
    assert!(x_matches(json!({"$gt": "apple"}), json!("banana")));
    assert!(!x_matches(json!({"$gt": "banana"}), json!("apple")));
    // Code point order: uppercase before lowercase, 'é' (U+00E9) after 'z'.
    assert!(x_matches(json!({"$lt": "a"}), json!("Z")));
    assert!(x_matches(json!({"$gt": "z"}), json!("é")));
    assert!(x_matches(json!({"$gt": false}), json!(true)));
    assert!(!x_matches(json!({"$lt": false}), json!(true)));
}

#[test]
fn ordering_never_matches_null_arrays_or_objects() {
    for op in ["$gt", "$gte", "$lt", "$lte"] {
        assert!(!x_matches(json!({ op: null }), json!(null)), "{op} null");
        assert!(!x_matches(json!({ op: [1] }), json!([1])), "{op} array");
        assert!(
            !x_matches(json!({ op: {"a": 1} }), json!({"a": 1})),
            "{op} object"
        );
    }
}

#[test]
fn in_and_nin() {
    assert!(x_matches(json!({"$in": [1, 2, 3]}), json!(2)));
    assert!(!x_matches(json!({"$in": [1, 3]}), json!(2)));
    assert!(!x_matches(json!({"$in": []}), json!(2)));
    assert!(x_matches(json!({"$in": [[1, 2], "b"]}), json!([1, 2])));
    assert!(x_matches(json!({"$nin": [1, 3]}), json!(2)));
    assert!(!x_matches(json!({"$nin": [1, 2]}), json!(2)));
    assert!(x_matches(json!({"$nin": []}), json!(2)));
    assert!(x_matches(json!({"$nin": ["2"]}), json!(2)));
}

#[test]
fn like_and_ilike() {
    assert!(x_matches(
        json!({"$like": "core.%"}),
        json!("core.task.record")
    ));
    assert!(!x_matches(
        json!({"$like": "core.%"}),
        json!("app.core.task")
    ));
    assert!(x_matches(
        json!({"$like": "%task%"}),
        json!("core.task.record")
    ));
    assert!(x_matches(json!({"$like": "t_sk"}), json!("task")));
    assert!(!x_matches(json!({"$like": "t_sk"}), json!("tassk")));
    assert!(x_matches(json!({"$like": "%"}), json!("")));
    assert!(!x_matches(json!({"$like": "_"}), json!("")));
    assert!(x_matches(json!({"$like": "a%b%c"}), json!("aXbYbZc")));
    assert!(!x_matches(json!({"$like": "a%b%c"}), json!("aXbYbZ")));
    assert!(x_matches(json!({"$like": "%%a%%"}), json!("bab")));
    // Case sensitivity.
    assert!(!x_matches(json!({"$like": "Task"}), json!("task")));
    assert!(x_matches(json!({"$ilike": "TASK%"}), json!("task.record")));
    assert!(!x_matches(
        json!({"$ilike": "TASKS%"}),
        json!("task.record")
    ));
    // `_` is one Unicode character, not one byte; ilike lowercases Unicode.
    assert!(x_matches(json!({"$like": "caf_"}), json!("café")));
    assert!(x_matches(json!({"$like": "__"}), json!("日本")));
    assert!(x_matches(json!({"$ilike": "ÉCOLE_%"}), json!("école-1")));
    assert!(x_matches(json!({"$ilike": "straße"}), json!("STRAßE")));
    // Only strings can match a pattern.
    assert!(!x_matches(json!({"$like": "1%"}), json!(12)));
}

#[test]
fn like_matcher_handles_adversarial_patterns() {
    let like = |text: &str, pattern: &str| LikePattern::new(pattern, false).unwrap().matches(text);
    let text = "a".repeat(2000);
    let pattern = format!("{}b", "%a".repeat(50));
    assert!(!like(&text, &pattern));
    assert!(like(&text, &"%a".repeat(50)));
    // The review's attack, at the longest pattern accepted: linear in the text, so this
    // finishes at once rather than after O(text x pattern) steps.
    let text = "a".repeat(900_000);
    let pattern = format!("%{}b", "a".repeat(MAX_LIKE_PATTERN_CHARS - 2));
    assert!(!like(&text, &pattern));
    // Regex syntax in a pattern is literal text.
    assert!(like("a.b(c)*", "a.b(c)*"));
    assert!(!like("axb(c)", "a.b(c)*"));
    assert!(like("line\nnext", "line%"));
    assert!(like("line\nnext", "line_next"));
}

#[test]
fn like_patterns_are_bounded() {
    let longest = "a".repeat(MAX_LIKE_PATTERN_CHARS);
    assert!(LikePattern::new(&longest, false).is_ok());
    let error = parse_error(json!({"body.s": {"$like": format!("{longest}a")}}));
    assert!(error.contains("at most 256 characters"), "{error}");
    let error = parse_error(json!({"body.s": {"$ilike": format!("{longest}%")}}));
    assert!(error.contains("at most 256 characters"), "{error}");
}

#[test]
fn exists() {
    let present = record(1, json!({"x": null}));
    let absent = record(2, json!({}));
    assert!(matches(json!({"body.x": {"$exists": true}}), &present));
    assert!(!matches(json!({"body.x": {"$exists": false}}), &present));
    assert!(!matches(json!({"body.x": {"$exists": true}}), &absent));
    assert!(matches(json!({"body.x": {"$exists": false}}), &absent));
}

// --- typing and absent fields -----------------------------------------

#[test]
fn mismatched_types_never_equal_or_order() {
    assert!(!x_matches(json!(1), json!("1")));
    assert!(!x_matches(json!("1"), json!(1)));
    assert!(!x_matches(json!(true), json!(1)));
    assert!(!x_matches(json!(0), json!(false)));
    assert!(!x_matches(json!(null), json!("")));
    assert!(!x_matches(json!({"$gt": "4"}), json!(5)));
    assert!(!x_matches(json!({"$lt": 9}), json!("5")));
    assert!(!x_matches(json!({"$gte": false}), json!(0)));
    assert!(!x_matches(json!({"$in": ["2"]}), json!(2)));
    assert!(!x_matches(json!("a"), json!(["a", "b"])));
}

#[test]
fn absent_field_matches_only_exists_false() {
    let absent = record(1, json!({"other": 1}));
    for filter_value in [
        json!(1),
        json!(null),
        json!({"$ne": 1}),
        json!({"$nin": [1]}),
        json!({"$gt": 0}),
        json!({"$lte": 0}),
        json!({"$in": [null]}),
        json!({"$like": "%"}),
        json!({"$exists": true}),
    ] {
        assert!(
            !matches(json!({ "body.x": filter_value.clone() }), &absent),
            "{filter_value} should not match an absent field"
        );
    }
    assert!(matches(json!({"body.x": {"$exists": false}}), &absent));
}

#[test]
fn body_paths_walk_objects_only() {
    let r = record(
        1,
        json!({"a": {"b": {"c": 3}}, "list": [{"c": 1}], "s": "text"}),
    );
    assert!(matches(json!({"body.a.b.c": 3}), &r));
    assert!(matches(json!({"body.a.b": {"c": 3}}), &r));
    assert!(matches(json!({"body.list.c": {"$exists": false}}), &r));
    assert!(matches(json!({"body.s.length": {"$exists": false}}), &r));
    assert!(matches(json!({"body.a.missing.c": {"$exists": false}}), &r));
}

#[test]
fn columns_are_filterable() {
    let r = record(9, json!({}));
    assert!(matches(json!({"clock": {"$gte": 7}}), &r));
    assert!(matches(json!({"created_at": {"$gt": 1767225599}}), &r));
    assert!(matches(
        json!({"data_type": "SCALAR", "namespace": "default"}),
        &r
    ));
    assert!(matches(json!({"id": {"$like": "%09"}}), &r));
    assert!(!matches(json!({"clock": "7"}), &r));
}

#[test]
fn deep_equality() {
    let stored = json!({"a": [1, {"b": 2.5}], "c": null});
    assert!(x_matches(
        json!({"a": [1, {"b": 2.5}], "c": null}),
        stored.clone()
    ));
    // Key order does not matter; values compare numerically.
    assert!(x_matches(
        json!({"c": null, "a": [1.0, {"b": 2.5}]}),
        stored.clone()
    ));
    assert!(!x_matches(json!({"a": [1, {"b": 2.5}]}), stored.clone()));
    assert!(!x_matches(
        json!({"a": [{"b": 2.5}, 1], "c": null}),
        stored.clone()
    ));
    assert!(x_matches(json!({"$eq": [1, 2]}), json!([1, 2])));
    assert!(!x_matches(json!([1, 2]), json!([1, 2, 3])));
    assert!(x_matches(json!({"$ne": [1, 2]}), json!([2, 1])));
    // `{}` is deep equality with the empty object, not an empty operator document.
    assert!(x_matches(json!({}), json!({})));
    assert!(!x_matches(json!({}), json!({"a": 1})));
}

// --- numbers -----------------------------------------------------------

#[test]
fn big_integers_compare_exactly() {
    let big = |text: &str| record(1, json!({ "x": number(text) }));
    let gt = |bound: &str| json!({"body.x": {"$gt": number(bound)}});
    let eq = |bound: &str| json!({ "body.x": number(bound) });
    assert!(matches(
        gt("18446744073709551616"),
        &big("18446744073709551617")
    ));
    assert!(!matches(
        gt("18446744073709551617"),
        &big("18446744073709551616")
    ));
    assert!(!matches(
        eq("18446744073709551616"),
        &big("18446744073709551617")
    ));
    assert!(matches(
        eq("123456789012345678901234567890"),
        &big("123456789012345678901234567890")
    ));
    assert!(matches(
        gt("-18446744073709551617"),
        &big("-18446744073709551616")
    ));
    assert!(matches(gt("-1"), &big("0")));
    assert!(matches(
        gt("99999999999999999999"),
        &big("100000000000000000000")
    ));
    assert!(matches(eq("0"), &big("-0")));
}

#[test]
fn floats_and_integers_compare_numerically() {
    assert!(x_matches(json!({"$lt": 2.5}), json!(2)));
    assert!(x_matches(json!({"$gt": 2}), json!(2.5)));
    assert!(x_matches(json!(2.0), json!(2)));
    assert!(x_matches(json!({"$lte": 2}), json!(2.0)));
    assert!(x_matches(json!({"$gt": -0.5}), json!(0)));
    assert!(x_matches(json!({"$gt": number("1e2")}), json!(101)));
    assert!(x_matches(json!({"$in": [1.5, 2.0]}), json!(2)));
    assert!(!x_matches(json!(0.1), json!(0.2)));
}
