//! Secret values (protocol.md §14): records hold handles, backends hold values. A handle is
//! described by `core.credential.v1` records on `th_credentials` (its backend and lifecycle; the
//! latest record of a handle is in force), its value lives in a backend, and every call, allowed or
//! not, writes a `secret.access.v1` on `th_secret_audit` in the transaction that does it, before
//! the answer.
//!
//! Backends:
//! - `store://<handle>`: the tenant's own store, each value sealed (XChaCha20-Poly1305, the handle
//!   as associated data) under a key derived from the tenant's identity key. Locally that key is
//!   the home's; hosted it is itself sealed under the platform's key-encryption key, so a dump of
//!   the database opens nothing.
//! - `env://VAR`: read-only, the steward process's environment; a local steward only (a hosted
//!   replica's environment is the platform's, not a tenant's). `promote` copies its value into
//!   the store.

use rand::RngCore;
use serde::Serialize;
use serde_json::{json, Map, Value};
use syncropel_protocol::{Act, ErrorCode, Refusal};
use syncropel_store::{NewRecord, RecordStore, StateChange};

use crate::sealed::SealingKey;
use crate::{sealed_own, Identity, TenantError};

pub const AUDIT_THREAD: &str = "th_secret_audit";
pub const ACCESS_KIND: &str = "secret.access.v1";
pub const CREDENTIALS_THREAD: &str = "th_credentials";
pub const CREDENTIAL_KIND: &str = "core.credential.v1";
/// The state documents holding sealed values, by handle.
const VALUES: &str = "secret_values";
/// The live handles, by handle: the fold of `th_credentials` kept beside it, so that no call
/// reads the whole thread. Written with every credential record; built once from the thread
/// where it is missing (a store from before it, an import), which its marker records.
const HANDLES: &str = "secret_handles";
const HANDLES_BUILT: (&str, &str) = ("secret_handles_built", "v1");
/// Live handles one tenant may hold: `list` answers them all.
pub const MAX_HANDLES: u64 = 1_000;
/// Largest value a backend takes.
pub const MAX_VALUE_BYTES: usize = 64 << 10;

/// Where a handle's value lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Store,
    Env(String),
}

impl Backend {
    /// `store://…` or `env://VAR` (`VAR`: letters, digits and `_`).
    pub fn parse(uri: &str) -> Result<Backend, Refusal> {
        if uri.starts_with("store://") {
            return Ok(Backend::Store);
        }
        match uri.strip_prefix("env://") {
            Some(var)
                if !var.is_empty()
                    && var.len() <= 128
                    && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                Ok(Backend::Env(var.to_string()))
            }
            _ => Err(Refusal::validation(
                "`backend_ref` is `store://<handle>` or `env://<VARIABLE>`",
            )),
        }
    }

    pub fn uri(&self, handle: &str) -> String {
        match self {
            Backend::Store => format!("store://{handle}"),
            Backend::Env(var) => format!("env://{var}"),
        }
    }
}

/// A handle as its latest credential record describes it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Credential {
    pub handle: String,
    pub backend_ref: String,
    /// `active`, `rotated` or `erased`.
    pub lifecycle: String,
    /// The record that says so.
    pub record: String,
}

/// Who asks, and why: what the audit record says of the call.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// `set`, `get`, `list`, `delete`, `promote`.
    pub operation: &'static str,
    pub handle: Option<String>,
    pub purpose: Option<String>,
    /// The caller's actor claim, if it made one.
    pub actor: Option<String>,
    /// The service account of the caller's token.
    pub sa_id: Option<String>,
}

/// What one call did: its answer, and the audit record written with it.
#[derive(Debug)]
pub struct Done<T> {
    pub answer: T,
    pub audit_record: String,
}

/// Checks a handle: 1-128 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn check_handle(handle: &str) -> Result<(), Refusal> {
    let mut bytes = handle.bytes();
    let first = bytes.next();
    let ok = handle.len() <= 128
        && first.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Refusal::validation(
            "a handle is 1-128 of a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit",
        ))
    }
}

/// The handles of `tenant`, as their latest credential records say (erased ones included).
pub async fn credentials(
    store: &dyn RecordStore,
    tenant: &str,
) -> Result<Vec<Credential>, TenantError> {
    let mut latest: std::collections::BTreeMap<String, Credential> = Default::default();
    for record in crate::stored_thread(store, tenant, CREDENTIALS_THREAD)
        .await?
        .0
    {
        let body = &record["body"];
        if let (Some(id), Some(handle), Some(backend_ref), Some(lifecycle)) = (
            record["id"].as_str(),
            body["handle"].as_str(),
            body["backend_ref"].as_str(),
            body["lifecycle"].as_str(),
        ) {
            latest.insert(
                handle.to_string(),
                Credential {
                    handle: handle.to_string(),
                    backend_ref: backend_ref.to_string(),
                    lifecycle: lifecycle.to_string(),
                    record: id.to_string(),
                },
            );
        }
    }
    Ok(latest.into_values().collect())
}

/// A tenant's secrets, through one identity.
pub struct Secrets<'a> {
    pub store: &'a dyn RecordStore,
    pub tenant: &'a str,
    pub identity: &'a Identity,
    /// Whether `env://` handles may be read (a local steward).
    pub env_allowed: bool,
}

impl Secrets<'_> {
    /// A refused call, recorded (`outcome: denied`) before it is answered.
    pub async fn denied(&self, access: &Access, why: &str) -> Result<String, TenantError> {
        let audit = self.audit(access, "denied", why, None);
        let id = audit.id.clone();
        self.write(vec![audit], Vec::new()).await?;
        Ok(id)
    }

    /// Stores `value` under `handle` (`store://`), or registers an `env://` handle (no value).
    pub async fn set(
        &self,
        access: &Access,
        backend: Backend,
        value: Option<&str>,
    ) -> Result<Done<Credential>, TenantError> {
        let handle = self.handle(access)?;
        let mut changes = Vec::new();
        match (&backend, value) {
            (Backend::Store, Some(value)) => {
                if value.len() > MAX_VALUE_BYTES {
                    return Err(Refusal::new(
                        ErrorCode::PayloadTooLarge,
                        format!("a secret value holds at most {MAX_VALUE_BYTES} bytes"),
                    )
                    .into());
                }
                changes.push(self.seal(handle, value));
            }
            (Backend::Store, None) => {
                return Err(Refusal::validation("`value` is required for store://").into())
            }
            (Backend::Env(_), Some(_)) => {
                return Err(Refusal::validation(
                    "env:// is read-only: set the variable where the steward runs",
                )
                .into())
            }
            (Backend::Env(_), None) => {
                self.require_env()?;
                changes.push(StateChange::delete(VALUES, handle));
            }
        }
        let known = self.indexed(handle).await?.is_some();
        if !known && self.store.state_count(self.tenant, HANDLES).await? >= MAX_HANDLES {
            return Err(Refusal::new(
                ErrorCode::TenantLimitReached,
                format!("this tenant holds {MAX_HANDLES} secrets"),
            )
            .with_hint("delete secrets no longer needed")
            .into());
        }
        let credential = self.credential(handle, &backend, "active");
        let described = describe(&credential, handle, &backend, "active");
        changes.push(index(&described));
        let audit = self.audit(access, "allowed", "stored", Some(&backend.uri(handle)));
        let audit_record = audit.id.clone();
        self.write(vec![audit, credential], changes).await?;
        Ok(Done {
            answer: described,
            audit_record,
        })
    }

    /// The value of `handle`.
    pub async fn get(&self, access: &Access) -> Result<Done<String>, TenantError> {
        let handle = self.handle(access)?;
        let credential = self.live(handle).await?;
        let backend = Backend::parse(&credential.backend_ref)?;
        let value = match &backend {
            Backend::Store => self.open(handle).await?,
            Backend::Env(var) => {
                self.require_env()?;
                std::env::var(var).ok()
            }
        };
        let Some(value) = value else {
            let audit = self.audit(
                access,
                "backend_unavailable",
                "no value",
                Some(&credential.backend_ref),
            );
            self.write(vec![audit], Vec::new()).await?;
            return Err(Refusal::new(
                ErrorCode::NotFound,
                format!("{} holds no value for '{handle}'", credential.backend_ref),
            )
            .into());
        };
        let audit = self.audit(access, "allowed", "read", Some(&credential.backend_ref));
        let audit_record = audit.id.clone();
        self.write(vec![audit], Vec::new()).await?;
        Ok(Done {
            answer: value,
            audit_record,
        })
    }

    /// Every live handle, never a value.
    pub async fn list(&self, access: &Access) -> Result<Done<Vec<Credential>>, TenantError> {
        self.build_index().await?;
        let live = self
            .store
            .state_list(self.tenant, HANDLES)
            .await?
            .into_iter()
            .map(|(key, text)| {
                serde_json::from_str::<Credential>(&text)
                    .map_err(|e| TenantError::corrupt(format!("secret handle {key}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let audit = self.audit(access, "allowed", &format!("{} handles", live.len()), None);
        let audit_record = audit.id.clone();
        self.write(vec![audit], Vec::new()).await?;
        Ok(Done {
            answer: live,
            audit_record,
        })
    }

    /// Erases the value of `handle` and marks it `erased`.
    pub async fn delete(&self, access: &Access) -> Result<Done<Credential>, TenantError> {
        let handle = self.handle(access)?;
        let credential = self.live(handle).await?;
        let backend = Backend::parse(&credential.backend_ref)?;
        let erased = self.credential(handle, &backend, "erased");
        let described = describe(&erased, handle, &backend, "erased");
        let audit = self.audit(access, "allowed", "erased", Some(&credential.backend_ref));
        let audit_record = audit.id.clone();
        self.write(
            vec![audit, erased],
            vec![
                StateChange::delete(VALUES, handle),
                StateChange::delete(HANDLES, handle),
            ],
        )
        .await?;
        Ok(Done {
            answer: described,
            audit_record,
        })
    }

    /// Copies an `env://` handle's value into the store: from then on the handle reads it there.
    pub async fn promote(&self, access: &Access) -> Result<Done<Credential>, TenantError> {
        let handle = self.handle(access)?;
        let credential = self.live(handle).await?;
        let Backend::Env(var) = Backend::parse(&credential.backend_ref)? else {
            return Err(Refusal::new(
                ErrorCode::PreconditionFailed,
                format!("'{handle}' is already in the store"),
            )
            .into());
        };
        self.require_env()?;
        let value = std::env::var(&var).map_err(|_| {
            Refusal::new(
                ErrorCode::PreconditionFailed,
                format!("the variable {var} is not set where the steward runs"),
            )
        })?;
        let promoted = self.credential(handle, &Backend::Store, "active");
        let described = describe(&promoted, handle, &Backend::Store, "active");
        let audit = self.audit(access, "allowed", "promoted", Some(&format!("env://{var}")));
        let audit_record = audit.id.clone();
        let changes = vec![self.seal(handle, &value), index(&described)];
        self.write(vec![audit, promoted], changes).await?;
        Ok(Done {
            answer: described,
            audit_record,
        })
    }

    fn handle<'h>(&self, access: &'h Access) -> Result<&'h str, TenantError> {
        let handle = access
            .handle
            .as_deref()
            .ok_or_else(|| Refusal::validation("`handle` is required"))?;
        check_handle(handle)?;
        Ok(handle)
    }

    fn require_env(&self) -> Result<(), TenantError> {
        if self.env_allowed {
            return Ok(());
        }
        Err(Refusal::validation(
            "env:// is for a local steward: a hosted replica's environment is not the tenant's",
        )
        .into())
    }

    async fn live(&self, handle: &str) -> Result<Credential, TenantError> {
        self.indexed(handle).await?.ok_or_else(|| {
            Refusal::new(ErrorCode::NotFound, format!("no secret '{handle}'")).into()
        })
    }

    /// A live handle, from the index.
    async fn indexed(&self, handle: &str) -> Result<Option<Credential>, TenantError> {
        self.build_index().await?;
        match self.store.state_get(self.tenant, HANDLES, handle).await? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| TenantError::corrupt(format!("secret handle {handle}: {e}"))),
        }
    }

    /// Builds the index of live handles from `th_credentials` if it was never built here.
    async fn build_index(&self) -> Result<(), TenantError> {
        let (kind, key) = HANDLES_BUILT;
        if self
            .store
            .state_get(self.tenant, kind, key)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let mut changes: Vec<StateChange> = self
            .store
            .state_list(self.tenant, HANDLES)
            .await?
            .into_iter()
            .map(|(handle, _)| StateChange::delete(HANDLES, &handle))
            .collect();
        changes.extend(
            credentials(self.store, self.tenant)
                .await?
                .iter()
                .filter(|c| c.lifecycle != "erased")
                .map(index),
        );
        changes.push(StateChange::put(kind, key, "built"));
        self.write(Vec::new(), changes).await
    }

    fn audit(
        &self,
        access: &Access,
        outcome: &str,
        result: &str,
        credential_ref: Option<&str>,
    ) -> NewRecord {
        let mut jti = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut jti);
        let body = json!({
            "kind": ACCESS_KIND,
            "operation": access.operation,
            "credential_handle": access.handle,
            "credential_ref": credential_ref,
            "actor_did": access.actor,
            "sa_id": access.sa_id,
            "purpose": access.purpose,
            "outcome": outcome,
            "result": result,
            "jti": hex::encode(jti),
            "workspace_did": &*self.identity.did,
        });
        sealed_own(self.identity, Act::Do, AUDIT_THREAD, object(body))
    }

    fn credential(&self, handle: &str, backend: &Backend, lifecycle: &str) -> NewRecord {
        let body = json!({
            "kind": CREDENTIAL_KIND,
            "_v": 1,
            "handle": handle,
            "backend_ref": backend.uri(handle),
            "publisher_did": &*self.identity.did,
            "lifecycle": lifecycle,
        });
        sealed_own(self.identity, Act::Learn, CREDENTIALS_THREAD, object(body))
    }

    async fn write(
        &self,
        records: Vec<NewRecord>,
        changes: Vec<StateChange>,
    ) -> Result<(), TenantError> {
        for written in self.store.write(self.tenant, records, changes).await? {
            written?;
        }
        Ok(())
    }

    fn seal(&self, handle: &str, value: &str) -> StateChange {
        StateChange::put(VALUES, handle, self.key().seal(handle, value))
    }

    async fn open(&self, handle: &str) -> Result<Option<String>, TenantError> {
        let Some(text) = self.store.state_get(self.tenant, VALUES, handle).await? else {
            return Ok(None);
        };
        self.key()
            .open(handle, &text)
            .map(Some)
            .map_err(|_| TenantError::Corrupt(format!("the sealed value of '{handle}'")))
    }

    /// The tenant's key for secret values: derived from its identity key, for this use only.
    fn key(&self) -> SealingKey {
        SealingKey::derive(&label(self.tenant), &self.identity.key)
    }
}

fn label(tenant: &str) -> Vec<u8> {
    format!("syncropel secret values v1\n{tenant}\n").into_bytes()
}

/// Seals again under the current key the values sealed under a retired one (after a rotation
/// of the identity key); how many.
pub async fn reseal(
    store: &dyn RecordStore,
    tenant: &str,
    identity: &Identity,
) -> Result<usize, TenantError> {
    let (current, retired) = (&identity.key, &identity.retired_keys);
    crate::sealed::reseal(store, tenant, VALUES, &label(tenant), current, retired).await
}

/// Marks the index of live handles for a rebuild from `th_credentials` (after an import has
/// stored credential records the index has not seen).
pub fn reindex() -> StateChange {
    StateChange::delete(HANDLES_BUILT.0, HANDLES_BUILT.1)
}

fn index(credential: &Credential) -> StateChange {
    StateChange::put(HANDLES, &credential.handle, json!(credential).to_string())
}

/// The credential a record just made describes.
fn describe(record: &NewRecord, handle: &str, backend: &Backend, lifecycle: &str) -> Credential {
    Credential {
        handle: handle.to_string(),
        backend_ref: backend.uri(handle),
        lifecycle: lifecycle.to_string(),
        record: record.id.clone(),
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
