//! `POST /v1/records/search` (protocol.md §11.7): lexical full-text ranking, global top-k, then the
//! envelope filters. The query is plain words; no text can reach the index as syntax.

use axum::extract::State;
use axum::Json;
use serde_json::Value;
use syncropel_api::{SearchAnswer, SearchHit};
use syncropel_protocol::ErrorCode;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::JsonBody;
use crate::state::AppState;
use syncropel_tenant::Scope;

/// More words than this add cost, not relevance.
const MAX_WORDS: usize = 64;

struct SearchRequest {
    words: Vec<String>,
    k: u32,
    thread: Option<String>,
    actor: Option<String>,
    kind: Option<String>,
    after_clock: Option<i64>,
}

fn optional_string(body: &Value, name: &str) -> Result<Option<String>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::validation(format!("'{name}' must be a string"))),
    }
}

fn parse(body: &Value) -> Result<SearchRequest, ApiError> {
    if !body.is_object() {
        return Err(ApiError::validation(
            "the search request must be a JSON object",
        ));
    }
    let query = match body.get("query") {
        Some(Value::String(q)) if !q.trim().is_empty() => q,
        _ => return Err(ApiError::validation("'query' must be a non-empty string")),
    };
    let k = match body.get("k") {
        None | Some(Value::Null) => 10,
        Some(v) => {
            let n = v
                .as_i64()
                .ok_or_else(|| ApiError::validation("'k' must be an integer"))?;
            n.clamp(1, 100) as u32
        }
    };
    let after_clock = match body.get("after_clock") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| ApiError::validation("'after_clock' must be an integer"))?,
        ),
    };
    // Control characters are no part of a word, and a NUL would end the index's query string early.
    let words = query
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .take(MAX_WORDS)
        .map(str::to_string)
        .collect();
    Ok(SearchRequest {
        words,
        k,
        thread: optional_string(body, "thread")?,
        actor: optional_string(body, "actor")?,
        kind: optional_string(body, "kind")?,
        after_clock,
    })
}

impl SearchRequest {
    fn admits(&self, record: &Value) -> bool {
        let text = |name: &str| record.get(name).and_then(Value::as_str);
        self.thread
            .as_deref()
            .is_none_or(|t| text("thread") == Some(t))
            && self
                .actor
                .as_deref()
                .is_none_or(|a| text("actor") == Some(a))
            && self
                .kind
                .as_deref()
                .is_none_or(|k| record.pointer("/body/kind").and_then(Value::as_str) == Some(k))
            && self.after_clock.is_none_or(|c| {
                record
                    .get("clock")
                    .and_then(Value::as_i64)
                    .is_some_and(|clock| clock >= c)
            })
    }
}

pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<SearchAnswer>> {
    caller.require(Scope::RecordsRead)?;
    if !state.search_enabled {
        return Err(ApiError::new(
            ErrorCode::SearchDisabled,
            "search is switched off on this steward",
        ));
    }
    let request = parse(&body)?;
    let ranked = state
        .store
        .search(&caller.tenant.id, &request.words, request.k)
        .await?;
    let mut hits = Vec::with_capacity(ranked.len());
    for (score, stored) in ranked {
        let record: Value = serde_json::from_str(&stored.json).map_err(ApiError::internal)?;
        if request.admits(&record) {
            hits.push(SearchHit { score, record });
        }
    }
    Ok(Json(SearchAnswer {
        embedder: "lexical".to_owned(),
        k: request.k,
        data: hits.clone(),
        hits,
    }))
}
