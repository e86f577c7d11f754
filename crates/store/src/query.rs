//! Rich-query engine for `POST /v1/records/query` (PROTOCOL.md §11.6).
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

use std::cmp::Ordering;
use std::fmt;

use serde_json::{json, Map, Number, Value};

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

// ---------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Filter
// ---------------------------------------------------------------------------

/// A parsed filter: a tree of logical nodes over single-path conditions.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// Every part holds (an empty list holds for every record).
    And(Vec<Filter>),
    /// At least one part holds (an empty list holds for no record).
    Or(Vec<Filter>),
    /// Logical negation: also true where the inner filter fails because a field is absent.
    Not(Box<Filter>),
    /// One operator applied to the value at one path.
    Cond {
        path: FieldPath,
        op: Op,
        value: Value,
    },
}

/// A comparison operator of an operator document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Nin,
    Like,
    Ilike,
    Exists,
}

impl Op {
    /// The operator as spelled in a request, e.g. `$gte`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "$eq",
            Op::Ne => "$ne",
            Op::Gt => "$gt",
            Op::Gte => "$gte",
            Op::Lt => "$lt",
            Op::Lte => "$lte",
            Op::In => "$in",
            Op::Nin => "$nin",
            Op::Like => "$like",
            Op::Ilike => "$ilike",
            Op::Exists => "$exists",
        }
    }

    fn from_name(name: &str) -> Option<Op> {
        Some(match name {
            "$eq" => Op::Eq,
            "$ne" => Op::Ne,
            "$gt" => Op::Gt,
            "$gte" => Op::Gte,
            "$lt" => Op::Lt,
            "$lte" => Op::Lte,
            "$in" => Op::In,
            "$nin" => Op::Nin,
            "$like" => Op::Like,
            "$ilike" => Op::Ilike,
            "$exists" => Op::Exists,
            _ => return None,
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Filter {
    /// Parses a filter object; `{}` matches every record.
    pub fn parse(filter: &Value) -> Result<Filter, QueryError> {
        let members = filter
            .as_object()
            .ok_or_else(|| QueryError::new("filter must be a JSON object"))?;
        parse_filter_object(members)
    }

    /// Whether `record` (the full stored record JSON) satisfies the filter.
    pub fn matches(&self, record: &Value) -> bool {
        match self {
            Filter::And(parts) => parts.iter().all(|part| part.matches(record)),
            Filter::Or(parts) => parts.iter().any(|part| part.matches(record)),
            Filter::Not(inner) => !inner.matches(record),
            Filter::Cond { path, op, value } => condition_holds(path.resolve(record), *op, value),
        }
    }

    /// Equality conditions on columns that hold for every match (top-level AND only):
    /// used to push `thread`, `actor`, `act` ... equalities down into SQL.
    ///
    /// Only string-valued `$eq` (or scalar shorthand) on the text columns `thread`,
    /// `actor`, `act`, `data_type`, `namespace` and `id` qualifies: those compare the
    /// same way in SQL as here, whereas anything under `$or`/`$not` does not hold for
    /// every match. Nested `$and`s are still conjunctions, so they are searched too.
    /// Duplicate pairs are dropped; conflicting values for one column are all kept,
    /// which correctly makes the SQL select nothing.
    pub fn column_equalities(&self) -> Vec<(Column, String)> {
        let mut equalities = Vec::new();
        self.collect_equalities(&mut equalities);
        equalities
    }

    fn collect_equalities(&self, equalities: &mut Vec<(Column, String)>) {
        match self {
            Filter::And(parts) => {
                for part in parts {
                    part.collect_equalities(equalities);
                }
            }
            Filter::Cond {
                path: FieldPath::Column(column),
                op: Op::Eq,
                value: Value::String(text),
            } if column.is_text() => {
                let pair = (*column, text.clone());
                if !equalities.contains(&pair) {
                    equalities.push(pair);
                }
            }
            _ => {}
        }
    }

    /// Every path the filter mentions, deduplicated, in first-mention order.
    pub fn fields(&self) -> Vec<FieldPath> {
        let mut fields = Vec::new();
        self.collect_fields(&mut fields);
        fields
    }

    fn collect_fields(&self, fields: &mut Vec<FieldPath>) {
        match self {
            Filter::And(parts) | Filter::Or(parts) => {
                for part in parts {
                    part.collect_fields(fields);
                }
            }
            Filter::Not(inner) => inner.collect_fields(fields),
            Filter::Cond { path, .. } => {
                if !fields.contains(path) {
                    fields.push(path.clone());
                }
            }
        }
    }

    /// `self AND other`, flattening into an existing top-level AND so that
    /// [`Filter::column_equalities`] and [`plan`] see the added condition directly.
    fn and(self, other: Filter) -> Filter {
        match self {
            Filter::And(mut parts) => {
                parts.push(other);
                Filter::And(parts)
            }
            single => Filter::And(vec![single, other]),
        }
    }
}

/// One filter object: every member is a logical operator or a field path, and they AND.
fn parse_filter_object(members: &Map<String, Value>) -> Result<Filter, QueryError> {
    let mut parts = Vec::with_capacity(members.len());
    for (key, value) in members {
        let part = match key.as_str() {
            "$and" => Filter::And(parse_filter_list("$and", value)?),
            "$or" => Filter::Or(parse_filter_list("$or", value)?),
            "$not" => {
                let inner = value
                    .as_object()
                    .ok_or_else(|| QueryError::new("$not must be a filter object"))?;
                Filter::Not(Box::new(parse_filter_object(inner)?))
            }
            other if other.starts_with('$') => {
                return Err(QueryError(format!("unknown operator: {other}")));
            }
            path => parse_field_value(FieldPath::parse(path)?, value)?,
        };
        parts.push(part);
    }
    Ok(conjunction(parts))
}

fn parse_filter_list(operator: &str, value: &Value) -> Result<Vec<Filter>, QueryError> {
    let items = value
        .as_array()
        .ok_or_else(|| QueryError(format!("{operator} must be an array of filter objects")))?;
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match item.as_object() {
            Some(members) => parse_filter_object(members),
            None => Err(QueryError(format!(
                "{operator}[{index}] must be a filter object"
            ))),
        })
        .collect()
}

/// The value of a field-path member: shorthand equality, deep equality or an operator document.
///
/// An empty object has no `$` keys, so it is deep equality with `{}` rather than an
/// empty operator document (which would silently match everything).
fn parse_field_value(path: FieldPath, value: &Value) -> Result<Filter, QueryError> {
    let Value::Object(document) = value else {
        return Ok(equality(path, value));
    };
    let operator_keys = document.keys().filter(|key| key.starts_with('$')).count();
    if operator_keys == 0 {
        return Ok(equality(path, value));
    }
    if operator_keys < document.len() {
        return Err(QueryError(format!(
            "value of {path} mixes $-operators with plain keys"
        )));
    }
    let conditions = document
        .iter()
        .map(|(name, operand)| parse_condition(&path, name, operand))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(conjunction(conditions))
}

fn equality(path: FieldPath, value: &Value) -> Filter {
    Filter::Cond {
        path,
        op: Op::Eq,
        value: value.clone(),
    }
}

/// One `$op: operand` pair, with the operand's required shape checked up front so
/// matching never has to guess what a malformed operand meant.
fn parse_condition(path: &FieldPath, name: &str, operand: &Value) -> Result<Filter, QueryError> {
    let op = Op::from_name(name)
        .ok_or_else(|| QueryError(format!("unknown operator: {name} (on {path})")))?;
    let required = match op {
        Op::In | Op::Nin if !operand.is_array() => Some("an array"),
        Op::Like | Op::Ilike if !operand.is_string() => Some("a string pattern"),
        Op::Exists if !operand.is_boolean() => Some("a boolean"),
        _ => None,
    };
    if let Some(required) = required {
        return Err(QueryError(format!("{op} on {path} requires {required}")));
    }
    Ok(Filter::Cond {
        path: path.clone(),
        op,
        value: operand.clone(),
    })
}

/// A single part stands alone; several AND. Keeps parsed trees minimal.
fn conjunction(parts: Vec<Filter>) -> Filter {
    match <[Filter; 1]>::try_from(parts) {
        Ok([only]) => only,
        Err(parts) => Filter::And(parts),
    }
}

/// Evaluates one condition against the stored value (`None` when the path is absent).
///
/// `$ne` and `$nin` are the negations of `$eq` and `$in` over *present* values, so
/// `{"$ne": x}` and `{"$nin": [x]}` always agree, and a value of another type than
/// `x` satisfies both (it is not equal to `x`). Ordering operators and LIKE need
/// same-typed, orderable values and otherwise fail.
fn condition_holds(stored: Option<&Value>, op: Op, operand: &Value) -> bool {
    let Some(stored) = stored else {
        return op == Op::Exists && operand == &Value::Bool(false);
    };
    let is_member = |candidates: &Vec<Value>| candidates.iter().any(|c| json_equal(stored, c));
    match op {
        Op::Exists => operand == &Value::Bool(true),
        Op::Eq => json_equal(stored, operand),
        Op::Ne => !json_equal(stored, operand),
        Op::In => operand.as_array().is_some_and(is_member),
        Op::Nin => operand.as_array().is_some_and(|list| !is_member(list)),
        Op::Gt => typed_order(stored, operand) == Some(Ordering::Greater),
        Op::Gte => matches!(
            typed_order(stored, operand),
            Some(Ordering::Greater | Ordering::Equal)
        ),
        Op::Lt => typed_order(stored, operand) == Some(Ordering::Less),
        Op::Lte => matches!(
            typed_order(stored, operand),
            Some(Ordering::Less | Ordering::Equal)
        ),
        Op::Like => like_values(stored, operand, false),
        Op::Ilike => like_values(stored, operand, true),
    }
}

// ---------------------------------------------------------------------------
// Field paths
// ---------------------------------------------------------------------------

/// A filterable record column (§11.6). Private columns such as `sig` are absent on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Id,
    Thread,
    Actor,
    Act,
    Clock,
    DataType,
    Namespace,
    CreatedAt,
}

impl Column {
    /// Every filterable column, in spec order.
    pub const ALL: [Column; 8] = [
        Column::Id,
        Column::Thread,
        Column::Actor,
        Column::Act,
        Column::Clock,
        Column::DataType,
        Column::Namespace,
        Column::CreatedAt,
    ];

    /// The record member (and path) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Column::Id => "id",
            Column::Thread => "thread",
            Column::Actor => "actor",
            Column::Act => "act",
            Column::Clock => "clock",
            Column::DataType => "data_type",
            Column::Namespace => "namespace",
            Column::CreatedAt => "created_at",
        }
    }

    fn from_name(name: &str) -> Option<Column> {
        Column::ALL
            .into_iter()
            .find(|column| column.as_str() == name)
    }

    /// Text columns: the ones whose string equality can be pushed into SQL verbatim.
    fn is_text(self) -> bool {
        !matches!(self, Column::Clock | Column::CreatedAt)
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A path a filter, sort or select may name: a column, or a walk through `body` objects.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldPath {
    Column(Column),
    /// Segments after `body.`; never empty.
    Body(Vec<String>),
}

impl FieldPath {
    /// Parses `thread`, `body.a.b`, ...; anything else (bare `body`, `sig`,
    /// `sequence`, array indexes, empty segments) is refused, naming the path.
    pub fn parse(path: &str) -> Result<FieldPath, QueryError> {
        if let Some(column) = Column::from_name(path) {
            return Ok(FieldPath::Column(column));
        }
        let unknown = || QueryError(format!("unknown field path: {path}"));
        let rest = path.strip_prefix("body.").ok_or_else(unknown)?;
        let segments: Vec<String> = rest.split('.').map(str::to_owned).collect();
        if segments.iter().all(|segment| is_body_segment(segment)) {
            Ok(FieldPath::Body(segments))
        } else {
            Err(unknown())
        }
    }

    /// The value at this path in a stored record, or `None` when absent.
    ///
    /// Body paths walk object members only: an array or scalar on the way means absent.
    /// An explicit JSON `null` is a present value of type null.
    pub fn resolve<'a>(&self, record: &'a Value) -> Option<&'a Value> {
        match self {
            FieldPath::Column(column) => record.get(column.as_str()),
            FieldPath::Body(segments) => segments
                .iter()
                .try_fold(record.get("body")?, |node, segment| {
                    node.as_object()?.get(segment)
                }),
        }
    }

    /// Columns are indexed by the store; body paths are (conservatively) not.
    pub fn is_indexed(&self) -> bool {
        matches!(self, FieldPath::Column(_))
    }
}

/// `seg = [A-Za-z0-9_-]+`
fn is_body_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldPath::Column(column) => f.write_str(column.as_str()),
            FieldPath::Body(segments) => write!(f, "body.{}", segments.join(".")),
        }
    }
}

// ---------------------------------------------------------------------------
// Sort
// ---------------------------------------------------------------------------

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
    let by_path = compare_optional(sort.path.resolve(a), sort.path.resolve(b));
    let by_path = if sort.descending {
        by_path.reverse()
    } else {
        by_path
    };
    by_path.then_with(|| compare_optional(a.get("sequence"), b.get("sequence")))
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

// ---------------------------------------------------------------------------
// Explain plan and projection
// ---------------------------------------------------------------------------

/// Explain plan: `{"indexed_fields":[...], "unindexed_fields":[...]}`.
///
/// Indexed fields are the columns the filter mentions; every `body.*` path is
/// listed as unindexed, conservatively, as the spec asks.
pub fn plan(filter: &Filter) -> Value {
    let (indexed, unindexed): (Vec<FieldPath>, Vec<FieldPath>) =
        filter.fields().into_iter().partition(FieldPath::is_indexed);
    let names =
        |paths: Vec<FieldPath>| -> Vec<String> { paths.iter().map(FieldPath::to_string).collect() };
    json!({
        "indexed_fields": names(indexed),
        "unindexed_fields": names(unindexed),
    })
}

/// Projects a record onto `select` paths (columns and body paths), keeping `id`
/// always so projected rows can still be fetched in full or used as parents.
///
/// Body paths are rebuilt as nested objects (`body.a.b` gives `{"body":{"a":{"b":…}}}`);
/// absent paths are left out rather than invented as `null`.
pub fn project(record: &Value, select: &[FieldPath]) -> Value {
    let mut projected = Map::new();
    if let Some(id) = record.get("id") {
        projected.insert("id".to_owned(), id.clone());
    }
    for path in select {
        let Some(value) = path.resolve(record) else {
            continue;
        };
        match path {
            FieldPath::Column(column) => {
                projected.insert(column.as_str().to_owned(), value.clone());
            }
            FieldPath::Body(segments) => insert_nested(&mut projected, segments, value),
        }
    }
    Value::Object(projected)
}

/// Writes `value` at `body.<segments>` in `target`, creating intermediate objects.
fn insert_nested(target: &mut Map<String, Value>, segments: &[String], value: &Value) {
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut node = target;
    for segment in std::iter::once("body").chain(parents.iter().map(String::as_str)) {
        let slot = node
            .entry(segment.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        // A non-object here cannot happen: any slot on the way was copied from the
        // record along a path that resolved, so it is an object that already holds
        // this value. Leave it as it is.
        let Value::Object(child) = slot else {
            return;
        };
        node = child;
    }
    node.insert(last.clone(), value.clone());
}

// ---------------------------------------------------------------------------
// Typed value semantics
// ---------------------------------------------------------------------------

/// Deep JSON equality with numeric comparison of numbers (`2.0` equals `2`), and
/// no equality across types.
fn json_equal(a: &Value, b: &Value) -> bool {
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
fn typed_order(stored: &Value, operand: &Value) -> Option<Ordering> {
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
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
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

/// `$like` / `$ilike`: only a stored string can match a (string) pattern.
fn like_values(stored: &Value, pattern: &Value, case_insensitive: bool) -> bool {
    let (Value::String(text), Value::String(pattern)) = (stored, pattern) else {
        return false;
    };
    if case_insensitive {
        like(&text.to_lowercase(), &pattern.to_lowercase())
    } else {
        like(text, pattern)
    }
}

/// SQL LIKE over Unicode scalar values, anchored at both ends: `%` matches any run
/// (including empty), `_` exactly one character; there is no escape character.
///
/// Greedy matching that remembers only the latest `%` and retries from it: a later
/// `%` can absorb anything an earlier one could, so older choices never need
/// revisiting. Worst case O(text × pattern), with no recursion to overflow.
fn like(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    let (mut t, mut p) = (0, 0);
    // (pattern index just after the latest `%`, text index that `%` has absorbed up to)
    let mut retry: Option<(usize, usize)> = None;
    while let Some(&current) = text.get(t) {
        match pattern.get(p) {
            Some('%') => {
                p += 1;
                retry = Some((p, t));
            }
            Some(&wanted) if wanted == '_' || wanted == current => {
                t += 1;
                p += 1;
            }
            _ => match retry {
                Some((after_percent, absorbed)) => {
                    retry = Some((after_percent, absorbed + 1));
                    p = after_percent;
                    t = absorbed + 1;
                }
                None => return false,
            },
        }
    }
    pattern.iter().skip(p).all(|&c| c == '%')
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// A full stored record with the given body and sequence.
    fn record(sequence: u64, body: Value) -> Value {
        json!({
            "object": "record",
            "id": format!("{sequence:064x}"),
            "act": "INTEND",
            "actor": "did:sync:user:alice",
            "body": body,
            "clock": 7,
            "data_type": "SCALAR",
            "parents": [],
            "thread": "th_a",
            "judged_by": null,
            "namespace": "default",
            "sequence": sequence,
            "created_at": 1767225600,
            "sig": "00",
            "signer": "did:key:z6Mk",
        })
    }

    /// Parses `filter` (which must be valid) and evaluates it against `record`.
    fn matches(filter: Value, record: &Value) -> bool {
        Filter::parse(&filter)
            .unwrap_or_else(|error| panic!("filter {filter} should parse: {error}"))
            .matches(record)
    }

    /// Whether `{"body.x": filter_value}` matches a record whose `body.x` is `stored`.
    fn x_matches(filter_value: Value, stored: Value) -> bool {
        matches(
            json!({ "body.x": filter_value }),
            &record(1, json!({ "x": stored })),
        )
    }

    fn parse_error(filter: Value) -> String {
        match Filter::parse(&filter) {
            Ok(parsed) => panic!("filter {filter} should be refused, parsed as {parsed:?}"),
            Err(error) => error.to_string(),
        }
    }

    fn request_error(body: Value) -> String {
        match QueryRequest::parse(&body) {
            Ok(parsed) => panic!("request {body} should be refused, parsed as {parsed:?}"),
            Err(error) => error.to_string(),
        }
    }

    /// Parses a JSON number literal exactly (arbitrary precision).
    fn number(text: &str) -> Value {
        serde_json::from_str(text).expect("valid JSON number")
    }

    // --- shapes and logical operators -------------------------------------

    #[test]
    fn empty_filter_matches_everything() {
        assert_eq!(Filter::parse(&json!({})).unwrap(), Filter::And(vec![]));
        assert!(matches(json!({}), &record(1, json!({}))));
    }

    #[test]
    fn members_and_together() {
        let r = record(1, json!({"kind": "task", "priority": 2}));
        assert!(matches(json!({"act": "INTEND", "body.kind": "task"}), &r));
        assert!(!matches(json!({"act": "INTEND", "body.kind": "note"}), &r));
        assert!(matches(json!({"body.priority": {"$gte": 2, "$lt": 3}}), &r));
        assert!(!matches(
            json!({"body.priority": {"$gte": 2, "$lt": 2}}),
            &r
        ));
    }

    #[test]
    fn single_member_parses_to_a_bare_condition() {
        assert_eq!(
            Filter::parse(&json!({"thread": "th_a"})).unwrap(),
            Filter::Cond {
                path: FieldPath::Column(Column::Thread),
                op: Op::Eq,
                value: json!("th_a"),
            }
        );
    }

    #[test]
    fn nested_and_or_not() {
        let r = record(1, json!({"priority": 2, "kind": "task"}));
        let spec_example = json!({
            "act": "INTEND",
            "actor": "did:sync:user:alice",
            "body.kind": {"$in": ["task", "task.v1"]},
            "$or": [{"body.priority": {"$gte": 2}}, {"body.awaits": {"$exists": true}}],
        });
        assert!(matches(spec_example, &r));
        assert!(matches(
            json!({"$and": [{"$or": [{"body.kind": "note"}, {"body.priority": 2}]},
                            {"$not": {"body.kind": "note"}}]}),
            &r
        ));
        assert!(!matches(
            json!({"$and": [{"body.kind": "task"}, {"$not": {"$or": [{"body.priority": 2}]}}]}),
            &r
        ));
        assert!(matches(
            json!({"$not": {"$not": {"body.kind": "task"}}}),
            &r
        ));
        assert!(!matches(
            json!({"$or": [{"body.kind": "x"}, {"body.kind": "y"}]}),
            &r
        ));
    }

    #[test]
    fn empty_logical_lists_are_identities() {
        let r = record(1, json!({}));
        assert!(matches(json!({"$and": []}), &r));
        assert!(!matches(json!({"$or": []}), &r));
    }

    #[test]
    fn not_is_logical_negation_including_absent_fields() {
        let absent = record(1, json!({}));
        let other = record(2, json!({"x": 2}));
        let same = record(3, json!({"x": 1}));
        let not_one = json!({"$not": {"body.x": 1}});
        assert!(matches(not_one.clone(), &absent));
        assert!(matches(not_one.clone(), &other));
        assert!(!matches(not_one, &same));
    }

    // --- operators: positive and negative ----------------------------------

    #[test]
    fn eq_and_shorthand() {
        assert!(x_matches(json!(1), json!(1)));
        assert!(x_matches(json!({"$eq": "a"}), json!("a")));
        assert!(!x_matches(json!({"$eq": "a"}), json!("b")));
        assert!(x_matches(json!(true), json!(true)));
        assert!(!x_matches(json!(true), json!(false)));
        assert!(x_matches(json!(null), json!(null)));
        assert!(!x_matches(json!(null), json!(0)));
    }

    #[test]
    fn ne() {
        assert!(x_matches(json!({"$ne": 1}), json!(2)));
        assert!(!x_matches(json!({"$ne": 1}), json!(1)));
        assert!(!x_matches(json!({"$ne": 1}), json!(1.0)));
        // Another type is "not equal", consistently with `$nin: [1]`.
        assert!(x_matches(json!({"$ne": 1}), json!("1")));
    }

    #[test]
    fn ordering_operators() {
        for (op, below, equal, above) in [
            ("$gt", false, false, true),
            ("$gte", false, true, true),
            ("$lt", true, false, false),
            ("$lte", true, true, false),
        ] {
            assert_eq!(x_matches(json!({ op: 5 }), json!(4)), below, "{op} below");
            assert_eq!(x_matches(json!({ op: 5 }), json!(5)), equal, "{op} equal");
            assert_eq!(x_matches(json!({ op: 5 }), json!(6)), above, "{op} above");
        }
    }

    #[test]
    fn ordering_of_strings_and_booleans() {
        assert!(x_matches(json!({"$gt": "apple"}), json!("banana")));
        assert!(!x_matches(json!({"$gt": "banana"}), json!("apple")));
        // Code point order: uppercase before lowercase, 'é' (U+00E9) after 'z'.
        assert!(x_matches(json!({"$lt": "a"}), json!("Z")));
        assert!(x_matches(json!({"$gt": "z"}), json!("é")));
        assert!(x_matches(json!({"$gt": false}), json!(true)));
        assert!(!x_matches(json!({"$lt": false}), json!(true)));
    }

    #[test]
    fn ordering_never_matches_null_arrays_or_objects() {
        for op in ["$gt", "$gte", "$lt", "$lte"] {
            assert!(!x_matches(json!({ op: null }), json!(null)), "{op} null");
            assert!(!x_matches(json!({ op: [1] }), json!([1])), "{op} array");
            assert!(
                !x_matches(json!({ op: {"a": 1} }), json!({"a": 1})),
                "{op} object"
            );
        }
    }

    #[test]
    fn in_and_nin() {
        assert!(x_matches(json!({"$in": [1, 2, 3]}), json!(2)));
        assert!(!x_matches(json!({"$in": [1, 3]}), json!(2)));
        assert!(!x_matches(json!({"$in": []}), json!(2)));
        assert!(x_matches(json!({"$in": [[1, 2], "b"]}), json!([1, 2])));
        assert!(x_matches(json!({"$nin": [1, 3]}), json!(2)));
        assert!(!x_matches(json!({"$nin": [1, 2]}), json!(2)));
        assert!(x_matches(json!({"$nin": []}), json!(2)));
        assert!(x_matches(json!({"$nin": ["2"]}), json!(2)));
    }

    #[test]
    fn like_and_ilike() {
        assert!(x_matches(
            json!({"$like": "core.%"}),
            json!("core.task.record")
        ));
        assert!(!x_matches(
            json!({"$like": "core.%"}),
            json!("app.core.task")
        ));
        assert!(x_matches(
            json!({"$like": "%task%"}),
            json!("core.task.record")
        ));
        assert!(x_matches(json!({"$like": "t_sk"}), json!("task")));
        assert!(!x_matches(json!({"$like": "t_sk"}), json!("tassk")));
        assert!(x_matches(json!({"$like": "%"}), json!("")));
        assert!(!x_matches(json!({"$like": "_"}), json!("")));
        assert!(x_matches(json!({"$like": "a%b%c"}), json!("aXbYbZc")));
        assert!(!x_matches(json!({"$like": "a%b%c"}), json!("aXbYbZ")));
        assert!(x_matches(json!({"$like": "%%a%%"}), json!("bab")));
        // Case sensitivity.
        assert!(!x_matches(json!({"$like": "Task"}), json!("task")));
        assert!(x_matches(json!({"$ilike": "TASK%"}), json!("task.record")));
        assert!(!x_matches(
            json!({"$ilike": "TASKS%"}),
            json!("task.record")
        ));
        // `_` is one Unicode character, not one byte; ilike lowercases Unicode.
        assert!(x_matches(json!({"$like": "caf_"}), json!("café")));
        assert!(x_matches(json!({"$like": "__"}), json!("日本")));
        assert!(x_matches(json!({"$ilike": "ÉCOLE_%"}), json!("école-1")));
        assert!(x_matches(json!({"$ilike": "straße"}), json!("STRAßE")));
        // Only strings can match a pattern.
        assert!(!x_matches(json!({"$like": "1%"}), json!(12)));
    }

    #[test]
    fn like_matcher_handles_adversarial_patterns() {
        let text = "a".repeat(2000);
        let pattern = format!("{}b", "%a".repeat(50));
        assert!(!like(&text, &pattern));
        assert!(like(&text, &"%a".repeat(50)));
    }

    #[test]
    fn exists() {
        let present = record(1, json!({"x": null}));
        let absent = record(2, json!({}));
        assert!(matches(json!({"body.x": {"$exists": true}}), &present));
        assert!(!matches(json!({"body.x": {"$exists": false}}), &present));
        assert!(!matches(json!({"body.x": {"$exists": true}}), &absent));
        assert!(matches(json!({"body.x": {"$exists": false}}), &absent));
    }

    // --- typing and absent fields -----------------------------------------

    #[test]
    fn mismatched_types_never_equal_or_order() {
        assert!(!x_matches(json!(1), json!("1")));
        assert!(!x_matches(json!("1"), json!(1)));
        assert!(!x_matches(json!(true), json!(1)));
        assert!(!x_matches(json!(0), json!(false)));
        assert!(!x_matches(json!(null), json!("")));
        assert!(!x_matches(json!({"$gt": "4"}), json!(5)));
        assert!(!x_matches(json!({"$lt": 9}), json!("5")));
        assert!(!x_matches(json!({"$gte": false}), json!(0)));
        assert!(!x_matches(json!({"$in": ["2"]}), json!(2)));
        assert!(!x_matches(json!("a"), json!(["a", "b"])));
    }

    #[test]
    fn absent_field_matches_only_exists_false() {
        let absent = record(1, json!({"other": 1}));
        for filter_value in [
            json!(1),
            json!(null),
            json!({"$ne": 1}),
            json!({"$nin": [1]}),
            json!({"$gt": 0}),
            json!({"$lte": 0}),
            json!({"$in": [null]}),
            json!({"$like": "%"}),
            json!({"$exists": true}),
        ] {
            assert!(
                !matches(json!({ "body.x": filter_value.clone() }), &absent),
                "{filter_value} should not match an absent field"
            );
        }
        assert!(matches(json!({"body.x": {"$exists": false}}), &absent));
    }

    #[test]
    fn body_paths_walk_objects_only() {
        let r = record(
            1,
            json!({"a": {"b": {"c": 3}}, "list": [{"c": 1}], "s": "text"}),
        );
        assert!(matches(json!({"body.a.b.c": 3}), &r));
        assert!(matches(json!({"body.a.b": {"c": 3}}), &r));
        assert!(matches(json!({"body.list.c": {"$exists": false}}), &r));
        assert!(matches(json!({"body.s.length": {"$exists": false}}), &r));
        assert!(matches(json!({"body.a.missing.c": {"$exists": false}}), &r));
    }

    #[test]
    fn columns_are_filterable() {
        let r = record(9, json!({}));
        assert!(matches(json!({"clock": {"$gte": 7}}), &r));
        assert!(matches(json!({"created_at": {"$gt": 1767225599}}), &r));
        assert!(matches(
            json!({"data_type": "SCALAR", "namespace": "default"}),
            &r
        ));
        assert!(matches(json!({"id": {"$like": "%09"}}), &r));
        assert!(!matches(json!({"clock": "7"}), &r));
    }

    #[test]
    fn deep_equality() {
        let stored = json!({"a": [1, {"b": 2.5}], "c": null});
        assert!(x_matches(
            json!({"a": [1, {"b": 2.5}], "c": null}),
            stored.clone()
        ));
        // Key order does not matter; values compare numerically.
        assert!(x_matches(
            json!({"c": null, "a": [1.0, {"b": 2.5}]}),
            stored.clone()
        ));
        assert!(!x_matches(json!({"a": [1, {"b": 2.5}]}), stored.clone()));
        assert!(!x_matches(
            json!({"a": [{"b": 2.5}, 1], "c": null}),
            stored.clone()
        ));
        assert!(x_matches(json!({"$eq": [1, 2]}), json!([1, 2])));
        assert!(!x_matches(json!([1, 2]), json!([1, 2, 3])));
        assert!(x_matches(json!({"$ne": [1, 2]}), json!([2, 1])));
        // `{}` is deep equality with the empty object, not an empty operator document.
        assert!(x_matches(json!({}), json!({})));
        assert!(!x_matches(json!({}), json!({"a": 1})));
    }

    // --- numbers -----------------------------------------------------------

    #[test]
    fn big_integers_compare_exactly() {
        let big = |text: &str| record(1, json!({ "x": number(text) }));
        let gt = |bound: &str| json!({"body.x": {"$gt": number(bound)}});
        let eq = |bound: &str| json!({ "body.x": number(bound) });
        assert!(matches(
            gt("18446744073709551616"),
            &big("18446744073709551617")
        ));
        assert!(!matches(
            gt("18446744073709551617"),
            &big("18446744073709551616")
        ));
        assert!(!matches(
            eq("18446744073709551616"),
            &big("18446744073709551617")
        ));
        assert!(matches(
            eq("123456789012345678901234567890"),
            &big("123456789012345678901234567890")
        ));
        assert!(matches(
            gt("-18446744073709551617"),
            &big("-18446744073709551616")
        ));
        assert!(matches(gt("-1"), &big("0")));
        assert!(matches(
            gt("99999999999999999999"),
            &big("100000000000000000000")
        ));
        assert!(matches(eq("0"), &big("-0")));
    }

    #[test]
    fn floats_and_integers_compare_numerically() {
        assert!(x_matches(json!({"$lt": 2.5}), json!(2)));
        assert!(x_matches(json!({"$gt": 2}), json!(2.5)));
        assert!(x_matches(json!(2.0), json!(2)));
        assert!(x_matches(json!({"$lte": 2}), json!(2.0)));
        assert!(x_matches(json!({"$gt": -0.5}), json!(0)));
        assert!(x_matches(json!({"$gt": number("1e2")}), json!(101)));
        assert!(x_matches(json!({"$in": [1.5, 2.0]}), json!(2)));
        assert!(!x_matches(json!(0.1), json!(0.2)));
    }

    // --- parse errors ------------------------------------------------------

    #[test]
    fn unknown_paths_are_named() {
        for path in [
            "kind",
            "body",
            "sig",
            "canonical_json",
            "sequence",
            "parents",
            "signer",
            "judged_by",
            "body.",
            "body..a",
            "body.a.",
            "body.a[0]",
            "body.a b",
            "Body.a",
        ] {
            assert_eq!(
                parse_error(json!({ path: 1 })),
                format!("unknown field path: {path}")
            );
        }
        assert_eq!(
            parse_error(json!({"$or": [{"body.ok": 1}, {"kind": 1}]})),
            "unknown field path: kind"
        );
    }

    #[test]
    fn unknown_operators_are_named() {
        assert_eq!(parse_error(json!({"$nor": []})), "unknown operator: $nor");
        assert_eq!(
            parse_error(json!({"body.x": {"$regex": "a.*"}})),
            "unknown operator: $regex (on body.x)"
        );
        assert_eq!(
            parse_error(json!({"body.x": {"$not": {"$eq": 1}}})),
            "unknown operator: $not (on body.x)"
        );
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert_eq!(
            Filter::parse(&json!([])).unwrap_err().to_string(),
            "filter must be a JSON object"
        );
        assert_eq!(
            parse_error(json!({"$and": {"act": "INTEND"}})),
            "$and must be an array of filter objects"
        );
        assert_eq!(
            parse_error(json!({"$or": [{}, 3]})),
            "$or[1] must be a filter object"
        );
        assert_eq!(
            parse_error(json!({"$not": [{}]})),
            "$not must be a filter object"
        );
        assert_eq!(
            parse_error(json!({"body.x": {"$gt": 1, "a": 2}})),
            "value of body.x mixes $-operators with plain keys"
        );
        assert_eq!(
            parse_error(json!({"body.x": {"$in": 1}})),
            "$in on body.x requires an array"
        );
        assert_eq!(
            parse_error(json!({"act": {"$nin": "A"}})),
            "$nin on act requires an array"
        );
        assert_eq!(
            parse_error(json!({"body.x": {"$like": 1}})),
            "$like on body.x requires a string pattern"
        );
        assert_eq!(
            parse_error(json!({"body.x": {"$ilike": null}})),
            "$ilike on body.x requires a string pattern"
        );
        assert_eq!(
            parse_error(json!({"body.x": {"$exists": 1}})),
            "$exists on body.x requires a boolean"
        );
    }

    // --- sort --------------------------------------------------------------

    fn sorted_sequences(records: &[Value], sort: Value) -> Vec<u64> {
        let sort = Sort::parse(&sort).unwrap();
        let mut records = records.to_vec();
        records.sort_by(|a, b| compare_records(a, b, &sort));
        records
            .iter()
            .map(|r| r["sequence"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn sort_both_directions_with_ties_by_sequence() {
        let records = [
            record(4, json!({"p": 2})),
            record(1, json!({"p": 2})),
            record(3, json!({"p": 1})),
            record(2, json!({"p": 3})),
            record(5, json!({})),
        ];
        assert_eq!(
            sorted_sequences(&records, json!({"body.p": 1})),
            [5, 3, 1, 4, 2]
        );
        assert_eq!(
            sorted_sequences(&records, json!({"body.p": -1})),
            [2, 1, 4, 3, 5]
        );
        // All clocks equal: pure sequence order in both directions.
        assert_eq!(
            sorted_sequences(&records, json!({"clock": -1})),
            [1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn sort_orders_mixed_types_and_big_numbers() {
        let records = [
            record(1, json!({"v": {"a": 1}})),
            record(2, json!({"v": [1]})),
            record(3, json!({"v": "s"})),
            record(4, json!({ "v": number("18446744073709551617") })),
            record(5, json!({ "v": number("18446744073709551616") })),
            record(6, json!({"v": 2.5})),
            record(7, json!({"v": true})),
            record(8, json!({"v": null})),
            record(9, json!({})),
        ];
        assert_eq!(
            sorted_sequences(&records, json!({"body.v": 1})),
            [9, 8, 7, 6, 5, 4, 3, 2, 1]
        );
    }

    #[test]
    fn sort_parse_errors() {
        let error = |sort: Value| Sort::parse(&sort).unwrap_err().to_string();
        assert_eq!(
            Sort::parse(&json!({"clock": -1})).unwrap(),
            Sort {
                path: FieldPath::Column(Column::Clock),
                descending: true
            }
        );
        assert_eq!(
            error(json!({})),
            "sort must be an object with exactly one field path"
        );
        assert_eq!(
            error(json!({"clock": 1, "act": 1})),
            "sort must be an object with exactly one field path"
        );
        assert_eq!(
            error(json!("clock")),
            "sort must be an object with exactly one field path"
        );
        assert_eq!(
            error(json!({"clock": 2})),
            "sort direction for clock must be 1 or -1"
        );
        assert_eq!(
            error(json!({"clock": "desc"})),
            "sort direction for clock must be 1 or -1"
        );
        assert_eq!(
            error(json!({"clock": 1.0})),
            "sort direction for clock must be 1 or -1"
        );
        assert_eq!(error(json!({"sig": 1})), "unknown field path: sig");
    }

    // --- pushdown, plan, projection ---------------------------------------

    #[test]
    fn column_equalities_come_from_top_level_and_only() {
        let filter = Filter::parse(&json!({
            "thread": "th_a",
            "act": {"$eq": "INTEND"},
            "actor": {"$ne": "did:x"},
            "clock": 7,
            "namespace": 3,
            "body.kind": "task",
            "$and": [{"data_type": "SCALAR"}, {"id": "abc"}],
            "$or": [{"thread": "th_b"}],
            "$not": {"actor": "did:y"},
        }))
        .unwrap();
        let mut equalities = filter.column_equalities();
        equalities.sort_by_key(|(column, _)| column.as_str());
        assert_eq!(
            equalities,
            [
                (Column::Act, "INTEND".to_owned()),
                (Column::DataType, "SCALAR".to_owned()),
                (Column::Id, "abc".to_owned()),
                (Column::Thread, "th_a".to_owned()),
            ]
        );
        let single = Filter::parse(&json!({"actor": "did:z"})).unwrap();
        assert_eq!(
            single.column_equalities(),
            [(Column::Actor, "did:z".to_owned())]
        );
        let or_only = Filter::parse(&json!({"$or": [{"actor": "a"}]})).unwrap();
        assert!(or_only.column_equalities().is_empty());
    }

    #[test]
    fn fields_are_deduplicated_in_mention_order() {
        let filter = Filter::parse(&json!({
            "$or": [{"body.p": 1}, {"actor": "a"}],
            "actor": "a",
            "body.p": {"$gt": 0},
            "$not": {"body.q": 1},
        }))
        .unwrap();
        // Object members iterate in key order: "$not", "$or", "actor", "body.p".
        assert_eq!(
            filter.fields(),
            [
                FieldPath::Body(vec!["q".to_owned()]),
                FieldPath::Body(vec!["p".to_owned()]),
                FieldPath::Column(Column::Actor),
            ]
        );
    }

    #[test]
    fn plan_splits_indexed_and_unindexed() {
        let filter = Filter::parse(&json!({
            "act": "INTEND",
            "actor": "did:sync:agent:dev",
            "body.kind": {"$in": ["core.task.record"]},
            "$or": [{"body.priority": {"$gte": 2}}, {"body.awaits": {"$exists": true}}],
        }))
        .unwrap();
        assert_eq!(
            plan(&filter),
            json!({
                "indexed_fields": ["act", "actor"],
                "unindexed_fields": ["body.priority", "body.awaits", "body.kind"],
            })
        );
        assert_eq!(
            plan(&Filter::And(vec![])),
            json!({"indexed_fields": [], "unindexed_fields": []})
        );
    }

    #[test]
    fn project_keeps_id_and_selected_paths() {
        let r = record(1, json!({"a": {"b": 1, "c": 2}, "d": 3}));
        let select = [
            FieldPath::parse("act").unwrap(),
            FieldPath::parse("body.a.b").unwrap(),
            FieldPath::parse("body.d").unwrap(),
            FieldPath::parse("body.missing.x").unwrap(),
        ];
        assert_eq!(
            project(&r, &select),
            json!({"id": r["id"], "act": "INTEND", "body": {"a": {"b": 1}, "d": 3}})
        );
        assert_eq!(project(&r, &[]), json!({"id": r["id"]}));
        // A whole object and a path inside it, in either order, give the whole object.
        let whole = FieldPath::parse("body.a").unwrap();
        let inner = FieldPath::parse("body.a.b").unwrap();
        let expected = json!({"id": r["id"], "body": {"a": {"b": 1, "c": 2}}});
        assert_eq!(project(&r, &[whole.clone(), inner.clone()]), expected);
        assert_eq!(project(&r, &[inner, whole]), expected);
    }

    #[test]
    fn field_path_display_round_trips() {
        for path in ["thread", "created_at", "body.a", "body.a-b.c_d.0"] {
            assert_eq!(FieldPath::parse(path).unwrap().to_string(), path);
        }
    }

    // --- request parsing ---------------------------------------------------

    #[test]
    fn request_defaults() {
        let request = QueryRequest::parse(&json!({"filter": {}})).unwrap();
        assert_eq!(
            request,
            QueryRequest {
                filter: Filter::And(vec![]),
                thread: None,
                sort: None,
                limit: DEFAULT_LIMIT,
                capped: false,
                offset: 0,
                cursor: None,
                select: None,
                explain: false,
            }
        );
        // Missing filter and explicit nulls mean "not set".
        let nulls = json!({"thread": null, "sort": null, "limit": null, "cursor": null});
        assert_eq!(QueryRequest::parse(&nulls).unwrap(), request);
    }

    #[test]
    fn request_full() {
        let request = QueryRequest::parse(&json!({
            "filter": {"act": "INTEND"},
            "thread": "th_a",
            "sort": {"clock": -1},
            "limit": 20,
            "offset": 5,
            "cursor": "c1",
            "select": ["act", "body.kind"],
            "explain": true,
        }))
        .unwrap();
        assert_eq!(request.thread.as_deref(), Some("th_a"));
        assert_eq!(
            request.sort,
            Some(Sort {
                path: FieldPath::Column(Column::Clock),
                descending: true
            })
        );
        assert_eq!(
            (request.limit, request.capped, request.offset),
            (20, false, 5)
        );
        assert_eq!(request.cursor.as_deref(), Some("c1"));
        assert_eq!(
            request.select,
            Some(vec![
                FieldPath::Column(Column::Act),
                FieldPath::Body(vec!["kind".to_owned()]),
            ])
        );
        assert!(request.explain);
    }

    #[test]
    fn limit_is_clamped_and_flagged() {
        let limit = |limit: Value| {
            let request = QueryRequest::parse(&json!({"filter": {}, "limit": limit})).unwrap();
            (request.limit, request.capped)
        };
        assert_eq!(limit(json!(5000)), (1000, true));
        assert_eq!(limit(json!(1000)), (1000, false));
        assert_eq!(limit(json!(1001)), (1000, true));
        assert_eq!(limit(json!(0)), (0, false));
        assert_eq!(limit(number("100000000000000000000000")), (1000, true));
    }

    #[test]
    fn thread_folds_into_the_filter() {
        let request =
            QueryRequest::parse(&json!({"filter": {"act": "INTEND"}, "thread": "th_b"})).unwrap();
        assert_eq!(
            request.filter.column_equalities(),
            [
                (Column::Act, "INTEND".to_owned()),
                (Column::Thread, "th_b".to_owned())
            ]
        );
        assert!(!request.filter.matches(&record(1, json!({}))));
        let mut in_thread = record(1, json!({}));
        in_thread["thread"] = json!("th_b");
        assert!(request.filter.matches(&in_thread));

        let only_thread = QueryRequest::parse(&json!({"filter": {}, "thread": "th_a"})).unwrap();
        assert_eq!(
            only_thread.filter.column_equalities(),
            [(Column::Thread, "th_a".to_owned())]
        );
        assert!(only_thread.filter.matches(&record(1, json!({}))));
    }

    #[test]
    fn aggregation_is_refused() {
        assert_eq!(
            request_error(json!({"filter": {}, "group_by": ["act"]})),
            "aggregation is not supported: group_by"
        );
        assert_eq!(
            request_error(json!({"filter": {"kind": 1}, "aggregates": {"n": {"$count": {}}}})),
            "aggregation is not supported: aggregates"
        );
    }

    #[test]
    fn request_type_errors() {
        assert_eq!(
            request_error(json!([])),
            "query request must be a JSON object"
        );
        assert_eq!(
            request_error(json!({"filter": "x"})),
            "filter must be a JSON object"
        );
        for bad in [
            json!(-1),
            json!(2.5),
            json!("10"),
            json!(true),
            number("1e2"),
        ] {
            assert_eq!(
                request_error(json!({"filter": {}, "limit": bad})),
                "limit must be a non-negative integer"
            );
        }
        assert_eq!(
            request_error(json!({"filter": {}, "offset": -3})),
            "offset must be a non-negative integer"
        );
        assert_eq!(
            request_error(json!({"explain": "yes"})),
            "explain must be a boolean"
        );
        assert_eq!(
            request_error(json!({"thread": 1})),
            "thread must be a string"
        );
        assert_eq!(
            request_error(json!({"cursor": 1})),
            "cursor must be a string"
        );
        assert_eq!(
            request_error(json!({"select": "act"})),
            "select must be an array of field path strings"
        );
        assert_eq!(
            request_error(json!({"select": ["sig"]})),
            "unknown field path: sig"
        );
        assert_eq!(
            request_error(json!({"sort": {"kind": 1}})),
            "unknown field path: kind"
        );
        assert_eq!(
            request_error(json!({"filter": {"body.x": {"$foo": 1}}})),
            "unknown operator: $foo (on body.x)"
        );
    }
}
