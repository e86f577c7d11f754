//! Full-text search: an FTS5 index over every string value of a record's body, brought up to
//! date by the writer (see [`index_for_search`]), and plain words matched as quoted strings.

use sqlx::{Row, SqliteConnection};
use tokio::sync::oneshot;

use super::sql::stored_from_row;
use super::SqliteStore;
use crate::shared::writer::Queued;
use crate::{Result, StoreError, StoredRecord};

/// The writer indexes for search after this many appends even when nobody searches, so a search
/// never has a large backlog to wait for.
pub(super) const SEARCH_INDEX_EVERY: usize = 4096;

/// A request to the writer to bring the full-text index up to date with every committed record.
pub(super) type IndexSearch = oneshot::Sender<Result<()>>;

/// `(score, record)` of the tenant's records that hold any of `words`, best first.
pub(super) async fn search(
    store: &SqliteStore,
    tenant: &str,
    words: &[String],
    limit: u32,
) -> Result<Vec<(f64, StoredRecord)>> {
    let Some(expression) = fts_expression(words) else {
        return Ok(Vec::new());
    };
    // Read-your-writes: everything committed before this search is indexed first.
    let (reply, indexed) = oneshot::channel();
    store
        .writes
        .send(Queued::Extra(reply))
        .await
        .map_err(|_| StoreError::WriterStopped)?;
    indexed.await.map_err(|_| StoreError::WriterStopped)??;
    let rows = sqlx::query(
        "SELECT r.seq, r.id, r.thread, r.record_json, -records_fts.rank AS score \
         FROM records_fts JOIN records r ON r.seq = records_fts.rowid \
         WHERE records_fts MATCH ? AND r.tenant = ? ORDER BY records_fts.rank LIMIT ?",
    )
    .bind(expression)
    .bind(tenant)
    .bind(i64::from(limit))
    .fetch_all(&store.reader)
    .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<f64, _>("score").max(0.0), stored_from_row(r)))
        .collect())
}

/// Plain words become quoted FTS5 strings joined by OR, so no query text is FTS syntax. FTS5 reads
/// the expression as a C string, so NULs go too.
fn fts_expression(words: &[String]) -> Option<String> {
    let quoted: Vec<String> = words
        .iter()
        .flat_map(|w| w.split(|c: char| c.is_whitespace() || c == '\0'))
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    (!quoted.is_empty()).then(|| quoted.join(" OR "))
}

/// Adds every record committed since the last run to the full-text index, in one transaction with
/// the watermark, so a crash never leaves a record indexed twice or skipped.
pub(super) async fn index_for_search(conn: &mut SqliteConnection) -> Result<()> {
    let result = async {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        sqlx::query(
            "INSERT INTO records_fts (rowid, text) \
             SELECT seq, (SELECT coalesce(group_concat(value, ' '), '') \
                          FROM json_tree(record_json, '$.body') WHERE type = 'text') \
             FROM records WHERE seq > (SELECT indexed_seq FROM search_index_state)",
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "UPDATE search_index_state SET indexed_seq = (SELECT coalesce(max(seq), 0) FROM records)",
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        Ok::<_, sqlx::Error>(())
    }
    .await;
    if let Err(e) = result {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        tracing::error!(error = %e, "indexing for search failed; will retry");
        return Err(e.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::fts_expression;

    #[test]
    fn search_words_are_quoted_and_nuls_split_words() {
        let words = |ws: &[&str]| ws.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert_eq!(
            fts_expression(&words(&["a\"b", "NEAR("])).as_deref(),
            Some("\"a\"\"b\" OR \"NEAR(\"")
        );
        assert_eq!(
            fts_expression(&words(&["ze\0bra"])).as_deref(),
            Some("\"ze\" OR \"bra\"")
        );
        assert_eq!(fts_expression(&words(&["\0", " "])), None);
    }
}
