//! Sorting: one sort key, and the total order over JSON values it uses.

use std::cmp::Ordering;

use serde_json::Value;

use super::values::compare_numbers;
use super::{FieldPath, QueryError};

/// A one-key sort such as `{"clock": -1}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sort {
    pub path: FieldPath,
    pub descending: bool,
}

impl Sort {
    /// Parses `{"<path>": 1}` (ascending) or `{"<path>": -1}` (descending).
    pub fn parse(sort: &Value) -> Result<Sort, QueryError> {
        let shape = || QueryError::new("sort must be an object with exactly one field path");
        let keys = sort.as_object().ok_or_else(shape)?;
        let mut entries = keys.iter();
        let (Some((key, direction)), None) = (entries.next(), entries.next()) else {
            return Err(shape());
        };
        let path = FieldPath::parse(key)?;
        let descending = match direction.as_i64() {
            Some(1) => false,
            Some(-1) => true,
            _ => {
                return Err(QueryError(format!(
                    "sort direction for {path} must be 1 or -1"
                )))
            }
        };
        Ok(Sort { path, descending })
    }
}

/// Total order used for sorting: compare the values at `path` of two records; ties
/// broken by `sequence` ascending (whatever the direction, so pages are stable).
///
/// Absent values come first ascending; values of different types order
/// null < bool < number < string < array < object.
pub fn compare_records(a: &Value, b: &Value, sort: &Sort) -> Ordering {
    compare_keys(sort.path.resolve(a), sort.path.resolve(b), sort)
        .then_with(|| compare_optional(a.get("sequence"), b.get("sequence")))
}

/// The sort's order of two values at its path, direction applied.
fn compare_keys(a: Option<&Value>, b: Option<&Value>, sort: &Sort) -> Ordering {
    let by_path = compare_optional(a, b);
    if sort.descending {
        by_path.reverse()
    } else {
        by_path
    }
}

/// The first `k` matches of a sort, kept while scanning without holding every match or any
/// record: each candidate is its sort key, sequence and id, and the caller reads the winning
/// records again. Memory is at most twice `k` candidates.
#[derive(Debug)]
pub struct TopK {
    sort: Sort,
    k: usize,
    kept: Vec<Candidate>,
    key_bytes: usize,
}

/// A record that may be among the first `k`.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub key: Option<Value>,
    pub seq: i64,
    pub id: String,
}

impl TopK {
    pub fn new(sort: Sort, k: usize) -> TopK {
        TopK {
            sort,
            k,
            kept: Vec::new(),
            key_bytes: 0,
        }
    }

    /// Considers one matching record.
    pub fn offer(&mut self, record: &Value, seq: i64, id: &str) {
        let key = self.sort.path.resolve(record).cloned();
        self.key_bytes += key.as_ref().map_or(0, approximate_bytes);
        self.kept.push(Candidate {
            key,
            seq,
            id: id.to_owned(),
        });
        if self.kept.len() >= 2 * self.k.max(1) {
            self.trim();
        }
    }

    /// About how many bytes the kept sort keys hold.
    pub fn key_bytes(&self) -> usize {
        self.key_bytes
    }

    /// The first `k` candidates, in order.
    pub fn finish(mut self) -> Vec<Candidate> {
        self.trim();
        self.kept
    }

    fn trim(&mut self) {
        let sort = &self.sort;
        let order = |a: &Candidate, b: &Candidate| {
            compare_keys(a.key.as_ref(), b.key.as_ref(), sort).then(a.seq.cmp(&b.seq))
        };
        self.kept.sort_by(order);
        self.kept.truncate(self.k);
        self.key_bytes = self
            .kept
            .iter()
            .filter_map(|c| c.key.as_ref())
            .map(approximate_bytes)
            .sum();
    }
}

/// About the size of a JSON value in memory, to bound what sort keys may hold.
fn approximate_bytes(value: &Value) -> usize {
    match value {
        Value::String(text) => 24 + text.len(),
        Value::Array(items) => 24 + items.iter().map(approximate_bytes).sum::<usize>(),
        Value::Object(members) => {
            24 + members
                .iter()
                .map(|(k, v)| 24 + k.len() + approximate_bytes(v))
                .sum::<usize>()
        }
        _ => 24,
    }
}

fn compare_optional(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => total_order(a, b),
    }
}

/// Orders any two JSON values: by type rank first, then within the type.
fn total_order(a: &Value, b: &Value) -> Ordering {
    type_rank(a).cmp(&type_rank(b)).then_with(|| match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y).unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y)
            .map(|(x, y)| total_order(x, y))
            .find(|ordering| ordering.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        (Value::Object(x), Value::Object(y)) => {
            // Compare as key-sorted (key, value) sequences so the order does not
            // depend on the map's iteration order.
            let mut x: Vec<_> = x.iter().collect();
            let mut y: Vec<_> = y.iter().collect();
            x.sort_by(|p, q| p.0.cmp(q.0));
            y.sort_by(|p, q| p.0.cmp(q.0));
            x.iter()
                .zip(&y)
                .map(|((xk, xv), (yk, yv))| xk.cmp(yk).then_with(|| total_order(xv, yv)))
                .find(|ordering| ordering.is_ne())
                .unwrap_or_else(|| x.len().cmp(&y.len()))
        }
        _ => Ordering::Equal,
    })
}

fn type_rank(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}
