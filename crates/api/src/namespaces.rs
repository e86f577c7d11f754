//! The namespace registry (protocol.md §12.2): `GET|POST /v1/namespaces`,
//! `GET|DELETE /v1/namespaces/{id}`.

use serde::{Deserialize, Serialize};

/// `POST /v1/namespaces`: creates (or re-activates) `id`; its parent must be active.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateNamespace {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A registry entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "namespace", default)]
pub struct Namespace {
    pub id: String,
    pub state: NamespaceState,
    pub description: Option<String>,
    /// The registry record that set this state.
    pub record: String,
}

/// The lifecycle of a namespace: archived ones take no writes and stay readable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceState {
    #[default]
    Active,
    Archived,
    Deleted,
}

impl NamespaceState {
    pub fn as_str(self) -> &'static str {
        match self {
            NamespaceState::Active => "active",
            NamespaceState::Archived => "archived",
            NamespaceState::Deleted => "deleted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_write_null_descriptions() {
        let entry = Namespace {
            id: "acme".into(),
            state: NamespaceState::Archived,
            description: None,
            record: "abc".into(),
        };
        assert_eq!(
            serde_json::to_value(&entry).unwrap(),
            json!({"object": "namespace", "id": "acme", "state": "archived",
                   "description": null, "record": "abc"})
        );
        assert_eq!(
            serde_json::to_value(CreateNamespace {
                id: "acme".into(),
                description: None
            })
            .unwrap(),
            json!({"id": "acme"})
        );
    }
}
