//! Who is calling: bearer tokens (`Authorization: Bearer` or `x-api-key`), scopes and actor claims.
//!
//! A token is `spl_<env>_<sa_id>_<secret>`; only its id (SHA-256 of the whole string) is stored,
//! and it is looked up within the request's tenant only. Local stewards cache lookups briefly (a
//! revocation through the steward evicts at once); hosted replicas do not cache, so a revocation
//! through any replica holds on every replica at once.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use subtle::ConstantTimeEq;
use syncropel_protocol::{sha256_hex, unix_now, ErrorCode};
use syncropel_store::TokenGrant;
use syncropel_tenant::membership::check_chain;
use syncropel_tenant::{parse_grain, Scope};

use crate::error::ApiError;
use crate::hosted::platform::status_of;
use crate::state::{AppState, Tenancy};
use crate::tenant::{CurrentTenant, Tenant};

/// The authenticated caller of a request, within its tenant.
#[derive(Clone, Debug)]
pub struct Caller {
    pub tenant: Arc<Tenant>,
    /// `None` when auth is switched off (`--insecure-localhost`): everything is allowed.
    pub grant: Option<Arc<TokenGrant>>,
}

impl Caller {
    fn has(&self, scope: Scope) -> bool {
        match &self.grant {
            None => true,
            Some(g) => g
                .scopes
                .iter()
                .any(|s| s == Scope::Admin.as_str() || s == scope.as_str()),
        }
    }

    fn has_grain(&self, kind: &str, resource: &str, access: &str) -> bool {
        match &self.grant {
            None => true,
            Some(g) => g
                .scopes
                .iter()
                .filter_map(|s| parse_grain(s))
                .any(|(k, r, a)| k == kind && r == resource && a == access),
        }
    }

    /// Requires a coarse scope.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(scope_forbidden(scope.as_str()))
        }
    }

    /// Requires read access to one thread: `records:read` or the thread's read grain.
    pub fn require_thread_read(&self, thread: &str) -> Result<(), ApiError> {
        if self.has(Scope::RecordsRead) || self.has_grain("thread", thread, "read") {
            Ok(())
        } else {
            Err(scope_forbidden(Scope::RecordsRead.as_str()))
        }
    }

    /// Requires the right to write `namespace` on `thread`: `records:write`, or a write grain on
    /// the thread or the namespace.
    pub fn require_record_write(&self, thread: &str, namespace: &str) -> Result<(), ApiError> {
        if self.has(Scope::RecordsWrite)
            || self.has_grain("thread", thread, "write")
            || self.has_grain("namespace", namespace, "write")
        {
            Ok(())
        } else {
            Err(scope_forbidden(Scope::RecordsWrite.as_str()))
        }
    }

    /// Pulling from the sync feed: a pair's `federation:sync_pull` grain (or the older
    /// `federation:sync`), or the operator's `federation:manage`.
    pub fn require_federation_pull(&self) -> Result<(), ApiError> {
        let pulls = match &self.grant {
            None => true,
            Some(g) => g.scopes.iter().any(|s| {
                matches!(
                    s.as_str(),
                    "federation:sync_pull" | "federation:sync" | "federation:manage" | "admin"
                )
            }),
        };
        if pulls {
            Ok(())
        } else {
            Err(scope_forbidden("federation:sync_pull"))
        }
    }

    /// Pushing records: a pair's `federation:sync_push` grain (the operator's coarse scopes do
    /// not push: a push is a pair's act).
    pub fn require_federation_push(&self) -> Result<(), ApiError> {
        let pushes = match &self.grant {
            None => true,
            Some(g) => g.scopes.iter().any(|s| s == "federation:sync_push"),
        };
        if pushes {
            Ok(())
        } else {
            Err(scope_forbidden("federation:sync_push"))
        }
    }

    /// Whether this caller may keep a stream open: its token neither revoked, expired nor gone
    /// (read from the store, never from a cache) and its tenant still active and here.
    pub async fn still_allowed(&self, state: &AppState) -> Result<(), ApiError> {
        let tenant = &self.tenant;
        // Hosted, the fence may have reached another replica: what is stored decides.
        let departure = match &state.tenancy {
            Tenancy::Hosted(platform) => {
                let current = platform.store().tenant_state(&tenant.id).await?;
                status_of(current).require_active("watched")?;
                syncropel_portability::departure::load(state.store.as_ref(), &tenant.id).await?
            }
            Tenancy::Single(_) => tenant.departure(),
        };
        if let syncropel_tenant::Departure::Moved { moved_to, notice } = departure {
            return Err(ApiError::moved(moved_to, notice));
        }
        let Some(grant) = &self.grant else {
            return Ok(());
        };
        match state.store.token(&tenant.id, &grant.token_id).await? {
            None => Err(invalid_token("this token no longer exists")),
            Some(g) if g.revoked_at.is_some() => Err(invalid_token("this token has been revoked")),
            Some(g) if g.expires_at.is_some_and(|at| at <= unix_now()) => Err(expired(&g)),
            Some(TokenGrant {
                grant_id: Some(grant_id),
                ..
            }) => {
                check_chain(state.store.as_ref(), &tenant.id, &grant_id).await?;
                Ok(())
            }
            Some(_) => Ok(()),
        }
    }

    /// The token this caller presented (none when authentication is off).
    pub fn token_id(&self) -> Option<&str> {
        self.grant.as_deref().map(|g| g.token_id.as_str())
    }

    /// Writes to config and registry threads need `admin` or `config:write`.
    pub fn require_config_write(&self) -> Result<(), ApiError> {
        self.require(Scope::ConfigWrite)
    }

    /// The actor claim: an account with an allowed-actors list may only write as those actors.
    pub fn require_actor(&self, actor: &str) -> Result<(), ApiError> {
        match &self.grant {
            Some(g)
                if !g.allowed_actors.is_empty() && !g.allowed_actors.iter().any(|a| a == actor) =>
            {
                Err(ApiError::new(
                    ErrorCode::DidClaimDenied,
                    format!("this token may not write as actor '{actor}'"),
                )
                .with_hint(format!("allowed actors: {}", g.allowed_actors.join(", "))))
            }
            _ => Ok(()),
        }
    }
}

fn scope_forbidden(required: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ScopeForbidden,
        format!("this token lacks the '{required}' scope"),
    )
    .with_extra("required_scope", required)
}

/// The token a request presents: `Authorization: Bearer` wins over `x-api-key`.
pub fn presented_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    token_of(
        headers.get(axum::http::header::AUTHORIZATION),
        headers.get("x-api-key"),
    )
}

/// [`presented_token`] from the two headers that may carry it.
pub fn token_of<'a>(
    authorization: Option<&'a HeaderValue>,
    api_key: Option<&'a HeaderValue>,
) -> Option<&'a str> {
    let bearer = authorization
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    bearer
        .or_else(|| api_key.and_then(|v| v.to_str().ok()).map(str::trim))
        .filter(|t| !t.is_empty())
}

pub const BOOTSTRAP_COMMAND: &str =
    "spl service-account create --bootstrap --name admin --scopes admin --with-token";

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let CurrentTenant(tenant) = CurrentTenant::from_request_parts(parts, state).await?;
        if !tenant.config().auth_enforced(state.auth_enforced) {
            return Ok(Caller {
                tenant,
                grant: None,
            });
        }
        if !tenant.is_bootstrapped() {
            if state.store.has_service_accounts(&tenant.id).await? {
                tenant.mark_bootstrapped();
            } else {
                return Err(ApiError::new(
                    ErrorCode::BootstrapRequired,
                    format!("this steward has no service account yet; create one with `{BOOTSTRAP_COMMAND}`"),
                )
                .with_hint(format!("run `{BOOTSTRAP_COMMAND}` on the steward's machine")));
            }
        }
        let Some(token) = presented_token(&parts.headers) else {
            return Err(
                ApiError::new(ErrorCode::AuthRequired, "no credential presented")
                    .with_hint("send `Authorization: Bearer <token>` or `x-api-key: <token>`"),
            );
        };
        let token_id = sha256_hex(token.as_bytes());
        let grant = match state.tokens.get(&tenant.id, &token_id) {
            Some(grant) => grant,
            None => {
                // Looked up by the SHA-256 of the token, never by the token itself, so the
                // lookup's timing says nothing about the secret; the final comparison of the
                // hashes is constant-time as well.
                let found = state.store.token(&tenant.id, &token_id).await?;
                let Some(found) =
                    found.filter(|g| bool::from(g.token_id.as_bytes().ct_eq(token_id.as_bytes())))
                else {
                    return Err(invalid_token("unknown token"));
                };
                let found = Arc::new(found);
                state.tokens.put(&tenant.id, found.clone());
                found
            }
        };
        if grant.revoked_at.is_some() {
            return Err(invalid_token("this token has been revoked"));
        }
        if grant.expires_at.is_some_and(|at| at <= unix_now()) {
            return Err(expired(&grant));
        }
        if let Some(grant_id) = &grant.grant_id {
            if !state.tokens.chain_live(&tenant.id, grant_id, unix_now()) {
                let epoch = state.tokens.chain_epoch(&tenant.id);
                let until = check_chain(state.store.as_ref(), &tenant.id, grant_id).await?;
                state.tokens.put_chain(&tenant.id, grant_id, until, epoch);
            }
        }
        // Only authenticated tokens get a bucket, and only their requests count against their
        // tenant's (anonymous ones cannot use up a tenant's share); bad credentials count
        // against the address.
        state.rate_limits.check_token(&tenant.id, &token_id)?;
        state.rate_limits.check_tenant(&tenant.id)?;
        Ok(Caller {
            tenant,
            grant: Some(grant),
        })
    }
}

/// An expired token's refusal: a pair's token says how to get a new one (the upstream code).
fn expired(grant: &TokenGrant) -> ApiError {
    if grant
        .scopes
        .iter()
        .any(|s| s.starts_with("federation:sync"))
    {
        return ApiError::new(
            ErrorCode::TokenExpiredRenewPair,
            "this pair's token has expired",
        )
        .with_hint("renew it: POST /v1/federation/pair/refresh, signed by the pair's peer");
    }
    invalid_token("this token has expired")
}

fn invalid_token(why: &str) -> ApiError {
    ApiError::new(ErrorCode::AuthInvalid, why.to_string())
}
