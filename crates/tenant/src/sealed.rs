//! Values sealed at rest in a tenant's store (the bearers peers issued to it, its secret values):
//! XChaCha20-Poly1305 under a key derived from the tenant's identity key for one use, the value's
//! name as associated data (a sealed value cannot be moved to another name), stored as
//! `<nonce hex>.<ciphertext hex>`. In hosted mode the identity key is itself sealed under the
//! platform's key-encryption key, so a database dump alone opens nothing.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use syncropel_protocol::Keypair;
use syncropel_store::{RecordStore, StateChange};

use crate::TenantError;

/// One use's key.
pub struct SealingKey(XChaCha20Poly1305);

/// Why a sealed text did not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsealed {
    Malformed,
    WrongKey,
    NotText,
}

impl SealingKey {
    /// The key of `identity` for the use `label` names (SHA-256 of the label, then the seed):
    /// uses never share a key.
    pub fn derive(label: &[u8], identity: &Keypair) -> SealingKey {
        let mut hasher = Sha256::new();
        hasher.update(label);
        hasher.update(identity.seed());
        SealingKey(XChaCha20Poly1305::new(&hasher.finalize()))
    }

    pub fn seal(&self, name: &str, plaintext: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut nonce);
        #[allow(clippy::expect_used)] // Fails only past the cipher's limit (~256 GiB).
        let sealed = self
            .0
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .expect("sealing in memory cannot fail");
        format!("{}.{}", hex::encode(nonce), hex::encode(sealed))
    }

    pub fn open(&self, name: &str, text: &str) -> Result<String, Unsealed> {
        let (nonce, sealed) = text
            .split_once('.')
            .and_then(|(n, s)| Some((hex::decode(n).ok()?, hex::decode(s).ok()?)))
            .filter(|(n, _)| n.len() == 24)
            .ok_or(Unsealed::Malformed)?;
        let plain = self
            .0
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| Unsealed::WrongKey)?;
        String::from_utf8(plain).map_err(|_| Unsealed::NotText)
    }
}

/// Seals again, under `current`, every value of the state documents of `kind` that opens only
/// under a `retired` key (after `spl identity rotate`), in one transaction. The key of each use
/// is [`SealingKey::derive`] of `label`; a value's name is its document's key. Answers how many
/// it sealed again; a value no key opens is left as it is.
pub async fn reseal(
    store: &dyn RecordStore,
    tenant: &str,
    kind: &str,
    label: &[u8],
    current: &Keypair,
    retired: &[Keypair],
) -> Result<usize, TenantError> {
    if retired.is_empty() {
        return Ok(0);
    }
    let now = SealingKey::derive(label, current);
    let before: Vec<SealingKey> = retired
        .iter()
        .map(|key| SealingKey::derive(label, key))
        .collect();
    let mut changes = Vec::new();
    for (name, text) in store.state_list(tenant, kind).await? {
        if now.open(&name, &text).is_ok() {
            continue;
        }
        if let Some(plain) = before.iter().find_map(|key| key.open(&name, &text).ok()) {
            changes.push(StateChange::put(kind, &name, now.seal(&name, &plain)));
        }
    }
    let resealed = changes.len();
    if resealed > 0 {
        for written in store.write(tenant, Vec::new(), changes).await? {
            written?;
        }
    }
    Ok(resealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_under_its_key_and_name_only() {
        let identity = Keypair::generate();
        let key = SealingKey::derive(b"a use\n", &identity);
        let text = key.seal("handle", "value");
        assert_eq!(key.open("handle", &text), Ok("value".to_string()));
        assert_eq!(key.open("other", &text), Err(Unsealed::WrongKey));
        let other_use = SealingKey::derive(b"another use\n", &identity);
        assert_eq!(other_use.open("handle", &text), Err(Unsealed::WrongKey));
        assert_eq!(key.open("handle", "zz.00"), Err(Unsealed::Malformed));
    }
}
