//! Typed value semantics: equality, ordering, numbers and LIKE, as the filter operators use them.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// Deep JSON equality with numeric comparison of numbers (`2.0` equals `2`), and
/// no equality across types.
pub(super) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, xv)| y.get(key).is_some_and(|yv| json_equal(xv, yv)))
        }
        _ => a == b,
    }
}

/// Order of two values of the same orderable type (number, string, bool);
/// `None` for mismatched types or null/array/object, which never satisfy `$gt` etc.
pub(super) fn typed_order(stored: &Value, operand: &Value) -> Option<Ordering> {
    match (stored, operand) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Compares two JSON numbers by value.
///
/// Two integers compare exactly, at any size (stored clocks and counters may exceed
/// 64 bits and must not collapse onto the same `f64`); anything else compares as `f64`.
pub(super) fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    match (integer_parts(a.as_str()), integer_parts(b.as_str())) {
        (Some(x), Some(y)) => Some(compare_integers(x, y)),
        _ => {
            let x: f64 = a.as_str().parse().ok()?;
            let y: f64 = b.as_str().parse().ok()?;
            x.partial_cmp(&y)
        }
    }
}

/// An integer literal as (negative, magnitude digits without leading zeros).
/// Zero has an empty magnitude and is never negative, so `-0` equals `0`.
fn integer_parts(text: &str) -> Option<(bool, &str)> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let magnitude = digits.trim_start_matches('0');
    Some((negative && !magnitude.is_empty(), magnitude))
}

fn compare_integers((a_negative, a): (bool, &str), (b_negative, b): (bool, &str)) -> Ordering {
    // Equal-length digit strings without leading zeros order like their values.
    let magnitude = |x: &str, y: &str| x.len().cmp(&y.len()).then_with(|| x.cmp(y));
    match (a_negative, b_negative) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => magnitude(a, b),
        (true, true) => magnitude(b, a),
    }
}
