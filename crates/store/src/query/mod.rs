//! Rich-query engine for `POST /v1/records/query` (protocol.md §11.6).
//!
//! Pure and I/O-free on purpose: the store narrows candidate rows in SQL using the
//! column equalities this module exposes ([`Filter::column_equalities`]), then this
//! module decides the exact match set, order and projection over the full stored
//! record JSON. Keeping the semantics here, in one place, means every backend
//! answers a filter identically however much of it it manages to push down.
//!
//! Semantics in brief (the spec section is authoritative):
//! - a filter object's members AND together; `$and` / `$or` take arrays of
//!   filter objects, `$not` takes one filter object;
//! - a field value that is a scalar or array means `$eq`; an object whose keys all
//!   start with `$` is an operator document; an object without `$` keys means deep
//!   JSON equality; mixing the two is refused;
//! - comparisons are typed: values of different JSON types are never equal and
//!   never ordered, and an absent field satisfies only `$exists: false`.
//!
//! Members of a JSON object are visited in the order `serde_json` iterates them
//! (sorted by key, as the workspace does not enable `preserve_order`), so
//! "first mention" in [`Filter::fields`] and [`plan`] means that order.

mod filter;
mod like;
mod order;
mod path;
mod project;
#[cfg(test)]
mod tests;
mod values;

use serde_json::{Map, Value};

pub use filter::{Filter, Op};
pub use like::{LikePattern, MAX_LIKE_PATTERN_CHARS};
pub use order::{compare_records, Candidate, Sort, TopK};
pub use path::{Column, FieldPath};
pub use project::{plan, project};

/// `limit` when the request does not give one.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page a query may return; larger requests are clamped and flagged `capped`.
pub const MAX_LIMIT: usize = 1000;

/// A malformed query. The message names the offending path, operator or request
/// member so the HTTP layer can return it verbatim as `400 INVALID_FILTER`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

impl QueryError {
    fn new(message: impl Into<String>) -> Self {
        QueryError(message.into())
    }
}

/// The parsed request body of `POST /v1/records/query`.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryRequest {
    /// The filter, with the `thread` shorthand already folded in as an AND condition.
    pub filter: Filter,
    /// The `thread` shorthand as sent (already part of `filter`; kept for logging and routing).
    pub thread: Option<String>,
    /// `None` means the default order: `sequence` ascending.
    pub sort: Option<Sort>,
    /// Page size, at most [`MAX_LIMIT`].
    pub limit: usize,
    /// True when the requested limit exceeded [`MAX_LIMIT`] and was clamped.
    pub capped: bool,
    /// Rows to skip; the spec says it is ignored when `cursor` is given.
    pub offset: usize,
    /// Opaque continuation token from a previous page.
    pub cursor: Option<String>,
    /// Paths to project each record onto (`id` is always kept).
    pub select: Option<Vec<FieldPath>>,
    /// Whether to answer with a `plan`.
    pub explain: bool,
}

impl QueryRequest {
    /// Parses and validates a request body.
    ///
    /// An explicit `null` member counts as absent: the SDK omits unset members but
    /// other clients serialise them as `null`, and both mean "not set". Unknown
    /// members are ignored, like clients ignore unknown response members.
    pub fn parse(body: &Value) -> Result<QueryRequest, QueryError> {
        let body = body
            .as_object()
            .ok_or_else(|| QueryError::new("query request must be a JSON object"))?;

        // Refused before anything else so the error names aggregation even when
        // the rest of an aggregation request would also be invalid here.
        for key in ["group_by", "aggregates"] {
            if member(body, key).is_some() {
                return Err(QueryError(format!("aggregation is not supported: {key}")));
            }
        }

        let mut filter = match member(body, "filter") {
            Some(filter) => Filter::parse(filter)?,
            None => Filter::And(Vec::new()),
        };

        let thread = optional_string(body, "thread")?;
        if let Some(thread) = &thread {
            filter = filter.and(Filter::Cond {
                path: FieldPath::Column(Column::Thread),
                op: Op::Eq,
                value: Value::String(thread.clone()),
            });
        }

        let sort = member(body, "sort").map(Sort::parse).transpose()?;

        let (limit, capped) = match member(body, "limit") {
            None => (DEFAULT_LIMIT, false),
            Some(value) => {
                let requested = non_negative_integer(value, "limit")?;
                (requested.min(MAX_LIMIT), requested > MAX_LIMIT)
            }
        };

        let offset = match member(body, "offset") {
            None => 0,
            Some(value) => non_negative_integer(value, "offset")?,
        };

        let cursor = optional_string(body, "cursor")?;

        let select = member(body, "select").map(parse_select).transpose()?;

        let explain = match member(body, "explain") {
            None => false,
            Some(Value::Bool(explain)) => *explain,
            Some(_) => return Err(QueryError::new("explain must be a boolean")),
        };

        Ok(QueryRequest {
            filter,
            thread,
            sort,
            limit,
            capped,
            offset,
            cursor,
            select,
            explain,
        })
    }
}

/// A request member, with an explicit `null` treated as absent.
fn member<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|value| !value.is_null())
}

fn optional_string(object: &Map<String, Value>, key: &str) -> Result<Option<String>, QueryError> {
    match member(object, key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(QueryError(format!("{key} must be a string"))),
    }
}

/// A non-negative JSON integer as `usize`.
///
/// Values too large for `usize` saturate rather than fail: a limit that large is
/// clamped anyway, and an offset that large skips every row either way.
fn non_negative_integer(value: &Value, name: &str) -> Result<usize, QueryError> {
    let invalid = || QueryError(format!("{name} must be a non-negative integer"));
    let Value::Number(number) = value else {
        return Err(invalid());
    };
    let digits = number.as_str();
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(invalid());
    }
    // Only overflow can fail here, since `digits` is a non-empty run of ASCII digits.
    Ok(digits.parse::<usize>().unwrap_or(usize::MAX))
}

fn parse_select(select: &Value) -> Result<Vec<FieldPath>, QueryError> {
    let invalid = || QueryError::new("select must be an array of field path strings");
    let paths = select.as_array().ok_or_else(invalid)?;
    paths
        .iter()
        .map(|path| path.as_str().ok_or_else(invalid).and_then(FieldPath::parse))
        .collect()
}
