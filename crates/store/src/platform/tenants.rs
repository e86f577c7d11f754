//! Tenants: looked up by label or id, their DID and manifest, their status, purging after the
//! grace period, and re-sealing their keys when the key-encryption key rotates.

use std::fmt;
use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PlatformStore;
use crate::{Result, StoreError};

/// A tenant's `status`: provisioning -> active <-> suspended -> deleted -> purged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TenantState {
    Provisioning,
    Active,
    Suspended,
    Deleted,
    Purged,
}

impl TenantState {
    /// The value of the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantState::Provisioning => "provisioning",
            TenantState::Active => "active",
            TenantState::Suspended => "suspended",
            TenantState::Deleted => "deleted",
            TenantState::Purged => "purged",
        }
    }

    fn parse(status: &str) -> Result<TenantState> {
        Ok(match status {
            "provisioning" => TenantState::Provisioning,
            "active" => TenantState::Active,
            "suspended" => TenantState::Suspended,
            "deleted" => TenantState::Deleted,
            "purged" => TenantState::Purged,
            other => return Err(StoreError::Corrupt(format!("tenant status '{other}'"))),
        })
    }
}

impl fmt::Display for TenantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a replica needs to act as a tenant: its label, its DID, and its Ed25519 seed sealed with
/// the key-encryption key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedTenant {
    pub label: String,
    pub did: String,
    pub key_nonce: Vec<u8>,
    pub key_sealed: Vec<u8>,
}

impl SealedTenant {
    fn from_row(row: &PgRow) -> Result<SealedTenant> {
        Ok(SealedTenant {
            label: row.try_get("label")?,
            did: row.try_get("did")?,
            key_nonce: row.try_get("key_nonce")?,
            key_sealed: row.try_get("key_sealed")?,
        })
    }
}

/// A tenant that serves requests: active, suspended, or deleted within its grace period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveTenant {
    pub id: String,
    pub status: TenantState,
    pub sealed: SealedTenant,
}

/// What a tenant's did:sync genesis is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantOrigin {
    pub label: String,
    pub recovery_key: Option<String>,
    /// When the tenant was created, RFC 3339 in UTC to the second (`2026-01-31T12:00:00Z`).
    pub created: String,
}

fn no_tenant(id: &str) -> StoreError {
    StoreError::NotFound(format!("tenant '{id}'"))
}

impl PlatformStore {
    /// The live tenant behind a label: active, suspended, or deleted less than `grace` ago.
    pub async fn live_tenant(&self, label: &str, grace: Duration) -> Result<Option<LiveTenant>> {
        let row = sqlx::query(
            "SELECT id, label, status, did, key_nonce, key_sealed FROM tenants \
             WHERE label = $1 AND (status IN ('active', 'suspended') \
                OR (status = 'deleted' AND deleted_at > now() - make_interval(secs => $2)))",
        )
        .bind(label)
        .bind(grace.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(LiveTenant {
                id: row.try_get("id")?,
                status: TenantState::parse(row.try_get("status")?)?,
                sealed: SealedTenant::from_row(&row)?,
            })
        })
        .transpose()
    }

    /// Tenant `id`'s label, DID and sealed key.
    pub async fn sealed_tenant(&self, id: &str) -> Result<SealedTenant> {
        let row =
            sqlx::query("SELECT label, did, key_nonce, key_sealed FROM tenants WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| no_tenant(id))?;
        SealedTenant::from_row(&row)
    }

    /// The label of tenant `id`, whatever its status.
    pub async fn tenant_label(&self, id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT label FROM tenants WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn tenant_origin(&self, id: &str) -> Result<TenantOrigin> {
        let row = sqlx::query(
            "SELECT label, recovery_key, \
             to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created \
             FROM tenants WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| no_tenant(id))?;
        Ok(TenantOrigin {
            label: row.try_get("label")?,
            recovery_key: row.try_get("recovery_key")?,
            created: row.try_get("created")?,
        })
    }

    pub async fn tenant_did(&self, id: &str) -> Result<String> {
        sqlx::query_scalar("SELECT did FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| no_tenant(id))
    }

    /// Makes `to` the DID of tenant `id` if it is still `from`, with `recovery_key`, and drops its
    /// manifest (it names the old DID). Returns whether it changed (another upgrade may have won).
    pub async fn change_did(
        &self,
        id: &str,
        from: &str,
        to: &str,
        recovery_key: Option<&str>,
    ) -> Result<bool> {
        let changed = sqlx::query(
            "UPDATE tenants SET did = $2, manifest = NULL, recovery_key = $4 WHERE id = $1 AND did = $3",
        )
        .bind(id)
        .bind(to)
        .bind(from)
        .bind(recovery_key)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed > 0)
    }

    /// Makes an imported identity tenant `id`'s (its DID and its key, sealed), dropping the
    /// manifest signed for the one before (federation-protocol.md §8.4).
    pub async fn replace_identity(
        &self,
        id: &str,
        did: &str,
        key_nonce: &[u8],
        key_sealed: &[u8],
    ) -> Result<()> {
        sqlx::query(
            "UPDATE tenants SET did = $2, key_nonce = $3, key_sealed = $4, manifest = NULL, \
             recovery_key = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(did)
        .bind(key_nonce)
        .bind(key_sealed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The DID a tenant registered at the directory while it is still provisioned.
    pub async fn set_provisioning_did(&self, id: &str, did: &str) -> Result<()> {
        sqlx::query("UPDATE tenants SET did = $2 WHERE id = $1 AND status = 'provisioning'")
            .bind(id)
            .bind(did)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The tenant's stored federation manifest, if any.
    pub async fn manifest(&self, id: &str) -> Result<Option<String>> {
        let stored: Option<Option<String>> =
            sqlx::query_scalar("SELECT manifest FROM tenants WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(stored.flatten())
    }

    /// Stores a manifest only while the tenant is still known as `did`: a replica with a stale
    /// view of the tenant must not store a manifest of its old identity.
    pub async fn store_manifest(&self, id: &str, did: &str, manifest: &str) -> Result<()> {
        sqlx::query("UPDATE tenants SET manifest = $2 WHERE id = $1 AND did = $3")
            .bind(id)
            .bind(manifest)
            .bind(did)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn count_active_tenants(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM tenants WHERE status = 'active'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The status and DID of tenant `id`.
    pub async fn status_and_did(&self, id: &str) -> Result<(TenantState, String)> {
        let row = sqlx::query("SELECT status, did FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| no_tenant(id))?;
        Ok((
            TenantState::parse(row.try_get("status")?)?,
            row.try_get("did")?,
        ))
    }

    pub async fn tenant_state(&self, id: &str) -> Result<TenantState> {
        let status: String = sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| no_tenant(id))?;
        TenantState::parse(&status)
    }

    /// Moves tenant `id` to `to` if it is in one of `from` (a deletion is stamped with the time,
    /// which starts its grace period). Returns whether it moved.
    pub async fn change_state(
        &self,
        id: &str,
        from: &[TenantState],
        to: TenantState,
    ) -> Result<bool> {
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let changed = sqlx::query(
            "UPDATE tenants SET status = $2, \
             deleted_at = CASE WHEN $2 = 'deleted' THEN now() ELSE deleted_at END \
             WHERE id = $1 AND status = ANY($3)",
        )
        .bind(id)
        .bind(to.as_str())
        .bind(&from)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed > 0)
    }

    /// Live (active or suspended) tenants whose state document `kind`/`key` was last written
    /// before `before` (unix seconds), with its value: at most `limit`, oldest first.
    pub async fn live_with_state_before(
        &self,
        kind: &str,
        key: &str,
        before: i64,
        limit: u32,
    ) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT s.tenant, s.value FROM federation_state s JOIN tenants t ON t.id = s.tenant \
             WHERE s.kind = $1 AND s.key = $2 AND s.updated_at < $3 \
             AND t.status IN ('active', 'suspended') ORDER BY s.updated_at LIMIT $4",
        )
        .bind(kind)
        .bind(key)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("tenant")?, row.try_get("value")?)))
            .collect()
    }

    /// Purges one tenant whose deletion is older than `grace` (its records, accounts and tokens
    /// go; the row stays as `purged`, and its label is free again) and returns its id; `None`
    /// when none is due. Replicas share the work (`FOR UPDATE SKIP LOCKED`).
    pub async fn purge_next_expired(&self, grace: Duration) -> Result<Option<String>> {
        let mut tx = self.pool.begin().await?;
        let due: Option<String> = sqlx::query_scalar(
            "SELECT id FROM tenants WHERE status = 'deleted' \
             AND deleted_at <= now() - make_interval(secs => $1) \
             ORDER BY deleted_at LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .bind(grace.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(tenant) = due else {
            return Ok(None);
        };
        super::purge(&mut tx, &tenant).await?;
        tx.commit().await?;
        Ok(Some(tenant))
    }

    /// Offers every unpurged tenant's sealed key, `(id, nonce, sealed)`, to `reseal`, which
    /// answers with a new `(nonce, sealed)` or `None` to keep it; all in one transaction that
    /// holds the rows. When `reseal` fails nothing changes. Returns how many keys changed.
    pub async fn reseal_keys<E>(
        &self,
        reseal: impl FnMut(&str, &[u8], &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>, E>,
    ) -> Result<usize, E>
    where
        E: From<StoreError>,
    {
        self.resealing(reseal).await?
    }

    /// [`PlatformStore::reseal_keys`], with the store's failures apart from `reseal`'s.
    async fn resealing<E>(
        &self,
        mut reseal: impl FnMut(&str, &[u8], &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>, E>,
    ) -> Result<Result<usize, E>> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT id, key_nonce, key_sealed FROM tenants WHERE status <> 'purged' ORDER BY id FOR UPDATE",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut resealed = 0;
        for row in rows {
            let id: &str = row.try_get("id")?;
            let (nonce, sealed): (&[u8], &[u8]) =
                (row.try_get("key_nonce")?, row.try_get("key_sealed")?);
            // Returning drops the transaction: it rolls back.
            let (nonce, sealed) = match reseal(id, nonce, sealed) {
                Ok(Some(resealed)) => resealed,
                Ok(None) => continue,
                Err(e) => return Ok(Err(e)),
            };
            sqlx::query("UPDATE tenants SET key_nonce = $2, key_sealed = $3 WHERE id = $1")
                .bind(id)
                .bind(nonce)
                .bind(sealed)
                .execute(&mut *tx)
                .await?;
            resealed += 1;
        }
        tx.commit().await?;
        Ok(Ok(resealed))
    }
}
