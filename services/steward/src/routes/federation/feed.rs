//! The source side of sync over HTTP: `GET /v1/sync/changes` and `POST /v1/sync/records`,
//! answered to a pair's token (or a sync token, or the operator).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::{Extension, Json};
use serde_json::Value;
use syncropel_api::SyncRecords;
use syncropel_federation::feed::{self, Access, ChangesQuery, Puller, MAX_FETCH_IDS};
use syncropel_federation::{pairs, push};
use syncropel_protocol::sync::{DEFAULT_PAGE, MAX_PAGE};
use syncropel_protocol::{ErrorCode, DEFAULT_NAMESPACE};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::rate_limit::ClientAddress;
use crate::routes::JsonBody;
use crate::routes::{json_text, Params};
use crate::state::AppState;
use crate::streams::RECHECK;

/// The DID a sync request claims in `X-Syncropel-Actor`.
fn claimed(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-syncropel-actor")
        .and_then(|v| v.to_str().ok())
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
    let longpoll = match params.str("feed") {
        None | Some("normal") => false,
        Some("longpoll") => true,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "feed must be normal or longpoll, not '{other}'"
            )))
        }
    };
    let query = ChangesQuery {
        thread,
        target,
        since: params.str("since").unwrap_or("").to_string(),
        limit,
        longpoll,
    };
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
    let items = feed::fetch(fed, &caller.tenant, &puller, target, &ids).await?;
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
