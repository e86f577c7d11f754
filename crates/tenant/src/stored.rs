//! Reading a thread the steward folds (pairs, consent, config, credentials): every record, in
//! commit order.

use serde_json::Value;
use syncropel_store::{ListFilter, RecordStore};

use crate::TenantError;

/// Every record of `thread`, parsed, in commit order, and the sequence of the last (0 if none).
pub async fn stored_thread(
    store: &dyn RecordStore,
    tenant: &str,
    thread: &str,
) -> Result<(Vec<Value>, i64), TenantError> {
    let mut records = Vec::new();
    let mut after = 0;
    loop {
        let filter = ListFilter {
            thread: Some(thread.into()),
            after_seq: after,
            limit: 1000,
            ..ListFilter::default()
        };
        let page = store.list(tenant, &filter).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for row in page {
            let value = serde_json::from_str(&row.json)
                .map_err(|e| TenantError::Corrupt(format!("stored record {}: {e}", row.id)))?;
            records.push(value);
        }
    }
    Ok((records, after))
}
