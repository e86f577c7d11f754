//! Scopes (protocol.md §10.2): what a token may do. Grains (`thread:<id>:read`, ...) narrow a scope
//! to one resource.

use syncropel_protocol::Refusal;

/// The scopes of protocol.md §10.2. Grains (`thread:<id>:read`, ...) narrow them to one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    RecordsRead,
    RecordsWrite,
    ThreadsWrite,
    FederationManage,
    ConfigRead,
    ConfigWrite,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::RecordsRead,
        Scope::RecordsWrite,
        Scope::ThreadsWrite,
        Scope::FederationManage,
        Scope::ConfigRead,
        Scope::ConfigWrite,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::RecordsRead => "records:read",
            Scope::RecordsWrite => "records:write",
            Scope::ThreadsWrite => "threads:write",
            Scope::FederationManage => "federation:manage",
            Scope::ConfigRead => "config:read",
            Scope::ConfigWrite => "config:write",
            Scope::Admin => "admin",
        }
    }
}

/// Checks that every requested scope is a known scope or a well-formed grain.
pub fn validate_scopes(scopes: &[String]) -> Result<(), Refusal> {
    if scopes.is_empty() {
        return Err(Refusal::validation("scopes must not be empty"));
    }
    for scope in scopes {
        let known = Scope::ALL.iter().any(|s| s.as_str() == scope);
        let grain = parse_grain(scope).is_some()
            || matches!(
                scope.as_str(),
                "federation:sync"
                    | "federation:subscribe"
                    | "federation:sync_pull"
                    | "federation:sync_push"
            );
        if !known && !grain {
            return Err(Refusal::validation(format!("unknown scope '{scope}'"))
                .with_hint("scopes: records:read, records:write, threads:write, federation:manage, config:read, config:write, admin, thread:<id>:read|write, namespace:<ns>:read|write"));
        }
    }
    Ok(())
}

/// `thread:<id>:read|write` or `namespace:<ns>:read|write` -> (kind, resource, access).
pub fn parse_grain(scope: &str) -> Option<(&str, &str, &str)> {
    let (kind, rest) = scope.split_once(':')?;
    let (resource, access) = rest.rsplit_once(':')?;
    let ok = matches!(kind, "thread" | "namespace")
        && matches!(access, "read" | "write")
        && !resource.is_empty();
    ok.then_some((kind, resource, access))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grains_parse_and_unknown_scopes_are_refused() {
        assert_eq!(
            parse_grain("thread:th_a:read"),
            Some(("thread", "th_a", "read"))
        );
        assert_eq!(
            parse_grain("namespace:acme/payments:write"),
            Some(("namespace", "acme/payments", "write"))
        );
        assert_eq!(parse_grain("thread::read"), None);
        assert_eq!(parse_grain("records:read"), None);
        assert!(validate_scopes(&["records:read".into(), "thread:x:write".into()]).is_ok());
        assert!(validate_scopes(&["records:delete".into()]).is_err());
        assert!(validate_scopes(&[]).is_err());
    }
}
