//! Filters: parsing a filter object into a tree, and evaluating it against a record.

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value};

use super::like::LikePattern;
use super::values::{json_equal, typed_order};
use super::{Column, FieldPath, QueryError};

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
    /// `$like` / `$ilike` at one path, its pattern compiled when the filter was parsed.
    Like {
        path: FieldPath,
        pattern: LikePattern,
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
            // Only a stored string can match a pattern.
            Filter::Like { path, pattern } => {
                matches!(path.resolve(record), Some(Value::String(text)) if pattern.matches(text))
            }
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
            Filter::Cond { path, .. } | Filter::Like { path, .. } => {
                if !fields.contains(path) {
                    fields.push(path.clone());
                }
            }
        }
    }

    /// `self AND other`, flattening into an existing top-level AND so that
    /// [`Filter::column_equalities`] and [`super::plan`] see the added condition directly.
    pub(super) fn and(self, other: Filter) -> Filter {
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
    if let (Op::Like | Op::Ilike, Value::String(pattern)) = (op, operand) {
        return Ok(Filter::Like {
            path: path.clone(),
            pattern: LikePattern::new(pattern, op == Op::Ilike)?,
        });
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
        // Parsed into `Filter::Like`.
        Op::Like | Op::Ilike => false,
    }
}
