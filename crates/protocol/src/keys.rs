//! Ed25519 keys, signatures and `did:key` identifiers (protocol.md §8.2–8.4).

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::error::ProtocolError;

/// `did:key` method prefix including the base58btc multibase marker `z`.
const DID_KEY_PREFIX: &str = "did:key:z";
/// Unsigned-varint multicodec for `ed25519-pub`.
const ED25519_MULTICODEC: [u8; 2] = [0xed, 0x01];
/// base58 of 34 bytes is at most 47 characters; anything longer is refused
/// before decoding (base58 decoding is quadratic in the input length).
const MAX_DID_KEY_BASE58_LEN: usize = 48;

/// An Ed25519 signing key (custodial or instance key).
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Keypair {
        Keypair {
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// The key for a 32-byte RFC 8032 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Keypair {
        Keypair {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The 32-byte seed, for persisting the key.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// This key as `did:key:z6Mk…`.
    pub fn did_key(&self) -> String {
        did_key_from_public(&self.public_key())
    }

    /// Pure Ed25519 (no prehash) signature.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    /// [`Keypair::sign`] as 128 lower-case hex characters.
    pub fn sign_hex(&self, msg: &[u8]) -> String {
        hex::encode(self.sign(msg))
    }
}

/// Never prints the secret; the DID identifies the key well enough.
impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keypair")
            .field("did", &self.did_key())
            .finish_non_exhaustive()
    }
}

/// `did:key:z` + base58btc(0xED 0x01 ‖ public key).
pub fn did_key_from_public(pk: &[u8; 32]) -> String {
    let mut prefixed = [0u8; 34];
    prefixed[..2].copy_from_slice(&ED25519_MULTICODEC);
    prefixed[2..].copy_from_slice(pk);
    format!("{DID_KEY_PREFIX}{}", bs58::encode(prefixed).into_string())
}

/// Decodes an Ed25519 `did:key` (bare DID, no `#fragment`) to its public key,
/// refusing bytes that are not a valid curve point.
pub fn public_key_from_did_key(did: &str) -> Result<[u8; 32], ProtocolError> {
    let invalid = |reason| ProtocolError::InvalidDidKey {
        did: did.chars().take(80).collect(),
        reason,
    };
    let encoded = did
        .strip_prefix(DID_KEY_PREFIX)
        .ok_or_else(|| invalid("must start with did:key:z"))?;
    if encoded.len() > MAX_DID_KEY_BASE58_LEN {
        return Err(invalid("too long for an Ed25519 key"));
    }
    let bytes = bs58::decode(encoded)
        .into_vec()
        .map_err(|_| invalid("not base58btc"))?;
    let key = bytes
        .strip_prefix(&ED25519_MULTICODEC)
        .ok_or_else(|| invalid("not an ed25519-pub multicodec key"))?;
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| invalid("an Ed25519 public key is 32 bytes"))?;
    VerifyingKey::from_bytes(&key).map_err(|_| invalid("not a valid Ed25519 public key"))?;
    Ok(key)
}

/// Verifies `sig` (128 hex characters, or standard base64) over `msg` for the
/// key named by `did_key`. Uses strict verification, which also refuses weak
/// keys and malleable signatures, so one message has one valid signature.
pub fn verify_signature(did_key: &str, msg: &[u8], sig: &str) -> Result<(), ProtocolError> {
    let key = VerifyingKey::from_bytes(&public_key_from_did_key(did_key)?).map_err(|_| {
        ProtocolError::InvalidDidKey {
            did: did_key.to_owned(),
            reason: "not a valid Ed25519 public key",
        }
    })?;
    let signature = Signature::from_bytes(&decode_signature(sig)?);
    key.verify_strict(msg, &signature)
        .map_err(|_| ProtocolError::SignatureMismatch {
            did: did_key.to_owned(),
        })
}

pub(crate) fn decode_signature(sig: &str) -> Result<[u8; 64], ProtocolError> {
    let bytes = if sig.len() == 128 && sig.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(sig).map_err(|_| ProtocolError::MalformedSignature {
            reason: "invalid hex",
        })?
    } else if sig.len() <= 88 {
        base64::engine::general_purpose::STANDARD
            .decode(sig)
            .map_err(|_| ProtocolError::MalformedSignature {
                reason: "neither 128 hex characters nor standard base64",
            })?
    } else {
        return Err(ProtocolError::MalformedSignature {
            reason: "too long for an Ed25519 signature",
        });
    };
    bytes
        .try_into()
        .map_err(|_| ProtocolError::MalformedSignature {
            reason: "an Ed25519 signature is 64 bytes",
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn generated_keys_round_trip() {
        let k = Keypair::generate();
        let again = Keypair::from_seed(&k.seed());
        assert_eq!(again.public_key(), k.public_key());
        let did = k.did_key();
        assert!(did.starts_with("did:key:z6Mk"), "{did}");
        assert_eq!(public_key_from_did_key(&did).unwrap(), k.public_key());
        let sig = k.sign_hex(b"hello");
        assert_eq!(sig.len(), 128);
        assert!(verify_signature(&did, b"hello", &sig).is_ok());
        let err = verify_signature(&did, b"hellO", &sig).unwrap_err();
        assert_eq!(err.code(), ErrorCode::SignatureInvalid);
        assert!(!format!("{k:?}").contains(&hex::encode(k.seed())));
    }

    #[test]
    fn refuses_bad_dids_and_signatures() {
        let k = Keypair::from_seed(&[7; 32]);
        let did = k.did_key();
        for bad in [
            "",
            "did:key:",
            "did:key:z",
            "did:web:example.com",
            "did:key:z0OIl",
            &format!("{did}#key-1"),
            &format!("{did}{}", "1".repeat(60)),
        ] {
            assert_eq!(
                public_key_from_did_key(bad).unwrap_err().code(),
                ErrorCode::ValidationError,
                "{bad:?}"
            );
        }
        // A secp256k1 multicodec (0xe7 0x01) is not ours.
        let mut other = vec![0xe7, 0x01];
        other.extend_from_slice(&k.public_key());
        let other = format!("did:key:z{}", bs58::encode(other).into_string());
        assert!(public_key_from_did_key(&other).is_err());
        for sig in ["", "zz", &"0".repeat(128), &"a".repeat(300), "AAAA"] {
            assert_eq!(
                verify_signature(&did, b"m", sig).unwrap_err().code(),
                ErrorCode::SignatureInvalid,
                "{sig:?}"
            );
        }
    }
}
