//! The running pull jobs of a steward, one task per (source, thread): each resolves its source,
//! holds a longpoll open at the peer, catches up with pipelined pages when far behind, backs off
//! after failures, and keeps its health in memory (federation-protocol.md §5.5: not recorded per
//! attempt).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use syncropel_api::{PullFailure, PullJobHealth, SyncEvent};
use syncropel_protocol::unix_now;
use syncropel_tenant::{Departure, Tenant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::Result;
use crate::pairs::ON_DEMAND;
use crate::peer::LiveFeed;
use crate::peer::PeerError;
use crate::puller::{
    open_live, pull_live, pull_once, pull_through, PullError, PullOutcome, Source,
};
use crate::relay::{fallback, outbox};
use crate::state::{self, PullCursor};
use crate::sync_trace::SyncTrace;
use crate::{pairs, sync_pairs, Backoff, Federation};

/// Health of one job, kept in memory (federation-protocol.md §5.5: not recorded per attempt),
/// in the shape the operator's views show it.
pub type JobHealth = PullJobHealth;

/// The running jobs of this steward, one task per (source, thread).
pub struct Jobs {
    interval: Duration,
    /// The schedule every job's backoff starts from.
    backoff: Backoff,
    jobs: Mutex<HashMap<(String, String, String), Arc<Job>>>,
    /// Records pulled per (tenant, source), by minute, over the last hour (at most 60 buckets
    /// each): what `/v1/sync/health` and a pair's stats count. In memory, per replica.
    pulled: Mutex<HashMap<(String, String), Tally>>,
    /// What each source's jobs did lately (`GET /v1/sync/pairs/{id}/trace`).
    pub trace: SyncTrace,
    /// When each (tenant, source) was last heard from another way (see [`Jobs::heard_from`]).
    heard: Mutex<HashMap<(String, String), Instant>>,
}

/// A peer heard from again within this long does not look at its jobs again.
const HEARD_AGAIN_AFTER: Duration = Duration::from_secs(5);

/// `(minute, records)` buckets, oldest first.
type Tally = VecDeque<(u64, u64)>;

/// Minutes the pull tally keeps.
const TALLY_MINUTES: u64 = 60;
/// How often a job of an on-demand pair looks at its pair again, unkicked.
const ON_DEMAND_RECHECK: Duration = Duration::from_secs(60);

fn minute_now() -> u64 {
    u64::try_from(unix_now() / 60).unwrap_or(0)
}

struct Job {
    kick: Notify,
    stop: CancellationToken,
    health: Mutex<JobHealth>,
    /// The peer was heard from another way since the last round: the backoff starts over.
    heard: AtomicBool,
}

impl Jobs {
    pub fn new(interval: Duration, backoff: Backoff) -> Jobs {
        Jobs {
            interval,
            backoff,
            jobs: Mutex::default(),
            pulled: Mutex::default(),
            trace: SyncTrace::default(),
            heard: Mutex::default(),
        }
    }

    /// Counts records pulled from `source` now.
    fn tally(&self, tenant: &str, source: &str, records: usize) {
        if records == 0 {
            return;
        }
        let now = minute_now();
        let mut pulled = self.pulled.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = pulled
            .entry((tenant.to_string(), source.to_string()))
            .or_default();
        match buckets.back_mut() {
            Some((minute, count)) if *minute == now => *count += records as u64,
            _ => buckets.push_back((now, records as u64)),
        }
        while buckets
            .front()
            .is_some_and(|(minute, _)| minute + TALLY_MINUTES <= now)
        {
            buckets.pop_front();
        }
    }

    /// Records pulled from each source of `tenant` in the last hour, by source.
    pub fn pulled_last_hour(&self, tenant: &str) -> HashMap<String, u64> {
        let since = minute_now().saturating_sub(TALLY_MINUTES - 1);
        let pulled = self.pulled.lock().unwrap_or_else(|e| e.into_inner());
        pulled
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|((_, source), buckets)| {
                let count = buckets
                    .iter()
                    .filter(|(minute, _)| *minute >= since)
                    .map(|(_, n)| n)
                    .sum();
                (source.clone(), count)
            })
            .collect()
    }

    /// The health of every job of `tenant`.
    pub fn all_health(&self, tenant: &str) -> Vec<JobHealth> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<JobHealth> = jobs
            .iter()
            .filter(|((t, _, _), _)| t == tenant)
            .map(|(_, job)| job.health.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        out.sort_by(|a, b| (&a.source, &a.thread).cmp(&(&b.source, &b.thread)));
        out
    }

    /// The spacing of polls to a peer that does not hold longpolls.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Starts the job for (source, thread) unless it runs already.
    pub fn ensure(&self, fed: &Arc<Federation>, tenant: Arc<Tenant>, source: &str, thread: &str) {
        let key = (tenant.id.clone(), source.to_string(), thread.to_string());
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.contains_key(&key) {
            return;
        }
        let job = Arc::new(Job {
            heard: AtomicBool::new(false),
            kick: Notify::new(),
            stop: fed.shutdown.child_token(),
            health: Mutex::new(JobHealth {
                source: source.to_string(),
                thread: thread.to_string(),
                status: "starting".into(),
                retries: 0,
                last_error: None,
                last_success_at: None,
                next_attempt_at: None,
                backoff_ceiling_ms: 0,
                pulled: 0,
                feed: "longpoll".into(),
            }),
        });
        jobs.insert(key, job.clone());
        let fed = fed.clone();
        let (source, thread) = (source.to_string(), thread.to_string());
        tokio::spawn(async move {
            if source == outbox::JOB {
                outbox::run(&fed, tenant, &job.stop, &job.kick).await;
                return;
            }
            fed.jobs
                .run(&fed, tenant, source.clone(), thread.clone(), job)
                .await;
            syncropel_telemetry::series::sync_stopped(&source, &thread);
        });
    }

    /// Runs every job of a source now, whatever its schedule or backoff.
    pub fn kick(&self, tenant: &str, source: &str) {
        for ((t, s, _), job) in self.jobs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if t == tenant && s == source {
                job.kick.notify_one();
            }
        }
    }

    /// The peer of `source` was heard from another way (it pulled from us): its failing jobs
    /// stop waiting out their backoff and try now (federation-protocol.md §5.5). Jobs that are
    /// well are left alone, so a held longpoll is not abandoned. Looks at the jobs at most once
    /// per [`HEARD_AGAIN_AFTER`] per source.
    pub fn heard_from(&self, tenant: &str, source: &str) {
        {
            let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
            let key = (tenant.to_string(), source.to_string());
            if heard
                .get(&key)
                .is_some_and(|at| at.elapsed() < HEARD_AGAIN_AFTER)
            {
                return;
            }
            if heard.len() >= 100_000 {
                heard.clear();
            }
            heard.insert(key, Instant::now());
        }
        for ((t, s, _), job) in self.jobs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let failing = job.health.lock().unwrap_or_else(|e| e.into_inner()).status == "failing";
            if t == tenant && s == source && failing {
                job.heard.store(true, Ordering::Relaxed);
                job.kick.notify_one();
            }
        }
    }

    /// Stops and forgets every job of a source (a removed legacy pair, a revoked pair).
    pub fn stop(&self, tenant: &str, source: &str) {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(t, s, _), job| {
                let keep = !(t == tenant && s == source);
                if !keep {
                    job.stop.cancel();
                }
                keep
            });
    }

    /// Stops and forgets every job of a tenant (one that moved away).
    pub fn stop_tenant(&self, tenant: &str) {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(t, _, _), job| {
                if t == tenant {
                    job.stop.cancel();
                }
                t != tenant
            });
    }

    /// Stops one job.
    pub fn stop_one(&self, tenant: &str, source: &str, thread: &str) {
        let key = (tenant.to_string(), source.to_string(), thread.to_string());
        if let Some(job) = self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key)
        {
            job.stop.cancel();
        }
    }

    /// Every job running here, as (tenant, source, thread).
    pub fn running(&self) -> Vec<(String, String, String)> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    pub fn health(&self, tenant: &str, source: &str) -> Vec<JobHealth> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<JobHealth> = jobs
            .iter()
            .filter(|((t, s, _), _)| t == tenant && s == source)
            .map(|(_, job)| job.health.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        out.sort_by(|a, b| a.thread.cmp(&b.thread));
        out
    }

    async fn run(
        &self,
        fed: &Arc<Federation>,
        tenant: Arc<Tenant>,
        source_id: String,
        thread: String,
        job: Arc<Job>,
    ) {
        let mut backoff = self.backoff.clone();
        let mut last_checkpoint = None;
        let mut route = Route::Source { failures: 0 };
        // The continuous feed held open for a pair in `continuous` mode, and whether the source
        // refused to open one (a steward without it: longpolls then).
        let mut live: Option<LiveFeed> = None;
        let mut live_refused = false;
        loop {
            // A tenant that moved away pulls nothing more: its new home does.
            if job.stop.is_cancelled() || matches!(tenant.departure(), Departure::Moved { .. }) {
                return;
            }
            if job.heard.swap(false, Ordering::Relaxed) {
                backoff.reset();
            }
            let source = match resolve_source(fed, &tenant, &source_id, &thread).await {
                Ok(source) => source,
                Err(e) => {
                    job.update(|h| {
                        h.status = "parked".into();
                        h.last_error = Some(last_error(&e));
                    });
                    let parked = SyncEvent {
                        thread: thread.clone(),
                        via: "source".into(),
                        outcome: "parked".into(),
                        error: Some(last_error(&e)),
                        ..SyncEvent::default()
                    };
                    self.trace.note(&tenant.id, &source_id, parked);
                    // Parked until kicked (resume, approve) or a slow re-check.
                    job.wait(self.interval.max(Duration::from_secs(2))).await;
                    continue;
                }
            };
            // On demand: only `spl sync` pulls; the job waits for a change of mode.
            if source.on_demand {
                live = None;
                job.update(|h| {
                    h.status = "idle".into();
                    h.feed = ON_DEMAND.into();
                    h.next_attempt_at = None;
                });
                let idle = SyncEvent {
                    thread: thread.clone(),
                    via: "source".into(),
                    outcome: "idle".into(),
                    ..SyncEvent::default()
                };
                self.trace.note(&tenant.id, &source_id, idle);
                job.wait(ON_DEMAND_RECHECK).await;
                continue;
            }
            let interval = source.poll_interval.unwrap_or(self.interval);
            let started = Instant::now();
            let span = tracing::debug_span!(
                "sync.pull",
                otel.kind = "client",
                pair = %source_id,
                thread = %thread,
                pulled = tracing::field::Empty,
            );
            if let Route::Relay(relay) = &mut route {
                let result = tokio::select! {
                    _ = job.stop.cancelled() => return,
                    // A kick (resume, a new credential, the operator) asks the source at once.
                    _ = job.kick.notified() => {
                        relay.probe_at = Instant::now();
                        continue;
                    }
                    result = relay.pull(fed, &tenant, &source, &thread)
                        .instrument(span.clone()) => result,
                };
                match result {
                    Pulled::Relay(result) => {
                        let event = event_of(&thread, "relay", &result, started.elapsed());
                        self.trace.note(&tenant.id, &source_id, event);
                        let wait = self.after_relay_pull(&job, &mut backoff, &result);
                        if let Ok(outcome) = &result {
                            self.tally(&tenant.id, &source_id, outcome.pulled);
                        }
                        if let Err(e) = &result {
                            tracing::debug!(source = %source_id, thread = %thread, code = %e.code(), "pull from a relay failed");
                        }
                        if let Some(delay) = wait {
                            job.wait(delay).await;
                        }
                        continue;
                    }
                    // The source answers again: back to it, from the cursor it gave.
                    Pulled::Source => {
                        tracing::info!(source = %source_id, thread = %thread, "the source answers again: pulling from it, not its relays");
                        route = Route::Source { failures: 0 };
                        continue;
                    }
                }
            }
            let continuous = source.continuous && !live_refused;
            if !continuous {
                live = None;
            }
            let via = if live.is_some() { "feed" } else { "source" };
            let result = match live.as_mut() {
                // Continuous: the next record of the open feed.
                Some(feed) => {
                    let next = tokio::select! {
                        // A kick (a change of consent, say) holds before any record the feed
                        // brings after it.
                        biased;
                        _ = job.stop.cancelled() => return,
                        _ = job.kick.notified() => {
                            live = None;
                            continue;
                        }
                        next = pull_live(fed, &tenant, &source, &thread, feed)
                            .instrument(span.clone()) => next,
                    };
                    match next {
                        Ok(Some(outcome)) => Ok(outcome),
                        // The source ended the feed: pages again, then a new feed.
                        Ok(None) => {
                            live = None;
                            job.wait(interval).await;
                            continue;
                        }
                        Err(e) => {
                            live = None;
                            Err(e)
                        }
                    }
                }
                None => tokio::select! {
                    _ = job.stop.cancelled() => return,
                    // A kick (pause, resume, revoke, a new credential) abandons a held longpoll so
                    // that the change holds from now on; a page being ingested commits whole or
                    // not at all, with its cursor.
                    _ = job.kick.notified() => continue,
                    // A continuous pair catches up by pages, then holds its feed open.
                    result = pull_once(fed, &tenant, &source, &thread, !continuous)
                        .instrument(span.clone()) => result,
                },
            };
            let feed = if live.is_some() {
                "continuous"
            } else {
                "longpoll"
            };
            job.update(|h| h.feed = feed.into());
            if continuous && live.is_none() && matches!(&result, Ok(o) if !o.has_more) {
                match open_live(fed, &tenant, &source, &thread).await {
                    Ok(feed) => {
                        live = Some(feed);
                        job.update(|h| h.feed = "continuous".into());
                    }
                    Err(PullError::Peer(PeerError::Http4xx { status: 400, .. })) => {
                        tracing::info!(source = %source_id, thread = %thread, "the source serves no continuous feed: pulling with longpolls");
                        live_refused = true;
                    }
                    Err(e) => {
                        tracing::debug!(source = %source_id, thread = %thread, code = %e.code(), "opening the continuous feed failed; pulling by pages");
                    }
                }
            }
            // Far behind: catch up with pipelined pages before going back to longpolls.
            let result = match result {
                Ok(outcome) if outcome.has_more => tokio::select! {
                    _ = job.stop.cancelled() => return,
                    // A pause during a long catch-up holds from the next page on.
                    _ = job.kick.notified() => continue,
                    more = pull_through(fed, &tenant, &source, &thread)
                        .instrument(span.clone()) => more.map(|more| PullOutcome {
                        pulled: outcome.pulled + more.pulled,
                        duplicates: outcome.duplicates + more.duplicates,
                        quarantined: outcome.quarantined + more.quarantined,
                        ..more
                    }),
                },
                other => other,
            };
            match &result {
                Ok(outcome) => {
                    span.record("pulled", outcome.pulled);
                    if outcome.has_more {
                        syncropel_telemetry::series::sync_behind(&source_id, &thread);
                    } else {
                        syncropel_telemetry::series::sync_caught_up(&source_id, &thread);
                    }
                }
                Err(_) => syncropel_telemetry::series::sync_behind(&source_id, &thread),
            }
            let event = event_of(&thread, via, &result, started.elapsed());
            self.trace.note(&tenant.id, &source_id, event);
            // Health first, so a pair state written below never shows beside stale health.
            let wait = match &result {
                Ok(outcome) => {
                    backoff.reset();
                    job.update(|h| {
                        h.status = "ok".into();
                        h.retries = 0;
                        h.last_success_at = Some(unix_now());
                        h.next_attempt_at = None;
                        h.backoff_ceiling_ms = 0;
                        h.pulled += outcome.pulled as u64;
                    });
                    self.tally(&tenant.id, &source_id, outcome.pulled);
                    let held = started.elapsed() >= Duration::from_secs(1);
                    let busy = outcome.has_more
                        || outcome.pulled + outcome.duplicates + outcome.quarantined > 0;
                    // A feed held open waits for its next record itself.
                    (!(busy || held || live.is_some())).then_some(interval)
                }
                Err(e) => {
                    let delay = backoff.failed();
                    let retries = backoff.failures();
                    let ceiling = backoff.ceiling();
                    tracing::debug!(source = %source_id, thread = %thread, code = %e.code(), "pull failed");
                    job.update(|h| {
                        h.status = "failing".into();
                        h.retries = retries;
                        h.last_error = Some(last_error(e));
                        h.next_attempt_at = Some(unix_now() + delay.as_secs() as i64);
                        h.backoff_ceiling_ms = ceiling.as_millis() as u64;
                    });
                    Some(delay)
                }
            };
            if source_id.starts_with("fed_") {
                let noted = pairs::after_pull(
                    fed,
                    &tenant,
                    &source_id,
                    &thread,
                    &result,
                    &mut last_checkpoint,
                )
                .await;
                if let Err(e) = noted {
                    tracing::warn!(source = %source_id, error = %e, "recording the pull on its pair failed");
                }
            }
            route = route.after(fed, &tenant, &source, &result).await;
            if let Route::Relay(_) = &route {
                tracing::info!(source = %source_id, thread = %thread, "the source is unreachable: pulling from its relays");
                continue;
            }
            if let Some(delay) = wait {
                job.wait(delay).await;
            }
        }
    }

    /// Health and the wait after a pull from a relay (as after a pull from the source).
    fn after_relay_pull(
        &self,
        job: &Job,
        backoff: &mut Backoff,
        result: &Result<PullOutcome, PullError>,
    ) -> Option<Duration> {
        match result {
            Ok(outcome) => {
                backoff.reset();
                job.update(|h| {
                    h.status = "relay".into();
                    h.retries = 0;
                    h.last_success_at = Some(unix_now());
                    h.next_attempt_at = None;
                    h.pulled += outcome.pulled as u64;
                });
                None
            }
            Err(e) => {
                let delay = backoff.failed();
                job.update(|h| {
                    h.status = "failing".into();
                    h.retries = backoff.failures();
                    h.last_error = Some(last_error(e));
                    h.next_attempt_at = Some(unix_now() + delay.as_secs() as i64);
                });
                Some(delay)
            }
        }
    }
}

/// Where a job pulls from (federation-protocol.md §7.5).
enum Route {
    /// The source itself; `failures` counts reachability failures in a row.
    Source { failures: u32 },
    /// The source's relays, until the source answers a probe.
    Relay(RelayRoute),
}

impl Route {
    /// The route after a pull from the source: to the relays after enough reachability
    /// failures (at the first when the source says it is often offline) if it names any.
    async fn after(
        self,
        fed: &Federation,
        tenant: &Tenant,
        source: &Source,
        result: &Result<PullOutcome, PullError>,
    ) -> Route {
        let Route::Source { failures } = self else {
            return self;
        };
        let unreachable = matches!(result, Err(PullError::Peer(e)) if unreachable(e));
        if !unreachable || !source.id.starts_with("fed_") {
            return Route::Source { failures: 0 };
        }
        let failures = failures + 1;
        let config = &fed.config.relay;
        let named = fallback::relays_of(fed, tenant, source).await;
        let after = if named.offline_capable {
            1
        } else {
            config.after_failures
        };
        if failures < after || named.relays.is_empty() {
            return Route::Source { failures };
        }
        Route::Relay(RelayRoute {
            relays: named.relays,
            at: 0,
            probe_at: Instant::now() + config.probe_after,
            probes: Backoff::new(config.probe_after, fed.config.backoff_cap),
            received_through: 0,
            compare_at: Instant::now() + config.compare_every,
        })
    }
}

/// Only these failures send a pull to a relay; a 4xx or a broken answer never does: a relay is
/// no way around authentication, consent or a broken source.
fn unreachable(e: &PeerError) -> bool {
    matches!(
        e,
        PeerError::ConnectRefused(_)
            | PeerError::Timeout(_)
            | PeerError::DnsFailure(_)
            | PeerError::Http5xx { .. }
    )
}

/// A job pulling from its source's relays.
struct RelayRoute {
    relays: Vec<String>,
    /// The relay pulled from; a failing one moves the job to the next.
    at: usize,
    /// When the source is asked again.
    probe_at: Instant,
    probes: Backoff,
    /// The highest source sequence verified envelopes brought, from any relay.
    received_through: i64,
    /// When the other relays are asked how far their queue goes.
    compare_at: Instant,
}

/// What one turn of a relayed job did.
enum Pulled {
    Relay(Result<PullOutcome, PullError>),
    /// The source answered its probe (its page was stored as any).
    Source,
}

impl RelayRoute {
    async fn pull(
        &mut self,
        fed: &Arc<Federation>,
        tenant: &Tenant,
        source: &Source,
        thread: &str,
    ) -> Pulled {
        let now = Instant::now();
        if now >= self.probe_at {
            match pull_once(fed, tenant, source, thread, false).await {
                Ok(_) => return Pulled::Source,
                Err(PullError::Peer(e)) if unreachable(&e) => {
                    self.probe_at = now + self.probes.failed().max(Duration::from_secs(1));
                }
                // The source answers, if not well: back to it, where the failure shows.
                Err(_) => return Pulled::Source,
            }
        }
        // Held until the next probe, but never for less than a second: an empty answer at once
        // would have the job ask again and again (and meet the relay's rate limit) until then.
        let wait = fed
            .config
            .relay
            .wait
            .min(self.probe_at.saturating_duration_since(Instant::now()))
            .max(Duration::from_secs(1));
        if now >= self.compare_at {
            self.compare_at = now + fed.config.relay.compare_every;
            self.bypass_withholding(fed, tenant, source, thread).await;
        }
        let relay = &self.relays[self.at % self.relays.len()];
        let span = tracing::debug_span!(
            "relay.pull",
            otel.kind = "client",
            pair = %source.id,
            thread,
            relay = %relay,
        );
        let result = fallback::pull(fed, tenant, source, thread, relay, wait)
            .instrument(span)
            .await;
        match &result {
            Ok(outcome) => {
                self.received_through = self.received_through.max(outcome.relayed_through);
            }
            Err(_) => self.at = (self.at + 1) % self.relays.len(),
        }
        Pulled::Relay(result)
    }

    /// Moves to the relay whose queue goes furthest past what has been received, if any does: a
    /// relay that withholds envelopes (or lost them) is bypassed, whatever its own answers say.
    async fn bypass_withholding(
        &mut self,
        fed: &Federation,
        tenant: &Tenant,
        source: &Source,
        thread: &str,
    ) {
        let mut ahead: Option<(usize, i64)> = None;
        for (n, relay) in self.relays.iter().enumerate() {
            if n == self.at % self.relays.len() {
                continue;
            }
            let Some(head) = fallback::head_at(fed, tenant, source, thread, relay).await else {
                continue;
            };
            if head > self.received_through && ahead.is_none_or(|(_, best)| head > best) {
                ahead = Some((n, head));
            }
        }
        if let Some((n, head)) = ahead {
            tracing::info!(source = %source.id, thread, relay = %self.relays[n], head, received = self.received_through, "another relay holds more than the one pulled: pulling there");
            self.at = n;
        }
    }
}

impl Job {
    fn update(&self, f: impl FnOnce(&mut JobHealth)) {
        f(&mut self.health.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Sleeps for `delay`, or less when kicked or stopped.
    async fn wait(&self, delay: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.kick.notified() => {}
            _ = self.stop.cancelled() => {}
        }
    }
}

/// The trace event of one pull (see [`SyncTrace`]).
fn event_of(
    thread: &str,
    via: &str,
    result: &std::result::Result<PullOutcome, PullError>,
    took: Duration,
) -> SyncEvent {
    let mut event = SyncEvent {
        thread: thread.to_string(),
        via: via.to_string(),
        duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        ..SyncEvent::default()
    };
    match result {
        Ok(outcome) => {
            event.outcome = if outcome.pulled + outcome.duplicates + outcome.quarantined > 0 {
                "pulled"
            } else {
                "empty"
            }
            .into();
            event.pulled = outcome.pulled as u64;
            event.duplicates = outcome.duplicates as u64;
            event.quarantined = outcome.quarantined as u64;
        }
        Err(e) => {
            event.outcome = "failed".into();
            event.error = Some(last_error(e));
        }
    }
    event
}

fn last_error(e: &PullError) -> PullFailure {
    PullFailure {
        code: e.code(),
        message: e.message(),
        http_status: e.http_status(),
        at: unix_now(),
    }
}

/// The cursor row of a job, for views.
pub async fn cursor_of(
    fed: &Federation,
    tenant: &str,
    source: &str,
    thread: &str,
) -> Result<Option<PullCursor>> {
    state::pull_cursor(fed.store.as_ref(), tenant, source, thread).await
}

/// Every (source, thread) that has a cursor row: the jobs to run at start.
pub async fn cursor_rows(fed: &Federation, tenant: &str) -> Result<Vec<(String, String)>> {
    Ok(fed
        .store
        .state_list(tenant, state::CURSOR)
        .await?
        .into_iter()
        .filter_map(|(key, _)| {
            let (source, thread) = state::split_cursor_key(&key)?;
            Some((source.to_string(), thread.to_string()))
        })
        .collect())
}

/// Resolves a job's source afresh before each pull: a pair (`fed_…`) or a one-thread sync pair
/// (`sp_…`), with its current state, URL and credential, aimed at the namespace the job's
/// cursor row names.
fn resolve_source(
    fed: &Arc<Federation>,
    tenant: &Arc<Tenant>,
    id: &str,
    thread: &str,
) -> futures_util::future::BoxFuture<'static, Result<Source, PullError>> {
    let (fed, tenant, id, thread) = (
        fed.clone(),
        tenant.clone(),
        id.to_string(),
        thread.to_string(),
    );
    async move {
        let source = if id.starts_with("sp_") {
            sync_pairs::source(&fed, &tenant, id).await?
        } else {
            pairs::source(&fed, &tenant, id).await?
        };
        source.for_thread(&fed, &tenant.id, &thread).await
    }
    .boxed()
}
