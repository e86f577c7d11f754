//! Bundles written and read back, and every way a hostile one is refused before anything of it
//! is used: altered files, an altered or wrongly signed manifest, a truncated file, unsafe
//! paths, oversize entries, a decompression bomb, a wrong passphrase.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::io::Read;

use serde_json::json;
use syncropel_bundle::seal::{open_seed, seal_seed};
use syncropel_bundle::{entries, verify, BundleError, BundleWriter, Limits, Manifest};
use syncropel_protocol::did_doc::did_web_document;
use syncropel_protocol::Keypair;

fn document(key: &Keypair) -> Vec<u8> {
    let did = key.did_key();
    let multibase = did.trim_start_matches("did:key:").to_string();
    let doc = did_web_document(
        &did,
        &[("key-1".into(), multibase)],
        &["key-1".into()],
        None,
        &[],
    );
    serde_json::to_vec(&doc).unwrap()
}

/// A bundle of `key`'s identity and three records, and the files it holds.
fn bundle(key: &Keypair, sealed: &[u8]) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let mut files = vec![
        ("identity/did_document.json".to_string(), document(key)),
        ("identity/private_key.enc".to_string(), sealed.to_vec()),
    ];
    for n in 1..=3 {
        let item = json!({"id": format!("r{n}"), "record": {"thread": "th_a", "clock": n}});
        files.push((
            format!("records/th_a/r{n}.json"),
            item.to_string().into_bytes(),
        ));
    }
    let mut writer = BundleWriter::new(Vec::new()).unwrap();
    for (path, bytes) in &files {
        writer.add(path, bytes).unwrap();
    }
    let manifest = Manifest {
        source_did: key.did_key(),
        record_count: 3,
        identity_included: true,
        tokens: "federation-only".into(),
        ..Manifest::default()
    };
    (writer.finish(manifest, key).unwrap().0, files)
}

/// Every entry of a bundle, as read.
fn unpacked(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    entries(bytes, &Limits::default(), |path, bytes| {
        out.push((path.to_string(), bytes.to_vec()));
        Ok(())
    })
    .unwrap();
    out
}

/// A tar.zst of `files` as given, bypassing the writer's checks (what an attacker sends).
fn raw(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(zstd::Encoder::new(Vec::new(), 3).unwrap());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        let name = &mut header.as_gnu_mut().unwrap().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        tar.append(&header, bytes.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn a_bundle_verifies_reads_back_in_order_and_is_the_same_bytes_each_time() {
    let key = Keypair::generate();
    let sealed = seal_seed(&[7; 32], "correct horse").unwrap();
    let (bytes, files) = bundle(&key, &sealed);
    let verified = verify(bytes.as_slice(), &Limits::default()).unwrap();
    assert_eq!(verified.manifest.source_did, key.did_key());
    assert_eq!(verified.manifest.record_count, 3);
    assert_eq!(verified.manifest.bundle_version, 1);
    assert_eq!(verified.signer, key.did_key());
    assert_eq!(verified.files, 5);
    assert_eq!(verified.sealed_key.as_deref(), Some(sealed.as_slice()));
    let read = unpacked(&bytes);
    assert_eq!(&read[..5], files.as_slice(), "in the order written");
    assert_eq!(read[5].0, "manifest.json");
    assert_eq!(read[6].0, "manifest.sig");
    assert_eq!(
        bundle(&key, &sealed).0,
        bytes,
        "the same input, the same bytes"
    );
    assert_eq!(
        open_seed(verified.sealed_key.as_ref().unwrap(), "correct horse").unwrap(),
        [7; 32]
    );
}

#[test]
fn altered_files_an_altered_or_foreign_signed_manifest_and_a_cut_file_are_refused() {
    let key = Keypair::generate();
    let (bytes, _) = bundle(&key, b"{}");
    let files = unpacked(&bytes);

    let mut altered = files.clone();
    altered[2].1 = br#"{"id":"r1","record":{"thread":"th_a","clock":99}}"#.to_vec();
    let refused = verify(raw(&altered).as_slice(), &Limits::default()).unwrap_err();
    assert!(matches!(refused, BundleError::Altered(_)), "{refused}");

    let mut dropped = files.clone();
    dropped.remove(3);
    let refused = verify(raw(&dropped).as_slice(), &Limits::default()).unwrap_err();
    assert!(matches!(refused, BundleError::Altered(_)), "{refused}");

    let mut manifest = files.clone();
    let at = manifest
        .iter()
        .position(|(p, _)| p == "manifest.json")
        .unwrap();
    let text = String::from_utf8(manifest[at].1.clone()).unwrap();
    manifest[at].1 = text
        .replace("\"record_count\": 3", "\"record_count\": 4")
        .into_bytes();
    let refused = verify(raw(&manifest).as_slice(), &Limits::default()).unwrap_err();
    assert!(matches!(refused, BundleError::Signature(_)), "{refused}");

    // Signed by another key than the document's.
    let stranger = Keypair::generate();
    let mut resigned = files.clone();
    let sig = resigned
        .iter()
        .position(|(p, _)| p == "manifest.sig")
        .unwrap();
    let signature = stranger.sign(&resigned[at].1);
    resigned[sig].1 = base64_encode(&signature).into_bytes();
    let refused = verify(raw(&resigned).as_slice(), &Limits::default()).unwrap_err();
    assert!(matches!(refused, BundleError::Signature(_)), "{refused}");

    for cut in [bytes.len() / 2, bytes.len() - 3, 10] {
        let refused = verify(&bytes[..cut], &Limits::default()).unwrap_err();
        assert!(
            matches!(refused, BundleError::Malformed(_) | BundleError::Io(_)),
            "{refused}"
        );
    }
    let refused = verify(&b"not a bundle"[..], &Limits::default()).unwrap_err();
    assert!(
        matches!(refused, BundleError::Malformed(_) | BundleError::Io(_)),
        "{refused}"
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn unsafe_paths_oversize_entries_and_a_decompression_bomb_are_refused() {
    for path in [
        "../evil",
        "records/../../evil",
        "/etc/passwd",
        "elsewhere/x",
        "records//x",
    ] {
        let bundle = raw(&[(path.to_string(), b"x".to_vec())]);
        let refused = verify(bundle.as_slice(), &Limits::default()).unwrap_err();
        assert!(
            matches!(refused, BundleError::UnsafePath(_)),
            "{path}: {refused}"
        );
    }
    let mut writer = BundleWriter::new(Vec::new()).unwrap();
    assert!(matches!(
        writer.add("../evil", b"x"),
        Err(BundleError::UnsafePath(_))
    ));
    assert!(matches!(
        writer.add("manifest.json", b"x"),
        Err(BundleError::UnsafePath(_))
    ));

    let big = raw(&[("records/th_a/big.json".to_string(), vec![b'a'; 4096])]);
    let small = Limits {
        max_entry: 1024,
        ..Limits::default()
    };
    let refused = verify(big.as_slice(), &small).unwrap_err();
    assert!(matches!(refused, BundleError::TooLarge(_)), "{refused}");

    // 256 MiB of zeros packs into a few kilobytes; the reader stops at its bound.
    let mut tar = tar::Builder::new(zstd::Encoder::new(Vec::new(), 19).unwrap());
    let mut header = tar::Header::new_gnu();
    header.set_size(256 << 20);
    header.set_mode(0o644);
    tar.append_data(
        &mut header,
        "blobs/zeros",
        std::io::repeat(0).take(256 << 20),
    )
    .unwrap();
    let bomb = tar.into_inner().unwrap().finish().unwrap();
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let bounded = Limits {
        max_entry: 1 << 30,
        max_total: 16 << 20,
        ..Limits::default()
    };
    let refused = verify(bomb.as_slice(), &bounded).unwrap_err();
    assert!(matches!(refused, BundleError::TooLarge(_)), "{refused}");
}

#[test]
fn a_sealed_seed_opens_with_its_passphrase_only() {
    let sealed = seal_seed(&[42; 32], "a long passphrase").unwrap();
    assert_eq!(open_seed(&sealed, "a long passphrase").unwrap(), [42; 32]);
    assert!(matches!(
        open_seed(&sealed, "a wrong one"),
        Err(BundleError::WrongPassphrase)
    ));
    // A bundle may not make its reader spend more than it will.
    let mut costly: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
    costly["memory_kib"] = json!(64 << 20);
    let refused = open_seed(costly.to_string().as_bytes(), "a long passphrase").unwrap_err();
    assert!(matches!(refused, BundleError::Malformed(_)), "{refused}");
    assert!(matches!(
        open_seed(b"junk", "x"),
        Err(BundleError::Malformed(_))
    ));
}
