//! Leases of pull jobs (`pull_leases`): a job runs on the replica that holds its lease. Times are
//! seconds since the Unix epoch; the caller's clock decides when a lease runs out.

use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PlatformStore;
use crate::Result;

/// A pull job: a tenant pulling a thread from a source.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeasedJob {
    pub tenant: String,
    pub source: String,
    pub thread: String,
}

impl LeasedJob {
    fn from_row(row: &PgRow) -> Result<LeasedJob> {
        Ok(LeasedJob {
            tenant: row.try_get("tenant")?,
            source: row.try_get("source")?,
            thread: row.try_get("thread")?,
        })
    }
}

impl PlatformStore {
    /// Extends every lease `holder` holds to `until`; returns their jobs.
    pub async fn renew_leases(&self, holder: &str, until: i64) -> Result<Vec<LeasedJob>> {
        let rows = sqlx::query(
            "UPDATE pull_leases SET lease_until = $2 WHERE holder = $1 \
             RETURNING tenant, source, thread",
        )
        .bind(holder)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(LeasedJob::from_row).collect()
    }

    /// Takes up to `limit` leases that ran out before `now` (the longest expired first) for
    /// `holder`, until `until`; returns their jobs. Replicas claiming at once never wait on each
    /// other (`FOR UPDATE SKIP LOCKED`).
    pub async fn claim_expired_leases(
        &self,
        holder: &str,
        now: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<LeasedJob>> {
        let rows = sqlx::query(
            "WITH due AS ( \
               SELECT tenant, source, thread FROM pull_leases \
               WHERE lease_until < $2 AND holder IS DISTINCT FROM $1 \
               ORDER BY lease_until \
               LIMIT $4 FOR UPDATE SKIP LOCKED \
             ) \
             UPDATE pull_leases p SET holder = $1, lease_until = $3 FROM due \
             WHERE p.tenant = due.tenant AND p.source = due.source AND p.thread = due.thread \
             RETURNING p.tenant, p.source, p.thread",
        )
        .bind(holder)
        .bind(now)
        .bind(until)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(LeasedJob::from_row).collect()
    }

    /// Leases the job of `tenant` pulling `thread` from `source` to `holder` until `until`,
    /// creating it, unless another holder's lease on it runs past `now`. Returns whether
    /// `holder` holds it.
    pub async fn claim_lease(
        &self,
        (tenant, source, thread): (&str, &str, &str),
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool> {
        let claimed: Option<i32> = sqlx::query_scalar(
            "INSERT INTO pull_leases (tenant, source, thread, holder, lease_until) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant, source, thread) DO UPDATE \
               SET holder = excluded.holder, lease_until = excluded.lease_until \
               WHERE pull_leases.holder = excluded.holder OR pull_leases.lease_until < $6 \
             RETURNING 1",
        )
        .bind(tenant)
        .bind(source)
        .bind(thread)
        .bind(holder)
        .bind(until)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(claimed.is_some())
    }

    /// Deletes the leases of every job of `tenant` that pulls from `source`.
    pub async fn delete_leases(&self, tenant: &str, source: &str) -> Result<()> {
        sqlx::query("DELETE FROM pull_leases WHERE tenant = $1 AND source = $2")
            .bind(tenant)
            .bind(source)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Hands every lease of `holder` back, due at once; returns how many.
    pub async fn release_leases(&self, holder: &str) -> Result<u64> {
        let released =
            sqlx::query("UPDATE pull_leases SET holder = NULL, lease_until = 0 WHERE holder = $1")
                .bind(holder)
                .execute(&self.pool)
                .await?;
        Ok(released.rows_affected())
    }
}
