//! Writing a bundle: files are added as they are read from the store (streamed through zstd),
//! each hashed; the manifest, which names every hash, is signed and added last.

use std::io::Write;

use base64::Engine as _;
use syncropel_protocol::Keypair;

use crate::manifest::BundleHash;
use crate::{safe_path, BundleError, Manifest, Result, BUNDLE_VERSION, MANIFEST, MANIFEST_SIG};

/// zstd's level: fast, and well ahead of gzip on JSON.
const LEVEL: i32 = 1;

pub struct BundleWriter<W: Write> {
    tar: tar::Builder<zstd::Encoder<'static, W>>,
    /// The bundle hash of the files added so far.
    hash: BundleHash,
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
            hash: BundleHash::new(),
        })
    }

    /// Adds the file `path` (relative, under one of the bundle's directories).
    pub fn add(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        if !safe_path(path) || path == MANIFEST || path == MANIFEST_SIG {
            return Err(BundleError::UnsafePath(path.to_string()));
        }
        if !self.hash.add(path, bytes) {
            return Err(BundleError::Malformed(format!("`{path}` added twice")));
        }
        self.append(path, bytes)
    }

    /// Files added so far.
    pub fn len(&self) -> u64 {
        self.hash.files()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Names every file's hash in `manifest`, signs its exact bytes with `key` and ends the
    /// archive; the output it was writing to, and the manifest as written.
    pub fn finish(mut self, mut manifest: Manifest, key: &Keypair) -> Result<(W, Manifest)> {
        manifest.bundle_version = BUNDLE_VERSION;
        let hash = std::mem::replace(&mut self.hash, BundleHash::new());
        manifest.bundle_sha256 = hash.finish();
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
