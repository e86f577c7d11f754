//! Text and JSON rendering shared by the commands.
//!
//! `--json` output is one compact JSON document per command on stdout, so scripts can pipe it
//! straight into `jq`; text output is meant for people and may change.

use serde::Serialize;
use serde_json::Value;
use syncropel_client::api::ThreadSummary;

/// Bodies longer than this are cut in one-line listings; `spl records get` shows them whole.
const BODY_PREVIEW_CHARS: usize = 80;

/// Prints `value` as one line of JSON. It goes through a JSON value, so members come out sorted
/// whatever type holds them.
pub fn print_json(value: &impl Serialize) {
    match serde_json::to_value(value) {
        Ok(value) => println!("{value}"),
        Err(e) => eprintln!("error: cannot print the answer: {e}"),
    }
}

/// An optional member for text output: absent as `-`.
pub fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

/// A string member of `value`, or `""` so text output never fails on a missing field.
pub fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A member rendered for text output: strings bare, anything else as JSON, absent as `-`.
pub fn display_field(value: &Value, key: &str) -> String {
    match value.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// One line per record: sequence, id, act, actor, clock and the start of the body.
pub fn record_line(record: &Value) -> String {
    let body = record.get("body").map(Value::to_string).unwrap_or_default();
    format!(
        "{:>6}  {}  {:<6}  {}  {}  {}",
        display_field(record, "sequence"),
        str_field(record, "id"),
        str_field(record, "act"),
        str_field(record, "actor"),
        display_field(record, "clock"),
        truncate(&body, BODY_PREVIEW_CHARS),
    )
}

/// One line per thread summary.
pub fn thread_line(thread: &ThreadSummary) -> String {
    format!(
        "{}  {} records  last clock {}  namespace {}",
        thread.id, thread.record_count, thread.last_clock, thread.namespace,
    )
}

/// Columns under a header, left-aligned and two spaces apart; the last column is not padded, so
/// lines carry no trailing blanks.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, width)) in cells.into_iter().zip(&widths).enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = width - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out
    };
    let mut lines = vec![line(header.to_vec())];
    lines.extend(
        rows.iter()
            .map(|row| line(row.iter().map(String::as_str).collect())),
    );
    lines.join("\n")
}

/// Every member of an object but `object`, one `key  value` line each with the keys aligned;
/// values as [`display_field`] renders them.
pub fn fields(value: &Value) -> String {
    let Some(object) = value.as_object() else {
        return value.to_string();
    };
    let keys: Vec<&String> = object.keys().filter(|k| *k != "object").collect();
    let width = keys.iter().map(|k| k.chars().count()).max().unwrap_or(0);
    keys.iter()
        .map(|key| format!("{key:<width$}  {}", display_field(value, key)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first `max_chars` characters of `text`, for ids too long for a table.
pub fn prefix(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_lines_are_compact_and_tolerate_missing_fields() {
        let record = json!({"id":"abc","act":"KNOW","actor":"did:key:z6Mk1","clock":7,
                            "sequence":3,"body":{"text":"x".repeat(200)}});
        let line = record_line(&record);
        assert!(
            line.starts_with("     3  abc  KNOW    did:key:z6Mk1  7  {\"text\":"),
            "{line}"
        );
        assert!(line.ends_with('…'));
        assert!(record_line(&json!({})).trim_start().starts_with('-'));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hé", 2), "hé");
    }

    #[test]
    fn tables_align_columns_without_trailing_blanks() {
        let rows = vec![
            vec![
                "fed_1".to_owned(),
                "did:key:z6Mk1".to_owned(),
                "active".to_owned(),
            ],
            vec!["fed_22".to_owned(), "-".to_owned(), "paused".to_owned()],
        ];
        assert_eq!(
            table(&["PAIR", "PEER", "STATE"], &rows),
            "PAIR    PEER           STATE\n\
             fed_1   did:key:z6Mk1  active\n\
             fed_22  -              paused"
        );
        assert_eq!(table(&["A", "B"], &[]), "A  B");
    }

    #[test]
    fn fields_list_members_but_the_object_tag() {
        // Written in sorted order: member order is the map's, sorted unless `preserve_order`.
        let shown = fields(
            &json!({"last_error":null,"object":"sync_pair","pair_id":"sp_1",
                                   "retries":3}),
        );
        assert_eq!(shown, "last_error  -\npair_id     sp_1\nretries     3");
        assert_eq!(prefix("fed_0123456789abcdef0123", 16), "fed_0123456789ab");
        assert_eq!(prefix("é", 16), "é");
    }

    #[test]
    fn thread_lines_name_counts() {
        let line = thread_line(&ThreadSummary {
            id: "th_1".into(),
            namespace: "default".into(),
            record_count: 12,
            last_clock: 5,
        });
        assert_eq!(line, "th_1  12 records  last clock 5  namespace default");
    }
}
