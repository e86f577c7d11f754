//! `Authorization: DIDSig …` (federation-protocol.md §7.3): a request signed with the caller's
//! steward identity key, for services that keep no accounts or tokens (the relay). The header is
//!
//! ```text
//! DIDSig did="<did>", key="<key id>", ts="<unix ms>", nonce="<32 hex>", sig="<base64url>"
//! ```
//!
//! and `sig` is Ed25519 over `spl-relay-1\n<METHOD>\n<host><path and query>\n<ts>\n<nonce>\n<sha256
//! hex of the body bytes>`. This module writes and reads the header and checks the signature
//! against a did:key; which keys may sign for the DID, freshness and nonce reuse are the
//! verifier's (they need a resolver, a clock and shared state).

use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};

use crate::{public_key_from_did_key, sha256_hex, Keypair, ProtocolError};

/// The authorization scheme.
pub const SCHEME: &str = "DIDSig";
/// What the signed text starts with, so that a signature made for this can serve nothing else.
const CONTEXT: &str = "spl-relay-1";
/// Longest header accepted: a long did:web or did:sync and its key id fit well within it.
const MAX_HEADER: usize = 2048;

/// A parsed `DIDSig` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DidSig {
    pub did: String,
    /// The key id the caller says it signed with (`<did>#…`); informational: the verifier tries
    /// the DID's current keys.
    pub key: String,
    pub ts_ms: i64,
    /// 32 lowercase hex characters, unique per request.
    pub nonce: String,
    sig: [u8; 64],
}

/// What a request is, as far as its signature covers it.
#[derive(Clone, Copy, Debug)]
pub struct Signed<'a> {
    pub method: &'a str,
    /// The `Host` the request was sent to, then its path and query (`relay.example/v1/relay/…`).
    pub target: &'a str,
    pub body: &'a [u8],
}

impl Signed<'_> {
    fn text(&self, ts_ms: i64, nonce: &str) -> String {
        format!(
            "{CONTEXT}\n{}\n{}\n{ts_ms}\n{nonce}\n{}",
            self.method.to_ascii_uppercase(),
            self.target,
            sha256_hex(self.body)
        )
    }
}

/// The header value for `request`, signed by `key` for `did` (whose document names `key_id`).
pub fn sign(
    key: &Keypair,
    did: &str,
    key_id: &str,
    request: Signed<'_>,
    ts_ms: i64,
    nonce: &str,
) -> String {
    let sig = key.sign(request.text(ts_ms, nonce).as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
    format!(r#"{SCHEME} did="{did}", key="{key_id}", ts="{ts_ms}", nonce="{nonce}", sig="{sig}""#)
}

/// A fresh nonce: 16 random bytes as hex.
pub fn nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

impl DidSig {
    /// Reads a header value; every parameter exactly once, nothing else.
    pub fn parse(header: &str) -> Result<DidSig, ProtocolError> {
        let malformed = |reason: &'static str| ProtocolError::MalformedAuthorization { reason };
        if header.len() > MAX_HEADER {
            return Err(malformed("too long"));
        }
        let params = header
            .strip_prefix(SCHEME)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or(malformed("not a DIDSig header"))?;
        let (mut did, mut key, mut ts, mut nonce, mut sig) = (None, None, None, None, None);
        for param in params.split(',') {
            let (name, value) = param
                .trim()
                .split_once('=')
                .ok_or(malformed("a parameter is not name=\"value\""))?;
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .filter(|v| !v.contains('"'))
                .ok_or(malformed("a value is not quoted"))?;
            let slot = match name {
                "did" => &mut did,
                "key" => &mut key,
                "ts" => &mut ts,
                "nonce" => &mut nonce,
                "sig" => &mut sig,
                _ => return Err(malformed("an unknown parameter")),
            };
            if slot.replace(value).is_some() {
                return Err(malformed("a parameter appears twice"));
            }
        }
        let (Some(did), Some(key), Some(ts), Some(nonce), Some(sig)) = (did, key, ts, nonce, sig)
        else {
            return Err(malformed("did, key, ts, nonce and sig are all required"));
        };
        if !did.starts_with("did:") || !key.starts_with(did) {
            return Err(malformed("key must be a key id of did"));
        }
        let ts_ms = ts
            .parse::<i64>()
            .ok()
            .filter(|ts| *ts > 0)
            .ok_or(malformed("ts is not unix milliseconds"))?;
        if nonce.len() != 32
            || !nonce
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(malformed("nonce is not 32 lowercase hex characters"));
        }
        let sig: [u8; 64] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(malformed("sig is not an Ed25519 signature in base64url"))?;
        Ok(DidSig {
            did: did.to_string(),
            key: key.to_string(),
            ts_ms,
            nonce: nonce.to_string(),
            sig,
        })
    }

    /// Checks the signature over `request` against `signer`, a did:key (one of the keys the
    /// DID's document names, or the DID itself for a did:key). Strict: one message, one
    /// signature.
    pub fn verify(&self, signer: &str, request: Signed<'_>) -> Result<(), ProtocolError> {
        let key = VerifyingKey::from_bytes(&public_key_from_did_key(signer)?).map_err(|_| {
            ProtocolError::InvalidDidKey {
                did: signer.to_owned(),
                reason: "not a valid Ed25519 public key",
            }
        })?;
        key.verify_strict(
            request.text(self.ts_ms, &self.nonce).as_bytes(),
            &Signature::from_bytes(&self.sig),
        )
        .map_err(|_| ProtocolError::SignatureMismatch {
            did: signer.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "0123456789abcdef0123456789abcdef";

    fn request(body: &[u8]) -> Signed<'_> {
        Signed {
            method: "POST",
            target: "relay.example/v1/relay/queues/rq_1/deposit",
            body,
        }
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_to_it_does_not() {
        let key = Keypair::generate();
        let did = key.did_key();
        let header = sign(
            &key,
            &did,
            &format!("{did}#key-1"),
            request(b"{}"),
            1_700_000_000_000,
            NONCE,
        );
        let parsed = DidSig::parse(&header).unwrap();
        assert_eq!(parsed.did, did);
        assert_eq!(parsed.ts_ms, 1_700_000_000_000);
        parsed.verify(&did, request(b"{}")).unwrap();

        let other = Keypair::generate().did_key();
        assert!(
            parsed.verify(&other, request(b"{}")).is_err(),
            "another key"
        );
        assert!(
            parsed.verify(&did, request(b"{ }")).is_err(),
            "another body"
        );
        let elsewhere = Signed {
            target: "relay.example/v1/relay/queues/rq_2/deposit",
            ..request(b"{}")
        };
        assert!(parsed.verify(&did, elsewhere).is_err(), "another queue");
        let deleted = Signed {
            method: "DELETE",
            ..request(b"{}")
        };
        assert!(parsed.verify(&did, deleted).is_err(), "another method");
        for tampered in [
            header.replace("1700000000000", "1700000000001"),
            header.replace(NONCE, "fedcba9876543210fedcba9876543210"),
        ] {
            let tampered = DidSig::parse(&tampered).unwrap();
            assert!(
                tampered.verify(&did, request(b"{}")).is_err(),
                "{tampered:?}"
            );
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        let key = Keypair::generate();
        let did = key.did_key();
        let good = sign(&key, &did, &format!("{did}#key-1"), request(b""), 1, NONCE);
        assert!(DidSig::parse(&good).is_ok());
        let long = format!("{good}{}", " ".repeat(MAX_HEADER));
        let cases = [
            good.replacen("DIDSig", "Bearer", 1),
            good.replace("ts=\"1\"", "ts=\"-1\""),
            good.replace("ts=\"1\"", "ts=\"soon\""),
            good.replace(NONCE, "0123"),
            good.replace(NONCE, &NONCE.to_uppercase()),
            good.replace(", sig=", ", sig=\"x\", sig="),
            good.replace("nonce=", "extra=\"1\", nonce="),
            good.replace(&format!("key=\"{did}"), "key=\"did:key:zOther"),
            good.replace("did=\"", "did=\"x"),
            format!("{SCHEME} did=\"{did}\""),
            long,
        ];
        for header in cases {
            assert!(
                matches!(
                    DidSig::parse(&header),
                    Err(ProtocolError::MalformedAuthorization { .. })
                ),
                "{header}"
            );
        }
    }
}
