//! Strict JSON parser producing canonical values.
//!
//! serde_json cannot be used directly: it silently keeps the last of duplicate
//! keys (an ambiguous id, protocol.md §5 rule 9), its depth limit is fixed at 127, and it
//! would leave numbers in their wire spelling. This recursive-descent parser
//! refuses all of that in one pass and emits numbers already canonical.

use serde_json::{Map, Value};

use crate::error::ProtocolError;
use crate::number::{canonical_number, scan_token};

/// Default nesting limit for request bodies (protocol.md §10.4): 128 containers deep is
/// accepted, 129 is `INVALID_JSON`.
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// Strict JSON parse into a canonical value.
///
/// Refuses (all `INVALID_JSON`): invalid UTF-8, duplicate keys at any depth,
/// lone surrogates, `NaN`/`Infinity`, floats overflowing to infinity, integers
/// over 4300 digits, raw control characters in strings, nesting deeper than
/// `max_depth`, trailing data. The parser recurses once per nesting level, so
/// keep `max_depth` modest (the default suits every SDK payload).
pub fn parse_json(bytes: &[u8], max_depth: usize) -> Result<Value, ProtocolError> {
    parse_document(bytes, max_depth).map(|doc| doc.value)
}

/// A parsed document plus facts the canonical value can no longer show.
pub(crate) struct Document {
    pub value: Value,
    /// The top-level object's `clock` was written as a float token (`1.0`).
    /// Canonical form turns that into `1`, yet protocol.md §9 refuses float clocks.
    pub clock_is_float_token: bool,
}

pub(crate) fn parse_document(bytes: &[u8], max_depth: usize) -> Result<Document, ProtocolError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ProtocolError::InvalidJson {
        offset: e.valid_up_to(),
        reason: "input is not valid UTF-8",
    })?;
    let mut parser = Parser {
        text,
        bytes,
        pos: 0,
        max_depth,
        last_number_was_float: false,
        clock_is_float_token: false,
    };
    parser.skip_ws();
    let value = parser.value(0)?;
    parser.skip_ws();
    if parser.pos != bytes.len() {
        return Err(parser.error("unexpected data after the JSON value"));
    }
    Ok(Document {
        value,
        clock_is_float_token: parser.clock_is_float_token,
    })
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    max_depth: usize,
    last_number_was_float: bool,
    clock_is_float_token: bool,
}

impl Parser<'_> {
    fn error(&self, reason: &'static str) -> ProtocolError {
        self.error_at(self.pos, reason)
    }

    fn error_at(&self, offset: usize, reason: &'static str) -> ProtocolError {
        ProtocolError::InvalidJson { offset, reason }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// JSON whitespace only (as CPython's scanner): space, tab, LF, CR.
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8, reason: &'static str) -> Result<(), ProtocolError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(reason))
        }
    }

    /// Parses one value whose enclosing containers number `depth`.
    fn value(&mut self, depth: usize) -> Result<Value, ProtocolError> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'N' | b'I') => Err(self.error("NaN and Infinity are not JSON")),
            Some(_) => Err(self.error("expected a JSON value")),
            None => Err(self.error("unexpected end of input")),
        }
    }

    fn enter(&self, depth: usize) -> Result<(), ProtocolError> {
        if depth > self.max_depth {
            Err(self.error("nesting deeper than the allowed maximum"))
        } else {
            Ok(())
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, ProtocolError> {
        self.enter(depth)?;
        self.pos += 1;
        let mut map = Map::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(map));
        }
        loop {
            let key_at = self.pos;
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let key = self.string()?;
            self.skip_ws();
            self.expect(b':', "expected ':' after an object key")?;
            self.skip_ws();
            let item = self.value(depth)?;
            if depth == 1 && key == "clock" {
                self.clock_is_float_token = item.is_number() && self.last_number_was_float;
            }
            if map.insert(key, item).is_some() {
                return Err(self.error_at(key_at, "duplicate object key"));
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => return Err(self.error("expected ',' or '}' in an object")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, ProtocolError> {
        self.enter(depth)?;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']' in an array")),
            }
        }
    }

    fn literal(&mut self, word: &'static str, value: Value) -> Result<Value, ProtocolError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error("expected a JSON value"))
        }
    }

    fn number(&mut self) -> Result<Value, ProtocolError> {
        let start = self.pos;
        let Some((len, float)) = scan_token(&self.bytes[start..]) else {
            return Err(self.error("malformed number"));
        };
        self.pos += len;
        self.last_number_was_float = float;
        // The token is ASCII, so these are char boundaries.
        let token = &self.text[start..self.pos];
        canonical_number(token, float)
            .map(Value::Number)
            .map_err(|e| self.error_at(start, e.reason()))
    }

    /// Parses a string starting at its opening quote.
    fn string(&mut self) -> Result<String, ProtocolError> {
        self.pos += 1;
        let start = self.pos;
        // Fast path: no escapes, as for nearly every key and value.
        while let Some(b) = self.peek() {
            match b {
                b'"' => {
                    let s = self.text[start..self.pos].to_owned();
                    self.pos += 1;
                    return Ok(s);
                }
                b'\\' => break,
                0x00..=0x1f => return Err(self.error("control character in a string")),
                _ => self.pos += 1,
            }
        }
        let mut out = String::from(&self.text[start..self.pos]);
        loop {
            let run = self.pos;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.pos += 1;
            }
            // Stopped on an ASCII byte (or the end): a char boundary.
            out.push_str(&self.text[run..self.pos]);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let c = self.escape()?;
                    out.push(c);
                }
                Some(_) => return Err(self.error("control character in a string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    /// Decodes one escape sequence starting at its backslash.
    fn escape(&mut self) -> Result<char, ProtocolError> {
        let at = self.pos;
        self.pos += 1;
        let Some(kind) = self.peek() else {
            return Err(self.error("unterminated string"));
        };
        self.pos += 1;
        let c = match kind {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(at),
            _ => return Err(self.error_at(at, "invalid escape sequence")),
        };
        Ok(c)
    }

    /// Decodes `XXXX` after `\u`, joining surrogate pairs; a surrogate that is
    /// not part of a pair cannot be UTF-8 encoded, so it is refused (protocol.md §5 rule 10).
    fn unicode_escape(&mut self, at: usize) -> Result<char, ProtocolError> {
        let high = self.hex4()?;
        let code = match high {
            0xD800..=0xDBFF => {
                if !self.bytes[self.pos..].starts_with(b"\\u") {
                    return Err(self.error_at(at, "lone surrogate in a \\u escape"));
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(self.error_at(at, "lone surrogate in a \\u escape"));
                }
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.error_at(at, "lone surrogate in a \\u escape")),
            _ => high,
        };
        char::from_u32(code).ok_or_else(|| self.error_at(at, "invalid \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32, ProtocolError> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("truncated \\u escape"))?;
        let mut code = 0u32;
        for &d in digits {
            let v = char::from(d)
                .to_digit(16)
                .ok_or_else(|| self.error("invalid hex digit in a \\u escape"))?;
            code = code * 16 + v;
        }
        self.pos += 4;
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::canonical_string;
    use crate::error::ErrorCode;

    fn round(text: &str) -> String {
        canonical_string(&parse_json(text.as_bytes(), DEFAULT_MAX_DEPTH).unwrap())
    }

    fn refused(text: &str) {
        let err = parse_json(text.as_bytes(), DEFAULT_MAX_DEPTH).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidJson, "{text:?}: {err}");
    }

    #[test]
    fn parses_and_canonicalizes() {
        assert_eq!(
            round(" { \"b\" : [1.0, -0, 2e-5] , \"a\":\"x\\u00e9\\/\" } "),
            r#"{"a":"xé/","b":[1,0,2e-05]}"#
        );
        assert_eq!(round("\"\\ud83d\\ude00\""), "\"😀\"");
        assert_eq!(round("[]"), "[]");
        assert_eq!(round("{}"), "{}");
        assert_eq!(round("0"), "0");
    }

    #[test]
    fn refuses_non_json() {
        for bad in [
            "",
            " ",
            "NaN",
            "Infinity",
            "-Infinity",
            "[NaN]",
            "1e400",
            "{\"a\":1,\"a\":2}",
            "{\"x\":{\"a\":1,\"a\":1}}",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"a\u{1}\"",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            "+1",
            "[1 2]",
            "{'a':1}",
            "tru",
            "nul",
            "\"abc",
            "\"\\x\"",
            "\"\\u12\"",
            "[1]x",
            "\u{feff}{}",
            "{\"a\"}",
            "{1:2}",
        ] {
            refused(bad);
        }
        assert_eq!(
            parse_json(b"[\"\xff\"]", DEFAULT_MAX_DEPTH)
                .unwrap_err()
                .code(),
            ErrorCode::InvalidJson
        );
    }

    #[test]
    fn depth_limit_is_inclusive() {
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse_json(nest(128).as_bytes(), DEFAULT_MAX_DEPTH).is_ok());
        refused(&nest(129));
        assert!(parse_json(b"{\"a\":{}}", 2).is_ok());
        assert!(parse_json(b"{\"a\":{}}", 1).is_err());
        assert!(parse_json(b"7", 0).is_ok());
    }

    #[test]
    fn notes_float_clock_only_at_top_level() {
        let doc = |t: &str| parse_document(t.as_bytes(), DEFAULT_MAX_DEPTH).unwrap();
        assert!(doc(r#"{"clock":1.0}"#).clock_is_float_token);
        assert!(doc(r#"{"clock":1e0,"x":2}"#).clock_is_float_token);
        assert!(!doc(r#"{"clock":1,"x":2.5}"#).clock_is_float_token);
        assert!(!doc(r#"{"b":{"clock":1.0}}"#).clock_is_float_token);
        assert!(!doc(r#"{"clock":[1.0]}"#).clock_is_float_token);
    }
}
