//! The record every export and import writes (federation-protocol.md §8.3): who moved what,
//! on `th_audit_portability`, signed by the tenant's identity like its other audit records.

use serde_json::{json, Map, Value};
use syncropel_protocol::Act;
use syncropel_store::RecordStore;
use syncropel_tenant::{sealed_own, Identity};

use crate::Result;

pub const THREAD: &str = "th_audit_portability";
pub const KIND: &str = "core.portability.event.v1";

/// Writes one `core.portability.event.v1` (`event` is `export`, `import`, `leaving`, `fenced`)
/// with `fields`; its record id.
pub async fn record(
    store: &dyn RecordStore,
    tenant: &str,
    identity: &Identity,
    event: &str,
    fields: Value,
) -> Result<String> {
    let mut body = Map::new();
    body.insert("kind".into(), json!(KIND));
    body.insert("event".into(), json!(event));
    if let Value::Object(fields) = fields {
        body.extend(fields);
    }
    let record = sealed_own(identity, Act::Know, THREAD, body);
    let appended = store.append(tenant, record).await?;
    Ok(appended.record().id.clone())
}
