//! Engine configuration as records (protocol.md §13): LEARN records on `th_engine_config`, keyed by
//! `topic`; the latest record of a topic replaces that topic's whole policy. The configuration in
//! force is their fold, rebuilt from the records after a restart or a move.

use serde::Serialize;
use serde_json::{Map, Value};
use syncropel_store::{ListFilter, RecordStore};

use crate::TenantError;

pub const THREAD: &str = "th_engine_config";

/// The topics this steward reads; a record of another topic is stored and left alone.
pub const STORE_BOUNDS: &str = "store_bounds";

/// The configuration in force.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EngineConfig {
    pub store_bounds: StoreBounds,
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
        if body.get("topic").and_then(Value::as_str) == Some(STORE_BOUNDS) {
            if let Ok(bounds) = store_bounds(body) {
                self.store_bounds = bounds;
            }
        }
    }
}

/// Checks the body of a config record before it is stored: a topic this steward reads must have
/// its shape. Why not, if it does not.
pub fn check(body: &Map<String, Value>) -> Result<(), String> {
    match body.get("topic") {
        Some(Value::String(topic)) if topic == STORE_BOUNDS => store_bounds(body).map(|_| ()),
        Some(Value::String(_)) => Ok(()),
        _ => Err("a record on th_engine_config names its `topic` (a string)".into()),
    }
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

/// The configuration `tenant`'s records put in force.
pub async fn load(store: &dyn RecordStore, tenant: &str) -> Result<EngineConfig, TenantError> {
    let mut config = EngineConfig::default();
    let mut after = 0;
    loop {
        let filter = ListFilter {
            thread: Some(THREAD.into()),
            after_seq: after,
            limit: 1000,
            ..ListFilter::default()
        };
        let page = store.list(tenant, &filter).await?;
        let Some(last) = page.last() else {
            return Ok(config);
        };
        after = last.seq;
        for row in &page {
            let record: Value = serde_json::from_str(&row.json)
                .map_err(|e| TenantError::Corrupt(format!("a config record: {e}")))?;
            if let Some(body) = record.get("body").and_then(Value::as_object) {
                config.apply(body);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
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
