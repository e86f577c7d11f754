//! Service accounts and tokens. Every change is also a record on `th_audit_tokens`, written in the
//! same transaction (PROTOCOL §13.1); only token ids (hashes) ever appear in records.

use serde_json::{json, Map, Value};
use syncropel_protocol::Act;
use syncropel_store::{AuthChange, RecordStore, ServiceAccount};

use crate::auth::{mint_token, new_service_account_id, validate_scopes};
use crate::error::{ApiError, ApiResult};
use crate::ingest::{seal, server_record, Identity};
use crate::unix_now;

const AUDIT_THREAD: &str = "th_audit_tokens";
const AUDIT_KIND: &str = "core.token_lifecycle_event.v1";

/// A freshly minted token: the plaintext is shown once and never stored.
#[derive(Debug, serde::Serialize)]
pub struct MintedToken {
    pub object: &'static str,
    pub token: String,
    pub token_id: String,
    pub sa_id: String,
    pub expires_at: Option<i64>,
}

async fn apply(
    store: &dyn RecordStore,
    tenant: &str,
    identity: &Identity,
    change: AuthChange,
    event: Map<String, Value>,
) -> ApiResult<bool> {
    let mut body = event;
    body.insert("kind".into(), json!(AUDIT_KIND));
    let envelope = server_record(
        Act::Know,
        AUDIT_THREAD,
        &identity.did,
        identity.clock.next(),
        body,
    );
    let audit = seal(&envelope, &identity.key, &identity.signer);
    Ok(store.apply_auth_change(tenant, change, audit).await?)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

pub async fn create_service_account(
    store: &dyn RecordStore,
    tenant: &str,
    identity: &Identity,
    name: &str,
    scopes: Vec<String>,
    allowed_actors: Vec<String>,
) -> ApiResult<ServiceAccount> {
    let id = new_service_account_id();
    create_service_account_with_id(store, tenant, identity, id, name, scopes, allowed_actors).await
}

/// [`create_service_account`] under a given id (the platform's `sa-bootstrap-env`).
pub async fn create_service_account_with_id(
    store: &dyn RecordStore,
    tenant: &str,
    identity: &Identity,
    id: String,
    name: &str,
    scopes: Vec<String>,
    allowed_actors: Vec<String>,
) -> ApiResult<ServiceAccount> {
    if name.trim().is_empty() || name.len() > 128 {
        return Err(ApiError::validation("name must be 1-128 characters"));
    }
    validate_scopes(&scopes)?;
    let sa = ServiceAccount {
        id,
        name: name.to_string(),
        scopes,
        allowed_actors,
        created_at: unix_now(),
    };
    let event = object(json!({
        "event": "service_account_created",
        "sa_id": sa.id,
        "name": sa.name,
        "scopes": sa.scopes,
        "allowed_actors": sa.allowed_actors,
    }));
    apply(
        store,
        tenant,
        identity,
        AuthChange::CreateServiceAccount(sa.clone()),
        event,
    )
    .await?;
    Ok(sa)
}

pub async fn mint(
    store: &dyn RecordStore,
    tenant: &str,
    identity: &Identity,
    env: &str,
    sa_id: &str,
    ttl_seconds: Option<i64>,
) -> ApiResult<MintedToken> {
    let (token, _) = mint_token(env, sa_id);
    install_token(store, tenant, identity, sa_id, token, ttl_seconds).await
}

/// Records a token whose plaintext was chosen elsewhere (the platform's bootstrap token); only
/// its hash is stored.
pub async fn install_token(
    store: &dyn RecordStore,
    tenant: &str,
    identity: &Identity,
    sa_id: &str,
    token: String,
    ttl_seconds: Option<i64>,
) -> ApiResult<MintedToken> {
    if ttl_seconds.is_some_and(|t| t <= 0) {
        return Err(ApiError::validation("ttl_seconds must be positive"));
    }
    let token_id = syncropel_protocol::sha256_hex(token.as_bytes());
    let created_at = unix_now();
    let expires_at = ttl_seconds.map(|t| created_at.saturating_add(t));
    let event = object(json!({
        "event": "token_minted",
        "sa_id": sa_id,
        "token_id": token_id,
        "expires_at": expires_at,
    }));
    let change = AuthChange::MintToken {
        token_id: token_id.clone(),
        sa_id: sa_id.to_string(),
        created_at,
        expires_at,
    };
    apply(store, tenant, identity, change, event).await?;
    Ok(MintedToken {
        object: "token",
        token,
        token_id,
        sa_id: sa_id.to_string(),
        expires_at,
    })
}

/// Revokes a token; `false` when it was unknown or already revoked.
pub async fn revoke(
    store: &dyn RecordStore,
    tenant: &str,
    identity: &Identity,
    token_id: &str,
) -> ApiResult<bool> {
    let event = object(json!({"event": "token_revoked", "token_id": token_id}));
    let change = AuthChange::RevokeToken {
        token_id: token_id.to_string(),
        revoked_at: unix_now(),
    };
    apply(store, tenant, identity, change, event).await
}
