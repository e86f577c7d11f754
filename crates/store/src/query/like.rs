//! `$like` / `$ilike` patterns (protocol.md §11.6), compiled once per query into a regular
//! expression, so a match takes time linear in the text whatever the pattern: no pattern can
//! make a scan backtrack.

use regex::{Regex, RegexBuilder};

use super::QueryError;

/// Longest pattern accepted, in characters. With the pattern bounded, matching is linear in the
/// text; kind and name patterns are far shorter.
pub const MAX_LIKE_PATTERN_CHARS: usize = 256;

/// SQL LIKE over Unicode scalar values, anchored at both ends: `%` matches any run (including
/// empty), `_` exactly one character; there is no escape character. `$ilike` compares the
/// lowercase forms of pattern and text.
#[derive(Clone, Debug)]
pub struct LikePattern {
    pattern: String,
    case_insensitive: bool,
    regex: Regex,
}

impl PartialEq for LikePattern {
    fn eq(&self, other: &LikePattern) -> bool {
        self.pattern == other.pattern && self.case_insensitive == other.case_insensitive
    }
}

impl LikePattern {
    pub fn new(pattern: &str, case_insensitive: bool) -> Result<LikePattern, QueryError> {
        if pattern.chars().count() > MAX_LIKE_PATTERN_CHARS {
            return Err(QueryError(format!(
                "a $like pattern may be at most {MAX_LIKE_PATTERN_CHARS} characters long"
            )));
        }
        let compared = if case_insensitive {
            pattern.to_lowercase()
        } else {
            pattern.to_owned()
        };
        let mut expression = String::from(r"\A(?s:");
        let mut after_percent = false;
        for c in compared.chars() {
            match c {
                // A run of `%` means what one does.
                '%' if after_percent => {}
                '%' => expression.push_str(".*"),
                '_' => expression.push('.'),
                c => expression.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
            }
            after_percent = c == '%';
        }
        expression.push_str(r")\z");
        let regex = RegexBuilder::new(&expression)
            .build()
            .map_err(|e| QueryError(format!("the $like pattern cannot be used: {e}")))?;
        Ok(LikePattern {
            pattern: pattern.to_owned(),
            case_insensitive,
            regex,
        })
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        if self.case_insensitive {
            self.regex.is_match(&text.to_lowercase())
        } else {
            self.regex.is_match(text)
        }
    }
}
