//! Property tests of the canonical form, plus a table of CPython outputs.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};
use syncropel_protocol::{canonical_string, canonicalize, parse_json, Envelope, DEFAULT_MAX_DEPTH};

/// Canonical text of one f64 as the SDK prints it.
fn canonical_f64(f: f64) -> String {
    let v = canonicalize(Value::Number(Number::from_f64(f).expect("finite"))).unwrap();
    canonical_string(&v)
}

/// `<bits hex> <text>` lines produced by CPython 3.11 (`repr` for
/// non-integral values, `str(int(f))` for integral ones) over random bit
/// patterns, human-scale magnitudes and halfway cases (ties to even).
#[test]
fn matches_cpython_table() {
    let table = include_str!("../fixtures/python_float_canonical.txt");
    let mut checked = 0;
    for line in table.lines().filter(|l| !l.starts_with('#')) {
        let (bits, want) = line.split_once(' ').unwrap();
        let f = f64::from_bits(u64::from_str_radix(bits, 16).unwrap());
        assert_eq!(canonical_f64(f), want, "bits {bits}");
        // The parser must agree with canonicalize for CPython's own spelling.
        let parsed = parse_json(want.as_bytes(), 1).unwrap();
        assert_eq!(canonical_string(&parsed), want);
        checked += 1;
    }
    assert!(checked >= 3500);
}

#[test]
fn known_repr_outputs() {
    for (f, want) in [
        (0.1, "0.1"),
        (1e-05, "1e-05"),
        (0.00001, "1e-05"),
        (1.5e-07, "1.5e-07"),
        (5e-324, "5e-324"),
        (1e16, "10000000000000000"),
        (123456789012345.67, "123456789012345.67"),
        (0.0001, "0.0001"),
        (1e22, "10000000000000000000000"),
        (-0.0, "0"),
        (2.5, "2.5"),
    ] {
        assert_eq!(canonical_f64(f), want, "{f:e}");
    }
    assert_eq!(canonical_f64(1.7976931348623157e308).len(), 309);
    assert!(canonical_f64(1.7976931348623157e308).starts_with("17976931348623157"));
}

fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_]{0,8}",
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just('"'),
                Just('\\'),
                Just('\u{1f}'),
                Just('\u{7f}'),
                Just('\u{2028}'),
                Just('é'),
                Just('😀'),
                Just('\n')
            ],
            0..6
        )
        .prop_map(|cs| cs.into_iter().collect()),
    ]
}

/// Numbers as Rust code would build them (non-canonical spellings included).
fn json_number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        any::<f64>().prop_filter_map("finite", Number::from_f64),
        (-1e20f64..1e20).prop_filter_map("finite", Number::from_f64),
        "-?[1-9][0-9]{0,60}".prop_map(|s| s.parse().unwrap()),
        "-?[0-9]\\.[0-9]{1,20}[eE][+-]?[0-9]{1,3}".prop_filter_map("finite", |s| {
            s.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(|_| s.parse().unwrap())
        }),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number().prop_map(Value::Number),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(json_string(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn canonicalize_is_idempotent(v in json_value()) {
        let once = canonicalize(v).unwrap();
        prop_assert_eq!(canonicalize(once.clone()).unwrap(), once);
    }

    #[test]
    fn parse_round_trips_canonical_string(v in json_value()) {
        let canonical = canonicalize(v).unwrap();
        let text = canonical_string(&canonical);
        let parsed = parse_json(text.as_bytes(), DEFAULT_MAX_DEPTH).unwrap();
        prop_assert_eq!(&parsed, &canonical);
        prop_assert_eq!(canonical_string(&parsed), text);
    }

    #[test]
    fn non_canonical_wire_spelling_is_normalized(v in json_value()) {
        // serde_json writes numbers as spelled (e.g. 1.0); parsing must land
        // on the same canonical value as canonicalize.
        let wire = serde_json::to_string(&v).unwrap();
        let parsed = parse_json(wire.as_bytes(), DEFAULT_MAX_DEPTH).unwrap();
        prop_assert_eq!(parsed, canonicalize(v).unwrap());
    }

    #[test]
    fn float_text_round_trips_and_follows_layout(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let text = canonical_f64(f);
        prop_assert_eq!(text.parse::<f64>().unwrap(), if f == 0.0 { 0.0 } else { f });
        if f == f.trunc() {
            // Exact integer; `f + 0.0` turns -0.0 into 0.0.
            prop_assert_eq!(text, format!("{:.0}", f + 0.0));
        } else if f.abs() < 1e-4 {
            prop_assert!(text.contains("e-"), "{}", text);
        } else {
            prop_assert!(!text.contains('e') && text.contains('.'), "{}", text);
        }
    }

    #[test]
    fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_json(&bytes, DEFAULT_MAX_DEPTH);
        let _ = Envelope::parse(&bytes, DEFAULT_MAX_DEPTH);
    }

    #[test]
    fn envelope_canonical_json_is_a_fixed_point(
        body in proptest::collection::btree_map("[a-z_]{1,6}", json_value(), 0..5),
        parents in proptest::collection::vec("[0-9a-f]{4}", 0..4),
        clock in 0i64..=i64::MAX,
    ) {
        let mut env = serde_json::json!({"act": "DO", "actor": "did:example:a", "clock": clock,
            "thread": "t", "parents": parents});
        env["body"] = Value::Object(body.into_iter().filter(|(k, _)| k != "kind" && k != "namespace").collect());
        let first = Envelope::from_value(canonicalize(env).unwrap()).unwrap();
        let again = Envelope::parse(first.canonical_json().as_bytes(), DEFAULT_MAX_DEPTH).unwrap();
        prop_assert_eq!(again.id(), first.id());
        prop_assert_eq!(again, first);
    }
}
