//! The source side of sync over HTTP: `GET /v1/sync/changes` and `POST /v1/sync/records`,
//! answered to a pair's token (or a sync token, or the operator).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::{Extension, Json};
use serde_json::Value;
use syncropel_api::watch::{self as sse, Heartbeat};
use syncropel_api::SyncRecords;
use syncropel_federation::consent::{self, L0Consent, ACCEPT_HEADER, MAX_ACCEPTANCES};
use syncropel_federation::feed::{self, Access, ChangesQuery, Puller, MAX_FETCH_IDS};
use syncropel_federation::{actor_keys, pairs, push};
use syncropel_protocol::sync::{DEFAULT_PAGE, MAX_PAGE};
use syncropel_protocol::{unix_now, ErrorCode, DEFAULT_NAMESPACE};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::rate_limit::ClientAddress;
use crate::routes::watch;
use crate::routes::JsonBody;
use crate::routes::{json_text, Params};
use crate::state::AppState;
use crate::streams::{StreamSlot, RECHECK};

/// The DID a sync request claims in `X-Syncropel-Actor`.
fn claimed(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-syncropel-actor")
        .and_then(|v| v.to_str().ok())
}

/// What L0 the caller's acceptances in `x-syncropel-consent-accept` open (federation-protocol.md
/// §6.4): values comma-separated or in repeated headers, at most [`MAX_ACCEPTANCES`].
async fn l0_consent(
    state: &AppState,
    caller: &Caller,
    puller: &Puller,
    target: &str,
    headers: &HeaderMap,
) -> ApiResult<L0Consent> {
    let fed = &state.federation;
    if !fed.config.l0_requires_acceptance {
        return Ok(L0Consent::Open);
    }
    let mut shown = Vec::new();
    for value in headers.get_all(ACCEPT_HEADER) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::validation(format!("{ACCEPT_HEADER} is not ASCII")))?;
        for one in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            if shown.len() == MAX_ACCEPTANCES {
                return Err(ApiError::validation(format!(
                    "at most {MAX_ACCEPTANCES} acceptances in {ACCEPT_HEADER}"
                )));
            }
            shown.push(one.to_string());
        }
    }
    Ok(consent::l0_consent(fed, &caller.tenant, &puller.did, target, &shown).await?)
}

/// Checks what the caller's token may do before the engine looks at its pair: the pull scope,
/// and the actor claim a pair token must make.
fn access<'a>(caller: &'a Caller, headers: &'a HeaderMap) -> ApiResult<Access<'a>> {
    caller.require_federation_pull()?;
    let claimed = claimed(headers);
    if let Some(grant) = &caller.grant {
        if !grant.allowed_actors.is_empty() {
            let Some(did) = claimed else {
                return Err(ApiError::new(
                    ErrorCode::DidClaimDenied,
                    "a pair token must name its peer in X-Syncropel-Actor",
                ));
            };
            caller.require_actor(did)?;
        }
    }
    Ok(Access {
        grant: caller.grant.as_deref(),
        claimed,
    })
}

/// `GET /v1/federation/actor-keys?did=D`: the keys that sign for the typed actor `D` here,
/// signed by this steward (federation-protocol.md §1.4), to a caller that may pull from it.
pub async fn actor_keys(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Params,
) -> ApiResult<Response> {
    let fed = &state.federation;
    let access = access(&caller, &headers)?;
    Puller::of(fed, &caller.tenant, &access).await?;
    let did = params
        .str("did")
        .ok_or_else(|| ApiError::validation("did is required"))?;
    let answer = actor_keys::answer(fed, &caller.tenant, did).await?;
    Ok(Json(answer).into_response())
}

/// `GET /v1/sync/changes?thread=T&since=C&limit=N&feed=normal|longpoll&target_namespace=NS`
///
/// A longpoll is a stream (see [`crate::streams`]): it counts against its caller's limits while
/// it waits, and ends when the token is revoked or the tenant suspended meanwhile.
pub async fn changes(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    address: Option<Extension<ClientAddress>>,
    params: Params,
) -> ApiResult<Response> {
    let fed = &state.federation;
    let access = access(&caller, &headers)?;
    let puller = Puller::of(fed, &caller.tenant, &access).await?;
    if let Some((pair_id, _)) = &puller.pair {
        // The peer is up: our own pulls from it need not wait out their backoff.
        fed.jobs.heard_from(&caller.tenant.id, pair_id);
    }
    let thread = params
        .str("thread")
        .ok_or_else(|| ApiError::validation("thread is required"))?
        .to_string();
    feed::check_thread(&thread)?;
    let target = params
        .str("target_namespace")
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_string();
    puller.check_target(&target)?;
    let limit = params.limit(DEFAULT_PAGE, MAX_PAGE)?;
    let (longpoll, continuous) = match params.str("feed") {
        None | Some("normal") => (false, false),
        Some("longpoll") => (true, false),
        Some("continuous") => (true, true),
        Some(other) => {
            return Err(ApiError::validation(format!(
                "feed must be normal, longpoll or continuous, not '{other}'"
            )))
        }
    };
    // A continuous feed resumes after the cursor of the last event it sent.
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|_| continuous);
    let l0 = l0_consent(&state, &caller, &puller, &target, &headers).await?;
    let query = ChangesQuery {
        thread,
        target,
        since: resumed.or(params.str("since")).unwrap_or("").to_string(),
        limit,
        longpoll,
        l0,
    };
    if continuous {
        caller.tenant.status.require_active("watched")?;
        let slot = state.streams.acquire(
            &caller.tenant.id,
            caller.token_id(),
            address.map(|Extension(ClientAddress(ip))| ip),
        )?;
        if puller.pair.is_some() {
            fed.ensure_outbox(&caller.tenant);
        }
        let claimed = claimed(&headers).map(str::to_string);
        let stream = continuous_feed(state.clone(), caller, claimed, query, slot);
        let mut response = Sse::new(stream).into_response();
        let h = response.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        return Ok(response);
    }
    // A peer's direct pull is what gives the relay outbox its queues (noted as the page is
    // read): looked at once it is answered.
    let served = |body: String| {
        if puller.pair.is_some() {
            fed.ensure_outbox(&caller.tenant);
        }
        json_text(StatusCode::OK, body)
    };
    if !query.longpoll {
        let body = feed::changes(fed, &caller.tenant, &access, &puller, &query).await?;
        return Ok(served(body));
    }
    caller.tenant.status.require_active("watched")?;
    let _slot = state.streams.acquire(
        &caller.tenant.id,
        caller.token_id(),
        address.map(|Extension(ClientAddress(ip))| ip),
    )?;
    let answer = feed::changes(fed, &caller.tenant, &access, &puller, &query);
    tokio::pin!(answer);
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.tick().await;
    loop {
        tokio::select! {
            body = &mut answer => return Ok(served(body?)),
            _ = recheck.tick() => caller.still_allowed(&state).await?,
        }
    }
}

/// `POST /v1/sync/records {"ids": [...]}`: specific records (missing parents), filtered like a
/// page. Unknown ids and ids on threads never served are left out.
pub async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Params,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    if body.get("records").is_some() {
        return push(&state, &caller, &headers, body).await;
    }
    let fed = &state.federation;
    let access = access(&caller, &headers)?;
    let puller = Puller::of(fed, &caller.tenant, &access).await?;
    let target = params.str("target_namespace").unwrap_or(DEFAULT_NAMESPACE);
    puller.check_target(target)?;
    let Some(Value::Array(ids)) = body.get("ids") else {
        return Err(ApiError::validation("'ids' must be an array of record ids"));
    };
    if ids.len() > MAX_FETCH_IDS {
        return Err(ApiError::validation(format!(
            "at most {MAX_FETCH_IDS} ids per request"
        )));
    }
    let ids = ids
        .iter()
        .map(|id| id.as_str().map(str::to_string))
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| ApiError::validation("every id must be a string"))?;
    let l0 = l0_consent(&state, &caller, &puller, target, &headers).await?;
    let items = feed::fetch(fed, &caller.tenant, &puller, (target, &l0), &ids).await?;
    Ok(Json(SyncRecords { records: items }).into_response())
}

/// `POST /v1/sync/records {"records": [...]}` with `x-syncropel-federation: 1`: a pair's peer
/// pushes records (federation-protocol.md §5.3), with its pair token and the
/// `federation:sync_push` grain.
async fn push(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: Value,
) -> ApiResult<Response> {
    caller.require_federation_push()?;
    caller.tenant.require_writable()?;
    if headers
        .get("x-syncropel-federation")
        .is_none_or(|v| v.as_bytes() != b"1")
    {
        return Err(ApiError::validation(
            "a push is sent with `x-syncropel-federation: 1`",
        ));
    }
    let Some(Value::Array(records)) = body.get("records") else {
        return Err(ApiError::validation(
            "'records' must be an array of sync items",
        ));
    };
    let fed = &state.federation;
    let sa_id = caller
        .grant
        .as_ref()
        .map(|g| g.sa_id.as_str())
        .unwrap_or("");
    let pair = pairs::by_inbound_account(fed, &caller.tenant, sa_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::PermissionDenied, "a push needs a pair's token"))?;
    let pushed = push::receive(fed, &caller.tenant, &pair, records.clone()).await?;
    Ok(Json(pushed).into_response())
}

/// `feed=continuous` (federation-protocol.md §5.1): the changes feed as server-sent events, one
/// `record.created` per record (its data the sync item, its id the cursor after it, so a
/// reconnect with `Last-Event-ID` resumes with no gap and no duplicate), `heartbeat`s, and an
/// `error` or `server_shutdown` before it ends. The pair is checked again before every record
/// (a pause or revoke ends the stream); the stream counts against its caller's limits. It ends
/// with no event when the L0 acceptances it was opened with are due again (§6.4).
fn continuous_feed(
    state: AppState,
    caller: Caller,
    claimed: Option<String>,
    query: ChangesQuery,
    slot: StreamSlot,
) -> impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>> {
    async_stream::stream! {
        let _slot = slot;
        let fed = &state.federation;
        let access = Access {
            grant: caller.grant.as_deref(),
            claimed: claimed.as_deref(),
        };
        let mut since = query.since.clone();
        let mut heartbeat = tokio::time::interval(state.heartbeat);
        heartbeat.tick().await;
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.tick().await;
        // The L0 decision was made for this request: once its first acceptance expires or is due
        // to be checked again, the stream ends and the puller's reconnect shows its acceptances
        // afresh (a revoked one no longer among them).
        let l0_until = query.l0.until();
        let renew = async move {
            match l0_until {
                Some(at) => {
                    let left = u64::try_from(at - unix_now()).unwrap_or(0);
                    tokio::time::sleep(std::time::Duration::from_secs(left)).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(renew);
        loop {
            let puller = match Puller::of(fed, &caller.tenant, &access).await {
                Ok(puller) => puller,
                Err(e) => {
                    let refused = ApiError::from(e);
                    yield Ok(watch::error_event(refused.code.as_str(), &refused.message));
                    return;
                }
            };
            // One record a page: every event carries the cursor just after its record.
            let next = ChangesQuery {
                since: since.clone(),
                limit: 1,
                ..query.clone()
            };
            let page = feed::changes(fed, &caller.tenant, &access, &puller, &next);
            tokio::select! {
                _ = state.shutdown.cancelled() => {
                    yield Ok(watch::shutdown_event());
                    return;
                }
                _ = &mut renew => return,
                _ = heartbeat.tick() => {
                    yield Ok(watch::json_event(sse::HEARTBEAT, &Heartbeat { ts: watch::now_ms() }));
                }
                _ = recheck.tick() => {
                    if let Err(refused) = caller.still_allowed(&state).await {
                        yield Ok(watch::error_event(refused.code.as_str(), &refused.message));
                        return;
                    }
                }
                page = page => match page.map(|text| serde_json::from_str::<Value>(&text)) {
                    Ok(Ok(page)) => {
                        let cursor = page["next_cursor"].as_str().unwrap_or_default().to_string();
                        for item in page["records"].as_array().into_iter().flatten() {
                            yield Ok(Event::default()
                                .event(sse::RECORD_CREATED)
                                .id(cursor.clone())
                                .data(item.to_string()));
                        }
                        since = cursor;
                    }
                    Ok(Err(e)) => {
                        yield Ok(watch::error_event("INTERNAL_ERROR", &format!("a page did not read: {e}")));
                        return;
                    }
                    Err(e) => {
                        let refused = ApiError::from(e);
                        yield Ok(watch::error_event(refused.code.as_str(), &refused.message));
                        return;
                    }
                }
            }
        }
    }
}
