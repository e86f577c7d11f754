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
use syncropel_federation::state::{seal_secret, sync_meta, to_text, SECRET};
use syncropel_protocol::consent::{CONSENT_KIND, CONSENT_THREAD};
use syncropel_protocol::{rfc3339_from_unix, unix_now, PAIRS_THREAD, PAIR_GENESIS_KIND};
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
}

#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// The identity seed goes in sealed under this (so the DID can move); without, it stays.
    pub passphrase: Option<String>,
    /// `--carry-tokens`: every token is rebuilt on import, not only those peers hold.
    pub carry_tokens: bool,
    /// `leave` when the export is the first step of a move (federation-protocol.md §8.5).
    pub intent: Option<String>,
    pub progress: Option<Arc<Progress>>,
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
    /// The `core.portability.event.v1` this export wrote (it is in the bundle too); not known
    /// to a client that had a steward export over HTTP.
    pub audit_record: Option<String>,
}

impl ExportSummary {
    /// The summary of a bundle made elsewhere, from its manifest.
    pub fn of(manifest: syncropel_bundle::Manifest) -> ExportSummary {
        ExportSummary {
            object: "export_summary",
            source_did: manifest.source_did,
            records: manifest.record_count,
            threads: manifest.counts.threads,
            identity_included: manifest.identity_included,
            tokens: manifest.tokens,
            counts: manifest.counts,
            bundle_sha256: manifest.bundle_sha256,
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
    let out = &out;
    let ExportSource {
        store,
        tenant,
        identity,
        did_document,
    } = source;
    let tokens = if options.carry_tokens {
        "all"
    } else {
        "federation-only"
    };
    let audit_record = audit::record(
        store.as_ref(),
        tenant,
        identity,
        "export",
        json!({
            "identity_included": options.passphrase.is_some(),
            "tokens": tokens,
            "intent": options.intent,
        }),
        // Leaving, writes are refused from here on; reads and peer pulls go on until the fence.
        match options.intent.as_deref() {
            Some("leave") => vec![departure::save(&Departure::Leaving)],
            _ => Vec::new(),
        },
    )
    .await?;
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
    if let Some(passphrase) = options.passphrase.clone() {
        // Argon2id is made to be slow: off the async workers.
        let seed = identity.key.seed();
        let sealed = tokio::task::spawn_blocking(move || seal_seed(&seed, &passphrase))
            .await
            .map_err(|e| PortabilityError::Refused(format!("sealing the identity: {e}")))??;
        writer.add(syncropel_bundle::PRIVATE_KEY, &sealed)?;
    }
    let mut secrets = store.state_list(tenant, SECRET).await?;
    if let StateChange::Put { key, value, .. } =
        seal_secret(&identity.key, CURSOR_KEY_HANDLE, &to_text(&meta))
    {
        secrets.push((key, value));
    }
    let mut lines = String::new();
    for (handle, sealed) in secrets {
        lines.push_str(&json!({"handle": handle, "sealed": sealed}).to_string());
        lines.push('\n');
    }
    writer.add(CREDENTIALS, lines.as_bytes())?;
    send(out, writer.take_written()).await?;

    let mut counts = Counts::default();
    let progress = options.progress.as_deref();
    let records =
        write_records(store, tenant, head, &mut writer, &mut counts, out, progress).await?;
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
        ..Manifest::default()
    };
    let (rest, manifest) = writer.finish(manifest, &identity.key)?;
    send(out, rest).await?;
    Ok(ExportSummary {
        audit_record: Some(audit_record),
        ..ExportSummary::of(manifest)
    })
}

async fn send(out: &mpsc::Sender<Vec<u8>>, chunk: Vec<u8>) -> Result<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    out.send(chunk)
        .await
        .map_err(|_| PortabilityError::Abandoned)
}

/// Every record up to `head` as `records/<thread>/<id>.json` (`{id, record}`), in sequence
/// order; the number written. The next page is read while this one is written.
async fn write_records(
    store: Arc<dyn RecordStore>,
    tenant: &str,
    head: i64,
    writer: &mut BundleWriter<Vec<u8>>,
    counts: &mut Counts,
    out: &mpsc::Sender<Vec<u8>>,
    progress: Option<&Progress>,
) -> Result<u64> {
    let (pages, mut read) = mpsc::channel(2);
    let tenant_id = tenant.to_string();
    let reader = tokio::spawn(async move {
        let mut after = 0;
        while after < head {
            let filter = ListFilter {
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
                None => return,
            }
        }
    });
    let mut threads = BTreeSet::new();
    let mut records = 0;
    while let Some(page) = read.recv().await {
        for row in page? {
            if row.seq > head {
                break;
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
