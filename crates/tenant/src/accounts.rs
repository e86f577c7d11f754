//! Service accounts and tokens. Every change is also a record on `th_audit_tokens`, written in the
//! same transaction (protocol.md §13.1); only token ids (hashes) ever appear in records.

use rand::distributions::{Alphanumeric, DistString};
use serde_json::{json, Map, Value};
use syncropel_protocol::{sha256_hex, unix_now, Act, Refusal};
use syncropel_store::{AuthChange, RecordStore, ServiceAccount};

use crate::scopes::validate_scopes;
use crate::seal::sealed_own;
use crate::{Identity, Result};

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
) -> Result<bool> {
    let mut body = event;
    body.insert("kind".into(), json!(AUDIT_KIND));
    let audit = sealed_own(identity, Act::Know, AUDIT_THREAD, body);
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
) -> Result<ServiceAccount> {
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
) -> Result<ServiceAccount> {
    if name.trim().is_empty() || name.len() > 128 {
        return Err(Refusal::validation("name must be 1-128 characters").into());
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
) -> Result<MintedToken> {
    let (token, _) = mint_token(env, sa_id);
    install_token(store, tenant, identity, sa_id, token, ttl_seconds).await
}

/// [`mint`] under a grant: the token lives only as long as the grant and its ancestors do.
pub async fn mint_under_grant(
    store: &dyn RecordStore,
    tenant: &str,
    identity: &Identity,
    env: &str,
    sa_id: &str,
    ttl_seconds: Option<i64>,
    grant_id: &str,
) -> Result<MintedToken> {
    let (token, _) = mint_token(env, sa_id);
    let grant_id = Some(grant_id.to_string());
    install(store, tenant, identity, sa_id, token, ttl_seconds, grant_id).await
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
) -> Result<MintedToken> {
    install(store, tenant, identity, sa_id, token, ttl_seconds, None).await
}

async fn install(
    store: &dyn RecordStore,
    tenant: &str,
    identity: &Identity,
    sa_id: &str,
    token: String,
    ttl_seconds: Option<i64>,
    grant_id: Option<String>,
) -> Result<MintedToken> {
    if ttl_seconds.is_some_and(|t| t <= 0) {
        return Err(Refusal::validation("ttl_seconds must be positive").into());
    }
    let token_id = syncropel_protocol::sha256_hex(token.as_bytes());
    let created_at = unix_now();
    let expires_at = ttl_seconds.map(|t| created_at.saturating_add(t));
    let mut event = object(json!({
        "event": "token_minted",
        "sa_id": sa_id,
        "token_id": token_id,
        "expires_at": expires_at,
    }));
    if let Some(grant_id) = &grant_id {
        event.insert("grant_id".into(), json!(grant_id));
    }
    let change = AuthChange::MintToken {
        token_id: token_id.clone(),
        sa_id: sa_id.to_string(),
        created_at,
        expires_at,
        grant_id,
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

/// Puts an account's live, grantless tokens under a grant (an adopted member keeps its bearer).
pub async fn parent_tokens(
    store: &dyn RecordStore,
    tenant: &str,
    identity: &Identity,
    sa_id: &str,
    grant_id: &str,
) -> Result<()> {
    let event = object(json!({
        "event": "tokens_parented",
        "sa_id": sa_id,
        "grant_id": grant_id,
    }));
    let change = AuthChange::ParentTokens {
        sa_id: sa_id.to_string(),
        grant_id: grant_id.to_string(),
    };
    apply(store, tenant, identity, change, event).await?;
    Ok(())
}

/// Revokes a token; `false` when it was unknown or already revoked.
pub async fn revoke(
    store: &dyn RecordStore,
    tenant: &str,
    identity: &Identity,
    token_id: &str,
) -> Result<bool> {
    let event = object(json!({"event": "token_revoked", "token_id": token_id}));
    let change = AuthChange::RevokeToken {
        token_id: token_id.to_string(),
        revoked_at: unix_now(),
    };
    apply(store, tenant, identity, change, event).await
}

/// A new service-account id: `sa_` + 16 lowercase alphanumerics.
pub fn new_service_account_id() -> String {
    let suffix = Alphanumeric
        .sample_string(&mut rand::thread_rng(), 16)
        .to_lowercase();
    format!("sa_{suffix}")
}

/// Mints a token for an account: returns `(token, token_id)`. The plaintext is shown once.
pub fn mint_token(env: &str, sa_id: &str) -> (String, String) {
    let secret = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
    let token = format!("spl_{env}_{sa_id}_{secret}");
    let token_id = sha256_hex(token.as_bytes());
    (token, token_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_have_the_documented_shape() {
        let (token, id) = mint_token("local", "sa_abc");
        assert!(token.starts_with("spl_local_sa_abc_"));
        assert_eq!(token.len(), "spl_local_sa_abc_".len() + 32);
        assert_eq!(id, sha256_hex(token.as_bytes()));
    }
}
