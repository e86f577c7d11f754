//! Tests of the query engine, by subject; the helpers here are shared by them.

mod matching;
mod ordering;
mod parsing;

use serde_json::{json, Value};

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
