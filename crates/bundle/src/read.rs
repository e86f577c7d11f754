//! Reading a bundle without trusting it: entries are streamed through bounds (each entry, the
//! whole unpacked size, the number of entries), every path is checked before it is used, and
//! [`verify`] checks every file's hash and the manifest's signature before [`entries`] is asked
//! to hand anything over for use.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;
use syncropel_protocol::did_doc::parse_document;
use syncropel_protocol::verify_signature;

use crate::manifest::BundleHash;
use crate::{
    safe_path, BundleError, Manifest, Result, BUNDLE_VERSION, DID_DOCUMENT, DID_OPERATIONS,
    MANIFEST, MANIFEST_SIG, PRIVATE_KEY,
};

/// Bounds of what a bundle may unpack to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// One entry (a record, a blob).
    pub max_entry: u64,
    /// Everything unpacked: past it the bundle is refused as a decompression bomb.
    pub max_total: u64,
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_entry: 64 << 20,
            max_total: 64 << 30,
            max_entries: 50_000_000,
        }
    }
}

/// A bundle whose every hash and signature held.
#[derive(Clone, Debug)]
pub struct Verified {
    pub manifest: Manifest,
    pub did_document: Value,
    /// The did:key that signed the manifest: a current key of the source's DID document.
    pub signer: String,
    /// `identity/private_key.enc`, when the identity was included.
    pub sealed_key: Option<Vec<u8>>,
    /// `directory/ops.jsonl`, when the source's DID is a did:sync whose log it had.
    pub did_operations: Option<Vec<u8>>,
    /// Files other than the manifest and its signature.
    pub files: u64,
}

/// Checks a whole bundle: its entries, every file against the manifest's hash, and the
/// manifest's signature against the DID document it carries, for the DID it names.
pub fn verify<R: Read>(input: R, limits: &Limits) -> Result<Verified> {
    let mut hash = BundleHash::new();
    let (mut manifest, mut sig, mut document, mut sealed_key) = (None, None, None, None);
    let mut did_operations = None;
    entries(input, limits, |path, bytes| {
        match path {
            MANIFEST => manifest = Some(bytes.to_vec()),
            MANIFEST_SIG => sig = Some(bytes.to_vec()),
            _ => {
                if path == DID_DOCUMENT {
                    document = Some(bytes.to_vec());
                }
                if path == PRIVATE_KEY {
                    sealed_key = Some(bytes.to_vec());
                }
                if path == DID_OPERATIONS {
                    did_operations = Some(bytes.to_vec());
                }
                if !hash.add(path, bytes) {
                    return Err(BundleError::Malformed(format!("`{path}` is in it twice")));
                }
            }
        }
        Ok(())
    })?;
    let missing = |what: &str| BundleError::Malformed(format!("no {what}"));
    let manifest_bytes = manifest.ok_or_else(|| missing(MANIFEST))?;
    let sig = sig.ok_or_else(|| missing(MANIFEST_SIG))?;
    let document = document.ok_or_else(|| missing(DID_DOCUMENT))?;
    let parsed: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| BundleError::Malformed(format!("{MANIFEST}: {e}")))?;
    if parsed.bundle_version != BUNDLE_VERSION {
        return Err(BundleError::Malformed(format!(
            "bundle version {} (this build reads {BUNDLE_VERSION})",
            parsed.bundle_version
        )));
    }
    let did_document: Value = serde_json::from_slice(&document)
        .map_err(|e| BundleError::Malformed(format!("{DID_DOCUMENT}: {e}")))?;
    let keys = parse_document(&parsed.source_did, &did_document)
        .map_err(|e| BundleError::Signature(format!("{DID_DOCUMENT}: {e}")))?
        .keys;
    let sig = std::str::from_utf8(&sig)
        .map_err(|_| BundleError::Signature("manifest.sig is not text".into()))?
        .trim();
    let signer = keys
        .iter()
        .filter(|key| key.current)
        .find(|key| verify_signature(&key.did_key, &manifest_bytes, sig).is_ok())
        .map(|key| key.did_key.clone())
        .ok_or_else(|| {
            BundleError::Signature(format!(
                "the manifest is not signed by a current key of {}",
                parsed.source_did
            ))
        })?;
    let files = hash.files();
    let hashed = hash.finish();
    if hashed != parsed.bundle_sha256 {
        return Err(BundleError::Altered(format!(
            "its files hash to {hashed}, the manifest names {}",
            parsed.bundle_sha256
        )));
    }
    Ok(Verified {
        manifest: parsed,
        did_document,
        signer,
        sealed_key,
        did_operations,
        files,
    })
}

/// Hands every entry to `each` in archive order, once checked: a regular file, a safe path,
/// within the bounds.
pub fn entries<R: Read>(
    input: R,
    limits: &Limits,
    mut each: impl FnMut(&str, &[u8]) -> Result<()>,
) -> Result<()> {
    let exceeded = Arc::new(AtomicBool::new(false));
    let decoder = zstd::Decoder::new(input)?;
    let capped = Capped {
        inner: decoder,
        left: limits.max_total,
        exceeded: exceeded.clone(),
    };
    let too_large = || {
        BundleError::TooLarge(format!(
            "the bundle unpacks to more than {} bytes",
            limits.max_total
        ))
    };
    let broken = |e: io::Error| match exceeded.load(Ordering::Relaxed) {
        true => too_large(),
        false => BundleError::Malformed(e.to_string()),
    };
    let mut archive = tar::Archive::new(capped);
    let mut count = 0;
    for entry in archive.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        count += 1;
        if count > limits.max_entries {
            return Err(BundleError::TooLarge(format!(
                "more than {} entries",
                limits.max_entries
            )));
        }
        let path = entry
            .path()
            .map_err(broken)?
            .to_str()
            .map(str::to_string)
            .ok_or_else(|| BundleError::UnsafePath("(not UTF-8)".into()))?;
        if !entry.header().entry_type().is_file() || !safe_path(&path) {
            return Err(BundleError::UnsafePath(path));
        }
        let size = entry.header().size().map_err(broken)?;
        if size > limits.max_entry {
            return Err(BundleError::TooLarge(format!(
                "`{path}` holds {size} bytes; an entry holds at most {}",
                limits.max_entry
            )));
        }
        // Grown as it is read: the header's size is the sender's word.
        let mut bytes = Vec::with_capacity(size.min(1 << 20) as usize);
        entry.read_to_end(&mut bytes).map_err(broken)?;
        each(&path, &bytes)?;
    }
    Ok(())
}

/// A reader that fails once more than `left` bytes came through it.
struct Capped<R> {
    inner: R,
    left: u64,
    exceeded: Arc<AtomicBool>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.left.checked_sub(n as u64) {
            Some(left) => {
                self.left = left;
                Ok(n)
            }
            None => {
                self.exceeded.store(true, Ordering::Relaxed);
                Err(io::Error::other("the bundle unpacks past its bound"))
            }
        }
    }
}
