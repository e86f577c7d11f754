//! Number rules of canonical JSON (protocol.md §5 rules 7–8).
//!
//! Ids are computed by the Python SDK from the values `json.loads` builds, so a
//! number's canonical text is what Python prints for that value: integer
//! tokens stay exact big integers, float tokens become binary64 and print as
//! the exact integer when integral, else in `repr` layout (`1e-05`).

use std::fmt::Write as _;

use serde_json::Number;

/// CPython refuses to convert integer strings longer than this (its
/// `sys.get_int_max_str_digits()` default), so such ids could never be
/// reproduced by the SDK.
pub const MAX_INTEGER_DIGITS: usize = 4300;

/// Why a number token was refused; the caller adds position or token context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NumberError {
    /// Not a JSON number token at all.
    Syntax,
    /// An integer token with more than [`MAX_INTEGER_DIGITS`] digits.
    TooManyDigits,
    /// A float token whose value rounds to ±infinity.
    Overflow,
}

impl NumberError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            NumberError::Syntax => "malformed number",
            NumberError::TooManyDigits => "integer longer than 4300 digits",
            NumberError::Overflow => "number overflows to infinity",
        }
    }
}

/// Length of the JSON number token at the start of `bytes` and whether it is a
/// float token (has a fraction or exponent). `None` if no valid token starts
/// there. The grammar is RFC 8259's, which is also what CPython's scanner
/// accepts (ASCII digits only, no leading zeros, no leading `+`).
pub(crate) fn scan_token(bytes: &[u8]) -> Option<(usize, bool)> {
    let digits = |from: usize| {
        bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut i = usize::from(bytes.first() == Some(&b'-'));
    match bytes.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += digits(i),
        _ => return None,
    }
    let mut float = false;
    if bytes.get(i) == Some(&b'.') {
        let n = digits(i + 1);
        if n == 0 {
            return None;
        }
        i += 1 + n;
        float = true;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let n = digits(i);
        if n == 0 {
            return None;
        }
        i += n;
        float = true;
    }
    Some((i, float))
}

/// Canonical [`Number`] for one complete, already-scanned token.
pub(crate) fn canonical_number(token: &str, float: bool) -> Result<Number, NumberError> {
    if float {
        let value: f64 = token.parse().map_err(|_| NumberError::Syntax)?;
        if !value.is_finite() {
            return Err(NumberError::Overflow);
        }
        if value == value.trunc() {
            // Integral: exact integer text. Small ones take the cheap path.
            if value.abs() < 9.0e15 {
                // Exact: |value| < 2^53, so the cast loses nothing.
                return Ok(Number::from(value as i64));
            }
            return number_from_text(&format!("{value:.0}"));
        }
        return number_from_text(&python_repr_fraction(value));
    }
    let digits = token.strip_prefix('-').unwrap_or(token);
    if digits.len() > MAX_INTEGER_DIGITS {
        return Err(NumberError::TooManyDigits);
    }
    if let Ok(small) = token.parse::<i64>() {
        // Also maps "-0" to 0.
        return Ok(Number::from(small));
    }
    number_from_text(token)
}

/// Canonical form of an arbitrary JSON number token (e.g. one stored in a
/// [`Number`] built by Rust code, which may read `1.0` or `1e-5`).
pub(crate) fn canonicalize_token(token: &str) -> Result<Number, NumberError> {
    match scan_token(token.as_bytes()) {
        Some((len, float)) if len == token.len() => canonical_number(token, float),
        _ => Err(NumberError::Syntax),
    }
}

/// Builds a `Number` holding exactly `text`, which must already be a valid,
/// canonical JSON number. Goes through the public `FromStr`, which with
/// `arbitrary_precision` keeps the token text verbatim.
fn number_from_text(text: &str) -> Result<Number, NumberError> {
    text.parse().map_err(|_| NumberError::Syntax)
}

/// Python `repr` of a finite, non-integral double.
///
/// Digits are the shortest round-trip digits, ties broken to even as
/// CPython's `dtoa` does. Rust's own `{}`/`{:e}` do not break ties that way
/// (`645223449482410.25` prints as `…410.3`; Python says `…410.2`), ryu does.
/// Layout: fixed notation when the decimal point position `p` (value =
/// 0.d1…dn × 10^p) satisfies −4 < p ≤ 16, else `d1[.d2…]e±XX` with at least
/// two exponent digits.
pub(crate) fn python_repr_fraction(value: f64) -> String {
    let mut buffer = ryu::Buffer::new();
    let (digits, point) = shortest_digits(buffer.format_finite(value.abs()));

    let mut out = String::with_capacity(digits.len() + 8);
    if value.is_sign_negative() {
        out.push('-');
    }
    if -4 < point && point <= 16 {
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
            out.push_str(&digits);
        } else {
            // Non-integral, so there are more digits than integer places.
            let split = (point as usize).min(digits.len());
            out.push_str(&digits[..split]);
            out.push('.');
            out.push_str(&digits[split..]);
        }
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let e = point - 1;
        let sign = if e < 0 { '-' } else { '+' };
        // Writing to a String cannot fail.
        let _ = write!(out, "e{sign}{:02}", e.unsigned_abs());
    }
    out
}

/// Splits ryu's text of a positive finite double (`0.001`, `123.45`,
/// `1.5e-7`, `1e16`) into its significant digits and the decimal point
/// position `p`, with value = 0.d1d2… × 10^p.
fn shortest_digits(text: &str) -> (String, i32) {
    let (mantissa, exp) = match text.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = [int_part, frac_part].concat();
    let significant = all.trim_start_matches('0');
    let leading_zeros = (all.len() - significant.len()) as i32;
    let point = int_part.len() as i32 - leading_zeros + exp;
    (significant.trim_end_matches('0').to_owned(), point)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(token: &str) -> String {
        canonicalize_token(token)
            .map(|n| n.as_str().to_owned())
            .unwrap()
    }

    #[test]
    fn python_repr_table() {
        let table = [
            ("0.1", "0.1"),
            ("1e-05", "1e-05"),
            ("0.00001", "1e-05"),
            ("1.5e-07", "1.5e-07"),
            ("5e-324", "5e-324"),
            ("0.0001", "0.0001"),
            ("-123.456", "-123.456"),
            ("1234567890123456.8", "1234567890123456.8"),
            ("123456789012345.67", "123456789012345.67"),
            ("3.141592653589793", "3.141592653589793"),
            ("1e16", "10000000000000000"),
            ("1e22", "10000000000000000000000"),
            ("1.0", "1"),
            ("-0.0", "0"),
            ("-0", "0"),
            ("250.0", "250"),
            ("2.5E-3", "0.0025"),
            ("-1e-10", "-1e-10"),
            ("1.7976931348623157e308", &format!("{:.0}", f64::MAX)),
            ("1e-400", "0"),
            ("-1e-400", "0"),
            ("0e5", "0"),
            ("1e-99999999999999999999", "0"),
            ("18446744073709551617", "18446744073709551617"),
            ("-1180591620717411303424", "-1180591620717411303424"),
        ];
        for (input, want) in table {
            assert_eq!(canon(input), want, "input {input}");
        }
    }

    #[test]
    fn splits_ryu_layouts() {
        assert_eq!(shortest_digits("0.001"), ("1".to_owned(), -2));
        assert_eq!(shortest_digits("123.45"), ("12345".to_owned(), 3));
        assert_eq!(shortest_digits("1.5e-7"), ("15".to_owned(), -6));
        assert_eq!(shortest_digits("1e16"), ("1".to_owned(), 17));
        assert_eq!(shortest_digits("0.5"), ("5".to_owned(), 0));
    }

    #[test]
    // The literals are exact halfway values on purpose.
    #[allow(clippy::excessive_precision)]
    fn ties_go_to_even_like_cpython() {
        // 645223449482410.25 is exactly halfway between two 16-digit
        // candidates; CPython picks the even one.
        assert_eq!(
            python_repr_fraction(645223449482410.25),
            "645223449482410.2"
        );
        assert_eq!(
            python_repr_fraction(-1059438285926254.25),
            "-1059438285926254.2"
        );
    }

    #[test]
    fn refuses_bad_tokens() {
        assert_eq!(canonicalize_token("1e400"), Err(NumberError::Overflow));
        assert_eq!(canonicalize_token("-1e400"), Err(NumberError::Overflow));
        assert_eq!(
            canonicalize_token("1e99999999999999999999"),
            Err(NumberError::Overflow)
        );
        for bad in ["", "-", "01", "1.", ".5", "1e", "+1", "NaN", "1 ", "0x1"] {
            assert_eq!(canonicalize_token(bad), Err(NumberError::Syntax), "{bad:?}");
        }
        let long = "9".repeat(MAX_INTEGER_DIGITS + 1);
        assert_eq!(canonicalize_token(&long), Err(NumberError::TooManyDigits));
        assert!(canonicalize_token(&format!("-{}", &long[1..])).is_ok());
    }
}
