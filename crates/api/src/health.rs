//! `GET /health` (open liveness), `GET /ready` (open readiness), `GET /v1/health` (the full
//! report, protocol.md §13.4).

use serde::{Deserialize, Serialize};

/// `GET /health`: the steward is up. Reveals nothing about its authorization posture.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Health {
    /// `ok`.
    pub status: String,
    pub version: String,
    pub proof_kinds_accepted: Vec<String>,
}

/// `GET /ready`: not draining, and the store answers with every migration applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ready {
    /// `ready`.
    pub status: String,
}

/// `GET /v1/health`: who the steward is and which authorization deciders are live.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthReport {
    /// `ok`.
    pub status: String,
    pub version: String,
    /// The tenant's DID.
    pub did: String,
    /// The store backend (`sqlite`, `postgres`).
    pub store: String,
    /// `lexical` or `disabled`.
    pub search: String,
    pub authorization: Authorization,
}

/// How many deciders are live, of how many, and each one's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Authorization {
    pub live: usize,
    pub of: usize,
    pub deciders: Vec<Decider>,
}

/// One authorization decider: `live` (fidelity `full`) or `abstaining` (fidelity `none`, with why).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Decider {
    pub decider: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub because: Option<String>,
    /// What turns it on or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch: Option<String>,
    pub fidelity: String,
    /// Which requests it decides, when not all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<String>,
}

impl Decider {
    pub fn live(name: &str) -> Decider {
        Decider {
            decider: name.to_owned(),
            state: "live".to_owned(),
            because: None,
            switch: None,
            fidelity: "full".to_owned(),
            coverage: None,
        }
    }

    pub fn abstaining(name: &str, because: &str) -> Decider {
        Decider {
            decider: name.to_owned(),
            state: "abstaining".to_owned(),
            because: Some(because.to_owned()),
            switch: None,
            fidelity: "none".to_owned(),
            coverage: None,
        }
    }

    pub fn switched_by(mut self, switch: &str) -> Decider {
        self.switch = Some(switch.to_owned());
        self
    }

    pub fn covering(mut self, coverage: &str) -> Decider {
        self.coverage = Some(coverage.to_owned());
        self
    }

    pub fn is_live(&self) -> bool {
        self.state == "live"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_report_writes_deciders_as_before() {
        let report = HealthReport {
            status: "ok".into(),
            version: "0.1.0".into(),
            did: "did:key:z6Mk1".into(),
            store: "sqlite".into(),
            search: "lexical".into(),
            authorization: Authorization {
                live: 1,
                of: 2,
                deciders: vec![
                    Decider::live("scope"),
                    Decider::abstaining("impersonation", "not offered"),
                ],
            },
        };
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            json!({"status": "ok", "version": "0.1.0", "did": "did:key:z6Mk1", "store": "sqlite",
                   "search": "lexical", "authorization": {"live": 1, "of": 2, "deciders": [
                       {"decider": "scope", "state": "live", "fidelity": "full"},
                       {"decider": "impersonation", "state": "abstaining", "because": "not offered",
                        "fidelity": "none"}]}})
        );
        assert_eq!(
            serde_json::to_value(Health {
                status: "ok".into(),
                version: "0.1.0".into(),
                proof_kinds_accepted: vec!["ed25519".into()],
            })
            .unwrap(),
            json!({"status": "ok", "version": "0.1.0", "proof_kinds_accepted": ["ed25519"]})
        );
    }
}
