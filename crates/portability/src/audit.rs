//! The record every export and import writes (federation-protocol.md §8.3): who moved what,
//! on `th_audit_portability`, signed by the tenant's identity like its other audit records.

use serde_json::{json, Map, Value};
use syncropel_protocol::Act;
use syncropel_store::{RecordStore, StateChange, StoreError};
use syncropel_tenant::{sealed_own, Identity};

use crate::{PortabilityError, Result};

pub const THREAD: &str = "th_audit_portability";
/// Where snapshots and restores of threads are recorded (`spl thread snapshot|restore`).
pub const SNAPSHOT_THREAD: &str = "th_audit_snapshots";
pub const KIND: &str = "core.portability.event.v1";

/// Writes one `core.portability.event.v1` on `thread` (`event` is `export`, `import`, `fenced`
/// on [`THREAD`], `snapshot`, `restore` on [`SNAPSHOT_THREAD`]) with `fields`, and `state` in
/// the same transaction (the departure it records, say); its record id.
pub async fn record(
    store: &dyn RecordStore,
    tenant: &str,
    identity: &Identity,
    (thread, event): (&str, &str),
    fields: Value,
    state: Vec<StateChange>,
) -> Result<String> {
    let mut body = Map::new();
    body.insert("kind".into(), json!(KIND));
    body.insert("event".into(), json!(event));
    if let Value::Object(fields) = fields {
        body.extend(fields);
    }
    let record = sealed_own(identity, Act::Know, thread, body);
    let written = store.write(tenant, vec![record], state).await?;
    let appended = written.into_iter().next().ok_or_else(|| {
        PortabilityError::Store(StoreError::Corrupt("a write answered no record".into()))
    })??;
    Ok(appended.record().id.clone())
}
