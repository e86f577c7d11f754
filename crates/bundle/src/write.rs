//! Writing a bundle: files are added as they are read from the store (streamed through zstd),
//! each hashed; the manifest, which names every hash, is signed and added last.

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use syncropel_protocol::Keypair;

use crate::manifest::{bundle_sha256, hex};
use crate::{safe_path, BundleError, Manifest, Result, BUNDLE_VERSION, MANIFEST, MANIFEST_SIG};

/// zstd's level: fast, and well ahead of gzip on JSON.
const LEVEL: i32 = 1;

pub struct BundleWriter<W: Write> {
    tar: tar::Builder<zstd::Encoder<'static, W>>,
    /// sha256 hex of every file added, by path.
    files: BTreeMap<String, String>,
}

/// A bundle written to memory and handed out as it grows (a file or an HTTP body streams it).
impl BundleWriter<Vec<u8>> {
    /// The compressed bytes written since the last call.
    pub fn take_written(&mut self) -> Vec<u8> {
        std::mem::take(self.tar.get_mut().get_mut())
    }
}

impl<W: Write> BundleWriter<W> {
    pub fn new(out: W) -> Result<BundleWriter<W>> {
        let encoder = zstd::Encoder::new(out, LEVEL)?;
        Ok(BundleWriter {
            tar: tar::Builder::new(encoder),
            files: BTreeMap::new(),
        })
    }

    /// Adds the file `path` (relative, under one of the bundle's directories).
    pub fn add(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        if !safe_path(path) || path == MANIFEST || path == MANIFEST_SIG {
            return Err(BundleError::UnsafePath(path.to_string()));
        }
        if self.files.contains_key(path) {
            return Err(BundleError::Malformed(format!("`{path}` added twice")));
        }
        self.append(path, bytes)?;
        self.files
            .insert(path.to_string(), hex(&Sha256::digest(bytes)));
        Ok(())
    }

    /// Files added so far.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Names every file's hash in `manifest`, signs its exact bytes with `key` and ends the
    /// archive; the output it was writing to, and the manifest as written.
    pub fn finish(mut self, mut manifest: Manifest, key: &Keypair) -> Result<(W, Manifest)> {
        manifest.bundle_version = BUNDLE_VERSION;
        manifest.bundle_sha256 = bundle_sha256(self.files.iter());
        let bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| BundleError::Malformed(format!("manifest: {e}")))?;
        let sig = base64::engine::general_purpose::STANDARD.encode(key.sign(&bytes));
        self.append(MANIFEST, &bytes)?;
        self.append(MANIFEST_SIG, sig.as_bytes())?;
        let encoder = self.tar.into_inner()?;
        Ok((encoder.finish()?, manifest))
    }

    /// One regular file, its header fixed (no times, owners or modes of this machine), so that
    /// the same input gives the same bytes.
    fn append(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        self.tar.append_data(&mut header, path, bytes)?;
        Ok(())
    }
}
