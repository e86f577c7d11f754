//! Explain plans and projections of matched records.

use serde_json::{json, Map, Value};

use super::{FieldPath, Filter};

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
