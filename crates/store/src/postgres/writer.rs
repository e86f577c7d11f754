//! The Postgres writer tasks: group commit under the tenants' counter locks (see the module
//! above), one multi-row statement per batch that also queues the NOTIFY of what it inserted.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;

use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use tokio::sync::mpsc;

use super::search::search_text;
use super::sql::{apply_change, apply_state, remove_stubs_blocking, stored_from_row};
use super::CHANNEL;
use crate::shared::writer::{answer, take, write_ops, Batch, OpOutcome, Queued, WriteOp};
use crate::shared::MAX_BATCH;
use crate::{
    with_sequence, Appended, AuthChange, NewRecord, Result, StateChange, StoreError, StoredRecord,
};

/// A writer task: takes everything queued (up to [`MAX_BATCH`]) and commits it as one
/// transaction.
pub(super) async fn run_writer(pool: PgPool, mut queue: mpsc::Receiver<Queued<Infallible>>) {
    let mut buffer = Vec::with_capacity(MAX_BATCH);
    while let Some(taken) = take(&mut queue, &mut buffer, MAX_BATCH).await {
        if !taken.writes.is_empty() {
            commit_batch(&pool, taken.writes).await;
        }
        if taken.closing {
            break;
        }
    }
}

async fn commit_batch(pool: &PgPool, batch: Vec<WriteOp>) {
    // Most batches are all new records: insert them straight away. If any of them turns out to be
    // a replay or a clock clash, that transaction rolls back and the batch is decided row by row.
    let result = match attempt(pool, &batch, false).await {
        Err(StoreError::Conflicted) => attempt(pool, &batch, true).await,
        other => other,
    };
    // Watchers are told by the listener, from the NOTIFY this transaction sent at its commit.
    answer(batch, result, None);
}

/// One transaction of [`commit_batch`]: unchecked first, checked after a conflict.
async fn attempt(pool: &PgPool, batch: &[WriteOp], checked: bool) -> Result<Vec<OpOutcome>> {
    let mut tx = pool.begin().await?;
    if checked {
        sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
            .execute(&mut *tx)
            .await?;
    }
    let outcomes = write_batch(&mut tx, batch, checked).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Rows this transaction will insert, numbered, plus what conflict checks need to know of them.
#[derive(Default)]
struct Pending<'a> {
    /// Last sequence handed out per tenant: locked from the database, advanced here.
    counters: HashMap<String, i64>,
    /// First sequence handed out per tenant in this transaction, for the NOTIFY.
    first: HashMap<String, i64>,
    rows: Vec<(&'a str, &'a NewRecord, i64)>,
    by_id: HashMap<(&'a str, &'a str), StoredRecord>,
    clocks: HashSet<(&'a str, &'a str, &'a str, i64)>,
}

/// One write transaction: its connection and the rows it will insert.
struct PgBatch<'a, 'c> {
    conn: &'c mut PgConnection,
    pending: Pending<'a>,
    checked: bool,
}

impl<'a> Batch<'a> for PgBatch<'a, '_> {
    async fn insert(
        &mut self,
        records: &[(&'a str, &'a NewRecord)],
        upgrade_stubs: bool,
    ) -> Result<Vec<Result<Appended>>> {
        resolve(
            self.conn,
            records,
            &mut self.pending,
            self.checked,
            upgrade_stubs,
        )
        .await
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

/// Writes a batch under its tenants' counter locks. Unchecked, only the batch itself is looked at
/// for replays and clock clashes (the unique indexes catch the rest, and [`flush`] then reports
/// [`StoreError::Conflicted`]); checked, every record is first looked up in the store.
async fn write_batch(
    conn: &mut PgConnection,
    batch: &[WriteOp],
    checked: bool,
) -> Result<Vec<OpOutcome>> {
    // Lock every tenant this batch writes, in one order for every replica (no deadlocks). The
    // `+ 0` update takes the row lock and reads the counter; it is advanced once at the end.
    let mut tenants: Vec<&str> = batch.iter().map(WriteOp::tenant).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let mut pending = Pending::default();
    let rows = sqlx::query(
        "INSERT INTO tenant_counters (tenant, last_seq) \
         SELECT t, 0 FROM UNNEST($1::text[]) WITH ORDINALITY AS u(t, n) ORDER BY n \
         ON CONFLICT (tenant) DO UPDATE SET last_seq = tenant_counters.last_seq \
         RETURNING tenant, last_seq",
    )
    .bind(&tenants)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        pending
            .counters
            .insert(row.get("tenant"), row.get("last_seq"));
    }

    let mut tx = PgBatch {
        conn,
        pending,
        checked,
    };
    let outcomes = write_ops(&mut tx, batch).await?;
    flush(tx.conn, &tx.pending, checked).await?;
    Ok(outcomes)
}

/// Decides, under the tenants' counter locks, what each record does: a stored (or earlier in this
/// batch) id is a replay, a taken `(thread, actor, clock)` is a clash, anything else is numbered
/// and queued for insert. Only inserted rows get sequences, so a tenant's sequence has no gaps.
/// Unchecked, the store is not consulted (see [`write_batch`]).
async fn resolve<'a>(
    conn: &mut PgConnection,
    records: &[(&'a str, &'a NewRecord)],
    pending: &mut Pending<'a>,
    checked: bool,
    upgrade_stubs: bool,
) -> Result<Vec<Result<Appended>>> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let mut stored_ids: HashMap<(String, String), StoredRecord> = HashMap::new();
    let mut stored_clocks: HashSet<(String, String, String, i64)> = HashSet::new();
    if checked {
        lookup(conn, records, &mut stored_ids, &mut stored_clocks).await?;
    }
    let mut outcomes = Vec::with_capacity(records.len());
    for &(tenant, record) in records {
        let key = (tenant.to_string(), record.id.clone());
        if let Some(stored) = stored_ids.get(&key) {
            if upgrade_stubs && crate::replaces_stub(&stored.json, &record.json) {
                replace_stub(conn, tenant, record, stored.seq).await?;
                outcomes.push(Ok(Appended::Existing(StoredRecord {
                    json: with_sequence(&record.json, stored.seq),
                    ..stored.clone()
                })));
            } else {
                outcomes.push(Ok(Appended::Existing(stored.clone())));
            }
            continue;
        }
        if let Some(stored) = pending.by_id.get(&(tenant, record.id.as_str())) {
            outcomes.push(Ok(Appended::Existing(stored.clone())));
            continue;
        }
        let clock_key = (
            tenant.to_string(),
            record.thread.clone(),
            record.actor.clone(),
            record.clock,
        );
        let pending_clock = (
            tenant,
            record.thread.as_str(),
            record.actor.as_str(),
            record.clock,
        );
        if stored_clocks.contains(&clock_key) || pending.clocks.contains(&pending_clock) {
            outcomes.push(Err(StoreError::DuplicateClock {
                thread: record.thread.clone(),
                actor: record.actor.clone(),
                clock: record.clock,
            }));
            continue;
        }
        let counter = pending
            .counters
            .get_mut(tenant)
            .ok_or_else(|| StoreError::WriteFailed(format!("tenant '{tenant}' not locked")))?;
        *counter += 1;
        let seq = *counter;
        pending.first.entry(tenant.to_string()).or_insert(seq);
        let stored = StoredRecord {
            seq,
            id: record.id.clone(),
            thread: record.thread.clone(),
            json: with_sequence(&record.json, seq),
        };
        pending.clocks.insert(pending_clock);
        pending
            .by_id
            .insert((tenant, record.id.as_str()), stored.clone());
        pending.rows.push((tenant, record, seq));
        outcomes.push(Ok(Appended::Inserted(stored)));
    }
    Ok(outcomes)
}

/// The stored records that share an id or a `(thread, actor, clock)` with `records`. The join
/// cannot prune partitions (the tenants come from an array), which is why only checked batches
/// run it.
async fn lookup(
    conn: &mut PgConnection,
    records: &[(&str, &NewRecord)],
    stored_ids: &mut HashMap<(String, String), StoredRecord>,
    stored_clocks: &mut HashSet<(String, String, String, i64)>,
) -> Result<()> {
    // One pair of branches per tenant, each with the tenant as its own parameter: planned per
    // execution (the checked path asks for custom plans), every branch prunes to that tenant's
    // partition, so a batch that met a stored record never scans the others.
    let mut by_tenant: Vec<(&str, Vec<&NewRecord>)> = Vec::new();
    for &(tenant, record) in records {
        match by_tenant.iter_mut().find(|(t, _)| *t == tenant) {
            Some((_, group)) => group.push(record),
            None => by_tenant.push((tenant, vec![record])),
        }
    }
    let mut sql = QueryBuilder::<Postgres>::new("");
    for (n, (tenant, group)) in by_tenant.iter().enumerate() {
        if n > 0 {
            sql.push(" UNION ALL ");
        }
        let ids: Vec<&str> = group.iter().map(|r| r.id.as_str()).collect();
        let threads: Vec<&str> = group.iter().map(|r| r.thread.as_str()).collect();
        let actors: Vec<&str> = group.iter().map(|r| r.actor.as_str()).collect();
        let clocks: Vec<i64> = group.iter().map(|r| r.clock).collect();
        sql.push("(SELECT r.tenant, r.seq, r.id, r.thread, r.actor, r.clock, r.record_json FROM records r WHERE r.tenant = ")
            .push_bind(tenant.to_string())
            .push(" AND r.id = ANY(")
            .push_bind(ids)
            .push(")) UNION ALL (SELECT r.tenant, r.seq, r.id, r.thread, r.actor, r.clock, r.record_json FROM UNNEST(")
            .push_bind(threads)
            .push("::text[], ")
            .push_bind(actors)
            .push("::text[], ")
            .push_bind(clocks)
            .push("::int8[]) AS k(thread, actor, clock) JOIN records r ON r.tenant = ")
            .push_bind(tenant.to_string())
            .push(" AND r.thread = k.thread AND r.actor = k.actor AND r.clock = k.clock)");
    }
    let rows = sql.build().fetch_all(&mut *conn).await?;
    for row in &rows {
        let tenant: String = row.get("tenant");
        stored_clocks.insert((
            tenant.clone(),
            row.get("thread"),
            row.get("actor"),
            row.get("clock"),
        ));
        let record = stored_from_row(row);
        stored_ids.insert((tenant, record.id.clone()), record);
    }
    Ok(())
}

/// Inserts the numbered rows, updates the thread summaries and the counters, and queues one NOTIFY
/// per tenant (delivered when the transaction commits), all in one statement.
async fn flush(conn: &mut PgConnection, pending: &Pending<'_>, checked: bool) -> Result<()> {
    if pending.rows.is_empty() {
        return Ok(());
    }
    let rows = &pending.rows;
    let col = |f: fn(&NewRecord) -> &str| rows.iter().map(|(_, r, _)| f(r)).collect::<Vec<_>>();
    let tenants: Vec<&str> = rows.iter().map(|(t, _, _)| *t).collect();
    let seqs: Vec<i64> = rows.iter().map(|(_, _, s)| *s).collect();
    let clocks: Vec<i64> = rows.iter().map(|(_, r, _)| r.clock).collect();
    let created: Vec<i64> = rows.iter().map(|(_, r, _)| r.created_at).collect();
    let texts: Vec<String> = rows.iter().map(|(_, r, _)| search_text(&r.json)).collect();

    // Thread summaries, aggregated here so one upsert touches each (tenant, thread) once.
    let mut summaries: HashMap<(&str, &str), (&str, i64, i64, i64)> = HashMap::new();
    let mut order = Vec::new();
    for (tenant, record, seq) in rows {
        let entry = summaries
            .entry((tenant, record.thread.as_str()))
            .or_insert_with(|| {
                order.push((*tenant, record.thread.as_str()));
                (record.namespace.as_str(), 0, record.clock, *seq)
            });
        entry.1 += 1;
        entry.2 = entry.2.max(record.clock);
        entry.3 = entry.3.max(*seq);
    }
    let th_tenants: Vec<&str> = order.iter().map(|k| k.0).collect();
    let th_threads: Vec<&str> = order.iter().map(|k| k.1).collect();
    let th_namespaces: Vec<&str> = order.iter().map(|k| summaries[k].0).collect();
    let th_counts: Vec<i64> = order.iter().map(|k| summaries[k].1).collect();
    let th_clocks: Vec<i64> = order.iter().map(|k| summaries[k].2).collect();
    let th_seqs: Vec<i64> = order.iter().map(|k| summaries[k].3).collect();

    let mut counter_tenants: Vec<&str> = pending.first.keys().map(String::as_str).collect();
    counter_tenants.sort_unstable();
    let counter_values: Vec<i64> = counter_tenants
        .iter()
        .map(|t| pending.counters[*t])
        .collect();
    let mut bytes: HashMap<&str, i64> = HashMap::new();
    for (tenant, record, _) in rows {
        *bytes.entry(tenant).or_default() += record.json.len() as i64;
    }
    let counter_bytes: Vec<i64> = counter_tenants
        .iter()
        .map(|t| bytes.get(t).copied().unwrap_or(0))
        .collect();

    let payloads: Vec<String> = counter_tenants
        .iter()
        .zip(&counter_values)
        .map(|(t, last)| format!("{t} {} {last}", pending.first[*t]))
        .collect();

    let inserted: i64 = sqlx::query_scalar(
        "WITH ins AS ( \
           INSERT INTO records (tenant, seq, id, thread, actor, clock, act, data_type, namespace, \
                                created_at, record_json, search) \
           SELECT t, s, i, th, a, c, ac, dt, ns, ca, j, to_tsvector('simple', x) \
           FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::int8[], \
                       $7::text[], $8::text[], $9::text[], $10::int8[], $11::text[], $12::text[]) \
                AS u(t, s, i, th, a, c, ac, dt, ns, ca, j, x) \
           ON CONFLICT DO NOTHING RETURNING 1 \
         ), thr AS ( \
           INSERT INTO threads (tenant, thread, namespace, record_count, last_clock, last_seq) \
           SELECT * FROM UNNEST($13::text[], $14::text[], $15::text[], $16::int8[], $17::int8[], \
                                $18::int8[]) \
           ON CONFLICT (tenant, thread) DO UPDATE SET \
             record_count = threads.record_count + excluded.record_count, \
             last_clock = greatest(threads.last_clock, excluded.last_clock), \
             last_seq = greatest(threads.last_seq, excluded.last_seq) \
         ), cnt AS ( \
           UPDATE tenant_counters c SET last_seq = u.s, bytes = c.bytes + u.b \
           FROM UNNEST($19::text[], $20::int8[], $23::int8[]) AS u(t, s, b) WHERE c.tenant = u.t \
         ), ntf AS ( \
           SELECT pg_notify($21, p) FROM UNNEST($22::text[]) AS p \
         ) \
         SELECT (SELECT count(*) FROM ins) + 0 * (SELECT count(*) FROM ntf)",
    )
    .bind(&tenants)
    .bind(&seqs)
    .bind(col(|r| &r.id))
    .bind(col(|r| &r.thread))
    .bind(col(|r| &r.actor))
    .bind(&clocks)
    .bind(col(|r| &r.act))
    .bind(col(|r| &r.data_type))
    .bind(col(|r| &r.namespace))
    .bind(&created)
    .bind(col(|r| &r.json))
    .bind(&texts)
    .bind(&th_tenants)
    .bind(&th_threads)
    .bind(&th_namespaces)
    .bind(&th_counts)
    .bind(&th_clocks)
    .bind(&th_seqs)
    .bind(&counter_tenants)
    .bind(&counter_values)
    .bind(CHANNEL)
    .bind(&payloads)
    .bind(&counter_bytes)
    .fetch_one(&mut *conn)
    .await?;
    if inserted != rows.len() as i64 {
        // Unchecked: some row was a replay or a clash; the caller rolls back and checks. Checked,
        // every row was decided under the tenants' locks, so this means a writer bypassed the
        // counters, and the batch is rolled back rather than answer with numbers not stored.
        return Err(if checked {
            StoreError::WriteFailed(format!(
                "{} of {} records conflicted after the conflict check",
                rows.len() as i64 - inserted,
                rows.len()
            ))
        } else {
            StoreError::Conflicted
        });
    }
    Ok(())
}

/// Puts a peer's full record in place of its consent stub (same id, same sequence).
async fn replace_stub(
    conn: &mut PgConnection,
    tenant: &str,
    record: &NewRecord,
    seq: i64,
) -> Result<(), sqlx::Error> {
    // The tenant's bytes take the difference, read before the row changes.
    sqlx::query(
        "UPDATE tenant_counters SET bytes = bytes + octet_length($3) - \
         (SELECT octet_length(record_json) FROM records WHERE tenant = $1 AND seq = $2) \
         WHERE tenant = $1",
    )
    .bind(tenant)
    .bind(seq)
    .bind(&record.json)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE records SET record_json = $3, search = to_tsvector('simple', $4), namespace = $5 \
         WHERE tenant = $1 AND seq = $2",
    )
    .bind(tenant)
    .bind(seq)
    .bind(&record.json)
    .bind(search_text(&record.json))
    .bind(&record.namespace)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
