//! `POST /v1/records`, `GET /v1/records`, `GET /v1/records/{id}` (protocol.md §11.1-11.3), and
//! `POST /v1/records/batch`, many records in one request.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::collections::HashMap;

use futures_util::future::join_all;
use serde_json::Value;
use syncropel_api::splice::BatchWriter;
use syncropel_protocol::{is_config_thread, is_server_only_thread, Envelope, ErrorCode};
use syncropel_store::{encode_cursor, Appended, ListFilter, NewRecord};

use super::{error_body, json_text, record_list, Params, PathParam};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::LimitedBody;
use crate::state::AppState;
use syncropel_tenant::{config, seal, threads, Scope, Tenant};

/// Ingest order of protocol.md §9: auth, parse and validate, claim and thread rules, id, sign,
/// store (idempotency and DuplicateClock are decided atomically by the store's writer).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult<Response> {
    caller.tenant.require_writable()?;
    let envelope = Envelope::parse(&bytes, state.limits.max_json_depth)?;
    authorize(&caller, claimed_actor(&headers), &envelope)?;
    state
        .namespaces
        .check_writable(
            state.store.as_ref(),
            &caller.tenant.id,
            envelope.namespace(),
        )
        .await?;
    threads::require_open(state.store.as_ref(), &caller.tenant, &envelope.thread).await?;
    within_bounds(&state, &caller.tenant, &mut None, &envelope.thread).await?;
    let record = seal_for(&caller, &envelope);
    let appended = state.store.append(&caller.tenant.id, record).await?;
    if envelope.thread == config::THREAD {
        reload_config(&state, &caller.tenant).await?;
    }
    match appended {
        Appended::Inserted(stored) => {
            state.federation.traces.note_current(&stored.id);
            syncropel_telemetry::series::records_ingested("api", 1);
            Ok(json_text(StatusCode::CREATED, stored.json))
        }
        Appended::Existing(stored) => Ok(json_text(StatusCode::OK, stored.json)),
    }
}

/// Past its `store_bounds.max_total_bytes` (protocol.md §13), a tenant's records are refused with
/// `507 STORE_CEILING_REACHED`; config records still pass, since they are how the bound is
/// raised. `held` keeps the store's size for the other records of a batch.
async fn within_bounds(
    state: &AppState,
    tenant: &Tenant,
    held: &mut Option<u64>,
    thread: &str,
) -> ApiResult<()> {
    let Some(max) = tenant.config().store_bounds.max_total_bytes else {
        return Ok(());
    };
    if thread == config::THREAD {
        return Ok(());
    }
    let bytes = match *held {
        Some(bytes) => bytes,
        None => *held.insert(state.store.stored_bytes(&tenant.id).await?),
    };
    if bytes < max {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::StoreCeilingReached,
        format!(
            "the store holds {bytes} bytes, at or past its bound of {max} (`store_bounds` on \
             th_engine_config): reads and deletes go on; raise the bound to write again"
        ),
    ))
}

/// The tenant's configuration again, after a config record was stored through this steward
/// (other hosted replicas read it with the tenant, within its cache time).
pub async fn reload_config(state: &AppState, tenant: &Tenant) -> ApiResult<()> {
    let loaded = config::load(state.store.as_ref(), &tenant.id).await?;
    tenant.set_config(loaded);
    Ok(())
}

/// Most records one batch may carry.
pub const MAX_BATCH_RECORDS: usize = 1000;

/// `POST /v1/records/batch` `{"records": [envelope, …]}`: each record goes through exactly the
/// checks of `POST /v1/records` and gets its own result, in order: `201` with the record, `200`
/// with the stored record for a replay, or its error. The accepted ones are stored together (they
/// share the store's transactions), so one request does the work of many.
pub async fn create_batch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult<Response> {
    caller.tenant.require_writable()?;
    // Each record sits two levels down (`{"records": [...]}`): it gets the same depth as alone.
    let mut body = syncropel_protocol::parse_json(&bytes, state.limits.max_json_depth + 2)?;
    let Some(Value::Array(items)) = body.get_mut("records").map(Value::take) else {
        return Err(ApiError::validation(
            "'records' must be an array of records",
        ));
    };
    if items.len() > MAX_BATCH_RECORDS {
        return Err(ApiError::validation(format!(
            "a batch carries at most {MAX_BATCH_RECORDS} records, this one has {}",
            items.len()
        )));
    }
    // One request, many writes: the token's rate limit counts every record.
    if let Some(grant) = &caller.grant {
        state
            .rate_limits
            .charge_token(&caller.tenant.id, &grant.token_id, items.len())?;
    }
    let claimed = claimed_actor(&headers);
    let mut results: Vec<Option<Result<Appended, ApiError>>> = Vec::with_capacity(items.len());
    // Each namespace is checked against the registry once per batch, not once per record.
    let mut namespaces: HashMap<String, Result<(), ApiError>> = HashMap::new();
    let mut appends = Vec::new();
    let (mut held, mut configures) = (None, false);
    for (index, item) in items.into_iter().enumerate() {
        let envelope = match Envelope::from_value(item) {
            Ok(envelope) => envelope,
            Err(e) => {
                results.push(Some(Err(e.into())));
                continue;
            }
        };
        if let Err(e) = authorize(&caller, claimed, &envelope) {
            results.push(Some(Err(e)));
            continue;
        }
        let namespace = envelope.namespace();
        if !namespaces.contains_key(namespace) {
            let checked = state
                .namespaces
                .check_writable(state.store.as_ref(), &caller.tenant.id, namespace)
                .await
                .map_err(ApiError::from);
            namespaces.insert(namespace.to_string(), checked);
        }
        if let Err(e) = &namespaces[namespace] {
            results.push(Some(Err(e.clone())));
            continue;
        }
        if let Err(e) =
            threads::require_open(state.store.as_ref(), &caller.tenant, &envelope.thread).await
        {
            results.push(Some(Err(e.into())));
            continue;
        }
        if let Err(e) = within_bounds(&state, &caller.tenant, &mut held, &envelope.thread).await {
            results.push(Some(Err(e)));
            continue;
        }
        configures |= envelope.thread == config::THREAD;
        results.push(None);
        let record = seal_for(&caller, &envelope);
        appends.push((index, state.store.append(&caller.tenant.id, record)));
    }
    let (indices, futures): (Vec<usize>, Vec<_>) = appends.into_iter().unzip();
    for (index, outcome) in indices.into_iter().zip(join_all(futures).await) {
        results[index] = Some(outcome.map_err(ApiError::from));
    }
    if configures {
        reload_config(&state, &caller.tenant).await?;
    }

    let (mut created, mut existing, mut failed) = (0usize, 0u64, 0u64);
    let trace = syncropel_telemetry::propagation::current_traceparent();
    let mut out = BatchWriter::new(results.len());
    for (index, result) in results.into_iter().enumerate() {
        // Every item got its result above; one that did not is answered as our failure.
        let result =
            result.unwrap_or_else(|| Err(ApiError::internal("a batch item got no result")));
        match result {
            Ok(Appended::Inserted(stored)) => {
                created += 1;
                if let Some(trace) = &trace {
                    state.federation.traces.note(&stored.id, trace.clone());
                }
                out.record(index, 201, &stored.json);
            }
            Ok(Appended::Existing(stored)) => {
                existing += 1;
                out.record(index, 200, &stored.json);
            }
            Err(e) => {
                failed += 1;
                out.error(index, e.status().as_u16(), &error_body(&e));
            }
        }
    }
    syncropel_telemetry::series::records_ingested("api", created);
    Ok(json_text(
        StatusCode::OK,
        out.finish(created as u64, existing, failed),
    ))
}

fn claimed_actor(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-syncropel-actor")
        .and_then(|v| v.to_str().ok())
}

/// The checks between a valid envelope and the store that need no lookup: scopes, the actor
/// claim, reserved and config threads. The namespace registry is checked by the caller.
fn authorize(caller: &Caller, claimed: Option<&str>, envelope: &Envelope) -> ApiResult<()> {
    caller.require_record_write(&envelope.thread, envelope.namespace())?;
    if let Some(claimed) = claimed {
        if claimed != envelope.actor {
            return Err(ApiError::new(
                ErrorCode::DidClaimDenied,
                format!(
                    "X-Syncropel-Actor '{claimed}' does not match the record's actor '{}'",
                    envelope.actor
                ),
            ));
        }
    }
    caller.require_actor(&envelope.actor)?;
    if is_server_only_thread(&envelope.thread) {
        return Err(ApiError::new(
            ErrorCode::ReservedThread,
            format!(
                "thread '{}' is written by the steward only",
                envelope.thread
            ),
        ));
    }
    if is_config_thread(&envelope.thread) {
        caller.require_config_write()?;
    }
    if envelope.thread == config::THREAD {
        config::check(&envelope.body).map_err(ApiError::validation)?;
    }
    // Records hold handles, backends hold values (protocol.md §14).
    caller
        .tenant
        .config()
        .check_fields(&envelope.body)
        .map_err(|why| ApiError::new(ErrorCode::F16ViolationSensitiveField, why))?;
    if let Some((at, shape)) = syncropel_shapes::find_key_shaped(&envelope.body) {
        return Err(ApiError::new(
            ErrorCode::F16ViolationSensitiveField,
            format!("body.{at} holds a string shaped like a credential ({shape})"),
        )
        .with_hint(
            "keep the value in a secret backend (`POST /v1/secrets/set`) and put its handle in \
             the record",
        ));
    }
    Ok(())
}

/// Signs a record with the tenant's key.
fn seal_for(caller: &Caller, envelope: &Envelope) -> NewRecord {
    let identity = &caller.tenant.identity;
    seal(envelope, &identity.key, &identity.signer)
}

pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    caller.require(Scope::RecordsRead)?;
    match state.store.get(&caller.tenant.id, &id).await? {
        Some(stored) => Ok(json_text(StatusCode::OK, stored.json)),
        None => Err(ApiError::not_found(format!("no record with id '{id}'"))),
    }
}

/// Unfiltered listing is allowed (the SDK's kind-only `query()` sends no filter).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Response> {
    let thread = params.str("thread").map(str::to_string);
    match &thread {
        Some(t) => caller.require_thread_read(t)?,
        None => caller.require(Scope::RecordsRead)?,
    }
    let filter = ListFilter {
        thread,
        actor: params.str("actor").map(str::to_string),
        since_clock: params.int("since")?,
        after_seq: params.cursor()?,
        limit: params.limit(100, 1000)?,
        max_bytes: None,
    };
    page(&state, &caller.tenant.id, filter).await
}

/// One page of a listing, cut at the page byte budget: asks for one extra row to learn whether
/// there is more.
pub async fn page(state: &AppState, tenant: &str, mut filter: ListFilter) -> ApiResult<Response> {
    let limit = filter.limit as usize;
    filter.limit += 1;
    filter.max_bytes = Some(state.limits.max_page_bytes);
    let mut records = state.store.list(tenant, &filter).await?;
    let more = records.len() > limit || filter.cut_by_bytes(&records);
    records.truncate(limit);
    let next_cursor = if more {
        records.last().map(|r| encode_cursor(r.seq))
    } else {
        None
    };
    Ok(record_list(&records, next_cursor))
}
