//! Answers written around records that are JSON text already.
//!
//! The steward stores every record as the JSON it serves. Putting an envelope around that text
//! is much cheaper than parsing and serializing each record again, and these are the hot paths
//! (listing, batches, sync pages, watch streams). Each writer gives exactly what serializing its
//! type would; the tests check it against serde.

use std::fmt::Write as _;

use crate::error::ErrorBody;

/// A [`crate::ListPage`] of records, each given as its JSON text.
pub fn record_page<'a, I>(records: I, next_cursor: Option<&str>) -> String
where
    I: Iterator<Item = &'a str> + Clone,
{
    let size: usize = records.clone().map(|r| r.len() + 1).sum();
    let mut out = String::with_capacity(size + 96);
    out.push_str("{\"object\":\"list\",\"data\":[");
    join(&mut out, records);
    out.push_str("],\"next_cursor\":");
    match next_cursor {
        Some(cursor) => push_string(&mut out, cursor),
        None => out.push_str("null"),
    }
    out.push_str(",\"has_more\":");
    out.push_str(if next_cursor.is_some() {
        "true"
    } else {
        "false"
    });
    out.push('}');
    out
}

/// A [`crate::ChangesPage`] whose items are JSON text.
pub fn changes_page<'a, I>(thread: &str, items: I, next_cursor: &str, has_more: bool) -> String
where
    I: Iterator<Item = &'a str> + Clone,
{
    let size: usize = items.clone().map(|i| i.len() + 1).sum();
    let mut out = String::with_capacity(size + thread.len() + next_cursor.len() + 96);
    out.push_str("{\"object\":\"sync_changes\",\"thread\":");
    push_string(&mut out, thread);
    out.push_str(",\"records\":[");
    join(&mut out, items);
    out.push_str("],\"next_cursor\":");
    push_string(&mut out, next_cursor);
    out.push_str(",\"has_more\":");
    out.push_str(if has_more { "true" } else { "false" });
    out.push('}');
    out
}

/// The data of a watch stream's `record.created` event ([`crate::RecordCreated`]).
pub fn record_created(id: &str, record: &str) -> String {
    let mut out = String::with_capacity(id.len() + record.len() + 24);
    out.push_str("{\"id\":");
    push_string(&mut out, id);
    out.push_str(",\"record\":");
    out.push_str(record);
    out.push('}');
    out
}

/// Writes a [`crate::BatchResult`] item by item, records as their JSON text.
pub struct BatchWriter {
    out: String,
    items: usize,
}

impl BatchWriter {
    /// A writer with room for about `items` records.
    pub fn new(items: usize) -> BatchWriter {
        let mut out = String::with_capacity(256 * items + 96);
        out.push_str("{\"object\":\"batch_result\",\"data\":[");
        BatchWriter { out, items: 0 }
    }

    /// An item that stored (`201`) or found (`200`) its record.
    pub fn record(&mut self, index: usize, status: u16, record: &str) {
        self.item_head(index, status);
        self.out.push_str(",\"record\":");
        self.out.push_str(record);
        self.out.push('}');
    }

    /// An item refused with `error`.
    pub fn error(&mut self, index: usize, status: u16, error: &ErrorBody) {
        self.item_head(index, status);
        self.out.push_str(",\"error\":");
        // An envelope of strings and JSON values always serializes.
        self.out
            .push_str(&serde_json::to_string(error).unwrap_or_default());
        self.out.push('}');
    }

    fn item_head(&mut self, index: usize, status: u16) {
        if self.items > 0 {
            self.out.push(',');
        }
        self.items += 1;
        // Writing to a String cannot fail.
        let _ = write!(self.out, "{{\"index\":{index},\"status\":{status}");
    }

    /// The whole answer, with the counts.
    pub fn finish(mut self, created: u64, existing: u64, failed: u64) -> String {
        let _ = write!(
            self.out,
            "],\"created\":{created},\"existing\":{existing},\"failed\":{failed}}}"
        );
        self.out
    }
}

fn join<'a>(out: &mut String, texts: impl Iterator<Item = &'a str>) {
    for (i, text) in texts.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(text);
    }
}

/// `text` as a JSON string.
fn push_string(out: &mut String, text: &str) {
    // Serializing a string into a String cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{BatchItem, BatchResult};
    use crate::sync::ChangesPage;
    use crate::watch::RecordCreated;
    use crate::ListPage;
    use serde_json::value::RawValue;
    use serde_json::Value;
    use syncropel_protocol::ErrorCode;

    /// Records as raw text: serde writes them as they are, as the writers splice them.
    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn record_pages_are_list_pages() {
        let records = [r#"{"id":"a","n":1.5}"#, r#"{"id":"b"}"#];
        for cursor in [None, Some("Mg\"/")] {
            let spliced = record_page(records.iter().copied(), cursor);
            let typed = ListPage {
                data: records.iter().map(|r| raw(r)).collect(),
                next_cursor: cursor.map(str::to_owned),
                has_more: cursor.is_some(),
            };
            assert_eq!(spliced, serde_json::to_string(&typed).unwrap());
        }
        assert_eq!(
            record_page(std::iter::empty(), None),
            serde_json::to_string(&ListPage::<Value>::default()).unwrap()
        );
    }

    #[test]
    fn changes_pages_are_changes_pages() {
        let items = [r#"{"id":"a","record":{"clock":1}}"#];
        let spliced = changes_page("th_\"x\"", items.iter().copied(), "c1", true);
        let typed = ChangesPage {
            thread: "th_\"x\"".into(),
            records: vec![raw(items[0])],
            next_cursor: "c1".into(),
            has_more: true,
        };
        assert_eq!(spliced, serde_json::to_string(&typed).unwrap());
    }

    #[test]
    fn record_events_are_record_created() {
        let typed = RecordCreated {
            id: "abc".into(),
            record: raw(r#"{"id":"abc","clock":3}"#),
        };
        assert_eq!(
            record_created("abc", r#"{"id":"abc","clock":3}"#),
            serde_json::to_string(&typed).unwrap()
        );
    }

    #[test]
    fn batches_are_batch_results() {
        let error = ErrorBody::new(ErrorCode::ValidationError, "bad \"clock\"", None);
        let mut writer = BatchWriter::new(2);
        writer.record(0, 201, r#"{"id":"a"}"#);
        writer.error(1, 400, &error);
        writer.record(2, 200, r#"{"id":"b"}"#);
        let typed = BatchResult {
            data: vec![
                BatchItem {
                    index: 0,
                    status: 201,
                    record: Some(raw(r#"{"id":"a"}"#)),
                    error: None,
                },
                BatchItem {
                    index: 1,
                    status: 400,
                    record: None,
                    error: Some(error),
                },
                BatchItem {
                    index: 2,
                    status: 200,
                    record: Some(raw(r#"{"id":"b"}"#)),
                    error: None,
                },
            ],
            created: 1,
            existing: 1,
            failed: 1,
        };
        assert_eq!(
            writer.finish(1, 1, 1),
            serde_json::to_string(&typed).unwrap()
        );
        assert_eq!(
            BatchWriter::new(0).finish(0, 0, 0),
            serde_json::to_string(&BatchResult::<Value> {
                data: Vec::new(),
                created: 0,
                existing: 0,
                failed: 0
            })
            .unwrap()
        );
    }
}
