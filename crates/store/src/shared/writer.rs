//! The group-commit writer's core, the same on both backends: the operations callers queue, the
//! loop that applies a batch of them inside one transaction (over [`Batch`], which each backend
//! implements for its own transaction), and the answers to the callers.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::{
    Appended, AuthChange, Committed, NewRecord, Result, StateChange, StoreError, StoredRecord,
};

/// A write waiting in a writer's queue for the next batch.
pub(crate) enum WriteOp {
    Append {
        tenant: String,
        record: NewRecord,
        reply: oneshot::Sender<Result<Appended>>,
    },
    Auth {
        tenant: String,
        change: AuthChange,
        audit: NewRecord,
        reply: oneshot::Sender<Result<bool>>,
    },
    Write {
        tenant: String,
        records: Vec<NewRecord>,
        state: Vec<StateChange>,
        reply: oneshot::Sender<Result<Vec<Result<Appended>>>>,
    },
}

/// The receiver of a write's answer.
pub(crate) type Answer<T> = oneshot::Receiver<Result<T>>;

impl WriteOp {
    pub(crate) fn append(tenant: &str, record: NewRecord) -> (WriteOp, Answer<Appended>) {
        let (reply, answer) = oneshot::channel();
        let tenant = tenant.to_string();
        let op = WriteOp::Append {
            tenant,
            record,
            reply,
        };
        (op, answer)
    }

    pub(crate) fn auth(
        tenant: &str,
        change: AuthChange,
        audit: NewRecord,
    ) -> (WriteOp, Answer<bool>) {
        let (reply, answer) = oneshot::channel();
        let tenant = tenant.to_string();
        let op = WriteOp::Auth {
            tenant,
            change,
            audit,
            reply,
        };
        (op, answer)
    }

    pub(crate) fn write(
        tenant: &str,
        records: Vec<NewRecord>,
        state: Vec<StateChange>,
    ) -> (WriteOp, Answer<Vec<Result<Appended>>>) {
        let (reply, answer) = oneshot::channel();
        let tenant = tenant.to_string();
        let op = WriteOp::Write {
            tenant,
            records,
            state,
            reply,
        };
        (op, answer)
    }

    pub(crate) fn tenant(&self) -> &str {
        match self {
            WriteOp::Append { tenant, .. }
            | WriteOp::Auth { tenant, .. }
            | WriteOp::Write { tenant, .. } => tenant,
        }
    }
}

/// What a writer task's queue carries: writes, a backend's own requests `X` (answered in queue
/// order, after the writes before them), and the request to stop.
// Writes stay inline, as they were in the queue before: boxing them would allocate per write.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Queued<X> {
    Write(WriteOp),
    Extra(X),
    /// Commit what is queued, then stop.
    Close,
}

/// Queues `op` and waits for its answer.
pub(crate) async fn submit<T, X>(
    queue: &mpsc::Sender<Queued<X>>,
    op: WriteOp,
    answer: Answer<T>,
) -> Result<T> {
    queue
        .send(Queued::Write(op))
        .await
        .map_err(|_| StoreError::WriterStopped)?;
    answer.await.map_err(|_| StoreError::WriterStopped)?
}

/// What a writer took off its queue at once: the writes to commit together, the backend's own
/// requests, and whether to stop after them.
pub(crate) struct Taken<X> {
    pub(crate) writes: Vec<WriteOp>,
    pub(crate) extras: Vec<X>,
    pub(crate) closing: bool,
}

/// Takes everything queued (up to `max`), waiting for at least one; `None` once the queue is
/// closed and empty.
pub(crate) async fn take<X>(
    queue: &mut mpsc::Receiver<Queued<X>>,
    buffer: &mut Vec<Queued<X>>,
    max: usize,
) -> Option<Taken<X>> {
    if queue.recv_many(buffer, max).await == 0 {
        return None;
    }
    let mut taken = Taken {
        writes: Vec::with_capacity(buffer.len()),
        extras: Vec::new(),
        closing: false,
    };
    for queued in buffer.drain(..) {
        match queued {
            Queued::Write(op) => taken.writes.push(op),
            Queued::Extra(extra) => taken.extras.push(extra),
            Queued::Close => taken.closing = true,
        }
    }
    Some(taken)
}

/// Outcome of one op inside a batch; the outer `Result` of the batch carries database failures.
pub(crate) enum OpOutcome {
    Append(Result<Appended>),
    /// With the audit record, when the change took effect and the record was inserted.
    Auth(Result<bool>, Option<StoredRecord>),
    Write(Vec<Result<Appended>>),
}

/// One write transaction of a backend, as [`write_ops`] drives it. `'a` is the batch's lifetime:
/// a backend may hold on to the records until it commits.
pub(crate) trait Batch<'a>: Send {
    /// Stores records, each idempotent by id (a stored id answers
    /// [`Appended::Existing`], a taken `(thread, actor, clock)` [`StoreError::DuplicateClock`]);
    /// with `upgrade_stubs`, a peer's full record replaces its stored consent stub
    /// ([`crate::replaces_stub`]). One outcome per record, in order.
    fn insert(
        &mut self,
        records: &[(&'a str, &'a NewRecord)],
        upgrade_stubs: bool,
    ) -> impl Future<Output = Result<Vec<Result<Appended>>>> + Send;

    /// Applies an auth change; the inner result is the change's own outcome (refused alone,
    /// without failing the batch).
    fn apply_change(
        &mut self,
        tenant: &str,
        change: &AuthChange,
    ) -> impl Future<Output = Result<Result<bool>>> + Send;

    fn apply_state(
        &mut self,
        tenant: &str,
        change: &StateChange,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Removes the stored consent stubs that hold `record`'s id or its `(thread, actor,
    /// clock)`; whether there were any.
    fn remove_stubs_blocking(
        &mut self,
        tenant: &str,
        record: &NewRecord,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Applies a batch of writes in one transaction: every append first (in one go), then each
/// op in order. One outcome per op.
// Not an `async fn`: its future is declared `Send`, which spares the spawning writer task a
// proof through the backend's futures that the compiler cannot make yet (rust-lang/rust#100013).
#[allow(clippy::manual_async_fn)]
pub(crate) fn write_ops<'a, 't, B: Batch<'a>>(
    tx: &'t mut B,
    batch: &'a [WriteOp],
) -> impl Future<Output = Result<Vec<OpOutcome>>> + Send + use<'a, 't, B> {
    async move {
        let appends: Vec<(&str, &NewRecord)> = batch
            .iter()
            .filter_map(|op| match op {
                WriteOp::Append { tenant, record, .. } => Some((tenant.as_str(), record)),
                _ => None,
            })
            .collect();
        let mut appended = tx.insert(&appends, false).await?.into_iter();

        let mut outcomes = Vec::with_capacity(batch.len());
        for op in batch {
            let outcome = match op {
                WriteOp::Append { .. } => OpOutcome::Append(
                    appended
                        .next()
                        .ok_or_else(|| StoreError::WriteFailed("append outcome missing".into()))?,
                ),
                WriteOp::Auth {
                    tenant,
                    change,
                    audit,
                    ..
                } => match tx.apply_change(tenant, change).await? {
                    Ok(true) => {
                        // The change stands even if its audit record were a replay.
                        let stored = tx.insert(&[(tenant.as_str(), audit)], false).await?;
                        let audit = match stored.into_iter().next() {
                            Some(Ok(Appended::Inserted(record))) => Some(record),
                            _ => None,
                        };
                        OpOutcome::Auth(Ok(true), audit)
                    }
                    other => OpOutcome::Auth(other, None),
                },
                WriteOp::Write {
                    tenant,
                    records,
                    state,
                    ..
                } => {
                    let records: Vec<(&str, &NewRecord)> =
                        records.iter().map(|r| (tenant.as_str(), r)).collect();
                    // Peers' records: a full record may replace a consent stub of the same id.
                    let mut results = tx.insert(&records, true).await?;
                    // A stub is unsigned: one that holds a verified record's id under another
                    // envelope, or its (thread, actor, clock), goes, and the record is stored.
                    for (result, &(tenant, record)) in results.iter_mut().zip(&records) {
                        if blocked_by_stub(result, record)
                            && tx.remove_stubs_blocking(tenant, record).await?
                        {
                            if let Some(stored) = tx.insert(&[(tenant, record)], true).await?.pop()
                            {
                                *result = stored;
                            }
                        }
                    }
                    for change in state {
                        tx.apply_state(tenant, change).await?;
                    }
                    OpOutcome::Write(results)
                }
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
}

/// Whether a full record from a peer was kept out by what may be a stub: its id stored as a stub
/// it did not replace, or its `(thread, actor, clock)` taken.
fn blocked_by_stub(outcome: &Result<Appended>, record: &NewRecord) -> bool {
    !crate::is_stub(&record.json)
        && match outcome {
            Ok(Appended::Existing(stored)) => crate::is_stub(&stored.json),
            Err(StoreError::DuplicateClock { .. }) => true,
            _ => false,
        }
}

/// Answers every write of a batch with its outcome, or all of them with the batch's failure.
/// Given `committed`, the records the batch inserted are added to it, for watchers.
pub(crate) fn answer(
    batch: Vec<WriteOp>,
    result: Result<Vec<OpOutcome>>,
    mut committed: Option<&mut Vec<Committed>>,
) {
    let outcomes = match result {
        Ok(outcomes) => outcomes,
        Err(e) => {
            let message = e.to_string();
            tracing::error!(error = %message, ops = batch.len(), "write batch failed, rolled back");
            for op in batch {
                let failed = || StoreError::WriteFailed(message.clone());
                match op {
                    WriteOp::Append { reply, .. } => {
                        let _ = reply.send(Err(failed()));
                    }
                    WriteOp::Auth { reply, .. } => {
                        let _ = reply.send(Err(failed()));
                    }
                    WriteOp::Write { reply, .. } => {
                        let _ = reply.send(Err(failed()));
                    }
                }
            }
            return;
        }
    };
    for (op, outcome) in batch.into_iter().zip(outcomes) {
        match (op, outcome) {
            (WriteOp::Append { tenant, reply, .. }, OpOutcome::Append(result)) => {
                if let (Some(committed), Ok(Appended::Inserted(record))) =
                    (committed.as_deref_mut(), &result)
                {
                    committed.push(Committed::of(&tenant, record));
                }
                let _ = reply.send(result);
            }
            (WriteOp::Auth { tenant, reply, .. }, OpOutcome::Auth(result, audit)) => {
                if let (Some(committed), Some(record)) = (committed.as_deref_mut(), audit) {
                    committed.push(Committed::of(&tenant, &record));
                }
                let _ = reply.send(result);
            }
            (WriteOp::Write { tenant, reply, .. }, OpOutcome::Write(results)) => {
                if let Some(committed) = committed.as_deref_mut() {
                    for result in &results {
                        if let Ok(Appended::Inserted(record)) = result {
                            committed.push(Committed::of(&tenant, record));
                        }
                    }
                }
                let _ = reply.send(Ok(results));
            }
            _ => {}
        }
    }
}
