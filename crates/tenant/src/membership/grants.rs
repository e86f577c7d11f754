//! What a grant allows: its caveats, whether a child only narrows its parent, and whether a
//! chain of grants is still alive.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use syncropel_protocol::{unix_now, ErrorCode, Refusal};
use syncropel_store::RecordStore;

use super::{Grant, GRANT_DOC, MAX_CHAIN};
use crate::{parse_grain, Result, TenantError};

/// Limits a grant carries down its subtree. Absent means unbounded; a child's limits are never
/// wider than its parent's.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Caveats {
    /// Hops of delegation allowed below this grant (0: no children).
    pub max_depth: Option<u32>,
    /// Children this grant may have.
    pub max_fanout: Option<u32>,
    /// A spend ceiling, carried and narrowed for the services that meter it; this steward
    /// meters nothing against it.
    pub budget: Option<u64>,
}

impl Caveats {
    /// From a request: an object of the three optional non-negative integers, nothing else.
    pub fn parse(value: Option<&Value>) -> std::result::Result<Caveats, Refusal> {
        let object = match value {
            None | Some(Value::Null) => return Ok(Caveats::default()),
            Some(Value::Object(object)) => object,
            Some(_) => return Err(Refusal::validation("'caveats' must be an object")),
        };
        if let Some(other) = object
            .keys()
            .find(|k| !matches!(k.as_str(), "max_depth" | "max_fanout" | "budget"))
        {
            return Err(Refusal::validation(format!(
                "unknown caveat '{other}' (caveats: max_depth, max_fanout, budget)"
            )));
        }
        let number = |name: &str| -> std::result::Result<Option<u64>, Refusal> {
            match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                    Refusal::validation(format!("caveat '{name}' must be a non-negative integer"))
                }),
            }
        };
        let small = |name: &str| -> std::result::Result<Option<u32>, Refusal> {
            number(name)?
                .map(|n| {
                    u32::try_from(n).map_err(|_| {
                        Refusal::validation(format!("caveat '{name}' is out of range"))
                    })
                })
                .transpose()
        };
        Ok(Caveats {
            max_depth: small("max_depth")?,
            max_fanout: small("max_fanout")?,
            budget: number("budget")?,
        })
    }

    /// The caveats of a child of a grant with these caveats, asking for `asked`: each limit is
    /// the asked one, or the inherited one when not asked; asking wider is refused.
    pub fn child(&self, asked: &Caveats) -> std::result::Result<Caveats, Refusal> {
        let depth = match self.max_depth {
            Some(0) => {
                return Err(denied(
                    "this grant's max_depth is 0: it cannot delegate further",
                ))
            }
            Some(d) => Some(d - 1),
            None => None,
        };
        Ok(Caveats {
            max_depth: tighter("max_depth", depth, asked.max_depth)?,
            max_fanout: tighter("max_fanout", self.max_fanout, asked.max_fanout)?,
            budget: tighter("budget", self.budget, asked.budget)?,
        })
    }
}

fn tighter<T: PartialOrd + Copy + std::fmt::Display>(
    name: &str,
    inherited: Option<T>,
    asked: Option<T>,
) -> std::result::Result<Option<T>, Refusal> {
    match (inherited, asked) {
        (Some(limit), Some(asked)) if asked > limit => Err(denied(format!(
            "caveat {name} {asked} is wider than the parent grant's {limit}"
        ))),
        (_, Some(asked)) => Ok(Some(asked)),
        (inherited, None) => Ok(inherited),
    }
}

fn denied(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::PermissionDenied, message)
        .with_hint("a sub-grant may only narrow its parent's scopes and caveats")
}

/// Whether `scope` is within `parents`: the same scope, `admin`, or a grain of a coarse scope
/// the parent holds (`thread:x:read` under `records:read`, a pair's grains under
/// `federation:manage`).
pub fn narrows(scope: &str, parents: &[String]) -> bool {
    let held = |s: &str| parents.iter().any(|p| p == s || p == "admin");
    if held(scope) {
        return true;
    }
    if let Some((_, _, access)) = parse_grain(scope) {
        let coarse = if access == "read" {
            "records:read"
        } else {
            "records:write"
        };
        return held(coarse);
    }
    scope.starts_with("federation:") && held("federation:manage")
}

/// Checks that every scope of `asked` narrows `parents`.
pub(super) fn check_narrows(asked: &[String], parents: &[String]) -> Result<()> {
    match asked.iter().find(|s| !narrows(s, parents)) {
        Some(wider) => Err(denied(format!(
            "scope '{wider}' is not within the parent grant's [{}]",
            parents.join(", ")
        ))
        .into()),
        None => Ok(()),
    }
}

/// Whether the grant `grant_id` and every ancestor is alive: `401 GRANT_REVOKED` for a revoked
/// (or unknown) one, `401 GRANT_EXPIRED` for an expired one. Walks at most [`MAX_CHAIN`] hops.
/// Live, it answers when the first grant of the chain expires (unix seconds).
pub async fn check_chain(
    store: &dyn RecordStore,
    tenant: &str,
    grant_id: &str,
) -> std::result::Result<i64, TenantError> {
    let now = unix_now();
    let mut next = Some(grant_id.to_string());
    let mut until = i64::MAX;
    for _ in 0..MAX_CHAIN {
        let Some(id) = next else { return Ok(until) };
        let grant: Grant = match store.state_get(tenant, GRANT_DOC, &id).await? {
            Some(text) => serde_json::from_str(&text).map_err(TenantError::corrupt)?,
            None => {
                return Err(Refusal::new(
                    ErrorCode::GrantRevoked,
                    format!("grant {id} behind this credential does not exist here"),
                )
                .into())
            }
        };
        if grant.revoked_at.is_some() {
            let reason = grant.reason.as_deref().unwrap_or("revoked");
            return Err(Refusal::new(
                ErrorCode::GrantRevoked,
                format!("grant {id} behind this credential was revoked ({reason})"),
            )
            .into());
        }
        if grant.expires_at <= now {
            return Err(Refusal::new(
                ErrorCode::GrantExpired,
                format!("grant {id} behind this credential has expired"),
            )
            .with_hint("ask an admin for a renewal invite pinned to your label")
            .into());
        }
        until = until.min(grant.expires_at);
        next = grant.parent;
    }
    Err(Refusal::new(
        ErrorCode::GrantRevoked,
        format!("this credential's grant chain is longer than {MAX_CHAIN} hops"),
    )
    .into())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn children_only_narrow() {
        let parent = vec!["records:read".to_string(), "records:write".to_string()];
        assert!(narrows("records:read", &parent));
        assert!(narrows("thread:th_x:read", &parent));
        assert!(narrows("namespace:acme:write", &parent));
        assert!(!narrows("admin", &parent));
        assert!(!narrows("config:write", &parent));
        assert!(narrows("config:write", &["admin".to_string()]));
        assert!(!narrows(
            "records:write",
            &["thread:th_x:write".to_string()]
        ));

        let caveats = Caveats {
            max_depth: Some(2),
            max_fanout: Some(3),
            budget: None,
        };
        let child = caveats.child(&Caveats::default()).unwrap();
        assert_eq!(
            (child.max_depth, child.max_fanout, child.budget),
            (Some(1), Some(3), None)
        );
        let asked = Caveats::parse(Some(&json!({"budget": 10, "max_fanout": 1}))).unwrap();
        assert_eq!(caveats.child(&asked).unwrap().budget, Some(10));
        let wider = Caveats::parse(Some(&json!({"max_fanout": 4}))).unwrap();
        assert!(caveats.child(&wider).is_err());
        let leaf = Caveats {
            max_depth: Some(0),
            ..Caveats::default()
        };
        assert!(leaf.child(&Caveats::default()).is_err());
        assert!(Caveats::parse(Some(&json!({"ttl": 1}))).is_err());
        assert!(Caveats::parse(Some(&json!({"budget": -1}))).is_err());
        assert!(Caveats::parse(Some(&json!([1]))).is_err());
    }
}
