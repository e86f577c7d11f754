//! The source side of relaying (federation-protocol.md §7.4): for every queue a peer pulled
//! directly in the last 30 days, the outbox deposits at each of this steward's relays exactly what
//! a `changes` pull would serve that peer, so the peer gets it while this steward is unreachable;
//! and at the peer's own relays (its manifest's), so that it finds there what was written while
//! it was away, even when this steward is gone again by then (the mailbox of §7.6).
//!
//! The outbox holds positions, not copies: the records stay in the log, so it survives restarts
//! and cannot drop anything. One job per tenant (leased like pull jobs where replicas share
//! them) is woken by commits and by the peers' own pulls; a failing relay keeps its position and
//! backs off, honouring `Retry-After`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use syncropel_api::OutboxRow;
use syncropel_protocol::pair::PairView;
use syncropel_protocol::relay::{self, Queue, MAX_ITEMS};
use syncropel_protocol::sync::SyncCursor;
use syncropel_protocol::{canonical_string, sha256_hex, unix_now, PairState};
use syncropel_store::{Committed, StateChange};
use syncropel_tenant::Tenant;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::client::{RelayClient, RelayFailure};
use super::PeerRelays;
use crate::error::{FederationError, Result};
use crate::feed::{self, ChangesQuery, Puller};
use crate::state::{self, parse, sync_meta, to_text, OUTBOX, RELAY_SERVED};
use crate::{actor_keys, consent, pairs, Backoff, Federation};

/// The source id of the outbox job among the pull jobs (its "thread" is [`JOB_THREAD`]).
pub const JOB: &str = "relay-outbox";
pub const JOB_THREAD: &str = "*";

/// A queue served for this long without a direct pull is no longer deposited.
const SERVED_FOR_SECS: i64 = 30 * 24 * 3600;
/// A row without progress this long is flagged stalled (upstream's outbox horizon).
const STALLED_AFTER_SECS: i64 = 7 * 24 * 3600;
/// Trims of one queue at one relay are at least this far apart.
const TRIM_EVERY_SECS: i64 = 10;
/// A served queue's position is written at most this often per replica.
const NOTE_EVERY: Duration = Duration::from_secs(10);
/// Envelopes one row deposits in one pass before the others get their turn.
const ENVELOPES_PER_PASS: usize = 20;
/// How long the job sleeps with nothing to do and nothing waking it.
const IDLE: Duration = Duration::from_secs(30);
/// How often the queues at our relays are listed for ones a peer opened itself (and at start).
const LIST_EVERY: Duration = Duration::from_secs(300);

/// A queue a peer pulled directly, and how far it has confirmed holding it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServedQueue {
    pub queue: Queue,
    /// The source sequence the peer's last direct pull started from: it holds everything up to
    /// here.
    pub confirmed_through: i64,
    pub served_at: i64,
}

fn row_key(row: &OutboxRow) -> String {
    format!("{}\n{}", row.relay, row.queue_id)
}

/// The direct pulls noted since they were last written, per (tenant, queue).
#[derive(Default)]
pub struct Outbox {
    noted: Mutex<HashMap<(String, String), (i64, Instant)>>,
}

impl Outbox {
    /// Notes that a peer pulled `query` directly from `since` (a sequence it holds everything
    /// up to): its queue is deposited from now on, and trimmed to `since`. Written at most every
    /// ten seconds per queue.
    pub(crate) async fn note_served(
        &self,
        fed: &Federation,
        tenant: &Tenant,
        puller: &Puller,
        query: &ChangesQuery,
        since: i64,
    ) {
        let Some((pair_id, generation)) = &puller.pair else {
            return;
        };
        let queue = Queue {
            source_did: tenant.identity.did.to_string(),
            dest_did: puller.did.clone(),
            pair_id: pair_id.clone(),
            generation: *generation,
            thread: query.thread.clone(),
            target_namespace: query.target.clone(),
        };
        let queue_id = queue.id();
        {
            let mut noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
            let key = (tenant.id.clone(), queue_id.clone());
            let due = noted.get(&key).is_none_or(|(held, at)| {
                (since > *held && at.elapsed() >= NOTE_EVERY) || at.elapsed() >= NOTE_EVERY * 360
            });
            if !due {
                return;
            }
            if noted.len() > 100_000 {
                noted.clear();
            }
            noted.insert(key, (since, Instant::now()));
        }
        // Deposited only where there is a relay: ours or the peer's.
        let store = fed.store.as_ref();
        let relayed = !fed.config.relay.urls.is_empty()
            || !PeerRelays::cached(store, &tenant.id, pair_id)
                .await
                .relays
                .is_empty();
        if !relayed {
            return;
        }
        let served = ServedQueue {
            queue,
            confirmed_through: since,
            served_at: unix_now(),
        };
        let change = StateChange::put(RELAY_SERVED, &queue_id, to_text(&served));
        match store.write(&tenant.id, Vec::new(), vec![change]).await {
            Ok(_) => fed.jobs.kick(&tenant.id, JOB),
            Err(e) => tracing::warn!(error = %e, "noting a served relay queue failed"),
        }
    }
}

/// Runs the outbox of `tenant` until stopped: a pass over every row, then a wait for a commit,
/// a direct pull noted, a kick, or the earliest retry.
pub(crate) async fn run(
    fed: &Arc<Federation>,
    tenant: Arc<Tenant>,
    stop: &CancellationToken,
    kick: &Notify,
) {
    let mut listed_at: Option<Instant> = None;
    loop {
        if listed_at.is_none_or(|at| at.elapsed() >= LIST_EVERY) {
            listed_at = Some(Instant::now());
            if let Err(e) = adopt_opened(fed, &tenant).await {
                tracing::warn!(tenant = %tenant.id, error = %e, "listing the queues at our relays failed");
            }
        }
        let mut commits = fed.store.subscribe();
        let (wait, serving) = match pass(fed, &tenant).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(tenant = %tenant.id, error = %e, "the relay outbox pass failed");
                (IDLE, true)
            }
        };
        if wait.is_zero() {
            continue;
        }
        // Commits wake the outbox only while it has queues to deposit to.
        let commit = async {
            match serving {
                true => next_commit(&mut commits, &tenant.id).await,
                false => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = kick.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = commit => {}
        }
    }
}

/// Queues a destination opened at our relays itself (it turned to a relay without a direct pull
/// here having noted the queue: our relays are newer than its last pull): admitted as a
/// `changes` request from its pair would be, and deposited from the cursor it holds; a queue no
/// live pair may have is deleted (federation-protocol.md §7.2).
async fn adopt_opened(fed: &Federation, tenant: &Tenant) -> Result<()> {
    if fed.config.relay.urls.is_empty() {
        return Ok(());
    }
    let store = fed.store.as_ref();
    let served: HashSet<String> = store
        .state_list(&tenant.id, RELAY_SERVED)
        .await?
        .into_iter()
        .map(|(queue_id, _)| queue_id)
        .collect();
    let pairs = pairs::load(fed, tenant).await?;
    let meta = sync_meta(store, &tenant.id).await?;
    let mut adopted = Vec::new();
    for relay in &fed.config.relay.urls {
        let client = RelayClient {
            client: fed.client(),
            identity: &tenant.identity,
            base: relay,
        };
        let Ok(listed) = client.list("source").await else {
            continue;
        };
        for status in listed["data"].as_array().into_iter().flatten() {
            let Ok(queue) = serde_json::from_value::<Queue>(status["queue"].clone()) else {
                continue;
            };
            let queue_id = queue.id();
            if served.contains(&queue_id) || status["opened_by"] != queue.dest_did.as_str() {
                continue;
            }
            let pair = pairs
                .get(&queue.pair_id)
                .filter(|p| p.generation == queue.generation && p.peer_did == queue.dest_did);
            if pair.is_some_and(|p| p.state == PairState::Paused) {
                continue;
            }
            let admitted = pair
                .filter(|p| pairs::require_serving(p).is_ok())
                .map(Puller::of_pair)
                .is_some_and(|puller| {
                    feed::check_thread(&queue.thread).is_ok()
                        && puller.check_scope(&queue.thread).is_ok()
                        && puller.check_target(&queue.target_namespace).is_ok()
                });
            if !admitted || queue.source_did != *tenant.identity.did {
                if let Err(f) = client.delete(&queue_id).await {
                    tracing::debug!(relay, error = %f, "deleting a queue no pair may have failed");
                }
                continue;
            }
            // From the cursor it holds, when it is one of ours; else from the start.
            let since = status["since"]
                .as_str()
                .and_then(|c| SyncCursor::decode(c, &meta.mac_key(), &meta.epoch).ok())
                .map_or(0, |cursor| cursor.seq);
            let served = ServedQueue {
                queue,
                confirmed_through: since,
                served_at: unix_now(),
            };
            adopted.push(StateChange::put(RELAY_SERVED, &queue_id, to_text(&served)));
        }
    }
    if !adopted.is_empty() {
        tracing::info!(tenant = %tenant.id, queues = adopted.len(), "depositing to queues peers opened at our relays");
        store.write(&tenant.id, Vec::new(), adopted).await?;
    }
    Ok(())
}

async fn next_commit(commits: &mut tokio::sync::broadcast::Receiver<Committed>, tenant: &str) {
    loop {
        match commits.recv().await {
            Ok(c) if c.tenant == tenant => return,
            Ok(_) => continue,
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => std::future::pending().await,
        }
    }
}

/// Every row once: how long until the next one is due (zero: more is waiting now), and whether
/// any queue is served at all.
async fn pass(fed: &Federation, tenant: &Tenant) -> Result<(Duration, bool)> {
    let store = fed.store.as_ref();
    let served: Vec<ServedQueue> = store
        .state_list(&tenant.id, RELAY_SERVED)
        .await?
        .into_iter()
        .filter_map(|(_, text)| parse(&text).ok())
        .collect();
    let mut rows: HashMap<String, OutboxRow> = store
        .state_list(&tenant.id, OUTBOX)
        .await?
        .into_iter()
        .filter_map(|(key, text)| Some((key, parse(&text).ok()?)))
        .collect();
    if served.is_empty() && rows.is_empty() {
        return Ok((IDLE, false));
    }
    let pairs = pairs::load(fed, tenant).await?;
    let epoch = sync_meta(store, &tenant.id).await?.epoch;
    let grants = format!("{:?}", consent::current(fed, &tenant.id).await?);
    let now = unix_now();
    let mut next = IDLE;
    let mut changes = Vec::new();
    let (mut behind, mut stalled) = (0, 0);
    for served in &served {
        let queue_id = served.queue.id();
        if now - served.served_at > SERVED_FOR_SECS {
            changes.push(StateChange::delete(RELAY_SERVED, &queue_id));
            continue;
        }
        let mut relays = fed.config.relay.urls.clone();
        for theirs in PeerRelays::cached(store, &tenant.id, &served.queue.pair_id)
            .await
            .relays
        {
            if !relays.contains(&theirs) {
                relays.push(theirs);
            }
        }
        for relay in &relays {
            let key = format!("{relay}\n{queue_id}");
            let mut row = rows.remove(&key).unwrap_or_else(|| OutboxRow {
                relay: relay.to_string(),
                queue_id: queue_id.clone(),
                peer_did: served.queue.dest_did.clone(),
                thread: served.queue.thread.clone(),
                deposited_through: served.confirmed_through,
                state: "active".into(),
                last_progress_at: now,
                ..OutboxRow::default()
            });
            row.confirmed_through = row.confirmed_through.max(served.confirmed_through);
            if row.next_attempt_at > now {
                next = next.min(Duration::from_secs((row.next_attempt_at - now) as u64));
                behind += 1;
                stalled += u64::from(row.stalled_since.is_some());
                continue;
            }
            let before = row.clone();
            let work = Work {
                fed,
                tenant,
                queue: &served.queue,
                epoch: &epoch,
                grants: &grants,
            };
            let outcome = work.drive(pairs.get(&served.queue.pair_id), &mut row).await;
            match outcome {
                Drive::Removed => {
                    changes.push(StateChange::delete(OUTBOX, &key));
                    changes.push(StateChange::delete(RELAY_SERVED, &queue_id));
                    continue;
                }
                Drive::More => {
                    next = Duration::ZERO;
                    behind += 1;
                }
                Drive::Done => behind += u64::from(row.last_error.is_some()),
            }
            stalled += u64::from(row.stalled_since.is_some());
            if row.next_attempt_at > now {
                next = next.min(Duration::from_secs(
                    (row.next_attempt_at - now).max(1) as u64
                ));
            }
            if row != before {
                changes.push(StateChange::put(OUTBOX, &row_key(&row), to_text(&row)));
            }
        }
    }
    // Rows of relays no longer configured, or of queues no longer served.
    changes.extend(rows.keys().map(|key| StateChange::delete(OUTBOX, key)));
    if !changes.is_empty() {
        store.write(&tenant.id, Vec::new(), changes).await?;
    }
    syncropel_telemetry::series::relay_outbox(&tenant.id, behind, stalled);
    Ok((next, !served.is_empty()))
}

enum Drive {
    /// Nothing more now (caught up, waiting, paused, or backing off).
    Done,
    /// More is waiting: run again at once.
    More,
    /// The queue is gone at the relay and the row goes too (its pair was revoked or no longer
    /// allows the thread).
    Removed,
}

struct Work<'a> {
    fed: &'a Federation,
    tenant: &'a Tenant,
    queue: &'a Queue,
    epoch: &'a str,
    /// The tenant's consent grants as they stand (part of each row's filter).
    grants: &'a str,
}

impl Work<'_> {
    fn relay<'r>(&'r self, row: &'r OutboxRow) -> RelayClient<'r> {
        RelayClient {
            client: self.fed.client(),
            identity: &self.tenant.identity,
            base: &row.relay,
        }
    }

    async fn drive(&self, pair: Option<&PairView>, row: &mut OutboxRow) -> Drive {
        let pair = pair.filter(|p| p.generation == self.queue.generation);
        let puller = match pair {
            Some(pair) if pair.state == PairState::Paused => return Drive::Done,
            Some(pair) if pair.state != PairState::Revoked => Some(Puller::of_pair(pair)),
            _ => None,
        };
        let allowed = puller.as_ref().filter(|p| {
            p.check_scope(&self.queue.thread).is_ok()
                && p.check_target(&self.queue.target_namespace).is_ok()
        });
        let Some(puller) = allowed else {
            // Revoked, re-paired, or the thread left its scope: the queue is emptied, the row
            // goes. What the destination pulled already stays with it.
            return match self.relay(row).delete(&row.queue_id).await {
                Ok(_) => Drive::Removed,
                Err(f) if f.status() == Some(404) => Drive::Removed,
                Err(f) => self.failed(row, f),
            };
        };
        let filter = self.filter(puller);
        if !row.filter.is_empty() && row.filter != filter {
            row.state = "purging".into();
        }
        if row.state == "purging" {
            match self.relay(row).delete(&row.queue_id).await {
                Ok(_) => {}
                Err(f) if f.status() == Some(404) => {}
                Err(f) => return self.failed(row, f),
            }
            row.state = "active".into();
            row.deposited_through = row.confirmed_through;
        }
        row.filter = filter;
        if row.state == "closed" {
            return Drive::Done;
        }
        self.trim(row).await;
        self.deposit(puller, row).await
    }

    /// What the deposits depend on besides the log: the pair's scope and maps, and consent.
    fn filter(&self, puller: &Puller) -> String {
        let value = serde_json::json!({
            "targets": puller.targets,
            "maps": format!("{:?}", puller.maps),
            "thread_allow": puller.thread_allow,
            "thread_rule": puller.thread_rule,
            "grants": self.grants,
        });
        sha256_hex(canonical_string(&value).as_bytes())[..16].to_string()
    }

    /// Tells the relay it may drop what the destination confirmed by pulling directly.
    async fn trim(&self, row: &mut OutboxRow) {
        let now = unix_now();
        if row.confirmed_through <= row.trimmed_through || now - row.trimmed_at < TRIM_EVERY_SECS {
            return;
        }
        let trimmed = self
            .relay(row)
            .trim(&row.queue_id, self.epoch, row.confirmed_through)
            .await;
        match trimmed {
            Ok(answer) => {
                self.rewind_if_expired(row, &answer["status"]);
            }
            // Nothing was ever deposited there.
            Err(f) if f.status() == Some(404) => {}
            Err(f) => {
                tracing::debug!(relay = %row.relay, error = %f, "trimming a relay queue failed");
                return;
            }
        }
        row.trimmed_through = row.confirmed_through;
        row.trimmed_at = now;
    }

    async fn deposit(&self, puller: &Puller, row: &mut OutboxRow) -> Drive {
        let l0 = match consent::L0Consent::remembered(self.fed, self.tenant, &puller.did).await {
            Ok(l0) => l0,
            Err(e) => {
                tracing::warn!(error = %e, "reading the stored L0 acceptances failed");
                return Drive::Done;
            }
        };
        let mut query = ChangesQuery {
            thread: self.queue.thread.clone(),
            target: self.queue.target_namespace.clone(),
            since: String::new(),
            limit: MAX_ITEMS as u32,
            longpoll: false,
            l0,
        };
        for _ in 0..ENVELOPES_PER_PASS {
            query.limit = batch_of(row);
            let from = row.deposited_through.max(row.confirmed_through);
            let served = match feed::items_after(self.fed, self.tenant, puller, &query, from).await
            {
                Ok(served) => served,
                Err(e) => {
                    tracing::warn!(error = %e, "reading records to deposit failed");
                    return Drive::Done;
                }
            };
            let Some((first, last)) = served.seqs else {
                return Drive::Done;
            };
            if !served.items.is_empty() {
                let envelope = match self.envelope(served.items, (first, last)).await {
                    Ok(envelope) => envelope,
                    Err(e) => {
                        tracing::warn!(error = %e, "a record to deposit does not parse");
                        return Drive::Done;
                    }
                };
                let span = tracing::debug_span!(
                    "relay.deposit",
                    otel.kind = "client",
                    relay = %row.relay,
                    queue = %row.queue_id,
                    first_sseq = first,
                    last_sseq = last,
                );
                let deposited = self
                    .relay(row)
                    .deposit(&row.queue_id, &envelope)
                    .instrument(span)
                    .await;
                match deposited {
                    Ok(answer) => {
                        let items = envelope["items"].as_array().map_or(0, Vec::len);
                        row.deposited_items += items as u64;
                        if self.rewind_if_expired(row, &answer["status"]) {
                            continue;
                        }
                    }
                    Err(f) if f.code() == Some("QUEUE_CLOSED") => {
                        row.state = "closed".into();
                        return Drive::Done;
                    }
                    Err(f) if matches!(f.code(), Some("QUEUE_FULL" | "PAYLOAD_TOO_LARGE")) => {
                        row.batch = smaller_batch(batch_of(row), &f.answer);
                        return self.failed(row, f);
                    }
                    Err(f) => return self.failed(row, f),
                }
            }
            if row.deposited_through < last {
                row.deposited_through = last;
            }
            row.batch = (batch_of(row) * 2).min(MAX_ITEMS as u32);
            row.attempts = 0;
            row.last_error = None;
            row.last_progress_at = unix_now();
            row.stalled_since = None;
            if !served.has_more {
                return Drive::Done;
            }
        }
        Drive::More
    }

    async fn envelope(&self, items: Vec<String>, seqs: (i64, i64)) -> Result<Value> {
        let items = items
            .iter()
            .map(|text| serde_json::from_str(text))
            .collect::<std::result::Result<Vec<Value>, _>>()
            .map_err(|e| FederationError::corrupt(format!("a stored record: {e}")))?;
        // The destination may never reach us to ask who signs for a typed actor: say it here.
        let vouches = actor_keys::envelope_vouches(self.fed, self.tenant, &items).await?;
        let identity = &self.tenant.identity;
        Ok(relay::sign(
            &identity.key,
            &identity.signer,
            self.queue,
            self.epoch,
            seqs,
            items,
            &vouches,
        ))
    }

    /// Records the relay let expire before the destination had them are deposited again while
    /// the pair is active (§7.4): the position goes back to what the destination holds.
    /// Whether it went back.
    fn rewind_if_expired(&self, row: &mut OutboxRow, status: &Value) -> bool {
        let expired = status["expired_through_sseq"].as_i64().unwrap_or(0);
        let acked = status["acked_through_sseq"].as_i64().unwrap_or(0);
        let held = acked.max(row.confirmed_through);
        if expired <= held.max(row.expired_seen_through) {
            return false;
        }
        tracing::info!(relay = %row.relay, queue = %row.queue_id, expired, "the relay let records expire before their destination had them: depositing them again");
        row.expired_seen_through = expired;
        row.deposited_through = held;
        true
    }

    /// Keeps the position and backs off: full jitter from 2 s doubling to 300 s, never sooner
    /// than the relay's `Retry-After`.
    fn failed(&self, row: &mut OutboxRow, failure: RelayFailure) -> Drive {
        let code = failure
            .code()
            .unwrap_or_else(|| failure.error.code())
            .to_string();
        syncropel_telemetry::series::relay_outbox_refused(&code);
        let config = &self.fed.config;
        let mut backoff = Backoff::new(config.backoff_base, config.backoff_cap).after(row.attempts);
        let delay = backoff
            .failed()
            .max(failure.retry_after.unwrap_or_default());
        let now = unix_now();
        row.attempts = backoff.failures();
        row.next_attempt_at = now + delay.as_secs().max(1) as i64;
        row.last_error = Some(format!("{code}: {failure}"));
        if now - row.last_progress_at > STALLED_AFTER_SECS {
            row.stalled_since.get_or_insert(now);
        }
        tracing::debug!(relay = %row.relay, queue = %row.queue_id, %code, "depositing at a relay failed");
        Drive::Done
    }
}

fn batch_of(row: &OutboxRow) -> u32 {
    match row.batch {
        0 => MAX_ITEMS as u32,
        n => n,
    }
}

/// The envelope size after a full queue (or a too large envelope) answered `answer`: what the
/// items bound has room for, else half (a bytes bound does not say how many items fit).
fn smaller_batch(batch: u32, answer: &Value) -> u32 {
    let room = answer["max"].as_i64().unwrap_or(0) - answer["queued"].as_i64().unwrap_or(0);
    let fits = match answer["limit"].as_str() {
        Some("items") if room > 0 => u32::try_from(room).unwrap_or(u32::MAX),
        _ => batch / 2,
    };
    fits.clamp(1, batch)
}

/// The outbox rows of a tenant, for `spl relay status`.
pub async fn rows(fed: &Federation, tenant: &str) -> Result<Vec<OutboxRow>> {
    let mut rows: Vec<OutboxRow> = fed
        .store
        .state_list(tenant, OUTBOX)
        .await?
        .into_iter()
        .filter_map(|(_, text)| state::parse(&text).ok())
        .collect();
    rows.sort_by(|a, b| {
        (&a.peer_did, &a.thread, &a.relay).cmp(&(&b.peer_did, &b.thread, &b.relay))
    });
    Ok(rows)
}
