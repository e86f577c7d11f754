//! The identity seed under the user's passphrase (federation-protocol.md §8.3,
//! `identity/private_key.enc`): Argon2id derives the key, XChaCha20-Poly1305 seals the seed, and
//! a wrong passphrase fails its tag, so nothing is ever derived from a guess.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::{BundleError, Result};

/// Argon2id cost (OWASP's recommended floor): 19 MiB, two passes, one lane.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;
/// Costs a bundle may ask for, at most: a hostile bundle must not make its reader spend
/// gigabytes.
const MAX_MEMORY_KIB: u32 = 1 << 20;
const MAX_PASSES: u32 = 10;
const MAX_LANES: u32 = 8;
/// Binds the ciphertext to its use.
const AAD: &[u8] = b"spl-bundle-identity-1";

#[derive(Serialize, Deserialize)]
struct Sealed {
    kdf: String,
    memory_kib: u32,
    passes: u32,
    lanes: u32,
    salt: String,
    nonce: String,
    ciphertext: String,
}

/// Seals a 32-byte identity seed under `passphrase`.
pub fn seal_seed(seed: &[u8; 32], passphrase: &str) -> Result<Vec<u8>> {
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut salt);
    rand::thread_rng().fill_bytes(&mut nonce);
    let key = derive(passphrase, &salt, (MEMORY_KIB, PASSES, LANES))?;
    let cipher = XChaCha20Poly1305::new((&key).into());
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: seed,
                aad: AAD,
            },
        )
        .map_err(|_| BundleError::Malformed("sealing the identity failed".into()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let sealed = Sealed {
        kdf: "argon2id".into(),
        memory_kib: MEMORY_KIB,
        passes: PASSES,
        lanes: LANES,
        salt: b64.encode(salt),
        nonce: b64.encode(nonce),
        ciphertext: b64.encode(ciphertext),
    };
    serde_json::to_vec(&sealed).map_err(|e| BundleError::Malformed(e.to_string()))
}

/// Opens a sealed seed with `passphrase`.
pub fn open_seed(sealed: &[u8], passphrase: &str) -> Result<[u8; 32]> {
    let bad = |why: &str| BundleError::Malformed(format!("identity/private_key.enc: {why}"));
    let sealed: Sealed = serde_json::from_slice(sealed).map_err(|e| bad(&e.to_string()))?;
    if sealed.kdf != "argon2id" {
        return Err(bad("its key derivation is not argon2id"));
    }
    if sealed.memory_kib > MAX_MEMORY_KIB || sealed.passes > MAX_PASSES || sealed.lanes > MAX_LANES
    {
        return Err(bad("its key derivation costs more than this reader spends"));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let decode = |text: &str| b64.decode(text).map_err(|e| bad(&e.to_string()));
    let (salt, nonce) = (decode(&sealed.salt)?, decode(&sealed.nonce)?);
    if nonce.len() != 24 {
        return Err(bad("its nonce is not 24 bytes"));
    }
    let key = derive(
        passphrase,
        &salt,
        (sealed.memory_kib, sealed.passes, sealed.lanes),
    )?;
    let cipher = XChaCha20Poly1305::new((&key).into());
    let seed = cipher
        .decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &decode(&sealed.ciphertext)?,
                aad: AAD,
            },
        )
        .map_err(|_| BundleError::WrongPassphrase)?;
    seed.try_into()
        .map_err(|_| bad("the sealed identity is not a 32-byte seed"))
}

fn derive(
    passphrase: &str,
    salt: &[u8],
    (memory, passes, lanes): (u32, u32, u32),
) -> Result<[u8; 32]> {
    let params = Params::new(memory, passes, lanes, Some(32))
        .map_err(|e| BundleError::Malformed(format!("argon2id parameters: {e}")))?;
    let mut key = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|e| BundleError::Malformed(format!("argon2id: {e}")))?;
    Ok(key)
}
