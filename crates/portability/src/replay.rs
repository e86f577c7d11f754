//! Service accounts and tokens rebuilt from their records (protocol.md §13.1: every change to
//! them is a record on `th_audit_tokens`, holding token ids, never tokens). An import applies
//! each change with the record that states it, so the store ends as the source's was.

use std::collections::HashSet;

use serde_json::Value;
use syncropel_federation::handshake::PAIR_ACCOUNT_PREFIX;
use syncropel_store::{AuthChange, ServiceAccount};

pub const TOKENS_THREAD: &str = "th_audit_tokens";

/// Which tokens come back: all (`--carry-tokens`), or only those of pair accounts, the ones
/// peers hold and must keep using after a move (federation-protocol.md §8.3).
pub struct Replay {
    all_tokens: bool,
    pair_accounts: HashSet<String>,
}

impl Replay {
    pub fn new(all_tokens: bool) -> Replay {
        Replay {
            all_tokens,
            pair_accounts: HashSet::new(),
        }
    }

    /// The change a token record states, if it is one to make here. `created_at` is the
    /// record's (when the source stored it).
    pub fn change(&mut self, body: &Value, created_at: i64) -> Option<AuthChange> {
        let text = |field: &str| body.get(field).and_then(Value::as_str).map(str::to_string);
        let list = |field: &str| -> Vec<String> {
            body.get(field)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        match body.get("event").and_then(Value::as_str)? {
            "service_account_created" => {
                let sa = ServiceAccount {
                    id: text("sa_id")?,
                    name: text("name")?,
                    scopes: list("scopes"),
                    allowed_actors: list("allowed_actors"),
                    created_at,
                };
                if sa.name.starts_with(PAIR_ACCOUNT_PREFIX) {
                    self.pair_accounts.insert(sa.id.clone());
                }
                Some(AuthChange::CreateServiceAccount(sa))
            }
            "token_minted" => {
                let sa_id = text("sa_id")?;
                if !self.all_tokens && !self.pair_accounts.contains(&sa_id) {
                    return None;
                }
                Some(AuthChange::MintToken {
                    token_id: text("token_id")?,
                    sa_id,
                    created_at,
                    expires_at: body.get("expires_at").and_then(Value::as_i64),
                    grant_id: text("grant_id"),
                })
            }
            "tokens_parented" => Some(AuthChange::ParentTokens {
                sa_id: text("sa_id")?,
                grant_id: text("grant_id")?,
            }),
            "token_revoked" => Some(AuthChange::RevokeToken {
                token_id: text("token_id")?,
                revoked_at: created_at,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn created(sa_id: &str, name: &str) -> Value {
        json!({"event": "service_account_created", "sa_id": sa_id, "name": name,
               "scopes": ["admin"], "allowed_actors": []})
    }

    fn minted(sa_id: &str) -> Value {
        json!({"event": "token_minted", "sa_id": sa_id, "token_id": format!("t-{sa_id}"),
               "expires_at": 99})
    }

    #[test]
    fn only_pair_tokens_come_back_unless_all_were_carried() {
        let pair = format!("{PAIR_ACCOUNT_PREFIX}did:key:z6Mkpeer");
        let mut replay = Replay::new(false);
        assert!(replay.change(&created("sa_pair", &pair), 1).is_some());
        assert!(replay.change(&created("sa_admin", "admin"), 1).is_some());
        match replay.change(&minted("sa_pair"), 2) {
            Some(AuthChange::MintToken { expires_at, .. }) => assert_eq!(expires_at, Some(99)),
            other => panic!("{other:?}"),
        }
        assert!(replay.change(&minted("sa_admin"), 2).is_none());
        let revoked = json!({"event": "token_revoked", "token_id": "t-x"});
        assert!(replay.change(&revoked, 3).is_some());

        let mut all = Replay::new(true);
        all.change(&created("sa_admin", "admin"), 1);
        assert!(all.change(&minted("sa_admin"), 2).is_some());
        assert!(all.change(&json!({"event": "something_else"}), 2).is_none());
    }
}
