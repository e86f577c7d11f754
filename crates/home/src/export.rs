//! Exporting a stopped home as a bundle (federation-protocol.md §8.3, `spl export --offline`):
//! its DID document, its identity seed sealed under the user's passphrase (or left out), and
//! every record, per thread, in the store's sequence order, read straight from the store.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;

use serde::Serialize;
use syncropel_bundle::seal::seal_seed;
use syncropel_bundle::{BundleError, BundleWriter, Counts, Manifest, Producer};
use syncropel_protocol::did_doc::did_web_document;
use syncropel_protocol::{rfc3339_from_unix, unix_now};
use syncropel_store::{ListFilter, RecordStore};

use crate::publish::multibase;
use crate::{Home, HomeError, LOCAL_TENANT};

/// Records read from the store at a time.
const PAGE: u32 = 1000;

/// What an export wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ExportSummary {
    pub object: &'static str,
    pub source_did: String,
    pub records: u64,
    pub threads: u64,
    pub identity_included: bool,
    pub bundle_sha256: String,
}

/// Writes the bundle of a stopped home to `out`. With `passphrase` the identity seed goes in,
/// sealed under it (so the DID can move); without, it stays behind.
pub async fn export_offline<W: Write>(
    home: &Home,
    out: W,
    passphrase: Option<&str>,
) -> Result<(W, ExportSummary), HomeError> {
    let key = home.keypair()?;
    let did = home.did()?;
    let published = home.published()?;
    let document = match &published {
        Some(published) => {
            let keys: Vec<(String, String)> = published
                .keys
                .iter()
                .filter(|(fragment, _)| !published.compromised.contains(fragment))
                .cloned()
                .collect();
            did_web_document(
                &did,
                &keys,
                std::slice::from_ref(&published.current),
                published.endpoint.as_deref(),
                &[],
            )
        }
        None => did_web_document(
            &did,
            &[("key-1".into(), multibase(&key))],
            &["key-1".into()],
            None,
            &[],
        ),
    };
    let bundled = |e: BundleError| HomeError::Refused(e.to_string());
    let mut writer = BundleWriter::new(out).map_err(bundled)?;
    let document = serde_json::to_vec_pretty(&document)
        .map_err(|e| HomeError::Refused(format!("the DID document: {e}")))?;
    writer
        .add(syncropel_bundle::DID_DOCUMENT, &document)
        .map_err(bundled)?;
    if let Some(passphrase) = passphrase {
        let sealed = seal_seed(&key.seed(), passphrase).map_err(bundled)?;
        writer
            .add(syncropel_bundle::PRIVATE_KEY, &sealed)
            .map_err(bundled)?;
    }

    let store = Arc::new(syncropel_store::SqliteStore::open_file(&home.db_path()).await?);
    let written = write_records(store.clone(), &mut writer).await;
    store.close().await;
    let (records, threads) = written?;
    let manifest = Manifest {
        source_did: did.clone(),
        record_count: records,
        created_at: rfc3339_from_unix(unix_now()),
        producer: Producer {
            implementation: "syncropel-steward-rs".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        identity_included: passphrase.is_some(),
        tokens: "federation-only".into(),
        counts: Counts {
            threads,
            ..Counts::default()
        },
        ..Manifest::default()
    };
    let (out, manifest) = writer.finish(manifest, &key).map_err(bundled)?;
    Ok((
        out,
        ExportSummary {
            object: "export_summary",
            source_did: did,
            records,
            threads,
            identity_included: passphrase.is_some(),
            bundle_sha256: manifest.bundle_sha256,
        },
    ))
}

/// Every record as `records/<thread>/<id>.json` (`{id, record}`), in sequence order; the
/// records and threads written. The next page is read while this one is written.
async fn write_records<W: Write>(
    store: Arc<syncropel_store::SqliteStore>,
    writer: &mut BundleWriter<W>,
) -> Result<(u64, u64), HomeError> {
    let (pages, mut read) = tokio::sync::mpsc::channel(2);
    let reader = tokio::spawn(async move {
        let mut after = 0;
        loop {
            let filter = ListFilter {
                thread: None,
                actor: None,
                since_clock: None,
                after_seq: after,
                limit: PAGE,
                max_bytes: None,
            };
            let page = store.list(LOCAL_TENANT, &filter).await;
            let last = page.as_ref().ok().and_then(|p| p.last().map(|r| r.seq));
            if pages.send(page).await.is_err() {
                return;
            }
            match last {
                Some(seq) => after = seq,
                None => return,
            }
        }
    });
    let mut threads = BTreeSet::new();
    let mut records = 0;
    while let Some(page) = read.recv().await {
        for row in page? {
            // The stored text is spliced in as is: the record exactly as it was signed.
            let item = format!(
                "{{\"id\":{},\"record\":{}}}",
                serde_json::Value::from(row.id.as_str()),
                row.json
            );
            let path = format!("records/{}/{}.json", row.thread, row.id);
            writer
                .add(&path, item.as_bytes())
                .map_err(|e| HomeError::Refused(e.to_string()))?;
            if !threads.contains(&row.thread) {
                threads.insert(row.thread);
            }
            records += 1;
        }
    }
    reader
        .await
        .map_err(|e| HomeError::Refused(format!("reading the store: {e}")))?;
    Ok((records, threads.len() as u64))
}
