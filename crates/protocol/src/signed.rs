//! Signed non-record objects (federation-protocol.md §1.1, last bullet): handshake bodies,
//! relay envelopes and directory operations carry
//! `"sig": {"alg": "Ed25519", "key_id": "<did>#key-n", "value": "<base64url>"}`
//! over the canonical JSON of the object without `sig`.
//!
//! Records are signed differently (128 hex over the 7-field canonical JSON,
//! with `sig`/`signer` as unhashed members); this module is only for the
//! objects around them.
//!
//! Both sides hash the canonical form, so numbers in a signed object must be
//! canonical: values from [`crate::parse_json`] / [`crate::canonicalize`], or
//! built in Rust from integers and strings only.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::canonical::write_object;
use crate::error::ProtocolError;
use crate::keys::{verify_signature, Keypair};

/// The only algorithm a signed object may name.
pub const SIG_ALG: &str = "Ed25519";

/// The member that holds the signature and is left out of the signed bytes.
const SIG: &str = "sig";

/// Signs `object` with `key`, inserting (or replacing) its `sig` member. The
/// key id is `<did:key>#key-1`, the id a did:key's only key has (federation-protocol.md §1.2).
pub fn sign_object(object: &mut Map<String, Value>, key: &Keypair) {
    let signature = key.sign(signed_bytes(object).as_bytes());
    object.insert(
        SIG.to_owned(),
        json!({
            "alg": SIG_ALG,
            "key_id": format!("{}#key-1", key.did_key()),
            "value": URL_SAFE_NO_PAD.encode(signature),
        }),
    );
}

/// Verifies the `sig` of `object` and returns the signer's DID (the `key_id`
/// without its `#key-n` fragment). Only `did:key` signers can be checked
/// without resolution; the caller still compares the returned DID with the
/// one the object claims to come from.
pub fn verify_object(object: &Map<String, Value>) -> Result<String, ProtocolError> {
    let malformed = |reason| ProtocolError::MalformedSignature { reason };
    let sig = match object.get(SIG) {
        None | Some(Value::Null) => return Err(ProtocolError::SignatureRequired),
        Some(Value::Object(sig)) => sig,
        Some(_) => return Err(malformed("`sig` must be an object")),
    };
    if sig.get("alg").and_then(Value::as_str) != Some(SIG_ALG) {
        return Err(malformed("`sig.alg` must be \"Ed25519\""));
    }
    let key_id = sig
        .get("key_id")
        .and_then(Value::as_str)
        .ok_or(malformed("`sig.key_id` must be a string"))?;
    let did = signer_did(key_id).ok_or(malformed(
        "`sig.key_id` must be a did:key, optionally followed by #key-<n>",
    ))?;
    let value = sig
        .get("value")
        .and_then(Value::as_str)
        .ok_or(malformed("`sig.value` must be a string"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| malformed("`sig.value` must be unpadded base64url"))?;
    if signature.len() != 64 {
        return Err(malformed("an Ed25519 signature is 64 bytes"));
    }
    verify_signature(
        did,
        signed_bytes(object).as_bytes(),
        &hex::encode(signature),
    )?;
    Ok(did.to_owned())
}

/// The canonical JSON of `object` without its `sig` member.
fn signed_bytes(object: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(256);
    write_object(&mut out, object, &[SIG]);
    out
}

/// The DID of a key id `did:key:…` or `did:key:…#key-<digits>`.
fn signer_did(key_id: &str) -> Option<&str> {
    let did = match key_id.split_once('#') {
        None => key_id,
        Some((did, fragment)) => {
            let n = fragment.strip_prefix("key-")?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            did
        }
    };
    did.starts_with("did:key:").then_some(did)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::canonical_string;
    use crate::error::ErrorCode;

    fn init_body() -> Map<String, Value> {
        let Value::Object(body) = json!({
            "actor_did": "did:key:z6MkA",
            "peer_url": "https://alice.example",
            "nonce": "8f4a",
            "issued_at_ms": 1_777_636_800_000_i64,
            "maps": [{"local": "research", "peer": "my-team"}],
            "mls": null,
        }) else {
            unreachable!()
        };
        body
    }

    #[test]
    fn round_trip_names_the_signer() {
        let key = Keypair::from_seed(&[1; 32]);
        let mut body = init_body();
        sign_object(&mut body, &key);
        let sig = body["sig"].as_object().unwrap();
        assert_eq!(sig["alg"], "Ed25519");
        assert_eq!(sig["key_id"], format!("{}#key-1", key.did_key()));
        let value = sig["value"].as_str().unwrap();
        assert_eq!(value.len(), 86, "64 bytes unpadded: {value}");
        assert!(!value.contains(['=', '+', '/']), "{value}");
        assert_eq!(verify_object(&body).unwrap(), key.did_key());

        // The signature covers exactly the canonical JSON without `sig`.
        let mut without = body.clone();
        without.remove("sig");
        let bytes = URL_SAFE_NO_PAD.decode(value).unwrap();
        let message = canonical_string(&Value::Object(without));
        verify_signature(&key.did_key(), message.as_bytes(), &hex::encode(bytes)).unwrap();

        // Re-signing replaces the old `sig` rather than signing over it.
        let other = Keypair::from_seed(&[2; 32]);
        sign_object(&mut body, &other);
        assert_eq!(verify_object(&body).unwrap(), other.did_key());

        // A bare did:key is an acceptable key id too.
        body["sig"]["key_id"] = json!(other.did_key());
        assert_eq!(verify_object(&body).unwrap(), other.did_key());
    }

    #[test]
    fn a_tampered_field_fails() {
        let key = Keypair::from_seed(&[3; 32]);
        let mut body = init_body();
        sign_object(&mut body, &key);
        for (field, value) in [
            ("peer_url", json!("https://mallory.example")),
            ("issued_at_ms", json!(1_777_636_800_001_i64)),
            ("extra", json!(true)),
        ] {
            let mut tampered = body.clone();
            tampered.insert(field.to_owned(), value);
            let err = verify_object(&tampered).unwrap_err();
            assert!(
                matches!(err, ProtocolError::SignatureMismatch { .. }),
                "{field}: {err}"
            );
            assert_eq!(err.code(), ErrorCode::SignatureInvalid);
        }
    }

    #[test]
    fn a_wrong_or_malformed_key_id_fails() {
        let key = Keypair::from_seed(&[4; 32]);
        let mut body = init_body();
        sign_object(&mut body, &key);
        let other = Keypair::from_seed(&[5; 32]).did_key();
        let mut wrong = body.clone();
        wrong["sig"]["key_id"] = json!(format!("{other}#key-1"));
        assert!(matches!(
            verify_object(&wrong),
            Err(ProtocolError::SignatureMismatch { did }) if did == other
        ));
        let did = key.did_key();
        for key_id in [
            json!(format!("{did}#key-")),
            json!(format!("{did}#key-one")),
            json!(format!("{did}#keys-1")),
            json!("did:web:alice.example#key-1"),
            json!(7),
        ] {
            let mut bad = body.clone();
            bad["sig"]["key_id"] = key_id.clone();
            let err = verify_object(&bad).unwrap_err();
            assert!(
                matches!(err, ProtocolError::MalformedSignature { .. }),
                "{key_id}: {err}"
            );
        }
    }

    #[test]
    fn a_missing_or_malformed_sig_fails() {
        let key = Keypair::from_seed(&[6; 32]);
        let body = init_body();
        assert_eq!(verify_object(&body), Err(ProtocolError::SignatureRequired));
        assert_eq!(
            ProtocolError::SignatureRequired.code(),
            ErrorCode::SignatureRequired
        );
        let mut null_sig = body.clone();
        null_sig.insert("sig".to_owned(), Value::Null);
        assert_eq!(
            verify_object(&null_sig),
            Err(ProtocolError::SignatureRequired)
        );

        let mut signed = body;
        sign_object(&mut signed, &key);
        let value = signed["sig"]["value"].as_str().unwrap().to_owned();
        for (member, replacement) in [
            ("alg", json!("EdDSA")),
            ("value", json!(format!("{value}=="))),
            ("value", json!(format!("{}+", &value[..85]))),
            ("value", json!(&value[..80])),
            ("value", json!(null)),
        ] {
            let mut bad = signed.clone();
            bad["sig"][member] = replacement.clone();
            assert_eq!(
                verify_object(&bad).unwrap_err().code(),
                ErrorCode::SignatureInvalid,
                "{member}: {replacement}"
            );
        }
        let mut not_object = signed.clone();
        not_object.insert("sig".to_owned(), json!(value));
        assert!(matches!(
            verify_object(&not_object),
            Err(ProtocolError::MalformedSignature { .. })
        ));
    }
}
