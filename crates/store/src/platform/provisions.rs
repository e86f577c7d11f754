//! Provisionings: the first transaction that reserves a tenant ([`Reservation`]), then the steps
//! that record progress, failure and completion.

use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use super::PlatformStore;
use crate::Result;

/// A provisioning as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct ProvisionRow {
    pub instance_id: String,
    pub label: String,
    pub tenant: String,
    pub phase: String,
    /// The phase list: `[{"name", "status", "started_at", "finished_at"}, ...]`.
    pub phases: Value,
    /// The last failure's error body, until the provisioning is ready.
    pub error: Option<Value>,
}

const PROVISION_COLUMNS: &str = "instance_id, label, tenant, phase, phases, error";

impl ProvisionRow {
    fn from_row(row: &PgRow) -> Result<ProvisionRow> {
        Ok(ProvisionRow {
            instance_id: row.try_get("instance_id")?,
            label: row.try_get("label")?,
            tenant: row.try_get("tenant")?,
            phase: row.try_get("phase")?,
            phases: row.try_get("phases")?,
            error: row.try_get("error")?,
        })
    }
}

/// A new tenant, written as `provisioning` by [`Reservation::insert_tenant`].
#[derive(Clone, Copy, Debug)]
pub struct NewTenant<'a> {
    pub id: &'a str,
    pub label: &'a str,
    pub did: &'a str,
    pub key_nonce: &'a [u8],
    pub key_sealed: &'a [u8],
    pub recovery_key: Option<&'a str>,
}

/// A new provisioning, written by [`Reservation::insert_provision`].
#[derive(Clone, Copy, Debug)]
pub struct NewProvision<'a> {
    pub instance_id: &'a str,
    pub idempotency_key: &'a str,
    /// The hash of the request, which a replay with the same key must match.
    pub request_sha256: &'a str,
    pub label: &'a str,
    pub tenant: &'a str,
    pub phase: &'a str,
    pub phases: &'a Value,
}

/// The tenant that holds a label, and whether its deletion's grace period has ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelHolder {
    pub tenant: String,
    pub expired: bool,
}

/// The first transaction of a provisioning, under a lock on its account (so that an account's
/// replays and limits are decided one at a time): dropped without [`Reservation::commit`],
/// nothing of it stays.
pub struct Reservation {
    tx: Transaction<'static, Postgres>,
    account: String,
}

impl PlatformStore {
    /// Begins the reservation of a tenant for `account`.
    pub async fn reserve(&self, account: &str) -> Result<Reservation> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
            .bind(account)
            .execute(&mut *tx)
            .await?;
        Ok(Reservation {
            tx,
            account: account.to_string(),
        })
    }

    /// Provisioning `instance_id`, if it is `account`'s.
    pub async fn provision(
        &self,
        instance_id: &str,
        account: &str,
    ) -> Result<Option<ProvisionRow>> {
        let row = sqlx::query(&format!(
            "SELECT {PROVISION_COLUMNS} FROM provisions WHERE instance_id = $1 AND account = $2"
        ))
        .bind(instance_id)
        .bind(account)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ProvisionRow::from_row).transpose()
    }

    /// Opens a provisioned tenant (with its first manifest) and marks its provisioning as at
    /// `phase` with `phases`, without error, in one transaction.
    pub async fn finish_provision(
        &self,
        instance_id: &str,
        tenant: &str,
        manifest: &str,
        phase: &str,
        phases: &Value,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE tenants SET manifest = $2, status = 'active' WHERE id = $1 AND status = 'provisioning'",
        )
        .bind(tenant)
        .bind(manifest)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE provisions SET phase = $2, phases = $3, error = NULL WHERE instance_id = $1",
        )
        .bind(instance_id)
        .bind(phase)
        .bind(phases)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records why a provisioning that is not ready failed.
    pub async fn record_provision_error(&self, instance_id: &str, error: &Value) -> Result<()> {
        sqlx::query("UPDATE provisions SET error = $2 WHERE instance_id = $1 AND phase <> 'ready'")
            .bind(instance_id)
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl Reservation {
    /// The account's provisioning made with `idempotency_key`, with its request's hash.
    pub async fn replay(
        &mut self,
        idempotency_key: &str,
    ) -> Result<Option<(ProvisionRow, String)>> {
        let row = sqlx::query(&format!(
            "SELECT {PROVISION_COLUMNS}, request_sha256 FROM provisions \
             WHERE account = $1 AND idempotency_key = $2"
        ))
        .bind(&self.account)
        .bind(idempotency_key)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|row| {
            Ok((
                ProvisionRow::from_row(&row)?,
                row.try_get("request_sha256")?,
            ))
        })
        .transpose()
    }

    /// The unpurged tenant holding `label`, locked until the reservation ends; `expired` when it
    /// was deleted more than `grace` ago.
    pub async fn label_holder(
        &mut self,
        label: &str,
        grace: Duration,
    ) -> Result<Option<LabelHolder>> {
        let row = sqlx::query(
            "SELECT id, status = 'deleted' AND deleted_at <= now() - make_interval(secs => $2) AS expired \
             FROM tenants WHERE label = $1 AND status <> 'purged' FOR UPDATE",
        )
        .bind(label)
        .bind(grace.as_secs_f64())
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|row| {
            Ok(LabelHolder {
                tenant: row.try_get("id")?,
                expired: row.try_get("expired")?,
            })
        })
        .transpose()
    }

    /// Purges a tenant (see [`PlatformStore::purge_next_expired`]) as part of the reservation.
    pub async fn purge(&mut self, tenant: &str) -> Result<()> {
        super::purge(&mut self.tx, tenant).await
    }

    /// How many tenants the account holds (provisioning, active or suspended).
    pub async fn held_tenants(&mut self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM tenants WHERE account = $1 \
             AND status IN ('provisioning', 'active', 'suspended')",
        )
        .bind(&self.account)
        .fetch_one(&mut *self.tx)
        .await?)
    }

    /// Writes the account's new tenant. A live tenant with the same label refuses it with
    /// [`crate::StoreError::Conflict`] naming [`super::LIVE_LABEL_CONSTRAINT`].
    pub async fn insert_tenant(&mut self, tenant: &NewTenant<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO tenants (id, label, account, status, did, key_nonce, key_sealed, recovery_key) \
             VALUES ($1, $2, $3, 'provisioning', $4, $5, $6, $7)",
        )
        .bind(tenant.id)
        .bind(tenant.label)
        .bind(&self.account)
        .bind(tenant.did)
        .bind(tenant.key_nonce)
        .bind(tenant.key_sealed)
        .bind(tenant.recovery_key)
        .execute(&mut *self.tx)
        .await
        .map_err(super::conflict)?;
        Ok(())
    }

    pub async fn insert_provision(&mut self, provision: &NewProvision<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO provisions (instance_id, account, idempotency_key, request_sha256, label, \
             tenant, phase, phases) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(provision.instance_id)
        .bind(&self.account)
        .bind(provision.idempotency_key)
        .bind(provision.request_sha256)
        .bind(provision.label)
        .bind(provision.tenant)
        .bind(provision.phase)
        .bind(provision.phases)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn commit(self) -> Result<()> {
        Ok(self.tx.commit().await?)
    }
}
