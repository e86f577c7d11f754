//! Moving a home (federation-protocol.md §8.3–8.4): a stopped home written as a bundle, and a
//! bundle taken into a home, identity included. The store work is `syncropel_portability`'s;
//! this module adds what is the home's: its DID document, its key and identity files.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use syncropel_federation::{DidResolver, PeerClient, PeerClientOptions};
use syncropel_portability::{
    ExportOptions, ExportSource, ExportSummary, ImportOptions, ImportSummary, Opened,
    PortabilityError,
};
use syncropel_protocol::did_doc::{did_web_document, parse_document};
use syncropel_protocol::did_sync::LoggedOp;
use syncropel_store::{RecordStore, SqliteStore};

use crate::publish::multibase;
use crate::{
    create_private_dir, remove_optional, seed_text, write_atomic, Home, HomeError,
    PublishedIdentity, LOCAL_TENANT, SECRET_FILE_MODE,
};

fn moved(e: PortabilityError) -> HomeError {
    HomeError::Refused(e.to_string())
}

impl Home {
    /// The DID document of this home's identity: its published keys (those not withdrawn), or
    /// its key's alone.
    pub fn did_document(&self) -> Result<Value, HomeError> {
        let did = self.did()?;
        Ok(match self.published()? {
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
                &[("key-1".into(), multibase(&self.keypair()?))],
                &["key-1".into()],
                None,
                &[],
            ),
        })
    }
}

/// Writes the bundle of a stopped home to `out`, read straight from its store.
pub async fn export_offline<W: Write>(
    home: &Home,
    mut out: W,
    options: &ExportOptions,
) -> Result<(W, ExportSummary), HomeError> {
    let identity = home.identity()?;
    let document = home.did_document()?;
    let did_operations = did_operations(home).await?;
    let store: Arc<dyn RecordStore> = Arc::new(SqliteStore::open_file(&home.db_path()).await?);
    let (chunks, mut written) = tokio::sync::mpsc::channel(4);
    let source = ExportSource {
        store: store.clone(),
        tenant: LOCAL_TENANT,
        identity: &identity,
        did_document: &document,
        did_operations,
    };
    let export = syncropel_portability::export(source, options, chunks);
    let write = async {
        while let Some(chunk) = written.recv().await {
            out.write_all(&chunk)
                .map_err(|e| crate::io_error("write", Path::new("the bundle"), e))?;
        }
        Ok::<_, HomeError>(())
    };
    let (exported, wrote) = tokio::join!(export, write);
    store.close().await;
    let summary = exported.map_err(moved)?;
    wrote?;
    Ok((out, summary))
}

/// A did:sync home's operation log, from the directory it published at (checked); `None` for
/// other DIDs and when the directory cannot be reached (the summary says whether it went in):
/// the move does not depend on it.
async fn did_operations(home: &Home) -> Result<Option<Vec<LoggedOp>>, HomeError> {
    let Some(published) = home.published()?.filter(|p| p.method == "sync") else {
        return Ok(None);
    };
    let Some(directory) = published.directory else {
        return Ok(None);
    };
    let client = PeerClient::new(PeerClientOptions {
        allow_private: true,
        ..PeerClientOptions::default()
    });
    let resolver = DidResolver::new(client, vec![directory]);
    Ok(resolver.sync_log(&published.did).await.ok())
}

/// Takes the bundle at `bundle` into a stopped home: checked whole, the identity opened with
/// `passphrase`, the records stored, then the identity installed (the home's own key, if any,
/// is kept aside in `keys/replaced/`). Rerunning after an interruption ends in the same home.
pub async fn import_offline(
    home: &Home,
    bundle: &Path,
    passphrase: Option<String>,
    options: ImportOptions,
) -> Result<ImportSummary, HomeError> {
    let path = bundle.to_path_buf();
    let limits = options.limits;
    let dry_run = options.dry_run;
    let opened = tokio::task::spawn_blocking(move || {
        syncropel_portability::open(&path, passphrase.as_deref(), &limits)
    })
    .await
    .map_err(|e| HomeError::Refused(format!("checking the bundle: {e}")))?
    .map_err(moved)?;
    create_private_dir(home.root())?;
    let store: Arc<dyn RecordStore> = Arc::new(SqliteStore::open_file(&home.db_path()).await?);
    let imported = syncropel_portability::import(store.clone(), LOCAL_TENANT, &opened, &options)
        .await
        .map_err(moved);
    let finished = match imported {
        Ok(mut summary) if !dry_run => {
            match &opened.key {
                Some(_) => {
                    home.install_identity(&opened)?;
                    summary.identity_restored = true;
                }
                None => {
                    summary.identity_note = Some(
                        "the bundle carries no identity (exported with --no-identity): its \
                         records keep their DID, this home keeps its own"
                            .into(),
                    )
                }
            }
            let identity = home.identity()?;
            syncropel_portability::audit::record(
                store.as_ref(),
                LOCAL_TENANT,
                &identity,
                (syncropel_portability::audit::THREAD, "import"),
                json!({
                    "source_did": summary.source_did,
                    "bundle_sha256": summary.bundle_sha256,
                    "records_inserted": summary.records_inserted,
                    "records_deduplicated": summary.records_deduplicated,
                    "identity_restored": summary.identity_restored,
                }),
                Vec::new(),
            )
            .await
            .map_err(moved)?;
            Ok(summary)
        }
        other => other,
    };
    store.close().await;
    finished
}

/// Takes a snapshot made by `spl thread snapshot` back into this stopped home (checked against
/// the home's own DID document; its identity stays as it is).
pub async fn restore_offline(
    home: &Home,
    snapshot: &Path,
    options: ImportOptions,
) -> Result<ImportSummary, HomeError> {
    let identity = home.identity()?;
    let document = home.did_document()?;
    let path = snapshot.to_path_buf();
    let limits = options.limits;
    let opened =
        tokio::task::spawn_blocking(move || syncropel_portability::open(&path, None, &limits))
            .await
            .map_err(|e| HomeError::Refused(format!("checking the snapshot: {e}")))?
            .map_err(moved)?;
    let store: Arc<dyn RecordStore> = Arc::new(SqliteStore::open_file(&home.db_path()).await?);
    let restored = syncropel_portability::restore(
        store.clone(),
        LOCAL_TENANT,
        &identity,
        &document,
        &opened,
        &options,
    )
    .await
    .map_err(moved);
    store.close().await;
    restored
}

impl Home {
    /// Makes the identity of `opened` this home's: its key, and for a did:sync or did:web its
    /// published form (keys from the bundled document). A different key held before is moved
    /// to `keys/replaced/<did:key>.key`, never deleted.
    fn install_identity(&self, opened: &Opened) -> Result<(), HomeError> {
        let Some(key) = &opened.key else {
            return Ok(());
        };
        create_private_dir(&self.keys_dir())?;
        if let Ok(old) = self.keypair() {
            if old.did_key() != key.did_key() {
                let aside = self.keys_dir().join("replaced");
                create_private_dir(&aside)?;
                let name = format!("{}.key", old.did_key().trim_start_matches("did:key:"));
                write_atomic(
                    &aside.join(name),
                    seed_text(&old).as_bytes(),
                    SECRET_FILE_MODE,
                )?;
            }
        }
        // The published form goes first and the key last: a crash in between leaves the old
        // key with a DID that names the new one, which the rerun of the import repairs.
        let did = opened.did();
        if did.starts_with("did:key:") {
            remove_optional(&self.published_path())?;
        } else {
            let parsed = parse_document(did, &opened.did_document)
                .map_err(|e| HomeError::Refused(format!("the bundled DID document: {e}")))?;
            let keys: Vec<(String, String)> = parsed
                .keys
                .iter()
                .map(|k| {
                    let mb = k.did_key.trim_start_matches("did:key:").to_string();
                    (k.fragment.clone(), mb)
                })
                .collect();
            let current = parsed
                .keys
                .iter()
                .find(|k| k.did_key == key.did_key())
                .map(|k| k.fragment.clone())
                .ok_or_else(|| {
                    HomeError::Refused("the bundled DID document does not name its key".into())
                })?;
            let method = if did.starts_with("did:web:") {
                "web"
            } else {
                "sync"
            };
            let mut published = PublishedIdentity::first(did.to_string(), method, key, None);
            published.keys = keys;
            published.current = current;
            // What the DID's log says it is now; its directory is not in it.
            if let Some((_, state)) = &opened.did_log {
                published.head = Some(state.head.clone());
                published.rotation_keys = state.rotation_keys.clone();
                published.handles = state.handles.clone();
                published.namespaces = state.namespaces.clone();
                published.endpoint = state.services.get("syncropel").map(|s| s.endpoint.clone());
            }
            self.publish(&published)?;
        }
        write_atomic(
            &self.key_path(),
            seed_text(key).as_bytes(),
            SECRET_FILE_MODE,
        )?;
        self.write_config(did)?;
        Ok(())
    }
}
