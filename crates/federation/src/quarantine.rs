//! The quarantine as the operator reads it (`GET /v1/sync/quarantine`, federation-protocol.md
//! §5.9): the entries the puller wrote (see [`crate::puller`]), a page at a time in key order,
//! so that a tenant holding the whole cap is never read at once.

use base64::Engine as _;
use syncropel_api::QuarantinedRecord;

use crate::error::Result;
use crate::state::QUARANTINE;
use crate::Federation;

/// One page of the quarantine and where the next begins.
pub struct QuarantinePage {
    pub entries: Vec<QuarantinedRecord>,
    /// The opaque cursor of the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// At most `limit` entries of `source` (all sources when `None`) after `cursor`, cut short
/// where their JSON would pass `max_bytes` (one entry always fits, so a page always moves on).
pub async fn page(
    fed: &Federation,
    tenant: &str,
    source: Option<&str>,
    cursor: Option<&str>,
    limit: u32,
    max_bytes: usize,
) -> Result<QuarantinePage> {
    // Entries are keyed `source\nid`.
    let prefix = source.map(|s| format!("{s}\n")).unwrap_or_default();
    let after = cursor.unwrap_or_default();
    let rows = fed
        .store
        .state_page(tenant, QUARANTINE, &prefix, after, limit.saturating_add(1))
        .await?;
    let mut entries = Vec::new();
    let mut bytes = 0;
    let mut last_key = None;
    let mut cut = rows.len() > limit as usize;
    for (key, text) in rows.into_iter().take(limit as usize) {
        // Written by this steward; one that does not parse is passed over, not shown half.
        if let Ok(entry) = serde_json::from_str::<QuarantinedRecord>(&text) {
            let size = serde_json::to_vec(&entry).map_or(0, |json| json.len());
            if !entries.is_empty() && bytes + size > max_bytes {
                cut = true;
                break;
            }
            bytes += size;
            entries.push(entry);
        }
        last_key = Some(key);
    }
    Ok(QuarantinePage {
        entries,
        next_cursor: last_key.filter(|_| cut).map(|key| encode_cursor(&key)),
    })
}

/// The cursor after the entry keyed `key`: opaque to callers, who only hand it back.
fn encode_cursor(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

/// The key a cursor of [`page`] names; `None` when it is not one.
pub fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    String::from_utf8(bytes)
        .ok()
        .filter(|key| key.contains('\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_name_a_key_and_nothing_else() {
        let key = "fed_abc\n5e1c";
        assert_eq!(decode_cursor(&encode_cursor(key)).as_deref(), Some(key));
        assert_eq!(decode_cursor("not base64!"), None);
        // Valid base64 of something that is no entry key.
        assert_eq!(decode_cursor(&encode_cursor("42")), None);
        assert_eq!(decode_cursor(""), None);
    }
}
