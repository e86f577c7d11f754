//! Taking a bundle into a store (federation-protocol.md §8.4). [`open`] checks the whole bundle
//! and opens its identity before anything is written; [`import`] then streams it again: every
//! record checked (its id, its signature) on a blocking thread while the batch before is stored,
//! in the bundle's order. Every write is idempotent and the import's progress is a state
//! document, so a rerun after a kill goes on where it stopped and ends in the same store.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};
use syncropel_bundle::seal::open_seed;
use syncropel_bundle::{entries, verify, Limits, Manifest};
use syncropel_federation::replay_log;
use syncropel_federation::state::{new_epoch, next_epoch, open_secret, parse, SyncMeta, SECRET};
use syncropel_protocol::did_doc::parse_document;
use syncropel_protocol::did_sync::{DidState, LoggedOp};
use syncropel_protocol::sync::{
    has_document, sync_item, verify_items, DocumentKeys, PeerItem, ResolvedKeys,
};
use syncropel_protocol::Keypair;
use syncropel_store::{
    Appended, AuthChange, ListFilter, NewRecord, RecordStore, StateChange, StoreError,
};
use syncropel_tenant::{membership, stored_form_at, threads, Identity};
use tokio::sync::mpsc;

use crate::replay::{Replay, TOKENS_THREAD};
use crate::{PortabilityError, Progress, Result, CREDENTIALS, CURSOR_KEY_HANDLE, IMPORTS};

/// Records checked and stored together.
const BATCH: usize = 1000;

/// Threads a steward writes on its own before anything is imported (its bootstrap token and
/// the audit of it): a store holding only these counts as empty.
const SEED_THREADS: [&str; 2] = [TOKENS_THREAD, crate::audit::THREAD];

/// A bundle checked whole, its identity opened.
pub struct Opened {
    pub path: PathBuf,
    pub manifest: Manifest,
    pub did_document: Value,
    /// The did:key that signed the manifest.
    pub signer: String,
    /// A did:sync's operation log (`directory/ops.jsonl`), replayed and checked, and the state
    /// it comes to.
    pub did_log: Option<(Vec<LoggedOp>, DidState)>,
    /// The identity key, when the bundle carries it (opened with the passphrase).
    pub key: Option<Keypair>,
}

impl Opened {
    pub fn did(&self) -> &str {
        &self.manifest.source_did
    }
}

/// Checks the bundle at `path` (every hash, the signature by a current key of the DID document
/// it carries) and opens the identity it seals. Blocking: it reads the whole file and runs
/// Argon2id.
pub fn open(path: &Path, passphrase: Option<&str>, limits: &Limits) -> Result<Opened> {
    let file = File::open(path).map_err(syncropel_bundle::BundleError::Io)?;
    let verified = verify(BufReader::with_capacity(1 << 16, file), limits)?;
    let key = match (&verified.sealed_key, passphrase) {
        (Some(sealed), Some(passphrase)) => {
            let key = Keypair::from_seed(&open_seed(sealed, passphrase)?);
            if key.did_key() != verified.signer {
                return Err(PortabilityError::Refused(
                    "the sealed identity key is not the key that signed the bundle".into(),
                ));
            }
            Some(key)
        }
        (Some(_), None) => {
            return Err(PortabilityError::Refused(
                "the bundle seals its identity under a passphrase: give the passphrase".into(),
            ))
        }
        (None, _) => None,
    };
    let did_log = match &verified.did_operations {
        Some(bytes) => Some(did_log(
            &verified.manifest.source_did,
            &verified.signer,
            bytes,
        )?),
        None => None,
    };
    Ok(Opened {
        path: path.to_path_buf(),
        did_log,
        manifest: verified.manifest,
        did_document: verified.did_document,
        signer: verified.signer,
        key,
    })
}

/// The bundled operation log of `did`, checked: every operation replays, and `signer` (the
/// manifest's) is one of the signing keys it ever named.
fn did_log(did: &str, signer: &str, bytes: &[u8]) -> Result<(Vec<LoggedOp>, DidState)> {
    let refused = |why: String| PortabilityError::Refused(format!("the bundled DID log: {why}"));
    let text = std::str::from_utf8(bytes).map_err(|_| refused("not text".into()))?;
    let log = text
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_str::<LoggedOp>(line).map_err(|e| refused(e.to_string())))
        .collect::<Result<Vec<_>>>()?;
    let state = replay_log(did, &log).map_err(|e| refused(e.to_string()))?;
    let named = state
        .historical_signing_keys
        .iter()
        .any(|(_, key)| format!("did:key:{key}") == signer);
    if !named {
        return Err(refused(format!(
            "it never names the key that signed, {signer}"
        )));
    }
    Ok((log, state))
}

#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Import into a store that already holds records of its own.
    pub force_overwrite: bool,
    /// Count what would happen; write nothing.
    pub dry_run: bool,
    pub limits: Limits,
    pub progress: Option<Arc<Progress>>,
}

/// What an import did (federation-protocol.md §8.4). `records_inspected` is always
/// `records_inserted + records_deduplicated + records_skipped + records_failed`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportSummary {
    pub object: &'static str,
    pub source_did: String,
    pub bundle_sha256: String,
    pub dry_run: bool,
    pub records_inspected: u64,
    pub records_inserted: u64,
    pub records_deduplicated: u64,
    /// Another record already held its (thread, actor, clock): a fresh home's own seed record.
    pub records_skipped: u64,
    /// Refused: its id or signature did not check.
    pub records_failed: u64,
    pub refusals_by_reason: BTreeMap<String, u64>,
    /// Set by the caller, which installs the identity.
    pub identity_restored: bool,
    pub identity_note: Option<String>,
    pub pairs: u64,
    pub consent_grants: u64,
    pub credentials: u64,
}

/// What the reading thread hands over.
enum Read {
    Records(Vec<Checked>),
    Credentials(Vec<StateChange>),
}

struct Checked {
    /// `Err(code)`: refused, with why.
    record: std::result::Result<NewRecord, &'static str>,
    /// A token record's body and time: the change it states is made once it is stored.
    token_event: Option<(Value, i64)>,
    /// The state a member, grant, invite or thread-closing record leaves (made once it is
    /// stored).
    membership: Vec<StateChange>,
}

/// Takes the bundle `opened` into `tenant`'s store. The caller installs the identity after.
pub async fn import(
    store: Arc<dyn RecordStore>,
    tenant: &str,
    opened: &Opened,
    options: &ImportOptions,
) -> Result<ImportSummary> {
    let bundle = opened.manifest.bundle_sha256.clone();
    let mut summary = ImportSummary {
        object: "import_summary",
        source_did: opened.did().to_string(),
        bundle_sha256: bundle.clone(),
        dry_run: options.dry_run,
        pairs: opened.manifest.counts.pairs,
        consent_grants: opened.manifest.counts.consent_grants,
        ..ImportSummary::default()
    };
    if opened.manifest.threads.is_some() {
        return Err(PortabilityError::Refused(
            "this bundle is a snapshot of threads, not a whole store: restore it with \
             `spl thread restore`"
                .into(),
        ));
    }
    let begun = store.state_get(tenant, IMPORTS, &bundle).await?.is_some();
    if !begun && !options.force_overwrite {
        let own = own_records(store.as_ref(), tenant).await?;
        if own > 0 {
            return Err(PortabilityError::Refused(format!(
                "the store has {own} records; pass --force-overwrite to import anyway"
            )));
        }
    }
    if !options.dry_run && !begun {
        let progress = json!({"state": "in_progress", "source_did": opened.did()}).to_string();
        store
            .write(
                tenant,
                Vec::new(),
                vec![StateChange::put(IMPORTS, &bundle, progress)],
            )
            .await?;
    }

    let resolved = document_keys(opened.did(), &opened.did_document)?;
    ingest(
        store.clone(),
        tenant,
        opened,
        resolved,
        options,
        &mut summary,
    )
    .await?;
    if !options.dry_run {
        let epoch = carried_epoch(store.as_ref(), tenant, opened).await?;
        let done = json!({
            "state": "done",
            "source_did": opened.did(),
            "records_inspected": summary.records_inspected,
        })
        .to_string();
        store
            .write(
                tenant,
                Vec::new(),
                vec![
                    epoch,
                    StateChange::delete(SECRET, CURSOR_KEY_HANDLE),
                    StateChange::put(IMPORTS, &bundle, done),
                ],
            )
            .await?;
    }
    Ok(summary)
}

/// Streams the bundle's records into the store, checked against `resolved` for the source DID:
/// the part of an import and a restore that is the same.
async fn ingest(
    store: Arc<dyn RecordStore>,
    tenant: &str,
    opened: &Opened,
    resolved: ResolvedKeys,
    options: &ImportOptions,
    summary: &mut ImportSummary,
) -> Result<()> {
    if let Some(progress) = &options.progress {
        progress.set_total(opened.manifest.record_count);
    }
    let (batches, mut read) = mpsc::channel(1);
    let reader = {
        let path = opened.path.clone();
        let limits = options.limits;
        tokio::task::spawn_blocking(move || read_bundle(&path, &limits, resolved, batches))
    };
    let mut replay = Replay::new(opened.manifest.tokens == "all");
    while let Some(batch) = read.recv().await {
        match batch {
            // A snapshot's restore takes records only.
            Read::Credentials(_) if opened.manifest.threads.is_some() => {}
            Read::Credentials(secrets) => {
                let bearer = |change: &&StateChange| !matches!(change, StateChange::Put { key, .. } if key == CURSOR_KEY_HANDLE);
                summary.credentials = secrets.iter().filter(bearer).count() as u64;
                if !options.dry_run {
                    let mut secrets = secrets;
                    secrets.push(syncropel_tenant::secrets::reindex());
                    store.write(tenant, Vec::new(), secrets).await?;
                }
            }
            Read::Records(checked) => {
                let stored =
                    store_batch(store.as_ref(), tenant, checked, options.dry_run, summary).await?;
                if !options.dry_run {
                    apply_token_events(store.as_ref(), tenant, stored, &mut replay).await?;
                }
                if let Some(progress) = &options.progress {
                    progress.add(summary.records_inspected - progress.done());
                }
            }
        }
    }
    reader
        .await
        .map_err(|e| PortabilityError::Refused(format!("reading the bundle: {e}")))??;
    Ok(())
}

/// Takes a snapshot (`spl thread snapshot`, federation-protocol.md §3.6) back into the store of
/// the identity that made it: its records checked against that identity's own DID document
/// (`own_document`, not the one the snapshot carries) and stored, those already there
/// de-duplicated, and the accounts and tokens its token records state rebuilt. Nothing else
/// changes: neither the identity nor the cursor epoch, and a snapshot carries no bearers (a pair
/// it brings back whose bearer is gone degrades with `credential_missing`).
pub async fn restore(
    store: Arc<dyn RecordStore>,
    tenant: &str,
    identity: &Identity,
    own_document: &Value,
    opened: &Opened,
    options: &ImportOptions,
) -> Result<ImportSummary> {
    let Some(threads) = &opened.manifest.threads else {
        return Err(PortabilityError::Refused(
            "this bundle is a whole store's export, not a snapshot of threads: take it in with \
             `spl import`"
                .into(),
        ));
    };
    let own = identity.did.to_string();
    if opened.did() != own {
        return Err(PortabilityError::Refused(format!(
            "the snapshot is of {}; this store's identity is {own}",
            opened.did()
        )));
    }
    let resolved = document_keys(&own, own_document)?;
    if !resolved
        .values()
        .any(|keys| keys.keys.contains(&opened.signer))
    {
        return Err(PortabilityError::Refused(format!(
            "the snapshot is signed by {}, which is not a key of {own}",
            opened.signer
        )));
    }
    let mut summary = ImportSummary {
        object: "restore_summary",
        source_did: own,
        bundle_sha256: opened.manifest.bundle_sha256.clone(),
        dry_run: options.dry_run,
        pairs: opened.manifest.counts.pairs,
        consent_grants: opened.manifest.counts.consent_grants,
        ..ImportSummary::default()
    };
    ingest(
        store.clone(),
        tenant,
        opened,
        resolved,
        options,
        &mut summary,
    )
    .await?;
    if !options.dry_run {
        crate::audit::record(
            store.as_ref(),
            tenant,
            identity,
            (crate::audit::SNAPSHOT_THREAD, "restore"),
            json!({
                "threads": threads,
                "bundle_sha256": summary.bundle_sha256,
                "records_inserted": summary.records_inserted,
                "records_deduplicated": summary.records_deduplicated,
            }),
            Vec::new(),
        )
        .await?;
    }
    Ok(summary)
}

/// The store's next cursor epoch: under the source's cursor key when the bundle carries it and
/// the identity that sealed it came along, else under a new key.
async fn carried_epoch(
    store: &dyn RecordStore,
    tenant: &str,
    opened: &Opened,
) -> Result<StateChange> {
    let Some(key) = &opened.key else {
        return Ok(new_epoch());
    };
    let carried = open_secret(store, tenant, key, CURSOR_KEY_HANDLE).await?;
    Ok(
        match carried.and_then(|text| parse::<SyncMeta>(&text).ok()) {
            Some(meta) => next_epoch(&meta),
            None => new_epoch(),
        },
    )
}

/// Records of the store's own, not counting a fresh steward's seed records (counted up to a
/// bound: the answer only has to say that there are some and roughly how many).
async fn own_records(store: &dyn RecordStore, tenant: &str) -> Result<u64> {
    const COUNTED: u64 = 100_000;
    let mut own = 0;
    let mut after = 0;
    loop {
        let filter = ListFilter {
            after_seq: after,
            limit: 1000,
            ..ListFilter::default()
        };
        let page = store.list(tenant, &filter).await?;
        let Some(last) = page.last() else {
            return Ok(own);
        };
        after = last.seq;
        own += page
            .iter()
            .filter(|r| !SEED_THREADS.contains(&r.thread.as_str()))
            .count() as u64;
        if own >= COUNTED {
            return Ok(own);
        }
    }
}

/// The keys `did`'s records may be signed with: those of `document` (for an import, the DID
/// document the bundle carries, which its signature was checked against).
fn document_keys(did: &str, document: &Value) -> Result<ResolvedKeys> {
    let parsed = parse_document(did, document)
        .map_err(|e| PortabilityError::Refused(format!("the DID document: {e}")))?;
    let mut resolved = ResolvedKeys::new();
    resolved.insert(
        did.to_string(),
        DocumentKeys {
            keys: parsed.keys.iter().map(|k| k.did_key.clone()).collect(),
            current: parsed
                .keys
                .iter()
                .filter(|k| k.current)
                .map(|k| k.did_key.clone())
                .collect(),
            fresh: true,
        },
    );
    Ok(resolved)
}

/// Reads the bundle again (it was checked whole by [`open`]; a file changed since fails here
/// as it would have there), checking records a batch at a time.
fn read_bundle(
    path: &Path,
    limits: &Limits,
    resolved: ResolvedKeys,
    out: mpsc::Sender<Read>,
) -> Result<()> {
    let file = File::open(path).map_err(syncropel_bundle::BundleError::Io)?;
    let mut raw: Vec<(String, Vec<u8>)> = Vec::with_capacity(BATCH);
    let stopped = || malformed("the import stopped");
    entries(
        BufReader::with_capacity(1 << 16, file),
        limits,
        |path, bytes| {
            if path == CREDENTIALS {
                let secrets = credentials(bytes)?;
                return out
                    .blocking_send(Read::Credentials(secrets))
                    .map_err(|_| stopped());
            }
            let Some(name) = path.strip_prefix("records/") else {
                return Ok(());
            };
            raw.push((name.to_string(), bytes.to_vec()));
            if raw.len() >= BATCH {
                let batch = check_batch(&std::mem::take(&mut raw), &resolved);
                out.blocking_send(Read::Records(batch))
                    .map_err(|_| stopped())?;
            }
            Ok(())
        },
    )?;
    let batch = check_batch(&raw, &resolved);
    out.blocking_send(Read::Records(batch))
        .map_err(|_| stopped())?;
    Ok(())
}

/// Parses and checks a batch, in its order. One thread does it: checking on more cores did not
/// shorten an import (the store's writer takes the other) and held more memory.
fn check_batch(chunk: &[(String, Vec<u8>)], resolved: &ResolvedKeys) -> Vec<Checked> {
    let mut items = Vec::with_capacity(chunk.len());
    let mut refused = Vec::new();
    for (name, bytes) in chunk {
        match parse_item(name, bytes) {
            Ok(item) => items.push(item),
            Err(code) => refused.push(Checked {
                record: Err(code),
                token_event: None,
                membership: Vec::new(),
            }),
        }
    }
    check(items, resolved, &mut refused)
}

fn malformed(what: &str) -> syncropel_bundle::BundleError {
    syncropel_bundle::BundleError::Malformed(what.into())
}

/// The secret documents of `federation/credentials.sealed`.
fn credentials(bytes: &[u8]) -> syncropel_bundle::Result<Vec<StateChange>> {
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("credentials are not text"))?;
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let value: Value =
                serde_json::from_str(line).map_err(|e| malformed(&format!("credentials: {e}")))?;
            match (value["handle"].as_str(), value["sealed"].as_str()) {
                (Some(handle), Some(sealed)) => Ok(StateChange::put(SECRET, handle, sealed)),
                _ => Err(malformed("a credential lacks its handle or value")),
            }
        })
        .collect()
}

/// One `records/<thread>/<id>.json` item as the peer item it renders to, with the time the
/// source stored it; a record whose path does not name it is refused.
fn parse_item(name: &str, bytes: &[u8]) -> std::result::Result<(PeerItem, i64), &'static str> {
    let item: Value = serde_json::from_slice(bytes).map_err(|_| "MALFORMED")?;
    let stored = item.get("record").ok_or("MALFORMED")?;
    let created_at = stored
        .get("created_at")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let rendered = sync_item(stored).ok_or("MALFORMED")?;
    let peer = PeerItem::from_value(rendered).map_err(|_| "MALFORMED")?;
    let expected = format!("{}/{}.json", peer.envelope.thread, peer.id);
    if item.get("id").and_then(Value::as_str) != Some(peer.id.as_str()) || name != expected {
        return Err("PATH_MISMATCH");
    }
    Ok((peer, created_at))
}

/// Checks a batch's ids and signatures. Records of the source DID are checked against its
/// bundled document; those of other DIDs with documents arrived from peers, which the source
/// checked then and vouches for by signing the bundle: their signatures are still checked
/// against the key they name.
fn check(
    items: Vec<(PeerItem, i64)>,
    source: &ResolvedKeys,
    refused: &mut Vec<Checked>,
) -> Vec<Checked> {
    let mut resolved = source.clone();
    let mut named: HashMap<String, Vec<String>> = HashMap::new();
    for (item, _) in &items {
        let actor = &item.envelope.actor;
        if has_document(actor) && !source.contains_key(actor) {
            if let Some(signer) = item.signer() {
                named.entry(actor.clone()).or_default().push(signer.into());
            }
        }
    }
    for (actor, mut keys) in named {
        keys.sort();
        keys.dedup();
        resolved.insert(
            actor,
            DocumentKeys {
                current: keys.clone(),
                keys,
                fresh: true,
            },
        );
    }
    let (peer_items, times): (Vec<PeerItem>, Vec<i64>) = items.into_iter().unzip();
    let verdicts = verify_items(&peer_items, &resolved);
    let mut checked = std::mem::take(refused);
    for ((item, created_at), verdict) in peer_items.iter().zip(times).zip(verdicts) {
        let record = match verdict {
            Ok(()) => Ok(stored_form_at(
                &item.envelope,
                &item.id,
                item.sig.as_deref(),
                item.signer.as_deref(),
                item.redaction.as_ref(),
                created_at,
            )),
            Err(rejection) => Err(rejection.code()),
        };
        let token_event = (item.envelope.thread == TOKENS_THREAD && record.is_ok())
            .then(|| (Value::Object(item.envelope.body.clone()), created_at));
        let membership = match &record {
            Ok(record) if membership::replays(&record.thread) => membership::replay(
                &record.id,
                &record.thread,
                &Value::Object(item.envelope.body.clone()),
            ),
            Ok(record) if record.thread == threads::AUDIT_THREAD => {
                threads::replay(&record.thread, &Value::Object(item.envelope.body.clone()))
            }
            _ => Vec::new(),
        };
        checked.push(Checked {
            record,
            token_event,
            membership,
        });
    }
    checked
}

/// Stores one batch in one transaction and counts what happened; the token records that are
/// now stored, with their events, in order.
async fn store_batch(
    store: &dyn RecordStore,
    tenant: &str,
    checked: Vec<Checked>,
    dry_run: bool,
    summary: &mut ImportSummary,
) -> Result<Vec<(NewRecord, Value, i64)>> {
    let mut records = Vec::with_capacity(checked.len());
    let mut events = Vec::with_capacity(checked.len());
    let mut membership = Vec::with_capacity(checked.len());
    for item in checked {
        summary.records_inspected += 1;
        match item.record {
            Ok(record) => {
                records.push(record);
                events.push(item.token_event);
                membership.push(item.membership);
            }
            Err(code) => {
                summary.records_failed += 1;
                *summary.refusals_by_reason.entry(code.into()).or_default() += 1;
            }
        }
    }
    if dry_run {
        for record in &records {
            match store.get(tenant, &record.id).await? {
                Some(_) => summary.records_deduplicated += 1,
                None => summary.records_inserted += 1,
            }
        }
        return Ok(Vec::new());
    }
    // Only token records are needed after the write: the rest go to the store without a copy.
    let token_records: Vec<Option<NewRecord>> = events
        .iter()
        .zip(&records)
        .map(|(event, record)| event.as_ref().map(|_| record.clone()))
        .collect();
    let results = store.write(tenant, records, Vec::new()).await?;
    let mut tokens = Vec::new();
    let mut state = Vec::new();
    let outcomes = token_records.into_iter().zip(events).zip(membership);
    for (((record, event), changes), result) in outcomes.zip(results) {
        let stored = match result {
            Ok(Appended::Inserted(_)) => {
                summary.records_inserted += 1;
                true
            }
            Ok(Appended::Existing(_)) => {
                summary.records_deduplicated += 1;
                true
            }
            Err(StoreError::DuplicateClock { .. }) => {
                summary.records_skipped += 1;
                false
            }
            Err(e) => {
                summary.records_failed += 1;
                let reason = e.to_string();
                *summary.refusals_by_reason.entry(reason).or_default() += 1;
                false
            }
        };
        if let (true, Some((body, at)), Some(record)) = (stored, event, record) {
            tokens.push((record, body, at));
        }
        if stored {
            state.extend(changes);
        }
    }
    // Rebuilt after their records: a rerun after a crash between the two redoes it.
    if !state.is_empty() {
        store.write(tenant, Vec::new(), state).await?;
    }
    Ok(tokens)
}

/// Makes the account and token changes stored token records state. Each is applied with its
/// own record (stored already, so only the change is new); one made before (a rerun) is done.
async fn apply_token_events(
    store: &dyn RecordStore,
    tenant: &str,
    stored: Vec<(NewRecord, Value, i64)>,
    replay: &mut Replay,
) -> Result<()> {
    for (record, body, at) in stored {
        let Some(change) = replay.change(&body, at) else {
            continue;
        };
        let revoke = matches!(change, AuthChange::RevokeToken { .. });
        match store.apply_auth_change(tenant, change, record).await {
            Ok(_) => {}
            Err(StoreError::ServiceAccountExists(_) | StoreError::TokenExists(_)) => {}
            // A token of an account left behind (federation-only): nothing to revoke here.
            Err(StoreError::UnknownServiceAccount(_)) if !revoke => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use syncropel_federation::directory::sync_genesis;
    use syncropel_protocol::did_sync::{apply, did_from_genesis, sign_operation};
    use syncropel_protocol::Keypair;

    use super::did_log;

    #[test]
    fn a_bundled_did_log_must_replay_and_name_the_key_that_signed() {
        let (key, rotation) = (Keypair::generate(), Keypair::generate());
        let genesis = sign_operation(
            &sync_genesis(&key, vec![rotation.did_key()], Vec::new(), Vec::new(), None),
            &rotation,
        );
        let did = did_from_genesis(&genesis);
        let entry = apply(&[], &genesis, 1_800_000_000).unwrap().entry;
        let line = serde_json::to_string(&entry).unwrap();

        let (log, state) = did_log(&did, &key.did_key(), line.as_bytes()).unwrap();
        assert_eq!((log.len(), state.head), (1, entry.cid.clone()));
        let stranger = Keypair::generate().did_key();
        assert!(did_log(&did, &stranger, line.as_bytes()).is_err());
        assert!(did_log(
            "did:sync:aaaaaaaaaaaaaaaaaaaaaaaa",
            &key.did_key(),
            line.as_bytes()
        )
        .is_err());
        let tampered = line.replacen("\"genesis\"", "\"update\"", 1);
        assert_ne!(tampered, line);
        assert!(did_log(&did, &key.did_key(), tampered.as_bytes()).is_err());
        assert!(did_log(&did, &key.did_key(), b"not json").is_err());
    }
}
