//! Pull jobs shared across hosted replicas (federation-protocol.md §5.4): every job is a row of
//! `pull_leases`; the replica holding a row's lease runs the job. Each replica renews its
//! leases and claims expired ones every third of the lease time, so when a replica dies its
//! jobs move to the others within one lease time.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::distributions::{Alphanumeric, DistString};
use syncropel_federation::{renewal, Federation, JobPlacement};
use syncropel_protocol::unix_now;
use syncropel_store::platform::PlatformStore;
use syncropel_store::StoreError;

use super::platform::Platform;
use crate::error::ApiError;
use crate::tenant::TenantStatus;

/// Most jobs one replica claims per sweep.
const CLAIM_BATCH: i64 = 500;

pub struct Leases {
    store: PlatformStore,
    /// This replica's name in `holder`.
    holder: String,
    ttl: Duration,
}

impl Leases {
    pub fn new(store: PlatformStore, ttl: Duration) -> Leases {
        let holder = format!(
            "rep_{}",
            Alphanumeric.sample_string(&mut rand::thread_rng(), 12)
        );
        Leases { store, holder, ttl }
    }

    /// This replica's name in `pull_leases.holder`.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Hands every lease of this replica back, due at once, so that the others take the jobs
    /// over at their next sweep instead of after the lease time (a graceful stop).
    pub async fn release_all(&self) {
        let released = self.store.release_leases(&self.holder).await;
        match released {
            Ok(leases) => tracing::info!(leases, "pull leases handed back"),
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
    async fn sweep(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut jobs = self.store.renew_leases(&self.holder, self.until()).await?;
        let claimed = self
            .store
            .claim_expired_leases(&self.holder, unix_now(), self.until(), CLAIM_BATCH)
            .await?;
        jobs.extend(claimed);
        Ok(jobs
            .into_iter()
            .map(|job| (job.tenant, job.source, job.thread))
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
        let job = (tenant, source, thread);
        let (now, until) = (unix_now(), self.until());
        Ok(self
            .store
            .claim_lease(job, &self.holder, now, until)
            .await?)
    }

    async fn release(&self, tenant: &str, source: &str) -> syncropel_federation::Result<()> {
        Ok(self.store.delete_leases(tenant, source).await?)
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
        if let Err(e) = renewal::check(fed, &tenant).await {
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
        if tenant.status != TenantStatus::Active
            || matches!(
                tenant.departure(),
                syncropel_tenant::Departure::Moved { .. }
            )
        {
            jobs.stop_one(tenant_id, source, thread);
            continue;
        }
        jobs.ensure(fed, tenant, source, thread);
    }
    Ok(())
}
