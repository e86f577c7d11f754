//! Namespace ids (protocol.md §12.1): `default`, `org`, `org/project`, `org/project/env`,
//! `org/project/env/job`.

use crate::error::ProtocolError;

/// The implicit root namespace of records without `body.namespace`.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Longest namespace id, in characters.
pub const MAX_NAMESPACE_LEN: usize = 256;
/// Most segments (JOB level).
pub const MAX_NAMESPACE_DEPTH: usize = 4;
/// Longest segment; the library and concept docs say 63 (one guide says 64).
pub const MAX_NAMESPACE_SEGMENT_LEN: usize = 63;

/// Validates a namespace id against
/// `^[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)*$` and the size limits.
///
/// Size checks run before character checks so that each code is reachable
/// (four valid segments can never exceed 256 characters on their own).
pub fn validate_namespace_id(ns: &str) -> Result<(), ProtocolError> {
    let len = ns.chars().count();
    if len > MAX_NAMESPACE_LEN {
        return Err(ProtocolError::NamespaceIdTooLong {
            len,
            max: MAX_NAMESPACE_LEN,
        });
    }
    let depth = ns.split('/').count();
    if depth > MAX_NAMESPACE_DEPTH {
        return Err(ProtocolError::NamespaceIdTooDeep {
            namespace: ns.to_owned(),
            depth,
            max: MAX_NAMESPACE_DEPTH,
        });
    }
    for segment in ns.split('/') {
        let len = segment.chars().count();
        if len > MAX_NAMESPACE_SEGMENT_LEN {
            return Err(ProtocolError::NamespaceSegmentTooLong {
                segment: segment.to_owned(),
                len,
                max: MAX_NAMESPACE_SEGMENT_LEN,
            });
        }
        if !is_segment(segment) {
            return Err(ProtocolError::NamespaceIdInvalid {
                namespace: ns.to_owned(),
                reason: format!(
                    "segment {segment:?} must start with [a-z0-9] and continue with [a-z0-9_-]"
                ),
            });
        }
    }
    Ok(())
}

fn is_segment(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn code(ns: &str) -> Option<ErrorCode> {
        validate_namespace_id(ns).err().map(|e| e.code())
    }

    #[test]
    fn accepts_levels() {
        for ok in [
            "default",
            "acme",
            "acme/analytics",
            "acme/analytics/prod",
            "acme/analytics/prod/job-42",
            "0_a-b",
        ] {
            assert_eq!(code(ok), None, "{ok}");
        }
        assert_eq!(code(&"a".repeat(63)), None);
    }

    #[test]
    fn refuses_with_specific_codes() {
        for bad in [
            "",
            "Acme",
            "acme/",
            "/acme",
            "acme//x",
            "-acme",
            "_a",
            "acme/Prod",
            "ac me",
            "acme.x",
            "é",
        ] {
            assert_eq!(code(bad), Some(ErrorCode::NamespaceIdInvalid), "{bad:?}");
        }
        assert_eq!(code("a/b/c/d/e"), Some(ErrorCode::NamespaceIdTooDeep));
        assert_eq!(
            code(&"a".repeat(64)),
            Some(ErrorCode::NamespaceSegmentTooLong)
        );
        assert_eq!(code(&"a".repeat(257)), Some(ErrorCode::NamespaceIdTooLong));
    }
}
