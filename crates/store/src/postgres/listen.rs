//! The listener: turns the NOTIFYs of committed batches (from any replica) into announcements
//! to this replica's watchers.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use sqlx::Row;
use tokio::sync::broadcast;

use crate::{Committed, Result};

/// Rows the listener reads per query when it catches a tenant up.
const ANNOUNCE_PAGE: i64 = 1000;

/// Receives `<tenant> <first> <last>` notifications and announces the committed rows of that
/// tenant after the last one announced, in sequence order. Reading "everything after the last
/// announced" rather than exactly the notified range means nothing is skipped when notifications
/// are lost (a reconnect) and a backlog of notifications costs one query, not one each: a
/// tenant's committed sequences are always a gapless prefix, since its committers are serialized.
pub(super) async fn run_listener(
    mut listener: PgListener,
    pool: PgPool,
    events: broadcast::Sender<Committed>,
) {
    let mut announced: HashMap<String, i64> = HashMap::new();
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                let Some((tenant, first, last)) = parse_payload(notification.payload()) else {
                    tracing::warn!(payload = notification.payload(), "unexpected notification");
                    continue;
                };
                let done = announced.entry(tenant.to_string()).or_insert(first - 1);
                if last <= *done {
                    continue;
                }
                if events.receiver_count() == 0 {
                    // Nobody listens: nothing to read, only remember how far the log is.
                    *done = last;
                    continue;
                }
                if let Err(e) = announce(&pool, &events, tenant, done).await {
                    tracing::warn!(error = %e, tenant, "reading committed records to announce failed");
                }
            }
            Ok(None) => {
                // The connection was lost (and is re-established): notifications sent meanwhile
                // are gone, so catch up every tenant this listener knows.
                tracing::warn!("record notification connection lost; catching up");
                for (tenant, done) in announced.iter_mut() {
                    if let Err(e) = announce(&pool, &events, tenant, done).await {
                        tracing::warn!(error = %e, tenant, "catching up announcements failed");
                    }
                }
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "record notifications failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn parse_payload(payload: &str) -> Option<(&str, i64, i64)> {
    let mut parts = payload.rsplitn(3, ' ');
    let last = parts.next()?.parse().ok()?;
    let first = parts.next()?.parse().ok()?;
    let tenant = parts.next()?;
    Some((tenant, first, last))
}

/// Announces every committed record of `tenant` after `*done` (by sequence and thread only),
/// advancing `*done`.
async fn announce(
    pool: &PgPool,
    events: &broadcast::Sender<Committed>,
    tenant: &str,
    done: &mut i64,
) -> Result<()> {
    loop {
        let rows = sqlx::query(
            "SELECT seq, thread FROM records \
             WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(tenant)
        .bind(*done)
        .bind(ANNOUNCE_PAGE)
        .fetch_all(&mut *super::bound::bound(pool, tenant).await?)
        .await?;
        let full = rows.len() as i64 == ANNOUNCE_PAGE;
        for row in &rows {
            let seq: i64 = row.get("seq");
            *done = seq;
            let _ = events.send(Committed {
                tenant: tenant.to_string(),
                thread: row.get("thread"),
                seq,
            });
        }
        if !full {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_payload;

    #[test]
    fn payloads_parse_from_the_right() {
        assert_eq!(parse_payload("a b 1 2"), Some(("a b", 1, 2)));
        assert_eq!(parse_payload("t 5 9"), Some(("t", 5, 9)));
        assert_eq!(parse_payload("t 9"), None);
    }
}
