//! Canonical JSON (protocol.md §5): the exact bytes the Python SDK hashes.
//!
//! A `serde_json::Value` is "canonical" when every number in it holds its
//! canonical text (see [`crate::number`]). [`parse_json`] and [`canonicalize`]
//! produce such values; [`canonical_string`] then only has to sort keys and
//! escape strings the way Python's `json.dumps(ensure_ascii=False)` does.

use serde_json::{Map, Value};

use crate::error::ProtocolError;
use crate::number::canonicalize_token;

pub use crate::parse::{parse_json, DEFAULT_MAX_DEPTH};

/// Canonical string of an already-canonical value: keys sorted by code point,
/// compact separators, raw UTF-8, Python's escaping.
pub fn canonical_string(value: &Value) -> String {
    let mut out = String::with_capacity(128);
    write_value(&mut out, value);
    out
}

/// Puts every number of a value built in Rust code (e.g. with
/// `serde_json::json!`, where `1.0` stays `1.0`) into canonical form.
pub fn canonicalize(mut value: Value) -> Result<Value, ProtocolError> {
    canonicalize_in_place(&mut value)?;
    Ok(value)
}

fn canonicalize_in_place(value: &mut Value) -> Result<(), ProtocolError> {
    match value {
        Value::Number(n) => {
            let canonical =
                canonicalize_token(n.as_str()).map_err(|e| ProtocolError::InvalidNumber {
                    token: n.as_str().to_owned(),
                    reason: e.reason(),
                })?;
            *n = canonical;
        }
        Value::Array(items) => {
            for item in items {
                canonicalize_in_place(item)?;
            }
        }
        Value::Object(map) => {
            for (_, item) in map.iter_mut() {
                canonicalize_in_place(item)?;
            }
        }
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
    Ok(())
}

/// Appends the canonical form of `value`.
pub(crate) fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => out.push_str(n.as_str()),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map, &[]),
    }
}

/// Appends the canonical form of `map`, leaving out the keys in `skip`.
///
/// `serde_json::Map` is a `BTreeMap` (already code-point order) unless some
/// crate in the build turns on serde_json's `preserve_order`; ids must not
/// silently change when that happens, so unsorted maps are sorted here.
pub(crate) fn write_object(out: &mut String, map: &Map<String, Value>, skip: &[&str]) {
    let sorted = map.keys().zip(map.keys().skip(1)).all(|(a, b)| a < b);
    out.push('{');
    let mut first = true;
    let mut member = |key: &str, item: &Value| {
        if skip.contains(&key) {
            return;
        }
        if !first {
            out.push(',');
        }
        first = false;
        write_str(out, key);
        out.push(':');
        write_value(out, item);
    };
    if sorted {
        for (key, item) in map {
            member(key, item);
        }
    } else {
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (key, item) in entries {
            member(key, item);
        }
    }
    out.push('}');
}

/// Appends `s` as a JSON string with Python's `ensure_ascii=False` escaping:
/// `"` `\` and U+0000–U+001F only; named escapes for \b \f \n \r \t, else
/// `\u00xx` in lower case. Everything else (U+007F, U+2028, `/`) is raw.
pub(crate) fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Only ASCII bytes stop the scan, so `start..i` is on char boundaries.
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_like_python() {
        let s =
            "q\" b\\ n\n t\t r\r bs\u{8} ff\u{c} c1\u{1} c1f\u{1f} del\u{7f} ls\u{2028} slash/ é";
        assert_eq!(
            canonical_string(&Value::String(s.to_owned())),
            "\"q\\\" b\\\\ n\\n t\\t r\\r bs\\b ff\\f c1\\u0001 c1f\\u001f del\u{7f} ls\u{2028} slash/ é\""
        );
    }

    #[test]
    fn matches_serde_json_string_escaping() {
        // serde_json agrees with Python for every single code unit below 0x80.
        for c in (0u8..0x80).map(char::from) {
            let s = c.to_string();
            let ours = canonical_string(&Value::String(s.clone()));
            assert_eq!(
                ours,
                serde_json::to_string(&s).unwrap(),
                "char {:#x}",
                c as u32
            );
        }
    }

    #[test]
    fn sorts_and_compacts() {
        let v = canonicalize(json!({"b": [1.0, {"z": null, "a": true}], "a": -0.0})).unwrap();
        assert_eq!(
            canonical_string(&v),
            r#"{"a":0,"b":[1,{"a":true,"z":null}]}"#
        );
    }

    #[test]
    fn canonicalize_is_idempotent_on_rust_floats() {
        let v = canonicalize(json!({"x": 0.00001, "y": 1e300, "z": 1.5e-7})).unwrap();
        assert_eq!(canonicalize(v.clone()).unwrap(), v);
        let text = canonical_string(&v);
        assert!(text.contains(r#""x":1e-05"#), "{text}");
        assert!(text.contains(r#""z":1.5e-07"#), "{text}");
    }

    #[test]
    fn map_is_code_point_ordered() {
        // Fails loudly if `preserve_order` gets unified into the build; the
        // writer still sorts, but the hot path would lose its fast case.
        let mut m = Map::new();
        m.insert("b".into(), Value::Null);
        m.insert("a".into(), Value::Null);
        assert_eq!(m.keys().next().map(String::as_str), Some("a"));
    }
}
