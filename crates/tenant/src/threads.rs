//! Opening and closing threads (`POST /v1/threads`, `DELETE /v1/threads/{id}`, `threads:write`).
//!
//! Records are immutable, so a thread is never erased: closing one makes it read-only for clients
//! from then on (`409 precondition_failed` on a write), its records stay readable and its
//! federation goes on. Opening one allocates its id and writes its first record. Each act is a
//! `core.thread.event.v1` on the server-written `th_audit_threads`, from which [`replay`] rebuilds
//! the closed set on import; the closed threads live as state documents, which each tenant
//! object reads once, on its first write (a hosted replica rebuilds its tenants every few
//! seconds, so a close made on another replica holds there within that time).

use std::collections::HashSet;
use std::sync::Arc;

use rand::RngCore;
use serde_json::{json, Map, Value};
use syncropel_protocol::{validate_thread, Act, ErrorCode, Refusal};
use syncropel_store::{ListFilter, NewRecord, RecordStore, StateChange};

use crate::{sealed_own, Result, Tenant};

pub const AUDIT_THREAD: &str = "th_audit_threads";
pub const EVENT_KIND: &str = "core.thread.event.v1";
pub const OPENED_KIND: &str = "core.thread.opened.v1";
pub const CLOSED_KIND: &str = "core.thread.closed.v1";
const CLOSED_DOC: &str = "thread_closed";
/// Closed threads one tenant may hold (each tenant object holds them all in memory).
pub const MAX_CLOSED: u64 = 10_000;

/// The threads of `tenant` that are closed.
pub async fn closed(store: &dyn RecordStore, tenant: &Tenant) -> Result<Arc<HashSet<String>>> {
    let (seen, held) = tenant.closed_threads();
    if let Some(closed) = held {
        return Ok(closed);
    }
    let closed: HashSet<String> = store
        .state_list(&tenant.id, CLOSED_DOC)
        .await?
        .into_iter()
        .map(|(thread, _)| thread)
        .collect();
    let closed = Arc::new(closed);
    tenant.set_closed_threads(seen, closed.clone());
    Ok(closed)
}

/// Refuses a client's write to a closed thread.
pub async fn require_open(store: &dyn RecordStore, tenant: &Tenant, thread: &str) -> Result<()> {
    if closed(store, tenant).await?.contains(thread) {
        return Err(Refusal::new(
            ErrorCode::PreconditionFailed,
            format!("thread '{thread}' is closed: its records stay readable, it takes no new ones"),
        )
        .into());
    }
    Ok(())
}

/// Whether `thread` holds any record.
async fn exists(store: &dyn RecordStore, tenant: &str, thread: &str) -> Result<bool> {
    let filter = ListFilter {
        thread: Some(thread.to_string()),
        limit: 1,
        ..ListFilter::default()
    };
    Ok(!store.list(tenant, &filter).await?.is_empty())
}

fn body(kind: &str, fields: Value) -> Map<String, Value> {
    let mut body = match fields {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    body.insert("kind".into(), json!(kind));
    body
}

/// Opens a new thread: `id` (else `th_` and 64 random hex digits) must hold no record yet. Its
/// first record, `core.thread.opened.v1`, is the steward's; the answer is that record.
pub async fn open(
    store: &dyn RecordStore,
    tenant: &Tenant,
    id: Option<String>,
    title: Option<String>,
    namespace: &str,
    opened_by: Option<&str>,
) -> Result<NewRecord> {
    let id = match id {
        Some(id) => id,
        None => {
            let mut seed = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut seed);
            format!("th_{}", hex::encode(seed))
        }
    };
    validate_thread(&id).map_err(|e| Refusal::validation(e.to_string()))?;
    if syncropel_protocol::is_server_only_thread(&id) || syncropel_protocol::is_config_thread(&id) {
        return Err(Refusal::new(
            ErrorCode::ReservedThread,
            format!("thread '{id}' is the steward's own"),
        )
        .into());
    }
    if exists(store, &tenant.id, &id).await? {
        return Err(Refusal::new(
            ErrorCode::PreconditionFailed,
            format!("thread '{id}' already holds records"),
        )
        .into());
    }
    let mut fields = json!({"thread": id, "title": title, "opened_by": opened_by});
    if namespace != syncropel_protocol::DEFAULT_NAMESPACE {
        fields["namespace"] = json!(namespace);
    }
    let opened = sealed_own(&tenant.identity, Act::Know, &id, body(OPENED_KIND, fields));
    let event = json!({"event": "opened", "thread": id, "record": opened.id, "by": opened_by});
    let audit = sealed_own(
        &tenant.identity,
        Act::Know,
        AUDIT_THREAD,
        body(EVENT_KIND, event),
    );
    write(store, tenant, vec![opened.clone(), audit], Vec::new()).await?;
    Ok(opened)
}

/// Closes a thread that holds records; `None` when it was closed already.
pub async fn close(
    store: &dyn RecordStore,
    tenant: &Tenant,
    thread: &str,
    closed_by: Option<&str>,
) -> Result<Option<NewRecord>> {
    let held = closed(store, tenant).await?;
    if held.contains(thread) {
        return Ok(None);
    }
    if !exists(store, &tenant.id, thread).await? {
        return Err(Refusal::not_found(format!("no thread '{thread}'")).into());
    }
    if held.len() as u64 >= MAX_CLOSED {
        return Err(Refusal::new(
            ErrorCode::TenantLimitReached,
            format!("this tenant holds {MAX_CLOSED} closed threads"),
        )
        .into());
    }
    let fields = json!({"thread": thread, "closed_by": closed_by});
    let marker = sealed_own(
        &tenant.identity,
        Act::Know,
        thread,
        body(CLOSED_KIND, fields),
    );
    let event = json!({"event": "closed", "thread": thread, "record": marker.id, "by": closed_by});
    let audit = sealed_own(
        &tenant.identity,
        Act::Know,
        AUDIT_THREAD,
        body(EVENT_KIND, event),
    );
    let state = vec![StateChange::put(CLOSED_DOC, thread, "closed")];
    write(store, tenant, vec![marker.clone(), audit], state).await?;
    tenant.note_closed(thread);
    Ok(Some(marker))
}

/// Stores a thread's records and state in one transaction, each record refused on its own.
async fn write(
    store: &dyn RecordStore,
    tenant: &Tenant,
    records: Vec<NewRecord>,
    state: Vec<StateChange>,
) -> Result<()> {
    for written in store.write(&tenant.id, records, state).await? {
        written?;
    }
    Ok(())
}

/// The state a stored `th_audit_threads` record leaves (import).
pub fn replay(thread: &str, body: &Value) -> Vec<StateChange> {
    let closes = thread == AUDIT_THREAD && body["kind"] == EVENT_KIND && body["event"] == "closed";
    match body["thread"].as_str() {
        Some(closed) if closes => vec![StateChange::put(CLOSED_DOC, closed, "closed")],
        _ => Vec::new(),
    }
}
