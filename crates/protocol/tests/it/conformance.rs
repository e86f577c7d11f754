//! protocol.md §16 checklist items that belong to the protocol crate:
//! 5–12, 27, 29 and 32.

use syncropel_protocol::{
    canonical_string, parse_json, DataType, Envelope, ErrorCode, Keypair, DEFAULT_MAX_DEPTH,
};

use crate::common::{code_of, parse, parse_input, record, records, str_of, vectors};

const THREAD: &str = "th_ee697f96a2c3ce510b21538e865de84a04cbd71057871b87956abe1113dce943";

fn envelope_with(members: &str) -> String {
    format!(
        r#"{{"act":"DO","actor":"did:sync:user:alice","clock":1,"thread":"{THREAD}",{members}}}"#
    )
}

/// protocol.md §16.5: unsorted parents yield the sorted-list id and come back sorted.
#[test]
fn item_05_parents_sorted() {
    let r = record("parents_multiple_unsorted");
    let env = parse_input(&r);
    assert!(env.parents.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(env.id(), str_of(&r, "record_id_7"));
    // Duplicates are kept, not merged.
    let env = parse(&envelope_with(r#""parents":["b","a","b"]"#)).unwrap();
    assert_eq!(env.parents, ["a", "b", "b"]);
}

/// protocol.md §16.6: integral floats hash as integers; `1e-05` keeps Python's layout.
#[test]
fn item_06_float_forms() {
    let v = parse_json(br#"{"a":1.0,"b":-0.0}"#, DEFAULT_MAX_DEPTH).unwrap();
    assert_eq!(canonical_string(&v), r#"{"a":1,"b":0}"#);
    let same = parse(&envelope_with(r#""body":{"a":1,"b":0}"#)).unwrap();
    let floats = parse(&envelope_with(r#""body":{"a":1.0,"b":-0.0}"#)).unwrap();
    assert_eq!(same.id(), floats.id());
    for spelling in ["1e-05", "0.00001", "1E-5", "1.0e-5", "0.000010"] {
        let v = parse_json(spelling.as_bytes(), DEFAULT_MAX_DEPTH).unwrap();
        assert_eq!(canonical_string(&v), "1e-05", "{spelling}");
    }
}

/// protocol.md §16.7: integers beyond 64 bits round-trip exactly.
#[test]
fn item_07_large_integers() {
    let env = parse_input(&record("large_integers"));
    let canonical = env.canonical_json();
    for exact in [
        "9223372036854775807",
        "18446744073709551617",
        "-1180591620717411303424",
    ] {
        assert!(canonical.contains(exact), "{exact}");
    }
    let big = format!("[{}]", "9".repeat(4300));
    assert_eq!(
        canonical_string(&parse_json(big.as_bytes(), 8).unwrap()),
        big
    );
}

/// protocol.md §16.8: no Unicode normalization.
#[test]
fn item_08_nfc_nfd_differ() {
    let nfc = parse_input(&record("nfc_composed_e"));
    let nfd = parse_input(&record("nfd_decomposed_e"));
    assert_ne!(nfc.id(), nfd.id());
    assert_eq!(nfc.body["word"], "caf\u{e9}");
    assert_eq!(nfd.body["word"], "cafe\u{301}");
}

/// protocol.md §16.9: code-point key order; only `"`, `\` and U+0000–U+001F escaped.
#[test]
fn item_09_key_order_and_escapes() {
    let keys = parse_input(&record("key_order_codepoint"));
    let order: Vec<&str> = keys.body.keys().map(String::as_str).collect();
    assert_eq!(
        order,
        ["10", "9", "A", "Z", "_", "a", "é", "\u{fb01}", "😀"]
    );
    let esc = parse_input(&record("string_escapes"));
    let canonical = esc.canonical_json();
    assert_eq!(
        canonical,
        str_of(&record("string_escapes"), "canonical_json_7")
    );
    assert!(canonical.contains("del\u{7f} ls\u{2028} slash/"));
}

/// protocol.md §16.10: NaN, Infinity, 1e400, duplicate keys, lone surrogate → INVALID_JSON.
#[test]
fn item_10_invalid_json() {
    for body in [
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        r#"{"a":1,"a":1}"#,
        r#""\ud800""#,
    ] {
        let text = envelope_with(&format!(r#""body":{{"x":{body}}}"#));
        assert_eq!(code_of(&text), ErrorCode::InvalidJson, "{body}");
    }
    let dup_top = format!(r#"{{"act":"DO","act":"DO","actor":"a","clock":1,"thread":"{THREAD}"}}"#);
    assert_eq!(code_of(&dup_top), ErrorCode::InvalidJson);
}

/// protocol.md §16.11: bad act/data_type, negative or non-integer clock, non-object body.
#[test]
fn item_11_validation_errors() {
    let base = |act: &str, clock: &str, rest: &str| {
        format!(r#"{{"act":{act},"actor":"a","clock":{clock},"thread":"t"{rest}}}"#)
    };
    for text in [
        base(r#""RUN""#, "1", ""),
        base(r#""intend""#, "1", ""),
        base("1", "1", ""),
        base(r#""DO""#, "-1", ""),
        base(r#""DO""#, "1.0", ""),
        base(r#""DO""#, "1.5", ""),
        base(r#""DO""#, "1e3", ""),
        base(r#""DO""#, "9223372036854775808", ""),
        base(r#""DO""#, r#""1""#, ""),
        base(r#""DO""#, "1", r#","data_type":"scalar""#),
        base(r#""DO""#, "1", r#","data_type":"TEXT""#),
        base(r#""DO""#, "1", r#","body":[]"#),
        base(r#""DO""#, "1", r#","body":"x""#),
        base(r#""DO""#, "1", r#","body":null"#),
    ] {
        assert_eq!(code_of(&text), ErrorCode::ValidationError, "{text}");
    }
    assert!(parse(&base(r#""DO""#, "9223372036854775807", "")).is_ok());
    assert!(parse(&base(r#""DO""#, "0", "")).is_ok());
}

/// protocol.md §16.12: a record without `data_type` is stored and hashed as SCALAR.
#[test]
fn item_12_default_data_type() {
    let r = record("ascii_basic");
    let mut input = r["input"].clone();
    input.as_object_mut().unwrap().remove("data_type");
    let env = Envelope::parse(&serde_json::to_vec(&input).unwrap(), DEFAULT_MAX_DEPTH).unwrap();
    assert_eq!(env.data_type, DataType::Scalar);
    assert_eq!(env.id(), str_of(&r, "record_id_7"));
}

/// protocol.md §16.27: the signing vector and its did:key.
#[test]
fn item_27_signing() {
    let v = vectors();
    let s = &v["signing"];
    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    let key = Keypair::from_seed(&seed);
    let message = parse_input(&record("ascii_basic")).canonical_json();
    assert_eq!(key.sign_hex(message.as_bytes()), str_of(s, "signature_hex"));
    assert_eq!(
        key.did_key(),
        "did:key:z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd"
    );
}

/// protocol.md §16.29: a credential body with `value` → F16_VIOLATION_SENSITIVE_FIELD.
#[test]
fn item_29_f16() {
    let ok = envelope_with(
        r#""body":{"kind":"core.credential.v1","_v":1,"handle":"anthropic-prod","backend_ref":"keychain://syncropel/anthropic-prod","publisher_did":"did:key:z6Mk","lifecycle":"active"}"#,
    );
    assert!(parse(&ok).is_ok());
    for field in [
        "value",
        "secret",
        "password",
        "api_key",
        "token",
        "plaintext",
    ] {
        let text = envelope_with(&format!(
            r#""body":{{"kind":"core.credential.v1","handle":"h","{field}":"sk-ant-123"}}"#
        ));
        let err = parse(&text).unwrap_err();
        assert_eq!(err.code(), ErrorCode::F16ViolationSensitiveField, "{field}");
        assert!(err.to_string().contains(field));
    }
}

/// protocol.md §16.32: computed hash levels equal every vector's l0–l3.
#[test]
fn item_32_hash_levels() {
    for r in records() {
        let levels = parse_input(&r).hash_levels();
        let want: syncropel_protocol::HashLevels =
            serde_json::from_value(r["hash_levels"].clone()).unwrap();
        assert_eq!(levels, want, "{}", r["name"]);
    }
}
