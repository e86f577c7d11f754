//! `POST /v1/records/query` (protocol.md §11.6): column equalities are pushed down to the store,
//! the rest of the filter runs here over the stored records, so both backends answer identically.

use axum::extract::State;
use axum::Json;
use serde_json::Value;
use syncropel_api::{QueryAnswer, QueryPlan};
use syncropel_store::query::{compare_records, plan, project, QueryRequest};
use syncropel_store::{decode_cursor, encode_cursor};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::JsonBody;
use crate::state::AppState;
use syncropel_tenant::Scope;

/// Rows fetched from the store per round while scanning.
const SCAN_CHUNK: u32 = 2000;

pub async fn query(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<QueryAnswer>> {
    caller.require(Scope::RecordsRead)?;
    let request = QueryRequest::parse(&body)?;
    let start = match &request.cursor {
        Some(c) => decode_cursor(c).ok_or_else(|| ApiError::validation("invalid cursor"))? as usize,
        None => request.offset,
    };
    let equalities = request.filter.column_equalities();

    // Unsorted queries keep only the requested window; sorted ones need every match first.
    let mut matched_total = 0usize;
    let mut window: Vec<Value> = Vec::new();
    let mut matches: Vec<Value> = Vec::new();
    let mut after_seq = 0;
    loop {
        let rows = state
            .store
            .scan(&caller.tenant.id, &equalities, after_seq, SCAN_CHUNK)
            .await?;
        let Some(last) = rows.last() else { break };
        after_seq = last.seq;
        let exhausted = rows.len() < SCAN_CHUNK as usize;
        for row in rows {
            let record: Value = serde_json::from_str(&row.json).map_err(ApiError::internal)?;
            if !request.filter.matches(&record) {
                continue;
            }
            if request.sort.is_some() {
                matches.push(record);
            } else {
                if matched_total >= start && window.len() < request.limit {
                    window.push(record);
                }
                matched_total += 1;
            }
        }
        if exhausted {
            break;
        }
    }
    if let Some(sort) = &request.sort {
        matches.sort_by(|a, b| compare_records(a, b, sort));
        matched_total = matches.len();
        window = matches
            .into_iter()
            .skip(start)
            .take(request.limit)
            .collect();
    }

    let end = start + window.len();
    let next_cursor = (end < matched_total).then(|| encode_cursor(end as i64));
    if let Some(select) = &request.select {
        window = window.iter().map(|r| project(r, select)).collect();
    }
    let explained = if request.explain {
        let pushed: String = equalities
            .iter()
            .map(|(column, _)| format!(" AND {} = ?", column.as_str()))
            .collect();
        let mut explained: QueryPlan =
            serde_json::from_value(plan(&request.filter)).map_err(ApiError::internal)?;
        explained.sql =
            format!("SELECT record_json FROM records WHERE tenant = ?{pushed} ORDER BY seq");
        Some(explained)
    } else {
        None
    };
    Ok(Json(QueryAnswer {
        data: window,
        has_more: next_cursor.is_some(),
        next_cursor,
        capped: request.capped,
        matched_total: matched_total as u64,
        plan: explained,
    }))
}
