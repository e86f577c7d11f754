//! Full-text search: every string value of a record's body in a `tsvector` column, written with
//! the record, and plain words matched as quoted lexemes.

use sqlx::postgres::PgPool;
use sqlx::Row;

use super::sql::stored_from_row;
use crate::{Result, StoredRecord};

/// Body text indexed for search per record. A tsvector holds at most 1 MiB; records are far
/// smaller in practice, and the cap keeps one odd record from failing its whole batch.
const MAX_SEARCH_TEXT: usize = 256 * 1024;

/// `(score, record)` of the tenant's records that hold any of `words`, best first.
pub(super) async fn search(
    pool: &PgPool,
    tenant: &str,
    words: &[String],
    limit: u32,
) -> Result<Vec<(f64, StoredRecord)>> {
    let Some(expression) = tsquery_expression(words) else {
        return Ok(Vec::new());
    };
    if tenant.contains('\0') {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT seq, id, thread, record_json, ts_rank(search, q)::float8 AS score \
         FROM records, to_tsquery('simple', $2) AS q \
         WHERE tenant = $1 AND search @@ q ORDER BY score DESC, seq LIMIT $3",
    )
    .bind(tenant)
    .bind(expression)
    .bind(i64::from(limit))
    // Unbound, as the tables' owner, with its `tenant = $1`: `@@` is not leakproof, so under
    // row-level security it could not use the GIN index and every search would read the
    // tenant's every record.
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<f64, _>("score").max(0.0), stored_from_row(r)))
        .collect())
}

/// Plain words become quoted tsquery lexemes joined by `|` (OR), so no query text is tsquery
/// syntax: inside quotes only `'` (doubled) and `\` (escaped) are special. Words split at
/// whitespace and NUL (which Postgres text cannot hold).
fn tsquery_expression(words: &[String]) -> Option<String> {
    let quoted: Vec<String> = words
        .iter()
        .flat_map(|w| w.split(|c: char| c.is_whitespace() || c == '\0'))
        .filter(|w| !w.is_empty())
        .map(|w| format!("'{}'", w.replace('\\', "\\\\").replace('\'', "''")))
        .collect();
    (!quoted.is_empty()).then(|| quoted.join(" | "))
}

/// The text indexed for search: every string value of the record's body, joined by spaces (the
/// SQLite backend indexes the same values).
pub(super) fn search_text(json: &str) -> String {
    fn collect(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::String(s) => {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(s);
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            serde_json::Value::Object(members) => members.values().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    if let Ok(serde_json::Value::Object(record)) = serde_json::from_str(json) {
        if let Some(body) = record.get("body") {
            collect(body, &mut out);
        }
    }
    if out.contains('\0') {
        out = out.replace('\0', " ");
    }
    if out.len() > MAX_SEARCH_TEXT {
        let mut end = MAX_SEARCH_TEXT;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{search_text, tsquery_expression};

    #[test]
    fn search_words_are_quoted_lexemes() {
        let words = |ws: &[&str]| ws.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert_eq!(
            tsquery_expression(&words(&["o'b", "a\\b", "&|!"])).as_deref(),
            Some("'o''b' | 'a\\\\b' | '&|!'")
        );
        assert_eq!(
            tsquery_expression(&words(&["ze\0bra"])).as_deref(),
            Some("'ze' | 'bra'")
        );
        assert_eq!(tsquery_expression(&words(&["\0", " "])), None);
    }

    #[test]
    fn search_text_is_the_body_strings() {
        let json =
            r#"{"id":"x","thread":"t","body":{"a":"hello","b":[1,"wor\u0000ld",{"c":"deep"}]}}"#;
        assert_eq!(search_text(json), "hello wor ld deep");
        assert_eq!(search_text(r#"{"body":"plain"}"#), "plain");
        assert_eq!(search_text(r#"{"body":3}"#), "");
    }
}
