//! Tenant keys at rest: each tenant's Ed25519 seed is sealed with the platform's key-encryption
//! key (XChaCha20-Poly1305, a random 24-byte nonce per seal, the tenant id as associated data so a
//! sealed key cannot be moved to another tenant's row).
//!
//! Rotation: replicas run with the new key and the previous one ([`Kek::with_previous`]), which
//! still opens what it sealed; `steward rotate-kek` then re-seals every tenant with the new key,
//! after which the previous key can go.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::StewardError;

pub struct Kek {
    current: XChaCha20Poly1305,
    /// Opens keys sealed before a rotation; never seals.
    previous: Option<XChaCha20Poly1305>,
    /// The seed of the platform's own signing key, derived from the current key: every replica
    /// signs the platform's records with the same key.
    platform_seed: [u8; 32],
}

/// A sealed seed: `(nonce, ciphertext)`.
pub type Sealed = (Vec<u8>, Vec<u8>);

impl Kek {
    /// The key from its configured text: 32 bytes as base64 (standard or URL-safe) or 64 hex digits.
    pub fn parse(text: &str) -> Result<Kek, StewardError> {
        let text = text.trim();
        let bytes = hex::decode(text)
            .ok()
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
            .or_else(|| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(text)
                    .ok()
            })
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                StewardError::Invalid(
                    "the key-encryption key must be 32 bytes, as base64 or 64 hex digits \
                     (make one with `openssl rand -base64 32`)"
                        .into(),
                )
            })?;
        let current = XChaCha20Poly1305::new_from_slice(&bytes)
            .map_err(|_| StewardError::Invalid("the key-encryption key must be 32 bytes".into()))?;
        let mut derived = Sha256::new();
        derived.update(b"syncropel platform signing key v1\n");
        derived.update(&bytes);
        Ok(Kek {
            current,
            previous: None,
            platform_seed: derived.finalize().into(),
        })
    }

    /// Also opens keys sealed with `previous` (during a rotation).
    pub fn with_previous(mut self, previous: Kek) -> Kek {
        self.previous = Some(previous.current);
        self
    }

    /// The platform's signing key (its audit records), derived from the current key: a KEK
    /// rotation gives it a new key, and records signed before still verify by their signer.
    pub fn platform_key(&self) -> syncropel_protocol::Keypair {
        syncropel_protocol::Keypair::from_seed(&self.platform_seed)
    }

    pub fn seal(&self, tenant: &str, seed: &[u8; 32]) -> Sealed {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption fails only past the cipher's message limit (~256 GiB), never for a seed.
        #[allow(clippy::expect_used)]
        let sealed = self
            .current
            .encrypt(
                &nonce,
                Payload {
                    msg: seed,
                    aad: tenant.as_bytes(),
                },
            )
            .expect("sealing 32 bytes cannot fail");
        (nonce.to_vec(), sealed)
    }

    /// The seed, or an error when neither key sealed it (or the row was tampered with).
    pub fn open(
        &self,
        tenant: &str,
        nonce: &[u8],
        sealed: &[u8],
    ) -> Result<[u8; 32], StewardError> {
        open_with(&self.current, tenant, nonce, sealed)
            .or_else(|| {
                let previous = self.previous.as_ref()?;
                open_with(previous, tenant, nonce, sealed)
            })
            .ok_or_else(|| {
                StewardError::Invalid(format!(
                    "the key of tenant {tenant} does not open with the configured key-encryption key"
                ))
            })
    }

    /// Whether the current key (not the previous one) sealed this.
    pub fn sealed_by_current(&self, tenant: &str, nonce: &[u8], sealed: &[u8]) -> bool {
        open_with(&self.current, tenant, nonce, sealed).is_some()
    }
}

fn open_with(
    key: &XChaCha20Poly1305,
    tenant: &str,
    nonce: &[u8],
    sealed: &[u8],
) -> Option<[u8; 32]> {
    if nonce.len() != 24 {
        return None;
    }
    let seed = key
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: tenant.as_bytes(),
            },
        )
        .ok()?;
    seed.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_open_only_with_their_kek_and_tenant() {
        let kek = Kek::parse(&"11".repeat(32)).unwrap();
        let seed = [7u8; 32];
        let (nonce, sealed) = kek.seal("tn_a", &seed);
        assert!(!sealed.windows(32).any(|w| w == seed));
        assert_eq!(kek.open("tn_a", &nonce, &sealed).unwrap(), seed);
        assert!(kek.open("tn_b", &nonce, &sealed).is_err());
        let other =
            Kek::parse(&base64::engine::general_purpose::STANDARD.encode([9u8; 32])).unwrap();
        assert!(other.open("tn_a", &nonce, &sealed).is_err());
        assert!(Kek::parse("short").is_err());
    }

    #[test]
    fn during_a_rotation_both_keys_open_and_only_the_new_one_seals() {
        let old = Kek::parse(&"11".repeat(32)).unwrap();
        let (nonce, sealed) = old.seal("tn_a", &[7u8; 32]);
        let rotating = Kek::parse(&"22".repeat(32))
            .unwrap()
            .with_previous(Kek::parse(&"11".repeat(32)).unwrap());
        assert_eq!(rotating.open("tn_a", &nonce, &sealed).unwrap(), [7u8; 32]);
        assert!(!rotating.sealed_by_current("tn_a", &nonce, &sealed));
        let (nonce, resealed) = rotating.seal("tn_a", &[7u8; 32]);
        assert!(rotating.sealed_by_current("tn_a", &nonce, &resealed));
        assert!(old.open("tn_a", &nonce, &resealed).is_err());
    }
}
