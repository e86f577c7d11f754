//! Storing what a pull brought: every record checked before anything is stored
//! (federation-protocol.md §1.1), the admitted ones stored with their quarantine entries and the
//! cursor in one transaction, and what failed kept in quarantine (fetched again when its signer
//! may resolve later).

use std::collections::{BTreeMap, HashMap, HashSet};

use syncropel_protocol::sync::{verify_items, PeerItem, Rejection, ResolvedKeys};
use syncropel_protocol::{unix_now, ErrorCode, Refusal};
use syncropel_store::{Appended, NewRecord, StateChange};
use syncropel_tenant::{stored_form, stored_form_in, Tenant};

use super::{violation, Fetched, PullError, PullOutcome, Source};
use crate::actor_keys;
use crate::signers::verify_with_documents;
use crate::state::{put_cursor, PullCursor, QUARANTINE};
use crate::threads::pullable_thread;
use crate::Federation;

/// Stores what passed the checks of a fetched page, with the cursor row, in one transaction.
pub(super) async fn store_page(
    fed: &Federation,
    tenant: &Tenant,
    source: &Source,
    thread: &str,
    page: Fetched,
    cursor: &mut PullCursor,
) -> Result<PullOutcome, PullError> {
    let admitted = admit(
        fed,
        tenant,
        source,
        &page.items,
        page.verdicts,
        &page.carried,
    )
    .await?;
    cursor.cursor = page.next_cursor;
    // The row keeps the namespace its job lands records in, so the job keeps it after a restart.
    cursor.target_namespace.clone_from(&source.target_namespace);
    cursor.last_sync_at = Some(unix_now());
    cursor.pulled += admitted.records.len() as u64;
    let moved = put_cursor(&source.id, thread, cursor);
    let mut outcome = store_admitted(fed, tenant, source, admitted, [moved]).await?;
    outcome.has_more = page.has_more;
    outcome.cursor = cursor.cursor.clone();
    // Parents the page names but neither it nor this store holds (often on threads not pulled).
    // Each distinct parent is looked up once, and at most MAX_PARENT_LOOKUPS of them: a page
    // naming a hundred thousand parents costs no more than one naming a thousand.
    let mut seen: HashSet<&str> = page.items.iter().map(|i| i.id.as_str()).collect();
    let mut wanted: Vec<String> = Vec::new();
    let mut lookups = 0;
    for parent in page.items.iter().flat_map(|i| &i.envelope.parents) {
        if lookups >= MAX_PARENT_LOOKUPS {
            break;
        }
        if !seen.insert(parent.as_str()) {
            continue;
        }
        lookups += 1;
        if fed.store.get(&tenant.id, parent).await?.is_none() {
            wanted.push(parent.clone());
        }
    }
    outcome.missing_parents = wanted;
    Ok(outcome)
}

/// Stores what passed the checks of items that came another way than a page (a relay), with
/// `moved` in the same transaction.
pub(super) async fn store_checked(
    fed: &Federation,
    tenant: &Tenant,
    source: &Source,
    checked: Fetched,
    moved: Option<StateChange>,
) -> Result<PullOutcome, PullError> {
    let admitted = admit(
        fed,
        tenant,
        source,
        &checked.items,
        checked.verdicts,
        &checked.carried,
    )
    .await?;
    store_admitted(fed, tenant, source, admitted, moved).await
}

/// Most quarantined records fetched again at once, so that their answer fits the client's 1 MiB
/// limit for such calls in the common case of small records.
const UNRESOLVED_RETRY_BATCH: usize = 100;

/// Most parents of one page looked up in the store (so also most asked for).
const MAX_PARENT_LOOKUPS: usize = 1000;

/// Asks the source for missing parents (`POST /v1/sync/records`) and stores those that pass
/// the same checks as a page. Best effort: a failure is logged, never fails the pull.
pub async fn fetch_parents(fed: &Federation, tenant: &Tenant, source: &Source, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    if let Err(e) = fetch_records(fed, tenant, source, ids).await {
        tracing::debug!(source = %source.id, code = %e.code(), "fetching missing parents failed");
    }
}

/// Records of `source` on `thread` quarantined as `SIGNER_UNRESOLVED` are fetched again and
/// checked anew on each pull (federation-protocol.md §1.1): admitted as soon as their actor's
/// document names the key. The resolver's negative cache keeps an unreachable document host from
/// being asked each time. Best effort, like fetching parents.
pub(super) async fn retry_unresolved(
    fed: &Federation,
    tenant: &Tenant,
    source: &Source,
    thread: &str,
) {
    if let Err(e) = retry_unresolved_records(fed, tenant, source, thread).await {
        tracing::debug!(source = %source.id, code = %e.code(), "re-verifying quarantined records failed");
    }
}

async fn retry_unresolved_records(
    fed: &Federation,
    tenant: &Tenant,
    source: &Source,
    thread: &str,
) -> Result<(), PullError> {
    if !fed.unresolved_retry_due(&tenant.id, &source.id, thread) {
        return Ok(());
    }
    let prefix = format!("{}\n", source.id);
    let waiting: Vec<String> = fed
        .store
        .state_list(&tenant.id, QUARANTINE)
        .await?
        .into_iter()
        .filter(|(key, _)| key.starts_with(&prefix))
        .filter_map(|(_, entry)| serde_json::from_str::<serde_json::Value>(&entry).ok())
        .filter(|e| e["code"] == Rejection::SignerUnresolved.code() && e["thread"] == thread)
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .take(UNRESOLVED_RETRY_BATCH)
        .collect();
    if !waiting.is_empty() {
        fetch_records(fed, tenant, source, &waiting).await?;
    }
    Ok(())
}

/// Fetches records of `source` by id and stores those that pass the checks of a page; their
/// quarantine entries, if any, leave in the same transaction.
async fn fetch_records(
    fed: &Federation,
    tenant: &Tenant,
    source: &Source,
    ids: &[String],
) -> Result<PullOutcome, PullError> {
    let mut url = format!("{}/v1/sync/records", source.base_url.trim_end_matches('/'));
    // Filtered for the namespace they land in here, as the job's pages are.
    if let Some(target) = &source.target_namespace {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("target_namespace", target)
            .finish();
        url.push('?');
        url.push_str(&query);
    }
    let (status, answer) = fed
        .client()
        .fetch_records(
            &url,
            &serde_json::json!({ "ids": ids }),
            &source.token,
            &source.actor,
            &source.consent_accepts,
        )
        .await
        .map_err(PullError::Peer)?;
    if status != 200 {
        return Err(violation(format!("fetching records answered {status}")));
    }
    let Some(serde_json::Value::Array(records)) = answer.get("records").cloned() else {
        return Err(violation("the answer has no records".into()));
    };
    let mut items = Vec::with_capacity(records.len());
    for raw in records {
        let item = PeerItem::from_value(raw).map_err(violation)?;
        // Only what was asked for.
        if ids.contains(&item.id) {
            items.push(item);
        }
    }
    let mut verdicts = verify_items(&items, &ResolvedKeys::new());
    verify_with_documents(fed, &items, &mut verdicts).await;
    let admitted = admit(fed, tenant, source, &items, verdicts, &BTreeMap::new()).await?;
    let settled: Vec<StateChange> = admitted
        .items
        .iter()
        .map(|item| StateChange::delete(QUARANTINE, &format!("{}\n{}", source.id, item.id)))
        .collect();
    store_admitted(fed, tenant, source, admitted, settled).await
}

/// Records of a page that passed every check, ready to store, and the quarantine entries of the
/// others.
struct Admitted<'a> {
    records: Vec<NewRecord>,
    /// The items behind `records`, in the same order.
    items: Vec<&'a PeerItem>,
    quarantine: Vec<StateChange>,
    /// Which peer vouched for the typed actors' signers admitted (see [`actor_keys`]).
    vouches: Vec<StateChange>,
    vouch_markers: Vec<actor_keys::Marker>,
}

async fn admit<'a>(
    fed: &Federation,
    tenant: &Tenant,
    source: &Source,
    items: &'a [PeerItem],
    verdicts: Vec<Result<(), Rejection>>,
    carried: &BTreeMap<String, Vec<String>>,
) -> Result<Admitted<'a>, PullError> {
    let store = fed.store.as_ref();
    let mut admitted = Admitted {
        records: Vec::with_capacity(items.len()),
        items: Vec::with_capacity(items.len()),
        quarantine: Vec::new(),
        vouches: Vec::new(),
        vouch_markers: Vec::new(),
    };
    // A page's records share a few namespaces: each is checked against the registry once.
    let mut writable: HashMap<String, bool> = HashMap::new();
    let signed: Vec<&PeerItem> = items
        .iter()
        .zip(&verdicts)
        .filter(|(_, verdict)| verdict.is_ok())
        .map(|(item, _)| item)
        .collect();
    let vouched = actor_keys::vouched(fed, tenant, source, &signed, carried).await;
    for (item, verdict) in items.iter().zip(verdicts) {
        if let Err(rejection) = verdict {
            admitted
                .quarantine
                .push(quarantined(&source.id, item, rejection.code()));
            continue;
        }
        // A typed actor's signer counts only as its serving peer vouches for it.
        let typed = actor_keys::is_typed(&item.envelope.actor) && item.redaction.is_none();
        if typed && !vouched.admits(item) {
            admitted.quarantine.push(quarantined(
                &source.id,
                item,
                Rejection::SignerUnresolved.code(),
            ));
            continue;
        }
        // Pair, consent, registry and audit threads are this steward's own: a peer's record
        // there would change what its folds decide.
        if !pullable_thread(&item.envelope.thread) {
            admitted
                .quarantine
                .push(quarantined(&source.id, item, "THREAD_NOT_ALLOWED"));
            continue;
        }
        // A pull aimed at one of our namespaces stores all it brings there
        // (federation-protocol.md §6.2); otherwise each record lands in its own.
        let namespace = source
            .target_namespace
            .as_deref()
            .unwrap_or_else(|| item.envelope.namespace());
        let allowed = match writable.get(namespace) {
            Some(allowed) => *allowed,
            None => {
                let allowed = fed
                    .namespaces
                    .check_writable(store, &tenant.id, namespace)
                    .await
                    .is_ok();
                writable.insert(namespace.to_string(), allowed);
                allowed
            }
        };
        if !allowed {
            admitted
                .quarantine
                .push(quarantined(&source.id, item, "NAMESPACE_REJECTED"));
            continue;
        }
        let (sig, signer) = (item.sig.as_deref(), item.signer.as_deref());
        admitted.records.push(match &source.target_namespace {
            Some(target) => stored_form_in(
                &item.envelope,
                &item.id,
                sig,
                signer,
                item.redaction.as_ref(),
                target,
            ),
            None => stored_form(
                &item.envelope,
                &item.id,
                sig,
                signer,
                item.redaction.as_ref(),
            ),
        });
        admitted.items.push(item);
    }
    (admitted.vouches, admitted.vouch_markers) =
        vouched.records(fed, tenant, &admitted.items).await?;
    Ok(admitted)
}

/// Stores admitted records with the quarantine entries and `extra` state in one transaction;
/// a record whose (thread, actor, clock) another record holds is quarantined after.
async fn store_admitted(
    fed: &Federation,
    tenant: &Tenant,
    source: &Source,
    admitted: Admitted<'_>,
    extra: impl IntoIterator<Item = StateChange>,
) -> Result<PullOutcome, PullError> {
    let store = fed.store.as_ref();
    if !admitted.records.is_empty() {
        let incoming: usize = admitted.records.iter().map(|r| r.json.len()).sum();
        let held = store.stored_bytes(&tenant.id).await?;
        if held.saturating_add(incoming as u64) > fed.config.store_ceiling {
            return Err(PullError::Parked(Refusal::new(
                ErrorCode::TenantLimitReached,
                format!(
                    "the store holds {held} bytes; records from peers stop at {}",
                    fed.config.store_ceiling
                ),
            )));
        }
    }
    let mut outcome = PullOutcome {
        quarantined: admitted.quarantine.len(),
        ..PullOutcome::default()
    };
    let mut changes = admitted.quarantine;
    changes.extend(admitted.vouches);
    changes.extend(extra);
    // A record written in a traced request at the source is ingested in that same trace.
    let spans: Vec<Option<tracing::Span>> = admitted
        .items
        .iter()
        .map(|item| {
            let traceparent = item.traceparent.as_deref()?;
            let span = tracing::debug_span!(
                "sync.ingest",
                otel.kind = "consumer",
                record = %item.id,
                source = %source.id,
            );
            syncropel_telemetry::propagation::set_parent(&span, traceparent);
            syncropel_telemetry::propagation::link_current(&span);
            Some(span)
        })
        .collect();
    let results = store.write(&tenant.id, admitted.records, changes).await?;
    fed.vouches.remember(admitted.vouch_markers);
    let mut clashes = Vec::new();
    for ((item, result), span) in admitted.items.into_iter().zip(results).zip(spans) {
        if let (Some(span), Ok(Appended::Inserted(_))) = (&span, &result) {
            // A steward pulling from this one continues the trace from here.
            if let Some(traceparent) = syncropel_telemetry::propagation::traceparent(span) {
                fed.traces.note(&item.id, traceparent);
            }
        }
        match result {
            Ok(Appended::Inserted(_)) => outcome.pulled += 1,
            Ok(Appended::Existing(_)) => outcome.duplicates += 1,
            // Another record already holds this (thread, actor, clock): kept out of the log.
            Err(_) => clashes.push(quarantined(&source.id, item, "DUPLICATE_CLOCK")),
        }
    }
    syncropel_telemetry::series::records_ingested("sync", outcome.pulled);
    if !clashes.is_empty() {
        outcome.quarantined += clashes.len();
        store.write(&tenant.id, Vec::new(), clashes).await?;
    }
    if outcome.quarantined > 0 {
        trim_quarantine(fed, &tenant.id, &source.id).await?;
    }
    Ok(outcome)
}

/// Keeps a tenant's quarantine within [`FederationConfig::quarantine_cap`]: past it, entries go,
/// down to nine tenths of the cap, so that a peer sending bad records forever costs a count per
/// page and a trim per tenth of the cap. The source that filled it pays first (its oldest
/// entries); then others' oldest, but never another source's records still waiting for their
/// signer (the only ones fetched again), so a flood cannot make a good peer's records be lost.
///
/// [`FederationConfig::quarantine_cap`]: crate::FederationConfig::quarantine_cap
async fn trim_quarantine(fed: &Federation, tenant: &str, source: &str) -> Result<(), PullError> {
    let cap = fed.config.quarantine_cap;
    if fed.store.state_count(tenant, QUARANTINE).await? <= cap as u64 {
        return Ok(());
    }
    let held = fed.store.state_list(tenant, QUARANTINE).await?;
    let over = held.len().saturating_sub(cap - cap / 10);
    let mut candidates: Vec<(bool, i64, String)> = held
        .into_iter()
        .filter_map(|(key, entry)| {
            let entry = serde_json::from_str::<serde_json::Value>(&entry).ok();
            let at = entry.as_ref().and_then(|e| e["at"].as_i64()).unwrap_or(0);
            let theirs = entry.as_ref().is_none_or(|e| e["source"] == source);
            let waiting = entry
                .as_ref()
                .is_some_and(|e| e["code"] == Rejection::SignerUnresolved.code());
            (theirs || !waiting).then_some((!theirs, at, key))
        })
        .collect();
    candidates.sort_unstable();
    let deletes: Vec<StateChange> = candidates
        .into_iter()
        .take(over)
        .map(|(_, _, key)| StateChange::delete(QUARANTINE, &key))
        .collect();
    let dropped = deletes.len();
    fed.store.write(tenant, Vec::new(), deletes).await?;
    syncropel_telemetry::series::quarantine_dropped(dropped);
    tracing::warn!(
        tenant,
        source,
        dropped,
        "quarantine past its cap: entries were dropped"
    );
    Ok(())
}

fn quarantined(source: &str, item: &PeerItem, code: &str) -> StateChange {
    let entry = serde_json::json!({
        "source": source,
        "id": item.id,
        "thread": item.envelope.thread,
        "actor": item.envelope.actor,
        "code": code,
        "at": unix_now(),
    });
    let key = format!("{source}\n{}", item.id);
    // A record still waiting for its signer keeps the time it was first quarantined.
    if code == Rejection::SignerUnresolved.code() {
        StateChange::put_if_absent(QUARANTINE, &key, entry.to_string())
    } else {
        StateChange::put(QUARANTINE, &key, entry.to_string())
    }
}
