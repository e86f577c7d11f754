//! The F16 rule (protocol.md §14): records hold handles, backends hold values.

use serde_json::{Map, Value};

use crate::error::ProtocolError;

/// Members a credential body may carry; anything else could hold a secret.
pub const CREDENTIAL_ALLOWED_FIELDS: &[&str] = &[
    "kind",
    "_v",
    "handle",
    "backend_ref",
    "publisher_did",
    "lifecycle",
    "_refs",
    "namespace",
];

/// Whether `kind` describes a credential: `core.credential.v1`, and on purpose
/// also the unversioned and any later `core.credential.vN`, since refusing an
/// unknown member is harmless while admitting a secret is not.
pub fn is_credential_kind(kind: &str) -> bool {
    match kind.strip_prefix("core.credential") {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix(".v")
            .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// Refuses a credential body carrying any member outside
/// [`CREDENTIAL_ALLOWED_FIELDS`] with `F16_VIOLATION_SENSITIVE_FIELD`.
pub fn check_secret_fields(body: &Map<String, Value>) -> Result<(), ProtocolError> {
    let Some(kind) = body.get("kind").and_then(Value::as_str) else {
        return Ok(());
    };
    if !is_credential_kind(kind) {
        return Ok(());
    }
    match body
        .keys()
        .find(|k| !CREDENTIAL_ALLOWED_FIELDS.contains(&k.as_str()))
    {
        Some(field) => Err(ProtocolError::SensitiveField {
            kind: kind.to_owned(),
            field: field.clone(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test bodies are objects"),
        }
    }

    #[test]
    fn credential_kinds() {
        assert!(is_credential_kind("core.credential.v1"));
        assert!(is_credential_kind("core.credential.v2"));
        assert!(is_credential_kind("core.credential"));
        assert!(!is_credential_kind("core.credentials.v1"));
        assert!(!is_credential_kind("core.credential.vx"));
        assert!(!is_credential_kind("x.core.credential"));
    }

    #[test]
    fn only_handles_pass() {
        let ok = body(
            json!({"kind":"core.credential.v1","_v":1,"handle":"anthropic-prod",
            "backend_ref":"keychain://syncropel/anthropic-prod","publisher_did":"did:key:z6Mk",
            "lifecycle":"active","_refs":[],"namespace":"acme"}),
        );
        assert!(check_secret_fields(&ok).is_ok());
        for field in [
            "value",
            "secret",
            "password",
            "api_key",
            "token",
            "plaintext",
        ] {
            let mut b = ok.clone();
            b.insert(field.into(), json!("sk-123"));
            let err = check_secret_fields(&b).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
        // Other kinds may carry anything.
        assert!(check_secret_fields(&body(json!({"kind":"x.a.b","value":"v"}))).is_ok());
    }
}
