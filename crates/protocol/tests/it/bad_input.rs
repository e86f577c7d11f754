//! Refusals of malformed envelopes, with their stable codes.

use syncropel_protocol::{parse_json, ErrorCode};

use crate::common::{code_of, parse};

fn with_body(body: &str) -> String {
    format!(
        r#"{{"act":"PUT","actor":"did:example:a","body":{body},"clock":7,"thread":"music.library"}}"#
    )
}

fn with(members: &str) -> String {
    format!(
        r#"{{"act":"PUT","actor":"did:example:a","clock":7,"thread":"music.library",{members}}}"#
    )
}

#[test]
fn json_level_refusals() {
    for text in [
        "",
        "null",
        "NaN",
        r#"{"act":NaN}"#,
        &with_body(r#"{"x":Infinity}"#),
        &with_body(r#"{"x":-Infinity}"#),
        &with_body(r#"{"x":1e400}"#),
        &with_body(r#"{"x":-1e400}"#),
        &with_body(r#"{"x":1,"x":2}"#),
        &with_body(r#"{"x":{"y":[{"z":1,"z":1}]}}"#),
        &with_body(r#"{"x":"\ud800"}"#),
        &with_body(r#"{"x":"\udfff"}"#),
        &with_body("{\"x\":\"raw\u{1}control\"}"),
        &with_body(&format!(r#"{{"x":{}}}"#, "1".repeat(4301))),
        r#"{"act":"PUT"} trailing"#,
    ] {
        let got = code_of(text);
        // "null" is valid JSON but not an envelope.
        let want = if text == "null" {
            ErrorCode::ValidationError
        } else {
            ErrorCode::InvalidJson
        };
        assert_eq!(got, want, "{text}");
    }
}

#[test]
fn depth_128_accepted_129_refused() {
    // The envelope object is level 1, body level 2, so 126 more arrays is 128.
    let nested = |n: usize| with_body(&format!(r#"{{"x":{}{}}}"#, "[".repeat(n), "]".repeat(n)));
    assert!(parse(&nested(126)).is_ok());
    assert_eq!(code_of(&nested(127)), ErrorCode::InvalidJson);
    let bare = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(parse_json(bare(128).as_bytes(), 128).is_ok());
    assert_eq!(
        parse_json(bare(129).as_bytes(), 128).unwrap_err().code(),
        ErrorCode::InvalidJson
    );
    assert!(parse_json(bare(129).as_bytes(), 129).is_ok());
}

#[test]
fn envelope_field_refusals() {
    for text in [
        "[]".to_owned(),
        r#""envelope""#.to_owned(),
        r#"{"actor":"a","clock":1,"thread":"t"}"#.to_owned(),
        r#"{"act":"put","actor":"a","clock":1,"thread":"t"}"#.to_owned(),
        r#"{"act":"MOVE","actor":"a","clock":1,"thread":"t"}"#.to_owned(),
        r#"{"act":"PUT","clock":1,"thread":"t"}"#.to_owned(),
        r#"{"act":"PUT","actor":"","clock":1,"thread":"t"}"#.to_owned(),
        r#"{"act":"PUT","actor":7,"clock":1,"thread":"t"}"#.to_owned(),
        r#"{"act":"PUT","actor":"did:example:a\u0000b","clock":1,"thread":"t"}"#.to_owned(),
        r#"{"act":"PUT","actor":"a","thread":"t"}"#.to_owned(),
        r#"{"act":"PUT","actor":"a","clock":null,"thread":"t"}"#.to_owned(),
        r#"{"act":"PUT","actor":"a","clock":-1,"thread":"t"}"#.to_owned(),
        r#"{"act":"PUT","actor":"a","clock":1.0,"thread":"t"}"#.to_owned(),
        r#"{"act":"PUT","actor":"a","clock":9223372036854775808,"thread":"t"}"#.to_owned(),
        r#"{"act":"PUT","actor":"a","clock":1}"#.to_owned(),
        r#"{"act":"PUT","actor":"a","clock":1,"thread":""}"#.to_owned(),
        r#"{"act":"PUT","actor":"a","clock":1,"thread":"a/b"}"#.to_owned(),
        r#"{"act":"PUT","actor":"a","clock":1,"thread":"a b"}"#.to_owned(),
        r#"{"act":"PUT","actor":"a","clock":1,"thread":"a?b"}"#.to_owned(),
        r#"{"act":"PUT","actor":"a","clock":1,"thread":"a#b"}"#.to_owned(),
        r#"{"act":"PUT","actor":"a","clock":1,"thread":"a\nb"}"#.to_owned(),
        format!(
            r#"{{"act":"PUT","actor":"a","clock":1,"thread":"{}"}}"#,
            "t".repeat(257)
        ),
        r#"{"act":"PUT","actor":"a","clock":1,"thread":7}"#.to_owned(),
        with(r#""data_type":"BLOB""#),
        with(r#""data_type":null"#),
        with(r#""parents":"abc""#),
        with(r#""parents":[1]"#),
        with(r#""parents":null"#),
        with(r#""body":[1]"#),
        with(r#""body":"{}""#),
        with(r#""judged_by":5"#),
    ] {
        assert_eq!(code_of(&text), ErrorCode::ValidationError, "{text}");
    }
    assert!(parse(&with(r#""judged_by":null"#)).is_ok());
}

#[test]
fn invalid_kinds() {
    for kind in [
        r#""music.track_imported""#,
        r#""Music.Catalog.Track""#,
        r#""music""#,
        r#""""#,
        "1",
        "null",
        r#"["core.alias"]"#,
    ] {
        assert_eq!(
            code_of(&with_body(&format!(r#"{{"kind":{kind}}}"#))),
            ErrorCode::InvalidKind,
            "{kind}"
        );
    }
    let ok = parse(&with_body(r#"{"kind":"core.alias"}"#)).unwrap();
    assert_eq!(ok.kind(), Some("core.alias"));
}

#[test]
fn invalid_namespaces() {
    let deep = "a/b/c/d/e";
    let long_segment = "s".repeat(64);
    let long_id = "x".repeat(300);
    for (ns, want) in [
        ("\"\"", ErrorCode::NamespaceIdInvalid),
        ("\"Acme\"", ErrorCode::NamespaceIdInvalid),
        ("\"acme/\"", ErrorCode::NamespaceIdInvalid),
        ("\"acme payments\"", ErrorCode::NamespaceIdInvalid),
        ("7", ErrorCode::NamespaceIdInvalid),
        ("null", ErrorCode::NamespaceIdInvalid),
        (&format!("\"{deep}\""), ErrorCode::NamespaceIdTooDeep),
        (
            &format!("\"acme/{long_segment}\""),
            ErrorCode::NamespaceSegmentTooLong,
        ),
        (&format!("\"{long_id}\""), ErrorCode::NamespaceIdTooLong),
    ] {
        assert_eq!(
            code_of(&with_body(&format!(r#"{{"namespace":{ns}}}"#))),
            want,
            "{ns}"
        );
    }
    let env = parse(&with_body(r#"{"namespace":"acme/payments"}"#)).unwrap();
    assert_eq!(env.namespace(), "acme/payments");
}

#[test]
fn error_messages_name_the_field() {
    let err = parse(&with(r#""data_type":"BLOB""#)).unwrap_err();
    assert!(err.to_string().contains("data_type"), "{err}");
    let err = parse(r#"{"act":"PUT","actor":"a","clock":-1,"thread":"t"}"#).unwrap_err();
    assert!(err.to_string().contains("clock"), "{err}");
    let err = parse(r#"{"a":1,"a":2}"#).unwrap_err();
    assert!(err.to_string().contains("duplicate"), "{err}");
}
