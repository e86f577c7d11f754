//! Pull jobs shared across hosted replicas (FEDERATION §5.4): every job is a row of
//! `pull_leases`; the replica holding a row's lease runs the job. Each replica renews its
//! leases and claims expired ones every third of the lease time, so when a replica dies its
//! jobs move to the others within one lease time.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::distributions::{Alphanumeric, DistString};
use sqlx::{PgPool, Row};

use syncropel_federation::{renewal, Federation, FederationError, JobPlacement};
use syncropel_protocol::unix_now;

use super::Platform;
use crate::error::ApiError;
use crate::tenant::TenantStatus;

/// Most jobs one replica claims per sweep.
const CLAIM_BATCH: i64 = 500;

pub struct Leases {
    pool: PgPool,
    /// This replica's name in `holder`.
    holder: String,
    ttl: Duration,
}

impl Leases {
    pub fn new(pool: PgPool, ttl: Duration) -> Leases {
        let holder = format!(
            "rep_{}",
            Alphanumeric.sample_string(&mut rand::thread_rng(), 12)
        );
        Leases { pool, holder, ttl }
    }

    /// This replica's name in `pull_leases.holder`.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Hands every lease of this replica back, due at once, so that the others take the jobs
    /// over at their next sweep instead of after the lease time (a graceful stop).
    pub async fn release_all(&self) {
        let released =
            sqlx::query("UPDATE pull_leases SET holder = NULL, lease_until = 0 WHERE holder = $1")
                .bind(&self.holder)
                .execute(&self.pool)
                .await;
        match released {
            Ok(done) => tracing::info!(leases = done.rows_affected(), "pull leases handed back"),
            Err(e) => {
                tracing::warn!(error = %e, "handing back pull leases failed; they expire instead")
            }
        }
    }

    fn until(&self) -> i64 {
        unix_now() + self.ttl.as_secs().max(1) as i64
    }

    /// Renews this replica's leases and claims expired ones; returns every job it now holds.
    /// Every lease held is renewed; only claims come in batches (a replica holding a full batch
    /// must neither drop its own nor stop taking over a dead replica's).
    async fn sweep(&self) -> Result<Vec<(String, String, String)>, sqlx::Error> {
        let mut rows = sqlx::query(
            "UPDATE pull_leases SET lease_until = $2 WHERE holder = $1 \
             RETURNING tenant, source, thread",
        )
        .bind(&self.holder)
        .bind(self.until())
        .fetch_all(&self.pool)
        .await?;
        let claimed = sqlx::query(
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
        .bind(&self.holder)
        .bind(unix_now())
        .bind(self.until())
        .bind(CLAIM_BATCH)
        .fetch_all(&self.pool)
        .await?;
        rows.extend(claimed);
        Ok(rows
            .iter()
            .map(|r| (r.get("tenant"), r.get("source"), r.get("thread")))
            .collect())
    }
}

#[async_trait::async_trait]
impl JobPlacement for Leases {
    async fn claim(
        &self,
        tenant: &str,
        source: &str,
        thread: &str,
    ) -> syncropel_federation::Result<bool> {
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
        .bind(&self.holder)
        .bind(self.until())
        .bind(unix_now())
        .fetch_optional(&self.pool)
        .await
        .map_err(FederationError::internal)?;
        Ok(claimed.is_some())
    }

    async fn release(&self, tenant: &str, source: &str) -> syncropel_federation::Result<()> {
        sqlx::query("DELETE FROM pull_leases WHERE tenant = $1 AND source = $2")
            .bind(tenant)
            .bind(source)
            .execute(&self.pool)
            .await
            .map_err(FederationError::internal)?;
        Ok(())
    }
}

/// Runs this replica's share of the jobs until shutdown: sweeps every third of the lease time,
/// starts the jobs it holds and stops those it no longer holds.
pub fn spawn(fed: Arc<Federation>, platform: Arc<Platform>, leases: Arc<Leases>) {
    tokio::spawn(async move {
        let every = leases.ttl / 3;
        let renew_every = fed.config.renewal_interval;
        let mut renewed_at: Option<Instant> = None;
        loop {
            match leases.sweep().await {
                Ok(held) => {
                    if let Err(e) = run_held(&fed, &platform, &held).await {
                        tracing::warn!(error = %e.message, "starting leased pull jobs failed");
                    }
                    // The tenants whose jobs run here also get their pair tokens renewed here.
                    if renewed_at.is_none_or(|at| at.elapsed() >= renew_every) {
                        renewed_at = Some(Instant::now());
                        renew_tokens(&fed, &platform, &held).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "renewing pull leases failed; will retry"),
            }
            tokio::select! {
                // Draining: the jobs stop now, so their leases go back now, not after the drain.
                _ = fed.shutdown().cancelled() => {
                    leases.release_all().await;
                    return;
                }
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
}

async fn renew_tokens(fed: &Federation, platform: &Platform, held: &[(String, String, String)]) {
    let tenants: BTreeSet<&str> = held.iter().map(|(tenant, _, _)| tenant.as_str()).collect();
    for id in tenants {
        let tenant = match platform.tenant_by_id(id).await {
            Ok(Some(tenant)) if tenant.status == TenantStatus::Active => tenant,
            _ => continue,
        };
        if let Err(e) = renewal::renew_due(fed, &tenant).await {
            tracing::warn!(tenant = %id, error = %e, "checking pair tokens failed");
        }
    }
}

async fn run_held(
    fed: &Arc<Federation>,
    platform: &Platform,
    held: &[(String, String, String)],
) -> Result<(), ApiError> {
    let jobs = &fed.jobs;
    let wanted: HashSet<(String, String, String)> = held.iter().cloned().collect();
    for key in jobs.running() {
        if !wanted.contains(&key) {
            jobs.stop_one(&key.0, &key.1, &key.2);
        }
    }
    for (tenant_id, source, thread) in held {
        let Some(tenant) = platform.tenant_by_id(tenant_id).await? else {
            continue;
        };
        // A suspended or deleted tenant is read-only: its jobs wait until it is active again.
        if tenant.status != TenantStatus::Active {
            jobs.stop_one(tenant_id, source, thread);
            continue;
        }
        jobs.ensure(fed, tenant, source, thread);
    }
    Ok(())
}
