//! The relay's Postgres store (schema and reasons: `migrations/relay`). Every change to a queue
//! happens under its row lock (`FOR UPDATE`): deposits number their envelopes in commit order,
//! and acks delete under the same lock, so counters and the bounds stay exact across replicas.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Row};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::RelayError;
use syncropel_protocol::relay::{Envelope, Queue};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/relay");

/// The channel a deposit's commit is announced on (payload: the queue id), to every replica.
const DEPOSITS: &str = "relay_deposits";
/// Announcements a replica holds for slow waiters before they must look again.
const ANNOUNCED: usize = 4096;

/// What one source may keep queued (federation-protocol.md §7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Items and bytes per (source, destination), over all their queues.
    pub items_per_destination: i64,
    pub bytes_per_destination: i64,
    /// Bytes per source, over all its destinations.
    pub bytes_per_source: i64,
    /// How long an envelope is kept unless its queue asks for less (at least an hour).
    pub ttl_secs: i64,
    /// The `Retry-After` of a full queue: about how long its destination takes to make room.
    pub full_retry_after_secs: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            items_per_destination: 100_000,
            bytes_per_destination: 256 << 20,
            bytes_per_source: 4 << 30,
            ttl_secs: 30 * 24 * 3600,
            full_retry_after_secs: 30,
        }
    }
}

/// The outcome of a deposit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deposited {
    pub envelope_id: String,
    /// The envelope was queued already (a re-sent deposit).
    pub duplicate: bool,
    pub rseq: i64,
}

/// One envelope of a page, as deposited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    pub rseq: i64,
    pub envelope_id: String,
    pub body: Vec<u8>,
}

/// A caller's part in its queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Source,
    Destination,
}

/// A queue as stored: what it carries and how full it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueRow {
    pub queue: Queue,
    pub incarnation: String,
    pub opened_by: String,
    pub ttl_secs: i64,
    pub closed: bool,
    pub envelopes: i64,
    pub items: i64,
    pub bytes: i64,
    pub head_sseq: i64,
    pub expired_items: i64,
    pub expired_through_sseq: i64,
    pub acked_through_sseq: i64,
    pub last_deposit_at: Option<i64>,
    /// The source cursor its destination held when it opened the queue, if it did.
    pub since: Option<String>,
}

/// What the relay holds in all (see [`RelayStore::totals`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Totals {
    pub items: i64,
    pub bytes: i64,
    pub oldest_enqueued_at: Option<i64>,
}

/// What an ack removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acked {
    pub envelopes: i64,
    pub items: i64,
}

pub struct RelayStore {
    pool: PgPool,
    limits: Limits,
    /// Queue ids of committed deposits, from every replica.
    deposits: broadcast::Sender<String>,
    listener: JoinHandle<()>,
}

impl RelayStore {
    /// Connects to `url` and applies pending migrations (serialized across replicas).
    pub async fn open(url: &str, limits: Limits) -> Result<RelayStore, RelayError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(PgConnectOptions::from_str(url)?)
            .await?;
        MIGRATOR.run(&pool).await?;
        let (deposits, _) = broadcast::channel(ANNOUNCED);
        // Listening before `open` returns: a deposit committed after it is announced.
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(DEPOSITS).await?;
        let listener = tokio::spawn(announce(listener, deposits.clone()));
        Ok(RelayStore {
            pool,
            limits,
            deposits,
            listener,
        })
    }

    pub async fn close(&self) {
        self.listener.abort();
        self.pool.close().await;
    }

    /// Deletes the envelopes past their time, a queue at a time under its lock, counting them in
    /// the queue (both sides see it) and freeing their room. Replicas share the work: a queue
    /// another replica is sweeping (or writing) is skipped this time. The items expired.
    pub async fn sweep_expired(&self, now: i64) -> Result<i64, RelayError> {
        let mut expired = 0;
        loop {
            let mut tx = self.pool.begin().await?;
            let queue: Option<String> = sqlx::query_scalar(
                "SELECT q.queue_id FROM relay_queues q WHERE EXISTS (SELECT 1 FROM relay_envelopes e \
                 WHERE e.queue_id = q.queue_id AND e.expires_at < $1) \
                 LIMIT 1 FOR UPDATE SKIP LOCKED",
            )
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(queue_id) = queue else {
                return Ok(expired);
            };
            let (gone, through) =
                remove_through(&mut tx, &queue_id, Through::ExpiredBefore(now)).await?;
            sqlx::query(
                "UPDATE relay_queues SET expired_items = expired_items + $2, \
                 expired_through_sseq = greatest(expired_through_sseq, $3) WHERE queue_id = $1",
            )
            .bind(&queue_id)
            .bind(gone.items)
            .bind(through)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            expired += gone.items;
        }
    }

    /// What the relay holds in all: items, bytes, and when the oldest envelope came (unix
    /// seconds; `None` when it holds nothing).
    pub async fn totals(&self) -> Result<Totals, RelayError> {
        let row = sqlx::query(
            "SELECT coalesce(sum(items), 0)::int8 AS items, coalesce(sum(bytes), 0)::int8 AS bytes, \
             min(enqueued_at) AS oldest FROM relay_envelopes",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Totals {
            items: row.get("items"),
            bytes: row.get("bytes"),
            oldest_enqueued_at: row.get("oldest"),
        })
    }

    /// Whether the database answers and holds every migration of this build.
    pub async fn ready(&self) -> bool {
        let applied: Result<Option<i64>, sqlx::Error> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await;
        let needed = MIGRATOR.iter().map(|m| m.version).max();
        matches!(applied, Ok(applied) if applied >= needed)
    }

    /// Queue ids of deposits committed from now on, by any replica. A receiver that lags has
    /// missed some: it looks again.
    pub fn deposits(&self) -> broadcast::Receiver<String> {
        self.deposits.subscribe()
    }

    /// Opens `queue` (idempotent), for `opened_by`, keeping envelopes `ttl_secs` (the relay's
    /// default when `None`; at least an hour, at most the default). A destination reopens a
    /// queue it closed.
    pub async fn open_queue(
        &self,
        queue: &Queue,
        opened_by: &str,
        ttl_secs: Option<i64>,
        since: Option<&str>,
    ) -> Result<(), RelayError> {
        let mut tx = self.pool.begin().await?;
        // A relay configured below an hour keeps that (a clamp with min above max panics).
        let floor = self.limits.ttl_secs.min(3600);
        let ttl = ttl_secs
            .unwrap_or(self.limits.ttl_secs)
            .clamp(floor, self.limits.ttl_secs);
        insert_queue(&mut tx, queue, opened_by, ttl).await?;
        if opened_by == queue.dest_did {
            // The cursor it holds at the source, kept for the source to deposit from.
            sqlx::query(
                "UPDATE relay_queues SET closed_at = NULL, since = coalesce($2, since) \
                 WHERE queue_id = $1",
            )
            .bind(queue.id())
            .bind(since)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Queues a checked envelope (opening its queue if need be): a re-sent one is answered as a
    /// duplicate; one that would pass a bound is refused whole with [`RelayError::QueueFull`].
    pub async fn deposit(&self, envelope: &Envelope, now: i64) -> Result<Deposited, RelayError> {
        let queue = &envelope.queue;
        let mut tx = self.pool.begin().await?;
        insert_queue(&mut tx, queue, &queue.source_did, self.limits.ttl_secs).await?;
        let row = sqlx::query(
            "SELECT next_rseq, ttl_secs, closed_at FROM relay_queues WHERE queue_id = $1 FOR UPDATE",
        )
        .bind(&envelope.queue_id)
        .fetch_one(&mut *tx)
        .await?;
        if row.get::<Option<i64>, _>("closed_at").is_some() {
            return Err(RelayError::QueueClosed);
        }
        let known: Option<i64> = sqlx::query_scalar(
            "SELECT rseq FROM relay_envelopes WHERE queue_id = $1 AND envelope_id = $2",
        )
        .bind(&envelope.queue_id)
        .bind(&envelope.envelope_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(rseq) = known {
            return Ok(Deposited {
                envelope_id: envelope.envelope_id.clone(),
                duplicate: true,
                rseq,
            });
        }
        let items = envelope.ids.len() as i64;
        let bytes = envelope.bytes.len() as i64;
        self.check_room(&mut tx, queue, items, bytes).await?;
        let rseq: i64 = row.get("next_rseq");
        let ttl: i64 = row.get("ttl_secs");
        sqlx::query(
            "INSERT INTO relay_envelopes (queue_id, rseq, envelope_id, source_epoch, first_sseq, \
             last_sseq, items, bytes, body, enqueued_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&envelope.queue_id)
        .bind(rseq)
        .bind(&envelope.envelope_id)
        .bind(&envelope.source_epoch)
        .bind(envelope.first_sseq)
        .bind(envelope.last_sseq)
        .bind(items)
        .bind(bytes)
        .bind(&envelope.bytes)
        .bind(now)
        .bind(now + ttl)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE relay_queues SET next_rseq = next_rseq + 1, envelopes = envelopes + 1, \
             items = items + $2, bytes = bytes + $3, head_sseq = greatest(head_sseq, $4), \
             last_deposit_at = $5 WHERE queue_id = $1",
        )
        .bind(&envelope.queue_id)
        .bind(items)
        .bind(bytes)
        .bind(envelope.last_sseq)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        add_usage(&mut tx, &queue.source_did, &queue.dest_did, items, bytes).await?;
        // Delivered to every replica's listener when the deposit commits.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(DEPOSITS)
            .bind(&envelope.queue_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Deposited {
            envelope_id: envelope.envelope_id.clone(),
            duplicate: false,
            rseq,
        })
    }

    /// Refuses a deposit of `items` and `bytes` that would pass a bound.
    async fn check_room(
        &self,
        tx: &mut PgConnection,
        queue: &Queue,
        items: i64,
        bytes: i64,
    ) -> Result<(), RelayError> {
        // One source's deposits check its room one at a time (a lock on its DID, taken after
        // the queue's and never before it, so no two deposits wait on each other in a circle):
        // two deposits to different queues cannot both take the last room.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(&queue.source_did)
            .execute(&mut *tx)
            .await?;
        let used = sqlx::query(
            "INSERT INTO relay_usage (source_did, dest_did) VALUES ($1, $2) \
             ON CONFLICT (source_did, dest_did) DO UPDATE SET items = relay_usage.items \
             RETURNING items, bytes",
        )
        .bind(&queue.source_did)
        .bind(&queue.dest_did)
        .fetch_one(&mut *tx)
        .await?;
        let source_bytes: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(bytes), 0)::int8 FROM relay_usage WHERE source_did = $1",
        )
        .bind(&queue.source_did)
        .fetch_one(&mut *tx)
        .await?;
        let limits = self.limits;
        let checks = [
            (
                "items",
                used.get::<i64, _>("items"),
                items,
                limits.items_per_destination,
            ),
            (
                "bytes",
                used.get::<i64, _>("bytes"),
                bytes,
                limits.bytes_per_destination,
            ),
            ("source_bytes", source_bytes, bytes, limits.bytes_per_source),
        ];
        for (limit, queued, adding, max) in checks {
            if queued + adding > max {
                return Err(RelayError::QueueFull {
                    limit,
                    queued,
                    max,
                    retry_after: self.limits.full_retry_after_secs,
                });
            }
        }
        Ok(())
    }

    /// The envelopes of `queue_id` after `after_rseq`, in order: the first (if any), then more
    /// while the page stays within `max_items` and `max_bytes`.
    pub async fn changes(
        &self,
        queue_id: &str,
        after_rseq: i64,
        max_items: i64,
        max_bytes: i64,
    ) -> Result<Vec<Queued>, RelayError> {
        // The running totals are read from the stored sizes, so no body past the page is read.
        let rows = sqlx::query(
            "SELECT rseq, envelope_id, body FROM ( \
               SELECT rseq, envelope_id, body, \
                 row_number() OVER (ORDER BY rseq) AS n, \
                 sum(items) OVER (ORDER BY rseq) AS items_through, \
                 sum(bytes) OVER (ORDER BY rseq) AS bytes_through \
               FROM relay_envelopes WHERE queue_id = $1 AND rseq > $2) AS page \
             WHERE n = 1 OR (items_through <= $3 AND bytes_through <= $4) \
             ORDER BY rseq",
        )
        .bind(queue_id)
        .bind(after_rseq)
        .bind(max_items)
        .bind(max_bytes)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| Queued {
                rseq: row.get("rseq"),
                envelope_id: row.get("envelope_id"),
                body: row.get("body"),
            })
            .collect())
    }

    /// The queue `queue_id`, if it exists.
    pub async fn queue(&self, queue_id: &str) -> Result<Option<QueueRow>, RelayError> {
        let row = sqlx::query(
            "SELECT source_did, dest_did, pair_id, generation, thread, target_namespace, \
             incarnation, opened_by, ttl_secs, closed_at, envelopes, items, bytes, head_sseq, \
             expired_items, expired_through_sseq, acked_through_sseq, last_deposit_at, since \
             FROM relay_queues WHERE queue_id = $1",
        )
        .bind(queue_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| QueueRow {
            queue: Queue {
                source_did: row.get("source_did"),
                dest_did: row.get("dest_did"),
                pair_id: row.get("pair_id"),
                generation: u64::try_from(row.get::<i64, _>("generation")).unwrap_or(0),
                thread: row.get("thread"),
                target_namespace: row.get("target_namespace"),
            },
            incarnation: row.get("incarnation"),
            opened_by: row.get("opened_by"),
            ttl_secs: row.get("ttl_secs"),
            closed: row.get::<Option<i64>, _>("closed_at").is_some(),
            envelopes: row.get("envelopes"),
            items: row.get("items"),
            bytes: row.get("bytes"),
            head_sseq: row.get("head_sseq"),
            expired_items: row.get("expired_items"),
            expired_through_sseq: row.get("expired_through_sseq"),
            acked_through_sseq: row.get("acked_through_sseq"),
            last_deposit_at: row.get("last_deposit_at"),
            since: row.get("since"),
        }))
    }

    /// The ids of `did`'s queues as `role` (`source` or `destination`), in id order after
    /// `after`, at most `limit`.
    pub async fn queue_ids(
        &self,
        did: &str,
        role: Role,
        after: &str,
        limit: i64,
    ) -> Result<Vec<String>, RelayError> {
        let sql = match role {
            Role::Source => {
                "SELECT queue_id FROM relay_queues WHERE source_did = $1 AND queue_id > $2 \
                 ORDER BY queue_id LIMIT $3"
            }
            Role::Destination => {
                "SELECT queue_id FROM relay_queues WHERE dest_did = $1 AND queue_id > $2 \
                 ORDER BY queue_id LIMIT $3"
            }
        };
        Ok(sqlx::query_scalar(sql)
            .bind(did)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Records a call's nonce for `did` until `expires_at`; `false` when it was seen already (a
    /// replay). The DID's expired nonces go in the same statement, so the table holds only those
    /// of the last two minutes.
    pub async fn first_use(
        &self,
        did: &str,
        nonce: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, RelayError> {
        let fresh: Option<i32> = sqlx::query_scalar(
            "WITH gone AS (DELETE FROM relay_nonces WHERE did = $1 AND expires_at < $4) \
             INSERT INTO relay_nonces (did, nonce, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (did, nonce) DO NOTHING RETURNING 1",
        )
        .bind(did)
        .bind(nonce)
        .bind(expires_at)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(fresh.is_some())
    }

    /// An ack: removes every envelope of `queue_id` as far as `through` reaches.
    pub async fn ack_through(
        &self,
        queue_id: &str,
        through: Through<'_>,
    ) -> Result<Acked, RelayError> {
        let mut tx = self.pool.begin().await?;
        let (acked, removed_through) = remove_through(&mut tx, queue_id, through).await?;
        let confirmed = match through {
            Through::SourceSeq { sseq, .. } => sseq.max(removed_through),
            _ => removed_through,
        };
        sqlx::query(
            "UPDATE relay_queues SET acked_through_sseq = greatest(acked_through_sseq, $2) \
             WHERE queue_id = $1",
        )
        .bind(queue_id)
        .bind(confirmed)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(acked)
    }
}

impl RelayStore {
    /// Deletes a queue's envelopes. From its destination the queue stays, closed to deposits
    /// until the destination opens it again; from its source the queue goes too.
    pub async fn delete_queue(
        &self,
        queue_id: &str,
        by_destination: bool,
        now: i64,
    ) -> Result<Acked, RelayError> {
        let mut tx = self.pool.begin().await?;
        let (acked, _) = remove_through(&mut tx, queue_id, Through::Rseq(i64::MAX)).await?;
        let closing = if by_destination {
            sqlx::query("UPDATE relay_queues SET closed_at = $2 WHERE queue_id = $1")
                .bind(queue_id)
                .bind(now)
        } else {
            sqlx::query("DELETE FROM relay_queues WHERE queue_id = $1").bind(queue_id)
        };
        closing.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(acked)
    }
}

/// How far an ack reaches: the destination's, by relay sequence; the source's (a trim, for what
/// the destination confirmed by pulling the source directly), by the source's own sequence; the
/// sweep's, every envelope past its time.
#[derive(Clone, Copy, Debug)]
pub enum Through<'a> {
    Rseq(i64),
    SourceSeq { epoch: &'a str, sseq: i64 },
    ExpiredBefore(i64),
}

/// Removes the envelopes of `queue_id` as far as `through` reaches, under the queue's lock, with
/// their share of the queue's counters and of the usage the bounds read. Also the highest
/// source sequence removed.
async fn remove_through(
    tx: &mut PgConnection,
    queue_id: &str,
    through: Through<'_>,
) -> Result<(Acked, i64), RelayError> {
    let queue =
        sqlx::query("SELECT source_did, dest_did FROM relay_queues WHERE queue_id = $1 FOR UPDATE")
            .bind(queue_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(RelayError::NotFound)?;
    let removing = |condition: &str| {
        format!(
            "WITH gone AS (DELETE FROM relay_envelopes WHERE queue_id = $1 AND {condition} \
             RETURNING items, bytes, last_sseq) \
             SELECT count(*)::int8 AS envelopes, coalesce(sum(items), 0)::int8 AS items, \
             coalesce(sum(bytes), 0)::int8 AS bytes, coalesce(max(last_sseq), 0)::int8 AS through \
             FROM gone"
        )
    };
    let removed = match through {
        Through::Rseq(rseq) => {
            sqlx::query(&removing("rseq <= $2"))
                .bind(queue_id)
                .bind(rseq)
                .fetch_one(&mut *tx)
                .await?
        }
        Through::SourceSeq { epoch, sseq } => {
            sqlx::query(&removing("source_epoch = $2 AND last_sseq <= $3"))
                .bind(queue_id)
                .bind(epoch)
                .bind(sseq)
                .fetch_one(&mut *tx)
                .await?
        }
        Through::ExpiredBefore(now) => {
            sqlx::query(&removing("expires_at < $2"))
                .bind(queue_id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
        }
    };
    let (envelopes, items, bytes): (i64, i64, i64) = (
        removed.get("envelopes"),
        removed.get("items"),
        removed.get("bytes"),
    );
    sqlx::query(
        "UPDATE relay_queues SET envelopes = envelopes - $2, items = items - $3, \
         bytes = bytes - $4 WHERE queue_id = $1",
    )
    .bind(queue_id)
    .bind(envelopes)
    .bind(items)
    .bind(bytes)
    .execute(&mut *tx)
    .await?;
    let (source, dest): (String, String) = (queue.get("source_did"), queue.get("dest_did"));
    add_usage(&mut *tx, &source, &dest, -items, -bytes).await?;
    Ok((Acked { envelopes, items }, removed.get("through")))
}

async fn insert_queue(
    tx: &mut PgConnection,
    queue: &Queue,
    opened_by: &str,
    ttl_secs: i64,
) -> Result<(), RelayError> {
    sqlx::query(
        "INSERT INTO relay_queues (queue_id, source_did, dest_did, pair_id, generation, thread, \
         target_namespace, opened_by, ttl_secs) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (queue_id) DO NOTHING",
    )
    .bind(queue.id())
    .bind(&queue.source_did)
    .bind(&queue.dest_did)
    .bind(&queue.pair_id)
    .bind(i64::try_from(queue.generation).unwrap_or(i64::MAX))
    .bind(&queue.thread)
    .bind(&queue.target_namespace)
    .bind(opened_by)
    .bind(ttl_secs)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Moves the usage the bounds read for (`source`, `dest`) by `items` and `bytes` (negative when
/// envelopes go).
async fn add_usage(
    tx: &mut PgConnection,
    source: &str,
    dest: &str,
    items: i64,
    bytes: i64,
) -> Result<(), RelayError> {
    sqlx::query(
        "UPDATE relay_usage SET items = items + $3, bytes = bytes + $4 \
         WHERE source_did = $1 AND dest_did = $2",
    )
    .bind(source)
    .bind(dest)
    .bind(items)
    .bind(bytes)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Passes the deposits Postgres announces on to this replica's waiters. A lost connection is
/// re-established by the listener; waiters then see a lag and look again.
async fn announce(mut listener: PgListener, deposits: broadcast::Sender<String>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                let _ = deposits.send(notification.payload().to_string());
            }
            // The connection was lost and is back: what was announced meanwhile is unknown,
            // so every waiter is woken to look again.
            Ok(None) => {
                let _ = deposits.send(String::new());
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "deposit announcements failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
