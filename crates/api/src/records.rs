//! Records and threads: listing filters, batches, the rich query and lexical search (PROTOCOL
//! protocol.md §11). Records themselves are the protocol's JSON, carried as a type parameter.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ErrorBody;

/// Filters and paging of `GET /v1/records` and `GET /v1/threads/{id}/records` (query string).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListParams {
    pub thread: Option<String>,
    pub actor: Option<String>,
    /// Inclusive lower bound on `clock`.
    pub since: Option<i64>,
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// One entry of `GET /v1/threads`, most recently written first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThreadSummary {
    pub id: String,
    pub namespace: String,
    pub record_count: i64,
    pub last_clock: i64,
}

/// `POST /v1/records/batch`: up to 1000 envelopes, each checked as `POST /v1/records` checks one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateRecords<E = Value> {
    pub records: Vec<E>,
}

/// The answer to a batch: one item per envelope, in order, and the counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "batch_result")]
pub struct BatchResult<R = Value> {
    #[serde(default = "Vec::new")]
    pub data: Vec<BatchItem<R>>,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub existing: u64,
    #[serde(default)]
    pub failed: u64,
}

/// One envelope's outcome: `201` with the new record, `200` with the stored one for a replay, or
/// its error status with the error envelope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchItem<R = Value> {
    #[serde(default)]
    pub index: usize,
    #[serde(default)]
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<R>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// `POST /v1/records/query` (protocol.md §11.6). Unset members are left out; the steward reads an
/// explicit `null` as unset too.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryRequest {
    /// The filter document: members AND together, `$and`/`$or`/`$not`, operator documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
    /// Shorthand for an equality on `thread`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// `{"<path>": 1}` ascending or `{"<path>": -1}` descending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Field paths each record is projected onto (`id` is always kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub select: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<bool>,
}

/// The answer to a query: a page of (projected) records, with `plan` when `explain` was asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "list")]
pub struct QueryAnswer<R = Value> {
    #[serde(default = "Vec::new")]
    pub data: Vec<R>,
    #[serde(default)]
    pub next_cursor: Option<String>,
    #[serde(default)]
    pub has_more: bool,
    /// The requested limit was above the maximum and was lowered to it.
    #[serde(default)]
    pub capped: bool,
    #[serde(default)]
    pub matched_total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<QueryPlan>,
}

/// How a query was run: which fields have an index, and the SQL that narrowed the rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryPlan {
    pub indexed_fields: Vec<String>,
    pub unindexed_fields: Vec<String>,
    pub sql: String,
}

/// `POST /v1/records/search` (protocol.md §11.7): plain words, top `k` (default 10, at most 100),
/// then the envelope filters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchRequest {
    pub query: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// `body.kind`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Records with `clock >= after_clock`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_clock: Option<i64>,
}

/// The answer to a search; the hits come twice, as `data` (the list envelope) and as `hits`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "list")]
pub struct SearchAnswer<R = Value> {
    #[serde(default)]
    pub embedder: String,
    #[serde(default)]
    pub k: u32,
    #[serde(default = "Vec::new")]
    pub data: Vec<SearchHit<R>>,
    #[serde(default = "Vec::new")]
    pub hits: Vec<SearchHit<R>>,
}

/// A record and its rank score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchHit<R = Value> {
    #[serde(default)]
    pub score: f64,
    pub record: R,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_write_what_the_steward_sends() {
        let thread = ThreadSummary {
            id: "th_1".into(),
            namespace: "default".into(),
            record_count: 12,
            last_clock: 5,
        };
        assert_eq!(
            serde_json::to_value(&thread).unwrap(),
            json!({"id": "th_1", "namespace": "default", "record_count": 12, "last_clock": 5})
        );

        let answer = QueryAnswer {
            data: vec![json!({"id": "a"})],
            next_cursor: None,
            has_more: false,
            capped: true,
            matched_total: 1,
            plan: None,
        };
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            json!({"object": "list", "data": [{"id": "a"}], "next_cursor": null,
                   "has_more": false, "capped": true, "matched_total": 1})
        );
        let explained = QueryAnswer {
            plan: Some(QueryPlan {
                indexed_fields: vec!["thread".into()],
                unindexed_fields: vec![],
                sql: "SELECT record_json FROM records WHERE tenant = ? ORDER BY seq".into(),
            }),
            ..answer
        };
        assert_eq!(
            serde_json::to_value(&explained).unwrap()["plan"],
            json!({"indexed_fields": ["thread"], "unindexed_fields": [],
                   "sql": "SELECT record_json FROM records WHERE tenant = ? ORDER BY seq"})
        );

        let hit = SearchHit {
            score: 0.5,
            record: json!({"id": "a"}),
        };
        let search = SearchAnswer {
            embedder: "lexical".into(),
            k: 10,
            data: vec![hit.clone()],
            hits: vec![hit],
        };
        assert_eq!(
            serde_json::to_value(&search).unwrap(),
            json!({"object": "list", "embedder": "lexical", "k": 10,
                   "data": [{"score": 0.5, "record": {"id": "a"}}],
                   "hits": [{"score": 0.5, "record": {"id": "a"}}]})
        );
    }

    #[test]
    fn batch_items_carry_a_record_or_an_error() {
        let result: BatchResult = serde_json::from_value(json!({
            "object": "batch_result",
            "data": [{"index": 0, "status": 201, "record": {"id": "a"}},
                     {"index": 1, "status": 400, "error": {"object": "error",
                      "type": "invalid_request_error", "code": "VALIDATION_ERROR", "message": "m"}}],
            "created": 1, "existing": 0, "failed": 1,
        }))
        .unwrap();
        assert_eq!(result.data[0].record, Some(json!({"id": "a"})));
        assert_eq!(
            result.data[1].error.as_ref().unwrap().code,
            "VALIDATION_ERROR"
        );
        assert!(serde_json::to_value(&result.data[1])
            .unwrap()
            .get("record")
            .is_none());
    }

    #[test]
    fn requests_leave_out_what_is_not_set() {
        let request = SearchRequest {
            query: "hello world".into(),
            k: Some(5),
            ..SearchRequest::default()
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"query": "hello world", "k": 5})
        );
        assert_eq!(
            serde_json::to_value(QueryRequest::default()).unwrap(),
            json!({})
        );
    }
}
