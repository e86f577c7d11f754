//! Writing a tenant's store as a bundle (federation-protocol.md §8.3). The bundle is built in
//! memory a page at a time and handed out as compressed chunks: what is held at once is a page
//! of records and what zstd keeps, whatever the size of the store.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};
use syncropel_bundle::seal::seal_seed;
use syncropel_bundle::{BundleWriter, Counts, Manifest, Producer};
use syncropel_federation::handshake::PAIR_ACCOUNT_PREFIX;
use syncropel_federation::state::{seal_secret, sync_meta, to_text, SyncMeta, SECRET};
use syncropel_protocol::consent::{CONSENT_KIND, CONSENT_THREAD};
use syncropel_protocol::did_sync::LoggedOp;
use syncropel_protocol::{
    rfc3339_from_unix, unix_now, validate_thread, PAIRS_THREAD, PAIR_GENESIS_KIND,
};
use syncropel_store::{ListFilter, RecordStore, StateChange, StoredRecord};
use syncropel_tenant::{Departure, Identity};
use tokio::sync::mpsc;

use crate::{audit, departure, PortabilityError, Progress, Result, CREDENTIALS, CURSOR_KEY_HANDLE};

/// Records read from the store at a time.
const PAGE: u32 = 1000;

/// What is exported: a tenant's store, its identity and the DID document that names the key.
pub struct ExportSource<'a> {
    pub store: Arc<dyn RecordStore>,
    pub tenant: &'a str,
    pub identity: &'a Identity,
    pub did_document: &'a Value,
    /// A did:sync's operation log, as its directory served it (checked): the new home learns
    /// the DID's state from it. `None` for other DIDs, or when the directory was out of reach.
    pub did_operations: Option<Vec<LoggedOp>>,
}

#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// The identity seed goes in sealed under this (so the DID can move); without, it stays.
    pub passphrase: Option<String>,
    /// `--carry-tokens`: every token is rebuilt on import, not only those peers hold.
    pub carry_tokens: bool,
    /// `leave` when the export is the first step of a move (federation-protocol.md §8.5).
    pub intent: Option<String>,
    /// A snapshot (`spl thread snapshot`): the records of these threads only, without the
    /// identity or credentials (federation-protocol.md §3.6).
    pub threads: Option<Vec<String>>,
    /// Leaving: how long to wait, once `leaving` is stored, before the store is read. Writers
    /// that checked the departure just before (another hosted replica's cached tenant, a write
    /// in flight) commit within it, so that the bundle holds every write that was accepted.
    pub settle: std::time::Duration,
    pub progress: Option<Arc<Progress>>,
}

/// At most this many threads in one snapshot.
pub const MAX_SNAPSHOT_THREADS: usize = 100;

impl ExportOptions {
    /// Refuses options that do not go together, before anything is written: why, if so.
    pub fn check(&self) -> std::result::Result<(), String> {
        let Some(threads) = &self.threads else {
            return Ok(());
        };
        if self.passphrase.is_some() || self.carry_tokens || self.intent.is_some() {
            return Err("a snapshot holds records only: no identity, tokens or move".into());
        }
        if threads.is_empty() || threads.len() > MAX_SNAPSHOT_THREADS {
            return Err(format!(
                "a snapshot names 1 to {MAX_SNAPSHOT_THREADS} threads"
            ));
        }
        for thread in threads {
            validate_thread(thread).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// What an export wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ExportSummary {
    pub object: &'static str,
    pub source_did: String,
    pub records: u64,
    pub threads: u64,
    pub identity_included: bool,
    pub tokens: String,
    pub counts: Counts,
    pub bundle_sha256: String,
    /// A did:sync's operation log went in (`directory/ops.jsonl`).
    pub did_log_included: bool,
    /// The `core.portability.event.v1` this export wrote (it is in the bundle too); not known
    /// to a client that had a steward export over HTTP.
    pub audit_record: Option<String>,
}

impl ExportSummary {
    /// The summary of a bundle made elsewhere, from what was verified of it.
    pub fn of(verified: syncropel_bundle::Verified) -> ExportSummary {
        ExportSummary {
            did_log_included: verified.did_operations.is_some(),
            ..ExportSummary::of_manifest(verified.manifest)
        }
    }

    fn of_manifest(manifest: syncropel_bundle::Manifest) -> ExportSummary {
        ExportSummary {
            object: "export_summary",
            source_did: manifest.source_did,
            records: manifest.record_count,
            threads: manifest.counts.threads,
            identity_included: manifest.identity_included,
            tokens: manifest.tokens,
            counts: manifest.counts,
            bundle_sha256: manifest.bundle_sha256,
            did_log_included: false,
            audit_record: None,
        }
    }
}

/// Writes the bundle of `source`, sending its bytes to `out` as they are made (the channel
/// closes when it returns). Records are those stored when the export began (its audit record
/// is the last of them).
pub async fn export(
    source: ExportSource<'_>,
    options: &ExportOptions,
    out: mpsc::Sender<Vec<u8>>,
) -> Result<ExportSummary> {
    options.check().map_err(PortabilityError::Invalid)?;
    let out = &out;
    let ExportSource {
        store,
        tenant,
        identity,
        did_document,
        did_operations,
    } = source;
    let tokens = if options.carry_tokens {
        "all"
    } else {
        "federation-only"
    };
    let (audit_thread, event, fields) = match &options.threads {
        Some(threads) => (
            audit::SNAPSHOT_THREAD,
            "snapshot",
            json!({ "threads": threads }),
        ),
        None => (
            audit::THREAD,
            "export",
            json!({
                "identity_included": options.passphrase.is_some(),
                "tokens": tokens,
                "intent": options.intent,
            }),
        ),
    };
    let audit_record = audit::record(
        store.as_ref(),
        tenant,
        identity,
        (audit_thread, event),
        fields,
        // Leaving, writes are refused from here on; reads and peer pulls go on until the fence.
        match options.intent.as_deref() {
            Some("leave") => vec![departure::save(&Departure::Leaving)],
            _ => Vec::new(),
        },
    )
    .await?;
    if options.intent.is_some() {
        tokio::time::sleep(options.settle).await;
    }
    let head = store.head_seq(tenant).await?;
    if let Some(progress) = &options.progress {
        // Sequences are dense but for records replaced in place: about the number to write.
        progress.set_total(u64::try_from(head).unwrap_or(0));
    }
    let meta = sync_meta(store.as_ref(), tenant).await?;

    let mut writer = BundleWriter::new(Vec::new())?;
    let document = serde_json::to_vec_pretty(did_document)
        .map_err(|e| PortabilityError::Refused(format!("the DID document: {e}")))?;
    writer.add(syncropel_bundle::DID_DOCUMENT, &document)?;
    if let Some(operations) = &did_operations {
        let mut lines = String::new();
        for operation in operations {
            let line = serde_json::to_string(operation)
                .map_err(|e| PortabilityError::Invalid(format!("the DID's log: {e}")))?;
            lines.push_str(&line);
            lines.push('\n');
        }
        writer.add(syncropel_bundle::DID_OPERATIONS, lines.as_bytes())?;
    }
    if let Some(passphrase) = options.passphrase.clone() {
        // Argon2id is made to be slow: off the async workers.
        let seed = identity.key.seed();
        let sealed = tokio::task::spawn_blocking(move || seal_seed(&seed, &passphrase))
            .await
            .map_err(|e| PortabilityError::Refused(format!("sealing the identity: {e}")))??;
        writer.add(syncropel_bundle::PRIVATE_KEY, &sealed)?;
    }
    if options.threads.is_none() {
        let credentials = credentials(store.as_ref(), tenant, identity, &meta).await?;
        writer.add(CREDENTIALS, credentials.as_bytes())?;
    }
    send(out, writer.take_written()).await?;

    let mut counts = Counts::default();
    let scope = Scope {
        threads: options.threads.clone(),
        head,
    };
    let progress = options.progress.as_deref();
    let records = write_records(
        store,
        tenant,
        scope,
        &mut writer,
        &mut counts,
        out,
        progress,
    )
    .await?;
    let manifest = Manifest {
        source_did: identity.did.to_string(),
        record_count: records,
        created_at: rfc3339_from_unix(unix_now()),
        store_epoch: meta.epoch.clone(),
        producer: Producer {
            implementation: "syncropel-steward-rs".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        identity_included: options.passphrase.is_some(),
        tokens: tokens.into(),
        counts,
        threads: options.threads.clone(),
        ..Manifest::default()
    };
    let (rest, manifest) = writer.finish(manifest, &identity.key)?;
    send(out, rest).await?;
    Ok(ExportSummary {
        audit_record: Some(audit_record),
        did_log_included: did_operations.is_some(),
        ..ExportSummary::of_manifest(manifest)
    })
}

/// `federation/credentials.sealed`: the bearers peers issued (as the store seals them) and the
/// store's cursor key, one JSON line each.
async fn credentials(
    store: &dyn RecordStore,
    tenant: &str,
    identity: &Identity,
    meta: &SyncMeta,
) -> Result<String> {
    let mut secrets = store.state_list(tenant, SECRET).await?;
    if let StateChange::Put { key, value, .. } =
        seal_secret(&identity.key, CURSOR_KEY_HANDLE, &to_text(meta))
    {
        secrets.push((key, value));
    }
    let mut lines = String::new();
    for (handle, sealed) in secrets {
        lines.push_str(&json!({"handle": handle, "sealed": sealed}).to_string());
        lines.push('\n');
    }
    Ok(lines)
}

/// Which records go in: those stored up to `head`, of every thread or of these.
struct Scope {
    threads: Option<Vec<String>>,
    head: i64,
}

async fn send(out: &mpsc::Sender<Vec<u8>>, chunk: Vec<u8>) -> Result<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    out.send(chunk)
        .await
        .map_err(|_| PortabilityError::Abandoned)
}

/// Every record of `scope` as `records/<thread>/<id>.json` (`{id, record}`), in sequence
/// order (thread after thread for a snapshot); the number written. The next page is read while
/// this one is written.
async fn write_records(
    store: Arc<dyn RecordStore>,
    tenant: &str,
    scope: Scope,
    writer: &mut BundleWriter<Vec<u8>>,
    counts: &mut Counts,
    out: &mpsc::Sender<Vec<u8>>,
    progress: Option<&Progress>,
) -> Result<u64> {
    let (pages, mut read) = mpsc::channel(2);
    let tenant_id = tenant.to_string();
    let Scope { threads, head } = scope;
    let reader = tokio::spawn(async move {
        let threads: Vec<Option<String>> = match threads {
            Some(threads) => threads.into_iter().map(Some).collect(),
            None => vec![None],
        };
        for thread in threads {
            let mut after = 0;
            while after < head {
                let filter = ListFilter {
                    thread: thread.clone(),
                    after_seq: after,
                    limit: PAGE,
                    ..ListFilter::default()
                };
                let page = store.list(&tenant_id, &filter).await;
                let last = page.as_ref().ok().and_then(|p| p.last().map(|r| r.seq));
                if pages.send(page).await.is_err() {
                    return;
                }
                match last {
                    Some(seq) => after = seq,
                    None => break,
                }
            }
        }
    });
    let mut threads = BTreeSet::new();
    let mut records = 0;
    while let Some(page) = read.recv().await {
        for row in page? {
            if row.seq > head {
                continue;
            }
            count(&row, counts);
            // The stored text is spliced in as is: the record exactly as it was signed.
            let item = format!(
                "{{\"id\":{},\"record\":{}}}",
                Value::from(row.id.as_str()),
                row.json
            );
            writer.add(
                &format!("records/{}/{}.json", row.thread, row.id),
                item.as_bytes(),
            )?;
            if !threads.contains(&row.thread) {
                threads.insert(row.thread);
            }
            records += 1;
        }
        send(out, writer.take_written()).await?;
        if let Some(progress) = progress {
            progress.add(records - progress.done());
        }
    }
    reader
        .await
        .map_err(|e| PortabilityError::Refused(format!("reading the store: {e}")))?;
    counts.threads = threads.len() as u64;
    Ok(records)
}

/// Pairs, grants and service accounts, counted from the few threads that hold them (only
/// those records are parsed).
fn count(row: &StoredRecord, counts: &mut Counts) {
    let kind_of = |json: &str| -> Option<Value> { serde_json::from_str::<Value>(json).ok() };
    match row.thread.as_str() {
        PAIRS_THREAD => {
            if let Some(record) = kind_of(&row.json) {
                if record["body"]["kind"] == PAIR_GENESIS_KIND {
                    counts.pairs += 1;
                }
            }
        }
        CONSENT_THREAD => {
            if let Some(record) = kind_of(&row.json) {
                if record["body"]["kind"] == CONSENT_KIND {
                    counts.consent_grants += 1;
                }
            }
        }
        crate::replay::TOKENS_THREAD => {
            if let Some(record) = kind_of(&row.json) {
                if record["body"]["event"] == "service_account_created"
                    && !record["body"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .starts_with(PAIR_ACCOUNT_PREFIX)
                {
                    counts.service_accounts += 1;
                }
            }
        }
        _ => {}
    }
}
