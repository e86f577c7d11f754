//! The SQLite writer task: one connection does every write; concurrent writes queue and commit
//! together (group commit), and the writer announces what it committed, in sequence order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection};
use tokio::sync::{broadcast, mpsc};

use super::search::{index_for_search, IndexSearch, SEARCH_INDEX_EVERY};
use super::sql::{apply_change, apply_state, remove_stubs_blocking, stored_from_row};
use crate::shared::writer::{answer, take, write_ops, Batch, OpOutcome, Queued, WriteOp};
use crate::shared::MAX_BATCH;
use crate::{
    with_sequence, Appended, AuthChange, Committed, NewRecord, Result, StateChange, StoreError,
    StoredRecord,
};

/// The writer task: takes everything queued (up to [`MAX_BATCH`]) and commits it as one
/// transaction. Between two commits it starts the WAL over when the checkpointer asks.
pub(super) async fn run_writer(
    mut conn: SqliteConnection,
    mut queue: mpsc::Receiver<Queued<IndexSearch>>,
    events: broadcast::Sender<Committed>,
    restart_wanted: Arc<AtomicBool>,
) {
    let mut buffer = Vec::with_capacity(MAX_BATCH);
    let mut unindexed = 0;
    while let Some(taken) = take(&mut queue, &mut buffer, MAX_BATCH).await {
        if !taken.writes.is_empty() {
            unindexed += taken
                .writes
                .iter()
                .map(|op| match op {
                    WriteOp::Write { records, .. } => records.len(),
                    _ => 1,
                })
                .sum::<usize>();
            commit_batch(&mut conn, taken.writes, &events).await;
        }
        if !taken.extras.is_empty() || unindexed >= SEARCH_INDEX_EVERY {
            let indexed = index_for_search(&mut conn).await;
            if indexed.is_ok() {
                unindexed = 0;
            }
            for waiter in taken.extras {
                let _ = waiter.send(match &indexed {
                    Ok(()) => Ok(()),
                    Err(e) => Err(StoreError::WriteFailed(e.to_string())),
                });
            }
        }
        if taken.closing {
            break;
        }
        if restart_wanted.swap(false, Ordering::Relaxed) {
            if let Err(e) = restart_wal(&mut conn).await {
                tracing::warn!(error = %e, "WAL restart failed; will retry");
            }
        }
    }
    // Leave a tidy database file behind: everything copied back, the WAL emptied.
    let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
}

/// How long a restart waits for readers still on an older snapshot before it gives up (it then
/// checkpoints what it can, and the checkpointer asks again later). Writes wait meanwhile, so this
/// stays short: a reader that holds its snapshot must not stall every commit.
const RESTART_WAIT_MS: u32 = 20;

/// Starts the WAL over: holding no transaction, the writer is not the one the restart waits for,
/// and the passive checkpoints have copied most frames already.
async fn restart_wal(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("PRAGMA busy_timeout = {RESTART_WAIT_MS}"))
        .execute(&mut *conn)
        .await?;
    let started = std::time::Instant::now();
    // (busy, frames in the WAL, frames checkpointed)
    let restarted: Result<(i64, i64, i64), sqlx::Error> =
        sqlx::query_as("PRAGMA wal_checkpoint(RESTART)")
            .fetch_one(&mut *conn)
            .await;
    sqlx::query(&format!(
        "PRAGMA busy_timeout = {}",
        super::BUSY_TIMEOUT.as_millis()
    ))
    .execute(&mut *conn)
    .await?;
    let (busy, frames, _) = restarted?;
    tracing::debug!(
        busy,
        frames,
        ms = started.elapsed().as_millis() as u64,
        "WAL restart"
    );
    Ok(())
}

async fn commit_batch(
    conn: &mut SqliteConnection,
    batch: Vec<WriteOp>,
    events: &broadcast::Sender<Committed>,
) {
    let result = write_batch(conn, &batch).await;
    if result.is_err() {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    let mut committed = Vec::new();
    answer(batch, result, Some(&mut committed));
    // Watchers rely on announcements in sequence order.
    committed.sort_by_key(|c| c.seq);
    for c in committed {
        let _ = events.send(c);
    }
}

async fn write_batch(conn: &mut SqliteConnection, batch: &[WriteOp]) -> Result<Vec<OpOutcome>> {
    let appends = batch
        .iter()
        .filter(|op| matches!(op, WriteOp::Append { .. }))
        .count();
    // A batch of appends that fits one statement commits as that statement; anything more (auth
    // changes with their audit records, or several statements) gets an explicit transaction.
    let explicit = appends > INSERT_CHUNK || appends < batch.len();
    if explicit {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    }
    let outcomes = write_ops(&mut SqliteBatch { conn: &mut *conn }, batch).await?;
    if explicit {
        sqlx::query("COMMIT").execute(&mut *conn).await?;
    }
    Ok(outcomes)
}

/// One write transaction on the writer's connection.
struct SqliteBatch<'c> {
    conn: &'c mut SqliteConnection,
}

impl<'a> Batch<'a> for SqliteBatch<'_> {
    async fn insert(
        &mut self,
        records: &[(&'a str, &'a NewRecord)],
        upgrade_stubs: bool,
    ) -> Result<Vec<Result<Appended>>> {
        insert_records(self.conn, records, upgrade_stubs).await
    }

    async fn apply_change(&mut self, tenant: &str, change: &AuthChange) -> Result<Result<bool>> {
        apply_change(self.conn, tenant, change).await
    }

    async fn apply_state(&mut self, tenant: &str, change: &StateChange) -> Result<()> {
        Ok(apply_state(self.conn, tenant, change).await?)
    }

    async fn remove_stubs_blocking(&mut self, tenant: &str, record: &NewRecord) -> Result<bool> {
        remove_stubs_blocking(self.conn, tenant, record).await
    }
}

/// Records per multi-row INSERT; 11 columns each stays far below SQLite's 32766 parameters.
const INSERT_CHUNK: usize = 512;

/// Inserts records, or finds why one could not be: same id (an idempotent replay) or another
/// record on the same `(thread, actor, clock)`. SQLite numbers the inserted rows in input order.
async fn insert_records(
    conn: &mut SqliteConnection,
    records: &[(&str, &NewRecord)],
    upgrade_stubs: bool,
) -> Result<Vec<Result<Appended>>> {
    let mut outcomes = Vec::with_capacity(records.len());
    for chunk in records.chunks(INSERT_CHUNK) {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "INSERT INTO records (tenant, id, thread, actor, clock, act, data_type, namespace, \
             created_at, record_json) ",
        );
        sql.push_values(chunk, |mut row, (tenant, record)| {
            row.push_bind(*tenant)
                .push_bind(&record.id)
                .push_bind(&record.thread)
                .push_bind(&record.actor)
                .push_bind(record.clock)
                .push_bind(&record.act)
                .push_bind(&record.data_type)
                .push_bind(&record.namespace)
                .push_bind(record.created_at)
                .push_bind(&record.json);
        });
        sql.push(" ON CONFLICT DO NOTHING RETURNING seq, tenant, id");
        let mut inserted: HashMap<(String, String), i64> = sql
            .build()
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| ((row.get("tenant"), row.get("id")), row.get("seq")))
            .collect();
        for (tenant, record) in chunk {
            // `remove`: a second copy of the same record in this batch is a replay of the first.
            let outcome = match inserted.remove(&(tenant.to_string(), record.id.clone())) {
                Some(seq) => Ok(Appended::Inserted(StoredRecord {
                    seq,
                    id: record.id.clone(),
                    thread: record.thread.clone(),
                    json: with_sequence(&record.json, seq),
                })),
                None => explain_conflict(conn, tenant, record, upgrade_stubs).await?,
            };
            outcomes.push(outcome);
        }
    }
    Ok(outcomes)
}

/// A record the INSERT skipped: either its id is stored (replay) or its clock is taken.
async fn explain_conflict(
    conn: &mut SqliteConnection,
    tenant: &str,
    record: &NewRecord,
    upgrade_stubs: bool,
) -> Result<Result<Appended>> {
    let existing =
        sqlx::query("SELECT seq, id, thread, record_json FROM records WHERE tenant = ? AND id = ?")
            .bind(tenant)
            .bind(&record.id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match existing {
        Some(row) => {
            let stored = stored_from_row(&row);
            if upgrade_stubs && crate::replaces_stub(&stored.json, &record.json) {
                replace_stub(conn, tenant, record, stored.seq).await?;
                Ok(Appended::Existing(StoredRecord {
                    json: with_sequence(&record.json, stored.seq),
                    ..stored
                }))
            } else {
                Ok(Appended::Existing(stored))
            }
        }
        None => Err(StoreError::DuplicateClock {
            thread: record.thread.clone(),
            actor: record.actor.clone(),
            clock: record.clock,
        }),
    })
}

/// Puts the full record in place of its stub (same id, same sequence). A stub's body has no
/// text, so if the stub was already indexed for search, the full body's text is added now.
async fn replace_stub(
    conn: &mut SqliteConnection,
    tenant: &str,
    record: &NewRecord,
    seq: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE records SET record_json = ?, namespace = ? WHERE tenant = ? AND seq = ?")
        .bind(&record.json)
        .bind(&record.namespace)
        .bind(tenant)
        .bind(seq)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO records_fts (rowid, text) \
         SELECT seq, (SELECT coalesce(group_concat(value, ' '), '') \
                      FROM json_tree(record_json, '$.body') WHERE type = 'text') \
         FROM records WHERE seq = ? AND seq <= (SELECT indexed_seq FROM search_index_state)",
    )
    .bind(seq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
