//! `body.kind` grammar (protocol.md §4.1), mirroring the SDK's `grammar.validate_kind`.
//!
//! `scope.category.entity[.version]`: 2–4 dot-separated segments. Two
//! segments only for the `core` and `@community` scopes; a fourth segment
//! must be a version `v<digits>`. All character classes are ASCII.

/// Checks `kind` against the protocol.md §4.1 grammar; the error says which rule failed.
pub fn validate_kind(kind: &str) -> Result<(), String> {
    let segments: Vec<&str> = kind.split('.').collect();
    if !(2..=4).contains(&segments.len()) {
        return Err(format!(
            "expected 2 to 4 dot-separated segments (scope.category.entity[.version]), got {}",
            segments.len()
        ));
    }
    let scope = segments[0];
    let (community, scope_ident) = match scope.strip_prefix('@') {
        Some(rest) => (true, rest),
        None => (false, scope),
    };
    if !is_ident(scope_ident) {
        return Err(format!(
            "scope {scope:?} must be core, x, @<ident> or <ident> ([a-z0-9_-]+)"
        ));
    }
    if segments.len() == 2 && !(community || scope == "core") {
        return Err(format!(
            "scope {scope:?} needs at least three segments; only core and @community kinds may have two"
        ));
    }
    let names = &segments[1..segments.len().min(3)];
    if let Some(bad) = names.iter().find(|s| !is_ident(s)) {
        return Err(format!("segment {bad:?} must match [a-z0-9_-]+"));
    }
    if let Some(version) = segments.get(3) {
        if !is_version(version) {
            return Err(format!(
                "fourth segment {version:?} must be a version like v2"
            ));
        }
    }
    Ok(())
}

/// `^[a-z0-9_\-]+$`
fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `^v\d+$`
fn is_version(s: &str) -> bool {
    s.strip_prefix('v')
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_edges() {
        for ok in [
            "@music.catalog.track",
            "@music.catalog.track.v10",
            "x.lab.probe.v1",
            "core.credential.v1",
        ] {
            assert_eq!(validate_kind(ok), Ok(()), "{ok}");
        }
        for bad in [
            "core.",
            ".a.b",
            "a..b",
            "x.lab",
            "@music",
            "core.alias.v1.x",
            "a.b.c.V1",
            "a.b.c.v",
            "a.b.c.v1\n",
            "é.b.c",
        ] {
            assert!(validate_kind(bad).is_err(), "{bad:?}");
        }
    }
}
