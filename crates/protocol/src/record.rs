//! The record envelope (protocol.md §2): validation and its 7-field canonical JSON.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::act::{Act, DataType};
use crate::canonical::{write_object, write_str};
use crate::error::ProtocolError;
use crate::hash::{self, HashLevels};
use crate::kind::validate_kind;
use crate::namespace::{validate_namespace_id, DEFAULT_NAMESPACE};
use crate::parse::parse_document;
use crate::secrets::check_secret_fields;
use crate::thread::validate_thread;

/// A validated record envelope: the seven hashed fields plus `judged_by`.
///
/// Invariants (upheld by [`Envelope::parse`] / [`Envelope::from_value`]):
/// `body` is canonical, `parents` is sorted by bytes with duplicates kept, and
/// every rule of protocol.md §2–4, §9, §12.1 and §14 holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    pub act: Act,
    pub actor: String,
    pub body: Map<String, Value>,
    pub clock: i64,
    pub data_type: DataType,
    pub parents: Vec<String>,
    pub thread: String,
    /// Record id of the judgment this reflects; deliberately not hashed.
    pub judged_by: Option<String>,
}

impl Envelope {
    /// Strict parse ([`crate::parse_json`]) and validation of a wire envelope.
    ///
    /// Unlike [`Envelope::from_value`] this also refuses a `clock` written as
    /// a float token (`1.0`), which the canonical value no longer shows.
    pub fn parse(bytes: &[u8], max_depth: usize) -> Result<Envelope, ProtocolError> {
        let doc = parse_document(bytes, max_depth)?;
        if doc.clock_is_float_token {
            return Err(ProtocolError::validation(
                "clock",
                "must be an integer, not a float",
            ));
        }
        Envelope::from_value(doc.value)
    }

    /// Validates an envelope value that came from [`crate::parse_json`] or
    /// [`crate::canonicalize`] (its numbers must be canonical). Unknown
    /// top-level members are ignored; missing `data_type`, `parents` and
    /// `body` default to `SCALAR`, `[]` and `{}` (protocol.md §6).
    pub fn from_value(value: Value) -> Result<Envelope, ProtocolError> {
        let Value::Object(mut map) = value else {
            return Err(ProtocolError::validation(
                "envelope",
                format!("must be a JSON object, got {}", json_type_name(&value)),
            ));
        };
        let act = match map.get("act") {
            Some(Value::String(s)) => s.parse()?,
            other => return Err(wrong_type("act", other, "a string")),
        };
        let actor = match map.remove("actor") {
            // A NUL cannot be stored as text by every backend (Postgres), so no steward accepts
            // one.
            Some(Value::String(s)) if !s.is_empty() && !s.contains('\0') => s,
            Some(Value::String(s)) if s.is_empty() => {
                return Err(ProtocolError::validation("actor", "must not be empty"))
            }
            Some(Value::String(_)) => {
                return Err(ProtocolError::validation(
                    "actor",
                    "must not contain a NUL character",
                ))
            }
            other => return Err(wrong_type("actor", other.as_ref(), "a string")),
        };
        let clock = parse_clock(map.get("clock"))?;
        let data_type = match map.get("data_type") {
            None => DataType::default(),
            Some(Value::String(s)) => s.parse()?,
            other => return Err(wrong_type("data_type", other, "a string")),
        };
        let thread = match map.remove("thread") {
            Some(Value::String(s)) => {
                validate_thread(&s)?;
                s
            }
            other => return Err(wrong_type("thread", other.as_ref(), "a string")),
        };
        let parents = parse_parents(map.remove("parents"))?;
        let body = match map.remove("body") {
            None => Map::new(),
            Some(Value::Object(body)) => body,
            other => return Err(wrong_type("body", other.as_ref(), "a JSON object")),
        };
        let judged_by = match map.remove("judged_by") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            other => return Err(wrong_type("judged_by", other.as_ref(), "a string or null")),
        };
        validate_body(&body)?;
        Ok(Envelope {
            act,
            actor,
            body,
            clock,
            data_type,
            parents,
            thread,
            judged_by,
        })
    }

    /// The 7-field canonical JSON: the id preimage and the signed bytes.
    /// Keys in code-point order: act, actor, body, clock, data_type, parents,
    /// thread.
    pub fn canonical_json(&self) -> String {
        let mut out = String::with_capacity(160 + self.actor.len() + self.thread.len());
        out.push_str("{\"act\":\"");
        out.push_str(self.act.as_str());
        out.push_str("\",\"actor\":");
        write_str(&mut out, &self.actor);
        out.push_str(",\"body\":");
        write_object(&mut out, &self.body, &[]);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            ",\"clock\":{},\"data_type\":\"{}\",\"parents\":[",
            self.clock,
            self.data_type.as_str()
        );
        for (i, parent) in self.parents.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(&mut out, parent);
        }
        out.push_str("],\"thread\":");
        write_str(&mut out, &self.thread);
        out.push('}');
        out
    }

    /// The record id (protocol.md §6): SHA-256 of [`Envelope::canonical_json`].
    pub fn id(&self) -> String {
        hash::record_id(&self.canonical_json())
    }

    /// `body.namespace`, or `"default"` when absent (protocol.md §12.2).
    pub fn namespace(&self) -> &str {
        self.body
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_NAMESPACE)
    }

    /// `body.kind` when it is a string (validation guarantees it is, if present).
    pub fn kind(&self) -> Option<&str> {
        self.body.get("kind").and_then(Value::as_str)
    }

    /// Hash levels L0–L3 by the SDK formula (protocol.md §7).
    pub fn hash_levels(&self) -> HashLevels {
        hash::hash_levels(self.act.as_str(), &self.body)
    }
}

/// protocol.md §9: a JSON integer in `[0, 2^63-1]`. A canonical number parses as `i64`
/// exactly when it is an integer in range; fractions and overflow fail.
fn parse_clock(value: Option<&Value>) -> Result<i64, ProtocolError> {
    let range = "must be an integer in [0, 9223372036854775807]";
    match value {
        Some(Value::Number(n)) => match n.as_str().parse::<i64>() {
            Ok(clock) if clock >= 0 => Ok(clock),
            _ => Err(ProtocolError::validation(
                "clock",
                format!("{range}, got {}", truncated(n.as_str())),
            )),
        },
        other => Err(wrong_type("clock", other, "an integer")),
    }
}

/// Parent ids, sorted by bytes; duplicates are kept, as the SDK keeps them.
fn parse_parents(value: Option<Value>) -> Result<Vec<String>, ProtocolError> {
    let items = match value {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        other => return Err(wrong_type("parents", other.as_ref(), "an array of strings")),
    };
    let mut parents = items
        .into_iter()
        .map(|item| match item {
            Value::String(s) => Ok(s),
            other => Err(ProtocolError::validation(
                "parents",
                format!(
                    "every parent must be a string, got {}",
                    json_type_name(&other)
                ),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    parents.sort_unstable();
    Ok(parents)
}

/// The body rules the server enforces: `kind` grammar (protocol.md §4.1), namespace id
/// (protocol.md §12.1) and the F16 secret rule (§14). The body is otherwise opaque.
fn validate_body(body: &Map<String, Value>) -> Result<(), ProtocolError> {
    match body.get("kind") {
        None => {}
        Some(Value::String(kind)) => {
            validate_kind(kind).map_err(|reason| ProtocolError::InvalidKind {
                kind: format!("{:?}", truncated(kind)),
                reason,
            })?;
        }
        Some(other) => {
            return Err(ProtocolError::InvalidKind {
                kind: format!("({})", json_type_name(other)),
                reason: "must be a string".to_owned(),
            })
        }
    }
    match body.get("namespace") {
        None => {}
        Some(Value::String(ns)) => validate_namespace_id(ns)?,
        Some(other) => {
            return Err(ProtocolError::NamespaceIdInvalid {
                namespace: format!("({})", json_type_name(other)),
                reason: "must be a string".to_owned(),
            })
        }
    }
    check_secret_fields(body)
}

fn wrong_type(field: &'static str, got: Option<&Value>, want: &str) -> ProtocolError {
    let reason = match got {
        None => "is required".to_owned(),
        Some(v) => format!("must be {want}, got {}", json_type_name(v)),
    };
    ProtocolError::validation(field, reason)
}

/// How a JSON value's type reads in an error message ("a string", "an object", ...).
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Keeps error messages bounded when echoing client input.
fn truncated(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    match s.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::DEFAULT_MAX_DEPTH;

    const BASIC: &str = r#"{"act":"INTEND","actor":"did:sync:user:alice","body":{"goal":"Deploy the service"},"clock":0,"data_type":"SCALAR","parents":[],"thread":"th_ee697f96a2c3ce510b21538e865de84a04cbd71057871b87956abe1113dce943"}"#;

    #[test]
    fn basic_round_trip() {
        let env = Envelope::parse(BASIC.as_bytes(), DEFAULT_MAX_DEPTH).unwrap();
        assert_eq!(env.canonical_json(), BASIC);
        assert_eq!(
            env.id(),
            "c99048ccb726d7ff07cd26930f7039c3a58c91f44be7e9af685895f4abefd5ff"
        );
        assert_eq!(env.namespace(), "default");
        assert_eq!(env.kind(), None);
        assert_eq!(env.judged_by, None);
    }

    #[test]
    fn defaults_and_ignored_members() {
        let env = Envelope::parse(
            br#"{"act":"DO","actor":"a","clock":3,"thread":"t","judged_by":"j","id":"x","sig":"y"}"#,
            DEFAULT_MAX_DEPTH,
        )
        .unwrap();
        assert_eq!(env.data_type, DataType::Scalar);
        assert!(env.parents.is_empty() && env.body.is_empty());
        assert_eq!(env.judged_by.as_deref(), Some("j"));
        assert_eq!(
            env.canonical_json(),
            r#"{"act":"DO","actor":"a","body":{},"clock":3,"data_type":"SCALAR","parents":[],"thread":"t"}"#
        );
    }

    #[test]
    fn truncates_long_echoes() {
        assert_eq!(truncated("abc"), "abc");
        assert_eq!(truncated(&"é".repeat(70)).chars().count(), 65);
    }
}
