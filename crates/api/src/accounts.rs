//! Service accounts and tokens (`admin` scope), and the one-time bootstrap (protocol.md §13.1).

use serde::{Deserialize, Serialize};

/// `POST /v1/service-accounts`: `scopes` and `allowed_actors` may be empty (no actor claim limit).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateServiceAccount {
    pub name: String,
    pub scopes: Vec<String>,
    /// Actor DIDs the account may claim; empty means any.
    pub allowed_actors: Vec<String>,
}

/// A service account, as created and as listed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "service_account", default)]
pub struct ServiceAccount {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub allowed_actors: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// `POST /v1/service-accounts/{id}/tokens`: without `ttl_seconds` the token does not expire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MintToken {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<i64>,
}

/// A freshly minted token: the plaintext is in this answer only and is never stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "token", default)]
pub struct MintedToken {
    pub token: String,
    /// SHA-256 of the whole token: what records and revocation name it by.
    pub token_id: String,
    pub sa_id: String,
    /// Unix seconds.
    pub expires_at: Option<i64>,
}

/// `DELETE /v1/tokens/{token_id}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "token", default)]
pub struct TokenRevoked {
    pub token_id: String,
    pub revoked: bool,
}

/// `POST /v1/bootstrap/service-account`: open until the first account exists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BootstrapServiceAccount {
    pub name: String,
    pub scopes: Vec<String>,
    pub allowed_actors: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<i64>,
}

/// The answer to a bootstrap: the first account and its token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Bootstrapped {
    pub service_account: ServiceAccount,
    pub token: MintedToken,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accounts_and_tokens_write_what_the_steward_sends() {
        let account = ServiceAccount {
            id: "sa_1".into(),
            name: "ci".into(),
            scopes: vec!["admin".into()],
            allowed_actors: vec![],
            created_at: 1_700_000_000,
        };
        let token = MintedToken {
            token: "spl_local_sa_1_x".into(),
            token_id: "ab".into(),
            sa_id: "sa_1".into(),
            expires_at: None,
        };
        assert_eq!(
            serde_json::to_value(Bootstrapped {
                service_account: account,
                token
            })
            .unwrap(),
            json!({"service_account": {"object": "service_account", "id": "sa_1", "name": "ci",
                                       "scopes": ["admin"], "allowed_actors": [],
                                       "created_at": 1_700_000_000},
                   "token": {"object": "token", "token": "spl_local_sa_1_x", "token_id": "ab",
                             "sa_id": "sa_1", "expires_at": null}})
        );
        assert_eq!(
            serde_json::to_value(TokenRevoked {
                token_id: "ab".into(),
                revoked: true
            })
            .unwrap(),
            json!({"object": "token", "token_id": "ab", "revoked": true})
        );
        assert_eq!(
            serde_json::to_value(MintToken::default()).unwrap(),
            json!({})
        );
    }
}
