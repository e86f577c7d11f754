//! The namespace registry (protocol.md §12.2): a fold over `namespace_entry` LEARN records on
//! `th_namespace_registry`, latest entry per id wins. The fold is cached per tenant and brought up
//! to date incrementally (only records after the last one folded are read), so every replica sees
//! every change without any invalidation channel.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use syncropel_protocol::{ErrorCode, Refusal, DEFAULT_NAMESPACE};
use syncropel_store::{ListFilter, RecordStore};
use tokio::sync::Mutex;

use crate::{Result, TenantError};

pub const REGISTRY_THREAD: &str = "th_namespace_registry";
pub const ENTRY_TOPIC: &str = "namespace_entry";

/// The lifecycle state of a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceState {
    Active,
    Archived,
    Deleted,
}

impl NamespaceState {
    pub fn parse(s: &str) -> Option<NamespaceState> {
        match s {
            "active" => Some(NamespaceState::Active),
            "archived" => Some(NamespaceState::Archived),
            "deleted" => Some(NamespaceState::Deleted),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct NamespaceEntry {
    pub id: String,
    pub state: NamespaceState,
    pub description: Option<String>,
    /// The registry record that set this state.
    pub record: String,
}

#[derive(Default)]
struct Fold {
    entries: HashMap<String, NamespaceEntry>,
    last_seq: i64,
}

impl Fold {
    fn apply(&mut self, record: &Value) {
        let body = &record["body"];
        if record["act"] != "LEARN" || body["topic"] != ENTRY_TOPIC {
            return;
        }
        let (Some(id), Some(state)) = (
            body["id"].as_str(),
            body["state"].as_str().and_then(NamespaceState::parse),
        ) else {
            return;
        };
        let entry = NamespaceEntry {
            id: id.to_string(),
            state,
            description: body["description"].as_str().map(str::to_string),
            record: record["id"].as_str().unwrap_or_default().to_string(),
        };
        self.entries.insert(id.to_string(), entry);
    }
}

/// Per-tenant cached folds of the registry; tenants never wait on each other.
#[derive(Default)]
pub struct Namespaces {
    folds: std::sync::Mutex<HashMap<String, Arc<Mutex<Fold>>>>,
}

impl Namespaces {
    fn fold(&self, tenant: &str) -> Arc<Mutex<Fold>> {
        let mut folds = self.folds.lock().unwrap_or_else(|e| e.into_inner());
        folds.entry(tenant.to_string()).or_default().clone()
    }

    /// The registry of `tenant`, up to date with the log.
    pub async fn entries(
        &self,
        store: &dyn RecordStore,
        tenant: &str,
    ) -> Result<Vec<NamespaceEntry>> {
        let fold = self.fold(tenant);
        let mut fold = fold.lock().await;
        catch_up(store, tenant, &mut fold).await?;
        let mut entries: Vec<NamespaceEntry> = fold.entries.values().cloned().collect();
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(entries)
    }

    /// Narrowing at ingest: every level of `namespace`, from the root down, must be active.
    pub async fn check_writable(
        &self,
        store: &dyn RecordStore,
        tenant: &str,
        namespace: &str,
    ) -> Result<()> {
        if namespace == DEFAULT_NAMESPACE {
            return Ok(());
        }
        let fold = self.fold(tenant);
        let mut fold = fold.lock().await;
        catch_up(store, tenant, &mut fold).await?;
        for level in ancestors(namespace) {
            let active = fold
                .entries
                .get(level)
                .is_some_and(|e| e.state == NamespaceState::Active);
            if !active {
                let what = if level == namespace {
                    format!("namespace '{namespace}' is not Active in the registry")
                } else {
                    format!("ancestor '{level}' is not Active in the registry")
                };
                return Err(Refusal::new(
                    ErrorCode::NamespaceRejected,
                    format!("namespace '{namespace}' rejected: {what}. Create it first with `spl namespace create {level}`."),
                )
                .into());
            }
        }
        Ok(())
    }
}

/// `a/b/c` -> `a`, `a/b`, `a/b/c`.
pub fn ancestors(namespace: &str) -> impl Iterator<Item = &str> {
    namespace
        .match_indices('/')
        .map(|(i, _)| &namespace[..i])
        .chain(std::iter::once(namespace))
}

/// The parent of a namespace id, if it has one.
pub fn parent(namespace: &str) -> Option<&str> {
    namespace.rsplit_once('/').map(|(p, _)| p)
}

async fn catch_up(store: &dyn RecordStore, tenant: &str, fold: &mut Fold) -> Result<()> {
    loop {
        let filter = ListFilter {
            thread: Some(REGISTRY_THREAD.to_string()),
            after_seq: fold.last_seq,
            limit: 1000,
            ..ListFilter::default()
        };
        let page = store.list(tenant, &filter).await?;
        for stored in &page {
            let record: Value = serde_json::from_str(&stored.json).map_err(TenantError::corrupt)?;
            fold.apply(&record);
            fold.last_seq = stored.seq;
        }
        if page.len() < 1000 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_walk_from_the_root() {
        assert_eq!(
            ancestors("a/b/c").collect::<Vec<_>>(),
            ["a", "a/b", "a/b/c"]
        );
        assert_eq!(ancestors("a").collect::<Vec<_>>(), ["a"]);
        assert_eq!(parent("a/b/c"), Some("a/b"));
        assert_eq!(parent("a"), None);
    }

    #[test]
    fn the_latest_entry_wins_and_other_records_are_ignored() {
        let mut fold = Fold::default();
        let entry = |state: &str| serde_json::json!({"id": "r", "act": "LEARN", "body": {"topic": ENTRY_TOPIC, "id": "acme", "state": state}});
        fold.apply(&entry("active"));
        fold.apply(&entry("archived"));
        fold.apply(&serde_json::json!({"act": "DO", "body": {"topic": ENTRY_TOPIC, "id": "acme", "state": "active"}}));
        fold.apply(&serde_json::json!({"act": "LEARN", "body": {"topic": "other", "id": "acme", "state": "active"}}));
        assert_eq!(fold.entries["acme"].state, NamespaceState::Archived);
    }
}
