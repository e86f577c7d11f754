//! The hosted platform's provisioning API, on the platform host with a platform JWT:
//! `POST /provision` (with an `Idempotency-Key`), `GET|DELETE /provision/{id}`,
//! `POST /provision/{id}/suspend|resume`.

use serde::{Deserialize, Serialize};

use crate::error::ErrorBody;

/// `POST /provision`: a tenant at `label`, whose first admin token is
/// `spl_<env>_sa-bootstrap-env_<bootstrap_token>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProvisionRequest {
    /// 3-32 characters of `a-z 0-9 -`, a DNS label.
    pub label: String,
    /// 16-256 printable ASCII characters.
    pub bootstrap_token: String,
    /// An Ed25519 did:key that may later rotate the tenant's did:sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_key: Option<String>,
}

/// `202` to `POST /provision`: the provisioning and the phase it reached.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProvisionAccepted {
    pub instance_id: String,
    pub label: String,
    pub phase: String,
}

/// A provisioning: its phases, its error if it failed, and the tenant's status, DID and URL.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "provision", default)]
pub struct Provision {
    pub instance_id: String,
    pub label: String,
    /// The current phase (`ready` when done).
    pub phase: String,
    pub phases: Vec<ProvisionPhase>,
    pub error: Option<ErrorBody>,
    /// `provisioning`, `active`, `suspended` or `deleted`.
    pub tenant_status: String,
    pub did: String,
    pub url: String,
}

/// One phase of a provisioning.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProvisionPhase {
    pub name: String,
    /// `pending` or `done`.
    pub status: String,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// RFC 3339.
    pub finished_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_provision_writes_its_phases_and_error() {
        let answer = json!({
            "object": "provision", "instance_id": "inst_1", "label": "acme", "phase": "bootstrap",
            "phases": [{"name": "reserve", "status": "done", "started_at": "2026-12-01T00:00:00.000Z",
                        "finished_at": "2026-12-01T00:00:00.100Z"},
                       {"name": "bootstrap", "status": "pending", "started_at": null, "finished_at": null}],
            "error": {"object": "error", "type": "api_error", "code": "INTERNAL",
                      "message": "internal error; see the steward's log"},
            "tenant_status": "provisioning", "did": "did:key:z6Mk1", "url": "https://acme.example.com",
        });
        let typed: Provision = serde_json::from_value(answer.clone()).unwrap();
        assert_eq!(typed.phases.len(), 2);
        assert_eq!(serde_json::to_value(&typed).unwrap(), answer);
        assert_eq!(
            serde_json::to_value(ProvisionRequest {
                label: "acme".into(),
                bootstrap_token: "t".repeat(16),
                recovery_key: None,
            })
            .unwrap(),
            json!({"label": "acme", "bootstrap_token": "t".repeat(16)})
        );
    }
}
