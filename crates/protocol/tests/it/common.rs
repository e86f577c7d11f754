//! Loading of the protocol vectors, and envelope parsing as the tests ask for it.

use serde_json::Value;
use syncropel_protocol::{Envelope, ErrorCode, ProtocolError, DEFAULT_MAX_DEPTH};

pub const VECTORS: &str = include_str!("../vectors/records.json");

/// The vector file with number tokens exactly as written (serde_json's
/// `arbitrary_precision` keeps `1.0`, `-0.0`, `1e+16` verbatim), so inputs
/// re-serialized from it are still non-canonical wire bytes.
pub fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("records.json is JSON")
}

pub fn records() -> Vec<Value> {
    vectors()["records"].as_array().expect("records[]").clone()
}

pub fn record(name: &str) -> Value {
    records()
        .into_iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
}

/// Wire bytes of a vector's `input` envelope (raw number spellings kept).
pub fn input_bytes(record: &Value) -> Vec<u8> {
    serde_json::to_vec(&record["input"]).expect("serializable")
}

pub fn parse_input(record: &Value) -> Envelope {
    Envelope::parse(&input_bytes(record), DEFAULT_MAX_DEPTH)
        .unwrap_or_else(|e| panic!("{}: {e}", record["name"]))
}

pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is a string"))
}

pub fn parse(text: &str) -> Result<Envelope, ProtocolError> {
    Envelope::parse(text.as_bytes(), DEFAULT_MAX_DEPTH)
}

/// The code `text` is refused with; panics if it is accepted.
pub fn code_of(text: &str) -> ErrorCode {
    match parse(text) {
        Ok(env) => panic!("accepted {text}: {env:?}"),
        Err(e) => e.code(),
    }
}
