//! Credential-shaped strings (protocol.md §14): keys and tokens recognised by their form, so that
//! log lines can be redacted as `<redacted:N-chars>` (the services' log writer) and record bodies
//! holding one refused (the steward's ingest). One list, used by both.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Regex, RegexSet};
use serde_json::{Map, Value};

/// Key-shaped patterns: a record body holding one of these is refused, a log line redacts it.
const KEY_SHAPES: &[(&str, &str)] = &[
    ("anthropic_key", r"sk-ant-[A-Za-z0-9_-]{16,}"),
    ("openai_project_key", r"sk-proj-[A-Za-z0-9_-]{16,}"),
    ("secret_key", r"sk-[A-Za-z0-9]{20,}"),
    ("github_token", r"gh[opusr]_[A-Za-z0-9]{30,}"),
    (
        "jwt",
        r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}",
    ),
    ("aws_access_key", r"(?:AKIA|ASIA)[0-9A-Z]{16}"),
    (
        "syncropel_token",
        r"spl_[a-z0-9]+_[a-z0-9_-]+_[A-Za-z0-9]{32}",
    ),
];

/// Redacted in logs only: too common in ordinary text to refuse records for.
const BEARER: &str = r"(?i)bearer\s+[A-Za-z0-9._~+/=-]{8,}";

// The patterns are constants, checked by the tests below: they always compile.
static KEYS: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new(KEY_SHAPES.iter().map(|(_, pattern)| *pattern))
        .unwrap_or_else(|_| RegexSet::empty())
});

static REDACTED: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let all: Vec<&str> = KEY_SHAPES
        .iter()
        .map(|(_, pattern)| *pattern)
        .chain([BEARER])
        .collect();
    Regex::new(&all.join("|")).ok()
});

/// `text` with every credential-shaped run replaced by `<redacted:N-chars>`.
pub fn redact(text: &str) -> Cow<'_, str> {
    match REDACTED.as_ref() {
        Some(shapes) => shapes.replace_all(text, |found: &regex::Captures<'_>| {
            format!("<redacted:{}-chars>", found[0].chars().count())
        }),
        None => Cow::Borrowed(text),
    }
}

/// The first string in `body` (members and items, at any depth) shaped like a key: where it is
/// (`a.b[2]`) and which shape.
pub fn find_key_shaped(body: &Map<String, Value>) -> Option<(String, &'static str)> {
    let mut at = String::new();
    members(body, &mut at).map(|shape| (at, shape))
}

fn members(map: &Map<String, Value>, at: &mut String) -> Option<&'static str> {
    map.iter().find_map(|(name, member)| {
        let len = at.len();
        if len > 0 {
            at.push('.');
        }
        at.push_str(name);
        descend(member, at, len)
    })
}

/// Looks into `value` (at `at`); leaves `at` as it was before (`len`) unless a key is found.
fn descend(value: &Value, at: &mut String, len: usize) -> Option<&'static str> {
    let found = match value {
        Value::String(text) => KEYS.matches(text).iter().next().map(|i| KEY_SHAPES[i].0),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let before = at.len();
            at.push_str(&format!("[{i}]"));
            descend(item, at, before)
        }),
        Value::Object(map) => members(map, at),
        _ => None,
    };
    if found.is_none() {
        at.truncate(len);
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// One example of each shape, as a real one would look.
    const EXAMPLES: &[&str] = &[
        "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv",
        "sk-proj-AbCdEfGhIjKlMnOpQrStUv",
        "sk-AbCdEfGhIjKlMnOpQrStUvWx",
        "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl",
        "AKIAABCDEFGHIJKLMNOP",
        "spl_prod_sa_abcdefghijklmnop_AbCdEfGhIjKlMnOpQrStUvWxYz012345",
    ];

    #[test]
    fn every_shape_is_redacted_with_its_length() {
        assert!(REDACTED.is_some() && KEYS.len() == KEY_SHAPES.len());
        for example in EXAMPLES {
            let line = format!("calling with {example} now");
            let redacted = redact(&line);
            assert_eq!(
                redacted,
                format!("calling with <redacted:{}-chars> now", example.len()),
                "{example}"
            );
        }
        assert_eq!(
            redact("Authorization: Bearer abc.def-ghi_jkl"),
            "Authorization: <redacted:22-chars>"
        );
        let plain = "an ordinary line: sk-short, task-1234, bearer of news";
        assert!(
            matches!(redact(plain), Cow::Borrowed(_)),
            "{}",
            redact(plain)
        );
    }

    #[test]
    fn a_body_with_a_key_anywhere_is_found_and_one_without_is_not() {
        for example in EXAMPLES {
            let body = json!({"a": {"b": [1, {"c": format!("key={example}")}]}});
            let found = find_key_shaped(body.as_object().unwrap());
            assert_eq!(
                found.map(|(at, _)| at),
                Some("a.b[1].c".to_string()),
                "{example}"
            );
        }
        let bearer = json!({"note": "send it as Bearer abcdefghijk", "n": 1});
        assert_eq!(find_key_shaped(bearer.as_object().unwrap()), None);
    }
}
