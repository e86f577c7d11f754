//! The provisioning API of the signup platform (federation-protocol.md §8.1): `POST /provision`,
//! `GET /provision/{id}`, suspend, resume and delete. These routes live on the platform host only.
//!
//! A tenant is one transaction away from usable: `reserve`, `tenant_create` and `identity` commit
//! together (tenant row, sealed key, DID, the provisioning record), refusals roll all of it back;
//! `bootstrap` then stores the bootstrap account and token through the record store (with their
//! audit records), and `manifest` signs the first federation manifest and opens the tenant. Every
//! step after the first transaction is idempotent, so a retry with the same `Idempotency-Key`
//! resumes where a failed attempt stopped. Records live in hash partitions, so no DDL runs.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::distributions::{Alphanumeric, DistString};
use serde_json::{json, Value};
use syncropel_api::{self as api, ProvisionAccepted};
use syncropel_federation::PeerClient;
use syncropel_protocol::{
    canonical_string, public_key_from_did_key, sha256_hex, ErrorCode, Keypair,
};
use syncropel_store::platform::{
    NewProvision, NewTenant, ProvisionRow, Reservation, TenantState, LIVE_LABEL_CONSTRAINT,
};
use syncropel_store::{RecordStore, StoreError};

use super::platform::{DirectoryRegistration, Platform};
use crate::error::{ApiError, ApiResult};
use crate::hosted::addressing::Addressed;
use crate::routes::JsonBody;
use crate::routes::PathParam;
use crate::state::AppState;
use crate::state::Tenancy;
use crate::tenant::{Tenant, TenantStatus};
use syncropel_tenant::{create_service_account_with_id, install_token};

/// The bootstrap service account of every hosted tenant (the upstream `SPL_BOOTSTRAP_TOKEN` name).
pub const BOOTSTRAP_ACCOUNT: &str = "sa-bootstrap-env";
const PHASES: [&str; 7] = [
    "reserve",
    "tenant_create",
    "identity",
    "directory",
    "bootstrap",
    "manifest",
    "ready",
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/provision", post(provision))
        .route("/provision/{id}", get(status).delete(delete))
        .route("/provision/{id}/suspend", post(suspend))
        .route("/provision/{id}/resume", post(resume))
}

/// A platform call: addressed to the platform host, with a valid platform JWT.
pub struct PlatformCall {
    platform: Arc<Platform>,
    account: String,
}

impl FromRequestParts<AppState> for PlatformCall {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<PlatformCall> {
        let (Tenancy::Hosted(platform), Some(Addressed::Platform)) =
            (&state.tenancy, parts.extensions.get::<Addressed>())
        else {
            return Err(ApiError::not_found("no such route"));
        };
        let account = platform.jwt.account(&parts.headers)?;
        Ok(PlatformCall {
            platform: platform.clone(),
            account,
        })
    }
}

/// The body of `POST /provision`.
struct ProvisionRequest {
    label: String,
    bootstrap_token: String,
    recovery_key: Option<String>,
}

impl ProvisionRequest {
    fn parse(body: &Value, platform: &Platform) -> ApiResult<ProvisionRequest> {
        let Value::Object(fields) = body else {
            return Err(ApiError::validation("the body must be a JSON object"));
        };
        if let Some(unknown) = fields
            .keys()
            .find(|k| !matches!(k.as_str(), "label" | "bootstrap_token" | "recovery_key"))
        {
            return Err(ApiError::validation(format!("unknown field '{unknown}'"))
                .with_hint("fields: label, bootstrap_token, recovery_key"));
        }
        let text = |name: &str| -> ApiResult<Option<String>> {
            match fields.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ApiError::validation(format!("'{name}' must be a string"))),
            }
        };
        let label = text("label")?.ok_or_else(|| ApiError::validation("'label' is required"))?;
        check_label(&label, &platform.config.reserved_labels)?;
        let bootstrap_token = text("bootstrap_token")?
            .ok_or_else(|| ApiError::validation("'bootstrap_token' is required"))?;
        let printable = |c: char| c.is_ascii_graphic();
        if !(16..=256).contains(&bootstrap_token.len()) || !bootstrap_token.chars().all(printable) {
            return Err(ApiError::validation(
                "'bootstrap_token' must be 16-256 printable ASCII characters without whitespace",
            ));
        }
        let recovery_key = text("recovery_key")?;
        if let Some(key) = &recovery_key {
            public_key_from_did_key(key).map_err(|e| {
                ApiError::validation(format!("'recovery_key' must be an Ed25519 did:key: {e}"))
            })?;
        }
        Ok(ProvisionRequest {
            label,
            bootstrap_token,
            recovery_key,
        })
    }
}

/// 3-32 characters of `a-z 0-9 -`, not starting or ending with `-` (it is a DNS label), not
/// reserved, and without `--` in third and fourth place: such labels are reserved for encodings
/// (`xn--` is punycode), which would let a tenant look like another.
pub fn check_label(label: &str, reserved: &[String]) -> ApiResult<()> {
    let shaped = (3..=32).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-');
    if !shaped {
        return Err(ApiError::new(
            ErrorCode::LabelInvalid,
            format!("label '{label}' must be 3-32 characters of a-z, 0-9 and '-', not starting or ending with '-'"),
        ));
    }
    if label.get(2..4) == Some("--") {
        return Err(ApiError::new(
            ErrorCode::LabelInvalid,
            format!("label '{label}' has '--' in third and fourth place, which DNS keeps for encoded names such as 'xn--'"),
        ));
    }
    if reserved.iter().any(|r| r == label) {
        return Err(ApiError::new(
            ErrorCode::LabelReserved,
            format!("label '{label}' is reserved"),
        ));
    }
    Ok(())
}

/// A provisioning as stored.
struct Provision {
    instance_id: String,
    label: String,
    tenant: String,
    phase: String,
    phases: Value,
    error: Option<Value>,
}

impl Provision {
    fn from_row(row: ProvisionRow) -> Provision {
        Provision {
            instance_id: row.instance_id,
            label: row.label,
            tenant: row.tenant,
            phase: row.phase,
            phases: row.phases,
            error: row.error,
        }
    }

    fn accepted(&self) -> ProvisionAccepted {
        ProvisionAccepted {
            instance_id: self.instance_id.clone(),
            label: self.label.clone(),
            phase: self.phase.clone(),
        }
    }

    /// Marks `name` done (and the next phase current) in the phase list.
    fn finish(&mut self, name: &str, started: SystemTime) {
        let now = rfc3339(SystemTime::now());
        if let Some(phases) = self.phases.as_array_mut() {
            for phase in phases.iter_mut() {
                if phase["name"] == name {
                    phase["status"] = json!("done");
                    phase["started_at"] = json!(rfc3339(started));
                    phase["finished_at"] = json!(now);
                }
            }
        }
        let next = PHASES
            .iter()
            .position(|p| *p == name)
            .and_then(|i| PHASES.get(i + 1));
        if let Some(next) = next {
            self.phase = next.to_string();
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<String> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or("");
    if key.is_empty() || key.len() > 255 || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::validation(
            "an Idempotency-Key header (1-255 printable ASCII characters) is required",
        )
        .with_hint("send the same key when retrying so the tenant is made once"));
    }
    Ok(key.to_string())
}

/// `POST /provision` -> 202 `{instance_id, label, phase}`.
async fn provision(
    State(state): State<AppState>,
    call: PlatformCall,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<ProvisionAccepted>)> {
    let started = std::time::Instant::now();
    let platform = &call.platform;
    let key = idempotency_key(&headers)?;
    let request = ProvisionRequest::parse(&body, platform)?;
    let request_sha256 = sha256_hex(canonical_string(&body).as_bytes());
    let mut provision = reserve(platform, &call.account, &key, &request_sha256, &request).await?;
    if provision.phase == "ready" {
        syncropel_telemetry::series::provisioned(started.elapsed(), "existing");
    } else {
        let client = state.federation.directory_client();
        if let Err(e) = complete(
            platform,
            client,
            state.store.as_ref(),
            &mut provision,
            &request,
        )
        .await
        {
            record_error(platform, &provision, &e).await;
            syncropel_telemetry::series::provisioned(started.elapsed(), "failed");
            return Err(e);
        }
        syncropel_telemetry::series::provisioned(started.elapsed(), "created");
        platform.count_active_tenants().await;
    }
    Ok((StatusCode::ACCEPTED, Json(provision.accepted())))
}

/// The first transaction: replays and refusals are decided under a per-account lock, then the
/// tenant row (with its sealed key and DID) and the provisioning row are written together.
async fn reserve(
    platform: &Platform,
    account: &str,
    key: &str,
    request_sha256: &str,
    request: &ProvisionRequest,
) -> ApiResult<Provision> {
    let started = SystemTime::now();
    let mut tx = platform.store.reserve(account).await?;
    let existing = tx.replay(key).await?;
    if let Some((row, stored_sha256)) = existing {
        if stored_sha256 != request_sha256 {
            return Err(ApiError::new(
                ErrorCode::IdempotencyConflict,
                "this Idempotency-Key was used with another request",
            )
            .with_hint("use a new key for a new request"));
        }
        return Ok(Provision::from_row(row));
    }

    let purged = free_label(&mut tx, platform, &request.label).await?;
    let held = tx.held_tenants().await?;
    let limit = platform.config.tenant_limit;
    if held >= i64::from(limit) {
        return Err(ApiError::new(
            ErrorCode::TenantLimitReached,
            format!("this account already has {held} tenants; the limit is {limit}"),
        )
        .with_hint("delete a tenant or ask for a higher limit")
        .with_extra("tenant_count", held)
        .with_extra("tenant_limit", limit));
    }

    let tenant = format!("tn_{}", random_id());
    let keypair = Keypair::generate();
    let did = keypair.did_key();
    let (nonce, sealed) = platform.kek.seal(&tenant, &keypair.seed());
    let mut provision = Provision {
        instance_id: format!("inst_{}", random_id()),
        label: request.label.clone(),
        tenant: tenant.clone(),
        phase: PHASES[0].to_string(),
        phases: Value::Array(
            PHASES
                .iter()
                .map(|name| json!({"name": name, "status": "pending", "started_at": null, "finished_at": null}))
                .collect(),
        ),
        error: None,
    };
    for phase in ["reserve", "tenant_create", "identity"] {
        provision.finish(phase, started);
    }
    let inserted = tx
        .insert_tenant(&NewTenant {
            id: &tenant,
            label: &request.label,
            did: &did,
            key_nonce: &nonce,
            key_sealed: &sealed,
            recovery_key: request.recovery_key.as_deref(),
        })
        .await;
    if let Err(e) = inserted {
        // Another account took the label between our check and our insert.
        let taken = matches!(
            &e,
            StoreError::Conflict { constraint } if constraint == LIVE_LABEL_CONSTRAINT
        );
        return Err(if taken {
            label_taken(&request.label)
        } else {
            ApiError::internal(e)
        });
    }
    tx.insert_provision(&NewProvision {
        instance_id: &provision.instance_id,
        idempotency_key: key,
        request_sha256,
        label: &provision.label,
        tenant: &tenant,
        phase: &provision.phase,
        phases: &provision.phases,
    })
    .await?;
    tx.commit().await?;
    // Recorded once the purge is committed with the reservation, never for one rolled back.
    if let Some(old) = purged {
        platform
            .record_lifecycle(&old, "purged", json!({"cause": "label taken again"}))
            .await?;
    }
    tracing::info!(instance = %provision.instance_id, %tenant, label = %provision.label, "tenant reserved");
    Ok(provision)
}

/// Refuses a label held by a live tenant; a deleted tenant past its grace period is purged here
/// rather than waiting for the sweeper.
/// Frees `label` of a tenant deleted longer than the grace period ago, purging it in `tx`: the
/// tenant purged, if one was.
async fn free_label(
    tx: &mut Reservation,
    platform: &Platform,
    label: &str,
) -> ApiResult<Option<String>> {
    let holder = tx
        .label_holder(label, platform.config.deletion_grace)
        .await?;
    match holder {
        None => Ok(None),
        Some(row) if row.expired => {
            tx.purge(&row.tenant).await.map_err(ApiError::internal)?;
            Ok(Some(row.tenant))
        }
        Some(_) => Err(label_taken(label)),
    }
}

fn label_taken(label: &str) -> ApiError {
    ApiError::new(
        ErrorCode::LabelTaken,
        format!("label '{label}' is taken (or was freed too recently to be reused)"),
    )
}

fn random_id() -> String {
    Alphanumeric
        .sample_string(&mut rand::thread_rng(), 20)
        .to_lowercase()
}

/// `bootstrap` and `manifest`, then the tenant opens. Each step checks what is already there.
async fn complete(
    platform: &Platform,
    client: &PeerClient,
    store: &dyn RecordStore,
    provision: &mut Provision,
    request: &ProvisionRequest,
) -> ApiResult<()> {
    // No lock is held across the steps (they run on the store's own connections, and a lock held
    // meanwhile could starve them): each step tolerates a concurrent attempt instead.
    let id = provision.tenant.clone();
    let tenant_row = || platform.store.sealed_tenant(&id);
    let row = tenant_row().await?;
    let started = SystemTime::now();
    if let Some(registration) = &platform.config.registration {
        let identity = platform.identity(&provision.tenant, &row)?;
        if identity.did == identity.signer {
            register_did(
                platform,
                registration,
                client,
                provision,
                request,
                &identity.key,
            )
            .await?;
        }
    }
    provision.finish("directory", started);
    let row = tenant_row().await?;
    let tenant = Tenant::new(
        provision.tenant.clone(),
        platform.identity(&provision.tenant, &row)?,
        TenantStatus::Active,
        true,
    );

    let started = SystemTime::now();
    bootstrap(
        store,
        &tenant,
        &platform.config.env,
        &request.bootstrap_token,
    )
    .await?;
    provision.finish("bootstrap", started);

    let started = SystemTime::now();
    let manifest = syncropel_federation::manifest::sign(
        &tenant.identity.key,
        &tenant.identity.did,
        &platform.tenant_url(&provision.label),
        started,
    );
    provision.finish("manifest", started);
    provision.finish("ready", SystemTime::now());
    provision.phase = "ready".into();
    provision.error = None;

    // Before the provisioning is marked ready: a retry after a failure here records it again
    // rather than never.
    platform
        .record_lifecycle(
            &provision.tenant,
            "provisioned",
            json!({"label": provision.label, "instance_id": provision.instance_id,
                   "did": &*tenant.identity.did}),
        )
        .await?;
    platform
        .store
        .finish_provision(
            &provision.instance_id,
            &provision.tenant,
            &manifest.to_string(),
            &provision.phase,
            &provision.phases,
        )
        .await?;
    tracing::info!(instance = %provision.instance_id, tenant = %provision.tenant, "tenant ready");
    Ok(())
}

/// Registers the tenant's did:sync while it is provisioned. The genesis is built from the
/// reservation alone (its time included), so a retry posts the same operation and the directory
/// answers with the same DID.
async fn register_did(
    platform: &Platform,
    registration: &DirectoryRegistration,
    client: &PeerClient,
    provision: &Provision,
    request: &ProvisionRequest,
    key: &Keypair,
) -> ApiResult<()> {
    let did = registration
        .register(
            client,
            key,
            request.recovery_key.as_deref(),
            &platform.tenant_url(&provision.label),
            provision.phases[0]["started_at"].as_str(),
        )
        .await?;
    platform
        .store
        .set_provisioning_did(&provision.tenant, &did)
        .await?;
    tracing::info!(tenant = %provision.tenant, %did, "tenant registered at the directory");
    Ok(())
}

/// The `SPL_BOOTSTRAP_TOKEN` semantics per tenant: the account `sa-bootstrap-env` with `admin`,
/// and the bearer `spl_<env>_sa-bootstrap-env_<bootstrap_token>`, stored as its hash. Made once.
async fn bootstrap(
    store: &dyn RecordStore,
    tenant: &Tenant,
    env: &str,
    bootstrap_token: &str,
) -> ApiResult<()> {
    // Another attempt at the same provisioning (a retry, on any replica) may run at the same time:
    // a step that fails because that attempt just did it has succeeded.
    if store
        .service_account(&tenant.id, BOOTSTRAP_ACCOUNT)
        .await?
        .is_none()
    {
        let created = create_service_account_with_id(
            store,
            &tenant.id,
            &tenant.identity,
            BOOTSTRAP_ACCOUNT.to_string(),
            "bootstrap",
            vec!["admin".to_string()],
            Vec::new(),
        )
        .await;
        if let Err(e) = created {
            if store
                .service_account(&tenant.id, BOOTSTRAP_ACCOUNT)
                .await?
                .is_none()
            {
                return Err(e.into());
            }
        }
    }
    let token = format!("spl_{env}_{BOOTSTRAP_ACCOUNT}_{bootstrap_token}");
    let token_id = sha256_hex(token.as_bytes());
    if store.token(&tenant.id, &token_id).await?.is_none() {
        let installed = install_token(
            store,
            &tenant.id,
            &tenant.identity,
            BOOTSTRAP_ACCOUNT,
            token,
            None,
        )
        .await;
        if let Err(e) = installed {
            if store.token(&tenant.id, &token_id).await?.is_none() {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

async fn record_error(platform: &Platform, provision: &Provision, error: &ApiError) {
    let stored = platform
        .store
        .record_provision_error(&provision.instance_id, &error.body())
        .await;
    if let Err(e) = stored {
        tracing::warn!(error = %e, "could not record a provisioning failure");
    }
}

/// The provisioning `id` of the calling account, or 404 (another account's is as unknown as one
/// that never existed).
async fn owned(platform: &Platform, account: &str, id: &str) -> ApiResult<Provision> {
    let row = platform.store.provision(id, account).await?;
    row.map(Provision::from_row)
        .ok_or_else(|| ApiError::not_found(format!("no provisioning '{id}'")))
}

async fn describe(platform: &Platform, provision: &Provision) -> ApiResult<Json<api::Provision>> {
    let (status, did) = platform.store.status_and_did(&provision.tenant).await?;
    // Both documents were written by this module; reading them back cannot fail but for a
    // corrupted row, which is this platform's failure.
    let phases = serde_json::from_value(provision.phases.clone()).map_err(ApiError::internal)?;
    let error = provision
        .error
        .clone()
        .map(serde_json::from_value)
        .transpose()
        .map_err(ApiError::internal)?;
    Ok(Json(api::Provision {
        instance_id: provision.instance_id.clone(),
        label: provision.label.clone(),
        phase: provision.phase.clone(),
        phases,
        error,
        tenant_status: status.as_str().to_string(),
        did,
        url: platform.tenant_url(&provision.label),
    }))
}

/// `GET /provision/{id}`: phases, error, and the tenant's status, DID and URL.
async fn status(call: PlatformCall, PathParam(id): PathParam) -> ApiResult<Json<api::Provision>> {
    let provision = owned(&call.platform, &call.account, &id).await?;
    describe(&call.platform, &provision).await
}

/// Moves the tenant of a provisioning from one of `from` to `to`.
async fn transition(
    call: &PlatformCall,
    id: &str,
    from: &[TenantState],
    to: TenantState,
) -> ApiResult<Json<api::Provision>> {
    let platform = &call.platform;
    let provision = owned(platform, &call.account, id).await?;
    let changed = platform
        .store
        .change_state(&provision.tenant, from, to)
        .await?;
    let current = platform.store.tenant_state(&provision.tenant).await?;
    if !changed && current != to {
        return Err(ApiError::new(
            ErrorCode::ValidationError,
            format!("a tenant that is {current} cannot become {to}"),
        ));
    }
    if changed {
        let event = match to {
            TenantState::Suspended => "suspended",
            TenantState::Active => "resumed",
            _ => "deleted",
        };
        platform
            .record_lifecycle(
                &provision.tenant,
                event,
                json!({"label": provision.label, "instance_id": id, "account": call.account}),
            )
            .await?;
    }
    platform.forget(&provision.label);
    describe(platform, &provision).await
}

/// `POST /provision/{id}/suspend`: the tenant becomes read-only.
async fn suspend(call: PlatformCall, PathParam(id): PathParam) -> ApiResult<Json<api::Provision>> {
    transition(&call, &id, &[TenantState::Active], TenantState::Suspended).await
}

/// `POST /provision/{id}/resume`: a suspended tenant takes writes again.
async fn resume(call: PlatformCall, PathParam(id): PathParam) -> ApiResult<Json<api::Provision>> {
    transition(&call, &id, &[TenantState::Suspended], TenantState::Active).await
}

/// `DELETE /provision/{id}`: read-only (export works) for the grace period, then purged.
async fn delete(call: PlatformCall, PathParam(id): PathParam) -> ApiResult<Json<api::Provision>> {
    // A provisioning that failed and is not retried can be deleted too, freeing its label and
    // its place in the account's limit after the grace period.
    transition(
        &call,
        &id,
        &[
            TenantState::Provisioning,
            TenantState::Active,
            TenantState::Suspended,
        ],
        TenantState::Deleted,
    )
    .await
}
