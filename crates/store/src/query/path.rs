//! Field paths: the columns and `body.*` paths a filter, sort or select may name.

use std::fmt;

use serde_json::Value;

use super::QueryError;

/// A filterable record column (protocol.md §11.6). Private columns such as `sig` are absent on
/// purpose.
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
    pub(super) fn is_text(self) -> bool {
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
