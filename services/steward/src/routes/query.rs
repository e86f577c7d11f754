//! `POST /v1/records/query` (protocol.md §11.6): column equalities are pushed down to the store,
//! the rest of the filter runs here over the stored records, so both backends answer identically.
//!
//! A query has a budget (rows read, time; [`QueryBudget`]): filters are evaluated on the blocking
//! pool, never on the async workers, and a query past its budget is refused with
//! `422 QUERY_BUDGET_EXCEEDED`. A sorted query keeps only its first `offset + limit` candidates
//! (sort key and id), never every match, and reads the winning records again at the end.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::Value;
use syncropel_api::{QueryAnswer, QueryPlan};
use syncropel_protocol::ErrorCode;
use syncropel_store::query::{plan, project, QueryRequest, TopK};
use syncropel_store::{decode_cursor, encode_cursor, StoredRecord};
use tokio::time::Instant;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::JsonBody;
use crate::state::{AppState, Limits, QueryBudget};
use syncropel_tenant::Scope;

/// Rows fetched from the store per round while scanning (fewer when they are large).
const SCAN_CHUNK: u32 = 500;
/// A sorted query reaches at most this far into its order (`offset + limit`).
const MAX_SORTED_REACH: usize = 10_000;
/// The sort keys a sorted query holds while scanning, about.
const MAX_SORT_KEY_BYTES: usize = 64 * 1024 * 1024;

fn over_budget(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::QueryBudgetExceeded, message).with_hint(
        "narrow the filter with equalities on thread, actor, act or namespace, or ask for less",
    )
}

pub async fn query(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<QueryAnswer>> {
    caller.require(Scope::RecordsRead)?;
    let request = Arc::new(QueryRequest::parse(&body)?);
    let start = match &request.cursor {
        Some(c) => decode_cursor(c).ok_or_else(|| ApiError::validation("invalid cursor"))? as usize,
        None => request.offset,
    };
    let reach = start.saturating_add(request.limit);
    if request.sort.is_some() && reach > MAX_SORTED_REACH {
        return Err(over_budget(format!(
            "a sorted query reaches at most the first {MAX_SORTED_REACH} matches \
             (offset + limit is {reach})"
        )));
    }
    let tenant = &caller.tenant.id;
    let mut scan = Scan::new(&request, start, &state.limits);
    let equalities = request.filter.column_equalities();
    let mut after_seq = 0;
    loop {
        let rows = state
            .store
            .scan(tenant, &equalities, after_seq, SCAN_CHUNK)
            .await?;
        // A short chunk may be one cut at the store's byte budget: the scan ends on an empty one.
        let Some(last) = rows.last() else { break };
        after_seq = last.seq;
        scan = scan.take(rows, request.clone()).await?;
    }

    let (mut window, matched_total) = match scan.top {
        Some(top) => {
            let winners = top.finish();
            let mut window = Vec::new();
            let mut bytes = 0;
            for candidate in winners.iter().skip(start) {
                let Some(stored) = state.store.get(tenant, &candidate.id).await? else {
                    continue;
                };
                if !window.is_empty() && bytes + stored.json.len() > state.limits.max_page_bytes {
                    break;
                }
                bytes += stored.json.len();
                window.push(serde_json::from_str(&stored.json).map_err(ApiError::internal)?);
            }
            (window, scan.matched_total)
        }
        None => (scan.window, scan.matched_total),
    };

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

/// A query's scan so far: what it matched and what it has spent.
struct Scan {
    start: usize,
    limit: usize,
    budget: QueryBudget,
    max_page_bytes: usize,
    deadline: Instant,
    scanned: u64,
    matched_total: usize,
    /// Unsorted: the requested window, cut at the page byte budget.
    window: Vec<Value>,
    window_bytes: usize,
    window_closed: bool,
    /// Sorted: the first `offset + limit` candidates.
    top: Option<TopK>,
}

impl Scan {
    fn new(request: &QueryRequest, start: usize, limits: &Limits) -> Scan {
        let budget = limits.query;
        Scan {
            start,
            limit: request.limit,
            budget,
            max_page_bytes: limits.max_page_bytes,
            deadline: Instant::now() + budget.max_time,
            scanned: 0,
            matched_total: 0,
            window: Vec::new(),
            window_bytes: 0,
            window_closed: false,
            top: request
                .sort
                .clone()
                .map(|sort| TopK::new(sort, start + request.limit)),
        }
    }

    /// Evaluates one chunk of rows on the blocking pool, within the budget.
    async fn take(
        mut self,
        rows: Vec<StoredRecord>,
        request: Arc<QueryRequest>,
    ) -> ApiResult<Scan> {
        self.scanned += rows.len() as u64;
        if self.scanned > self.budget.max_rows_scanned {
            return Err(over_budget(format!(
                "the query would read more than {} stored rows",
                self.budget.max_rows_scanned
            )));
        }
        let deadline = self.deadline;
        let evaluated = tokio::task::spawn_blocking(move || -> ApiResult<Scan> {
            for row in rows {
                if Instant::now() > deadline {
                    return Err(over_budget(format!(
                        "the query took longer than {} ms",
                        self.budget.max_time.as_millis()
                    )));
                }
                let record: Value = serde_json::from_str(&row.json).map_err(ApiError::internal)?;
                if request.filter.matches(&record) {
                    self.admit(record, &row);
                }
            }
            Ok(self)
        });
        let scan = evaluated.await.map_err(ApiError::internal)??;
        if scan
            .top
            .as_ref()
            .is_some_and(|top| top.key_bytes() > MAX_SORT_KEY_BYTES)
        {
            return Err(over_budget(
                "the sort keys of the matches are too large to order",
            ));
        }
        Ok(scan)
    }

    fn admit(&mut self, record: Value, row: &StoredRecord) {
        if let Some(top) = &mut self.top {
            top.offer(&record, row.seq, &row.id);
        } else if self.matched_total >= self.start && !self.window_closed {
            let full = self.window.len() >= self.limit
                || (!self.window.is_empty()
                    && self.window_bytes + row.json.len() > self.max_page_bytes);
            if full {
                self.window_closed = true;
            } else {
                self.window_bytes += row.json.len();
                self.window.push(record);
            }
        }
        self.matched_total += 1;
    }
}
