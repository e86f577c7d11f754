//! The hosted platform: its database, keys and rules, and a short cache of tenants. Nothing a
//! request needs lives only in one replica's memory: tenants, keys and tokens are in Postgres, and
//! the cache (tenants for [`TENANT_CACHE_TTL`]) only saves lookups.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use syncropel_protocol::sync::has_document;
use syncropel_protocol::Keypair;
use syncropel_store::platform::{PlatformStore, SealedTenant, TenantState};
use syncropel_store::RecordStore;
use syncropel_store::StoreError;
use syncropel_tenant::{Identity, Tenant, TenantStatus};

use super::addressing::Addressing;
use super::jwt::JwtVerifier;
use super::kek::Kek;
use crate::error::ApiError;

/// How long a replica trusts what it read about a tenant (status, key). A suspension made through
/// another replica holds here after at most this long; through this replica, at once.
pub const TENANT_CACHE_TTL: Duration = Duration::from_secs(2);

/// The platform's rules for tenants.
#[derive(Clone, Debug)]
pub struct PlatformConfig {
    pub addressing: Addressing,
    /// Scheme of the tenants' public URLs (`https` behind a TLS ingress).
    pub public_scheme: String,
    /// Token environment label: tokens read `spl_<env>_…`.
    pub env: String,
    /// Tenants one account may hold at once.
    pub tenant_limit: u32,
    /// How long a deleted tenant stays readable (and its label unavailable) before it is purged.
    pub deletion_grace: Duration,
    /// How long a tenant that moved away answers `410 INSTANCE_MOVED` after its fence before it
    /// is deleted (then `deletion_grace` applies; federation-protocol.md §8.5 step 4).
    pub moved_kept: Duration,
    /// Labels no tenant may take.
    pub reserved_labels: Vec<String>,
    /// Where new tenants' did:sync are registered, if anywhere (federation-protocol.md §1.4, §8.1).
    pub registration: Option<DirectoryRegistration>,
}

/// The directory new tenants are registered at, and the platform's rotation key, listed after
/// the user's recovery key in each tenant's did:sync so that the user can always leave unaided.
#[derive(Clone)]
pub struct DirectoryRegistration {
    pub directory: String,
    pub rotation_key: Arc<Keypair>,
}

impl DirectoryRegistration {
    /// The same key and directory, for the operations that follow a tenant's registration (its
    /// new endpoint after a move).
    pub fn publisher(&self) -> syncropel_federation::directory::Publisher {
        syncropel_federation::directory::Publisher {
            directory: self.directory.clone(),
            rotation_key: self.rotation_key.clone(),
        }
    }

    /// Registers a did:sync for a tenant whose records `key` signs, reachable at `url`. Its
    /// rotation keys are the user's recovery key first, when given, then the platform's
    /// (federation-protocol.md §1.4, §8.1). `created_at` pins the genesis time, so that a retry
    /// posts the same operation and gets the same DID.
    pub async fn register(
        &self,
        client: &syncropel_federation::PeerClient,
        key: &Keypair,
        recovery_key: Option<&str>,
        url: &str,
        created_at: Option<&str>,
    ) -> Result<String, ApiError> {
        use syncropel_protocol::did_sync::{did_from_genesis, sign_operation};
        use syncropel_protocol::ErrorCode;
        let mut rotation_keys: Vec<String> = recovery_key.map(str::to_string).into_iter().collect();
        rotation_keys.push(self.rotation_key.did_key());
        let mut genesis = syncropel_federation::directory::sync_genesis(
            key,
            rotation_keys,
            Vec::new(),
            Vec::new(),
            Some(url),
        );
        if let Some(created_at) = created_at {
            genesis.created_at = created_at.to_string();
        }
        let signed = sign_operation(&genesis, &self.rotation_key);
        let did = did_from_genesis(&signed);
        let answer =
            syncropel_federation::directory::submit(client, &self.directory, "genesis", &signed)
                .await?;
        if answer["did"].as_str() != Some(did.as_str()) {
            return Err(ApiError::new(
                ErrorCode::PeerUnreachable,
                format!(
                    "the directory registered {} instead of {did}",
                    answer["did"]
                ),
            ));
        }
        Ok(did)
    }
}

impl std::fmt::Debug for DirectoryRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryRegistration")
            .field("directory", &self.directory)
            .field("rotation_key", &self.rotation_key.did_key())
            .finish()
    }
}

/// Labels refused by default: names of the platform's own hosts and words that would mislead.
pub const DEFAULT_RESERVED_LABELS: &[&str] = &[
    "admin",
    "api",
    "app",
    "auth",
    "billing",
    "blog",
    "cdn",
    "dashboard",
    "directory",
    "dns",
    "docs",
    "ftp",
    "help",
    "imap",
    "internal",
    "login",
    "mail",
    "metrics",
    "mx",
    "ns1",
    "ns2",
    "platform",
    "pop",
    "provision",
    "relay",
    "root",
    "security",
    "signup",
    "smtp",
    "ssl",
    "staging",
    "static",
    "status",
    "steward",
    "support",
    "syncropel",
    "system",
    "test",
    "www",
];

/// The hosted platform: its database, keys and rules, and a short cache of tenants.
pub struct Platform {
    pub(super) store: PlatformStore,
    pub(super) config: PlatformConfig,
    pub(super) kek: Kek,
    pub(super) jwt: JwtVerifier,
    tenants: RwLock<HashMap<String, (Arc<Tenant>, Instant)>>,
    /// The record store, for what of a tenant lives there (where it is moving).
    records: Arc<dyn RecordStore>,
    /// Signs the platform's own records (its audit of tenants' lifecycles).
    signer: Identity,
}

/// The record store's partition of the platform itself: its audit threads, one per tenant
/// (`th_audit_provisioning_<tenant id>`), which outlive a purge of the tenant.
pub const PLATFORM_PARTITION: &str = "_platform";

/// The platform's audit thread of one tenant.
pub fn lifecycle_thread(tenant: &str) -> String {
    format!("th_audit_provisioning_{tenant}")
}

impl Platform {
    pub fn new(
        store: PlatformStore,
        config: PlatformConfig,
        kek: Kek,
        jwt: JwtVerifier,
        records: Arc<dyn RecordStore>,
    ) -> Platform {
        Platform {
            records,
            store,
            config,
            signer: Identity::new(kek.platform_key()),
            kek,
            jwt,
            tenants: RwLock::default(),
        }
    }

    /// Records one event of a tenant's lifecycle (`provisioned`, `suspended`, `resumed`,
    /// `deleted`, `purged`) on the platform's audit thread of it (protocol.md §13.1), before the
    /// answer that reports it.
    pub async fn record_lifecycle(
        &self,
        tenant: &str,
        event: &str,
        fields: Value,
    ) -> Result<String, StoreError> {
        let mut body = serde_json::Map::new();
        body.insert("kind".into(), json!("core.provisioning.event.v1"));
        body.insert("event".into(), json!(event));
        body.insert("tenant".into(), json!(tenant));
        if let Value::Object(fields) = fields {
            body.extend(fields);
        }
        let record = syncropel_tenant::sealed_own(
            &self.signer,
            syncropel_protocol::Act::Know,
            &lifecycle_thread(tenant),
            body,
        );
        let id = record.id.clone();
        for written in self
            .records
            .write(PLATFORM_PARTITION, vec![record], Vec::new())
            .await?
        {
            written?;
        }
        Ok(id)
    }

    /// The platform's tables (tenants, provisioning), on the record store's database.
    pub fn store(&self) -> &PlatformStore {
        &self.store
    }

    pub fn config(&self) -> &PlatformConfig {
        &self.config
    }

    /// The public URL of a tenant, without a trailing slash.
    pub fn tenant_url(&self, label: &str) -> String {
        let scheme = &self.config.public_scheme;
        let base = &self.config.addressing.base_domain;
        match &self.config.addressing.path_prefix {
            Some(prefix) => format!("{scheme}://{base}{prefix}/{label}"),
            None => format!("{scheme}://{label}.{base}"),
        }
    }

    /// The live tenant behind a label: active, suspended, or deleted within its grace period.
    pub async fn tenant(&self, label: &str) -> Result<Option<Arc<Tenant>>, ApiError> {
        if let Some(tenant) = self.cached(label) {
            return Ok(Some(tenant));
        }
        let row = self
            .store
            .live_tenant(label, self.config.deletion_grace)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id = row.id;
        let status = status_of(row.status);
        let identity = self.identity(&id, &row.sealed)?;
        // Every hosted tenant gets its bootstrap account while it is provisioned.
        let tenant =
            Arc::new(Tenant::new(id, identity, status, true).with_url(self.tenant_url(label)));
        let departure = syncropel_portability::departure::load(self.records.as_ref(), &tenant.id)
            .await
            .map_err(|e| ApiError::internal(format!("reading where the tenant is moving: {e}")))?;
        tenant.set_departure(departure);
        tenant.set_config(syncropel_tenant::config::load(self.records.as_ref(), &tenant.id).await?);
        let mut cache = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 100_000 {
            cache.retain(|_, (_, at)| at.elapsed() < TENANT_CACHE_TTL);
        }
        cache.insert(label.to_string(), (tenant.clone(), Instant::now()));
        Ok(Some(tenant))
    }

    /// The identity of tenant `id` from its row (label, DID, sealed key): the
    /// sealed key opened with the KEK, checked against the stored DID. A tenant registered at a
    /// directory is known by its did:sync and also answers, on its host, for the did:web of that
    /// host, whose document names the did:sync (federation-protocol.md §1.3: never the tenant's
    /// primary identity).
    pub(crate) fn identity(&self, id: &str, row: &SealedTenant) -> Result<Identity, ApiError> {
        let seed = self
            .kek
            .open(id, &row.key_nonce, &row.key_sealed)
            .map_err(ApiError::internal)?;
        let key = Keypair::from_seed(&seed);
        let did: &str = &row.did;
        if did == key.did_key() {
            return Ok(Identity::new(key));
        }
        if !has_document(did) || !did.starts_with("did:sync:") {
            return Err(ApiError::internal(format!(
                "tenant {id}: the stored DID does not match its key"
            )));
        }
        let label: &str = &row.label;
        let did_web = self
            .tenant_host(label)
            .map(|host| syncropel_tenant::DidWeb {
                did: syncropel_protocol::did_doc::did_web_for(&host, None),
                keys: vec![(
                    "key-1".into(),
                    syncropel_federation::directory::multibase(&key),
                )],
                current: vec!["key-1".into()],
                also_known_as: vec![did.to_string()],
                endpoint: None,
            });
        Ok(Identity::published(
            key,
            did.to_string(),
            Vec::new(),
            did_web,
        ))
    }

    /// The tenant's own host (`<label>.<base-domain>`), when tenants are addressed by host.
    fn tenant_host(&self, label: &str) -> Option<String> {
        match &self.config.addressing.path_prefix {
            Some(_) => None,
            None => Some(format!("{label}.{}", self.config.addressing.base_domain)),
        }
    }

    /// Registers a did:key tenant's did:sync at the platform's directory and makes it the
    /// tenant's DID (federation-protocol.md §1.4: existing tenants can upgrade). Its pairs were
    /// made with the old DID, so a tenant with live pairs is refused.
    pub async fn upgrade_identity(
        &self,
        client: &syncropel_federation::PeerClient,
        tenant: &Tenant,
        recovery_key: Option<&str>,
    ) -> Result<String, ApiError> {
        use syncropel_protocol::ErrorCode;
        let registration = self.config.registration.as_ref().ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotImplemented,
                "this platform registers no DIDs (no directory configured)",
            )
        })?;
        if *tenant.identity.did != *tenant.identity.signer {
            return Err(ApiError::new(
                ErrorCode::ValidationError,
                format!("the tenant is already known as {}", tenant.identity.did),
            ));
        }
        let origin = self.store.tenant_origin(&tenant.id).await?;
        let (label, stored, created) = (origin.label, origin.recovery_key, origin.created);
        let recovery_key = recovery_key.map(str::to_string).or(stored);
        // Pinned to the tenant's creation, the genesis of a retried (or concurrent) upgrade is
        // the same operation: the directory answers with the same DID.
        let did = registration
            .register(
                client,
                &tenant.identity.key,
                recovery_key.as_deref(),
                &self.tenant_url(&label),
                Some(&created),
            )
            .await?;
        // The stored manifest names the old DID: the next request signs a new one.
        let changed = self
            .store
            .change_did(
                &tenant.id,
                &tenant.identity.did,
                &did,
                recovery_key.as_deref(),
            )
            .await?;
        self.forget(&label);
        if !changed {
            // Another upgrade got there first: its DID is the tenant's.
            let current = self.store.tenant_did(&tenant.id).await?;
            if current != did {
                return Err(ApiError::new(
                    ErrorCode::ValidationError,
                    format!("the tenant was upgraded meanwhile and is known as {current}"),
                ));
            }
        }
        tracing::info!(tenant = %tenant.id, %did, "tenant upgraded to a did:sync");
        Ok(did)
    }

    /// The live tenant with store id `id` (pull jobs know tenants by id).
    pub async fn tenant_by_id(&self, id: &str) -> Result<Option<Arc<Tenant>>, ApiError> {
        let label = self.store.tenant_label(id).await?;
        match label {
            Some(label) => self.tenant(&label).await,
            None => Ok(None),
        }
    }

    /// The tenant's signed federation manifest: the stored one while it has more than a day to
    /// live, else a freshly signed one (stored for the other replicas).
    pub async fn manifest(&self, tenant: &Tenant) -> Result<serde_json::Value, ApiError> {
        let stored = self.store.manifest(&tenant.id).await?;
        let now = std::time::SystemTime::now();
        if let Some(manifest) =
            stored.and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
        {
            // One signed for another DID predates an identity upgrade.
            let ours = syncropel_federation::manifest::daemon_did(&manifest)
                == Some(&*tenant.identity.did);
            if ours
                && !syncropel_federation::manifest::expires_before(
                    &manifest,
                    now + Duration::from_secs(24 * 3600),
                )
            {
                return Ok(manifest);
            }
        }
        let url = tenant.url.as_deref().unwrap_or_default();
        let manifest = syncropel_federation::manifest::sign(
            &tenant.identity.key,
            &tenant.identity.did,
            url,
            now,
        );
        // Only while the row still names that DID: a replica with a stale tenant must not
        // store a manifest of the old identity.
        self.store
            .store_manifest(&tenant.id, &tenant.identity.did, &manifest.to_string())
            .await?;
        Ok(manifest)
    }

    fn cached(&self, label: &str) -> Option<Arc<Tenant>> {
        let cache = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        cache
            .get(label)
            .filter(|(_, at)| at.elapsed() < TENANT_CACHE_TTL)
            .map(|(t, _)| t.clone())
    }

    /// Makes `key`, and `did` (its did:key, or a did:sync naming it), the identity of tenant
    /// `id` at `label`: an identity moved in by an import (federation-protocol.md §8.4).
    pub async fn install_identity(
        &self,
        id: &str,
        label: &str,
        did: &str,
        key: &Keypair,
    ) -> Result<(), ApiError> {
        if did != key.did_key() && !(did.starts_with("did:sync:") && has_document(did)) {
            return Err(ApiError::validation(format!(
                "a hosted tenant is its key's did:key or a directory did:sync, not {did}: \
                 move a did:web home to another home you serve the document from"
            )));
        }
        let (nonce, sealed) = self.kek.seal(id, &key.seed());
        self.store
            .replace_identity(id, did, &nonce, &sealed)
            .await?;
        self.forget(label);
        Ok(())
    }

    /// Forgets what this replica knows of a label (after its status changed here).
    pub fn forget(&self, label: &str) {
        let mut cache = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        cache.remove(label);
    }

    /// Reports the number of active tenants to the metrics (a failure only leaves the last
    /// figure in place).
    pub async fn count_active_tenants(&self) {
        let active = self.store.count_active_tenants().await;
        match active {
            Ok(active) => syncropel_telemetry::series::active_tenants(active.max(0) as u64),
            Err(e) => tracing::debug!(error = %e, "counting active tenants failed"),
        }
    }

    /// Deletes tenants fenced longer than `moved_kept` ago (their new home has had that long to
    /// reach every peer); their deletion grace period starts then. Returns how many.
    pub async fn delete_moved(&self) -> Result<usize, StoreError> {
        use syncropel_portability::departure;
        let before = syncropel_protocol::unix_now()
            .saturating_sub(i64::try_from(self.config.moved_kept.as_secs()).unwrap_or(i64::MAX));
        let mut deleted = 0;
        let fenced = self
            .store
            .live_with_state_before(departure::KIND, departure::KEY, before, 1000)
            .await?;
        for (tenant, document) in fenced {
            if !matches!(
                departure::parse(&document),
                Ok(syncropel_tenant::Departure::Moved { .. })
            ) {
                continue;
            }
            let live = [TenantState::Active, TenantState::Suspended];
            if self
                .store
                .change_state(&tenant, &live, TenantState::Deleted)
                .await?
            {
                // Other replicas, and this one, see it once their cached tenant expires.
                tracing::info!(%tenant, "deleted a tenant that moved away");
                self.record_lifecycle(&tenant, "deleted", json!({"cause": "moved"}))
                    .await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Purges tenants whose deletion grace period has ended: their records, accounts and tokens
    /// go; the tenant row stays as `purged` (its label is free again). Replicas share the work
    /// (`FOR UPDATE SKIP LOCKED`). Returns how many were purged.
    pub async fn purge_expired(&self) -> Result<usize, StoreError> {
        let mut purged = 0;
        while let Some(tenant) = self
            .store
            .purge_next_expired(self.config.deletion_grace)
            .await?
        {
            tracing::info!(%tenant, "purged a deleted tenant after its grace period");
            self.record_lifecycle(&tenant, "purged", json!({})).await?;
            purged += 1;
        }
        Ok(purged)
    }
}

/// A live tenant's state as requests see it (a purged one is never looked up).
pub fn status_of(state: TenantState) -> TenantStatus {
    match state {
        TenantState::Active => TenantStatus::Active,
        TenantState::Suspended => TenantStatus::Suspended,
        _ => TenantStatus::Deleted,
    }
}
