//! Engine configuration as records (protocol.md §13): LEARN records on `th_engine_config`, keyed by
//! `topic`; the latest record of a topic replaces that topic's whole policy. The configuration in
//! force is their fold, rebuilt from the records after a restart or a move.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use syncropel_store::RecordStore;

use crate::TenantError;

pub const THREAD: &str = "th_engine_config";

/// The topics this steward reads; a record of another topic is stored and left alone.
pub const STORE_BOUNDS: &str = "store_bounds";
pub const KIND_FIELDS: &str = "kind_fields";
pub const AUTH_REQUIRED: &str = "auth_required";

/// The configuration in force.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EngineConfig {
    pub store_bounds: StoreBounds,
    /// `kind_fields {kinds: {<kind>: {<field>: public|sensitive|ciphertext_permitted}}}`
    /// (protocol.md §14): how a body kind's top-level fields may be written.
    pub kind_fields: BTreeMap<String, BTreeMap<String, FieldClass>>,
    /// `auth_required {enabled}`. It can only add authentication to a steward its operator
    /// started without (`--insecure-localhost`): a record never switches authentication off,
    /// since whoever may write it would then open the steward to everyone.
    pub auth_required: Option<bool>,
}

impl EngineConfig {
    /// Whether callers must authenticate, given whether the operator asked for it.
    pub fn auth_enforced(&self, by_operator: bool) -> bool {
        by_operator || self.auth_required == Some(true)
    }
}

/// What a body kind declares of one of its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldClass {
    Public,
    /// Never in a record: refused at ingest.
    Sensitive,
    /// Only as a wrapped envelope naming the key that unwraps it.
    CiphertextPermitted,
}

impl EngineConfig {
    /// Checks a record body against its kind's declared fields: why not, if it may not be
    /// stored.
    pub fn check_fields(&self, body: &Map<String, Value>) -> Result<(), String> {
        let Some(kind) = body.get("kind").and_then(Value::as_str) else {
            return Ok(());
        };
        let Some(fields) = self.kind_fields.get(kind) else {
            return Ok(());
        };
        for (field, class) in fields {
            let Some(value) = body.get(field) else {
                continue;
            };
            match class {
                FieldClass::Public => {}
                FieldClass::Sensitive => {
                    return Err(format!(
                        "`{field}` of {kind} is declared sensitive: keep it in a secret backend \
                         and record its handle"
                    ))
                }
                FieldClass::CiphertextPermitted if !is_wrapped(value) => {
                    return Err(format!(
                        "`{field}` of {kind} may only hold a wrapped envelope \
                         ({{\"ciphertext\", \"unwrap_key\"}}, strings)"
                    ))
                }
                FieldClass::CiphertextPermitted => {}
            }
        }
        Ok(())
    }
}

/// A wrapped envelope: `ciphertext` and the `unwrap_key` that opens it, both strings.
fn is_wrapped(value: &Value) -> bool {
    let text = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty())
    };
    text("ciphertext") && text("unwrap_key")
}

/// `store_bounds {max_total_bytes?, max_embedding_bytes?}`: past `max_total_bytes` of stored
/// records, clients' writes answer `507 STORE_CEILING_REACHED` (config records and records the
/// steward writes itself still pass).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreBounds {
    pub max_total_bytes: Option<u64>,
    pub max_embedding_bytes: Option<u64>,
}

impl EngineConfig {
    /// Applies one config record's body (later records after earlier ones).
    pub fn apply(&mut self, body: &Map<String, Value>) {
        match body.get("topic").and_then(Value::as_str) {
            Some(STORE_BOUNDS) => {
                if let Ok(bounds) = store_bounds(body) {
                    self.store_bounds = bounds;
                }
            }
            Some(KIND_FIELDS) => {
                if let Ok(kinds) = kind_fields(body) {
                    self.kind_fields = kinds;
                }
            }
            Some(AUTH_REQUIRED) => {
                if let Ok(enabled) = auth_required(body) {
                    self.auth_required = Some(enabled);
                }
            }
            _ => {}
        }
    }
}

/// Checks the body of a config record before it is stored: a topic this steward reads must have
/// its shape. Why not, if it does not.
pub fn check(body: &Map<String, Value>) -> Result<(), String> {
    match body.get("topic") {
        Some(Value::String(topic)) if topic == STORE_BOUNDS => store_bounds(body).map(|_| ()),
        Some(Value::String(topic)) if topic == KIND_FIELDS => kind_fields(body).map(|_| ()),
        Some(Value::String(topic)) if topic == AUTH_REQUIRED => auth_required(body).map(|_| ()),
        Some(Value::String(_)) => Ok(()),
        _ => Err("a record on th_engine_config names its `topic` (a string)".into()),
    }
}

fn auth_required(body: &Map<String, Value>) -> Result<bool, String> {
    body.get("enabled")
        .and_then(Value::as_bool)
        .ok_or_else(|| "auth_required: `enabled` is true or false".to_string())
}

fn store_bounds(body: &Map<String, Value>) -> Result<StoreBounds, String> {
    let bound = |name: &str| match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("store_bounds: `{name}` is a number of bytes (0 or more)")),
    };
    Ok(StoreBounds {
        max_total_bytes: bound("max_total_bytes")?,
        max_embedding_bytes: bound("max_embedding_bytes")?,
    })
}

fn kind_fields(
    body: &Map<String, Value>,
) -> Result<BTreeMap<String, BTreeMap<String, FieldClass>>, String> {
    let shape = || {
        "kind_fields: `kinds` maps kinds to {field: public|sensitive|ciphertext_permitted}"
            .to_string()
    };
    let Some(kinds) = body.get("kinds").and_then(Value::as_object) else {
        return Err(shape());
    };
    kinds
        .iter()
        .map(|(kind, fields)| {
            let fields = fields.as_object().ok_or_else(shape)?;
            let classes = fields
                .iter()
                .map(|(field, class)| {
                    let class = match class.as_str() {
                        Some("public") => FieldClass::Public,
                        Some("sensitive") => FieldClass::Sensitive,
                        Some("ciphertext_permitted") => FieldClass::CiphertextPermitted,
                        _ => return Err(shape()),
                    };
                    Ok((field.clone(), class))
                })
                .collect::<Result<BTreeMap<_, _>, String>>()?;
            Ok((kind.clone(), classes))
        })
        .collect()
}

/// The configuration `tenant`'s records put in force.
pub async fn load(store: &dyn RecordStore, tenant: &str) -> Result<EngineConfig, TenantError> {
    let mut config = EngineConfig::default();
    for record in crate::stored_thread(store, tenant, THREAD).await?.0 {
        if let Some(body) = record.get("body").and_then(Value::as_object) {
            config.apply(body);
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn a_record_adds_authentication_but_never_removes_it() {
        let mut config = EngineConfig::default();
        assert!(!config.auth_enforced(false));
        assert!(check(&body(json!({"topic": "auth_required", "enabled": "yes"}))).is_err());
        config.apply(&body(json!({"topic": "auth_required", "enabled": true})));
        assert!(config.auth_enforced(false));
        config.apply(&body(json!({"topic": "auth_required", "enabled": false})));
        assert!(!config.auth_enforced(false));
        assert!(config.auth_enforced(true), "the operator's choice stands");
    }

    #[test]
    fn the_latest_record_of_a_topic_replaces_its_whole_policy() {
        let mut config = EngineConfig::default();
        config.apply(&body(
            json!({"topic": "store_bounds", "max_total_bytes": 10, "max_embedding_bytes": 5}),
        ));
        config.apply(&body(json!({"topic": "telemetry_retention", "days": 3})));
        assert_eq!(config.store_bounds.max_total_bytes, Some(10));
        config.apply(&body(
            json!({"topic": "store_bounds", "max_total_bytes": 20}),
        ));
        assert_eq!(
            config.store_bounds,
            StoreBounds {
                max_total_bytes: Some(20),
                max_embedding_bytes: None
            }
        );
        config.apply(&body(json!({"topic": "store_bounds"})));
        assert_eq!(
            config.store_bounds,
            StoreBounds::default(),
            "no bound at all"
        );
    }

    #[test]
    fn a_kinds_declared_fields_decide_what_its_bodies_may_hold() {
        let mut config = EngineConfig::default();
        let policy = json!({"topic": "kind_fields", "kinds": {"acme.payment.v1": {
            "card": "sensitive", "blob": "ciphertext_permitted", "amount": "public"}}});
        assert!(check(&body(policy.clone())).is_ok());
        config.apply(&body(policy));
        let ok = |b: Value| config.check_fields(&body(b));
        assert!(ok(json!({"kind": "acme.payment.v1", "amount": 5})).is_ok());
        assert!(ok(json!({"kind": "acme.payment.v1", "card": "4111"})).is_err());
        assert!(ok(json!({"kind": "acme.payment.v1", "blob": "plain"})).is_err());
        assert!(ok(json!({"kind": "acme.payment.v1", "blob": {"ciphertext": "x"}})).is_err());
        let wrapped = json!({"kind": "acme.payment.v1",
                             "blob": {"ciphertext": "q1w2", "unwrap_key": "secret://kms/k1"}});
        assert!(ok(wrapped).is_ok());
        assert!(ok(json!({"kind": "other.kind.v1", "card": "4111"})).is_ok());
        assert!(check(&body(
            json!({"topic": "kind_fields", "kinds": {"k": {"f": "secret"}}})
        ))
        .is_err());
        assert!(check(&body(json!({"topic": "kind_fields"}))).is_err());
    }

    #[test]
    fn a_config_record_of_a_known_topic_must_have_its_shape() {
        assert!(check(&body(
            json!({"topic": "store_bounds", "max_total_bytes": 1})
        ))
        .is_ok());
        assert!(check(&body(
            json!({"topic": "store_bounds", "max_total_bytes": -1})
        ))
        .is_err());
        assert!(check(&body(
            json!({"topic": "store_bounds", "max_total_bytes": "1"})
        ))
        .is_err());
        assert!(check(&body(json!({"topic": "anything_else", "x": 1}))).is_ok());
        assert!(check(&body(json!({"no_topic": 1}))).is_err());
    }
}
