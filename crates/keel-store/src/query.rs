//! Reading traces back: the filters of `keel traces` and the dashboard, one trace by id,
//! and the row count. Every value reaches SQL as a bound parameter, never as text.

use crate::error::StoreError;
use crate::sql::{Db, Value};
use crate::trace_row::{self, COLUMNS};
use crate::values;
use keel_core::trace::{Origin, TraceRecord, TraceStatus};

/// Which traces to list. Every `Some` narrows the result; the default lists the
/// [`TraceFilter::DEFAULT_LIMIT`] newest traces.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceFilter {
    /// Unix ms, inclusive.
    pub since_ms: Option<i64>,
    /// Unix ms, exclusive.
    pub until_ms: Option<i64>,
    /// Matches the model requested, the upstream model or the served model.
    pub model: Option<String>,
    pub tenant: Option<String>,
    pub feature: Option<String>,
    pub user: Option<String>,
    pub session: Option<String>,
    pub status: Option<TraceStatus>,
    pub error_class: Option<String>,
    /// The function called (`model = "support-answer"`).
    pub function: Option<String>,
    pub variant: Option<String>,
    /// Live traffic, or eval / replay calls; `None` lists all.
    pub origin: Option<keel_core::trace::Origin>,
    /// The request id (`x-keel-request-id`).
    pub id: Option<String>,
    pub prompt_version: Option<i64>,
    /// Cost range in nano-dollars, inclusive (unpriced calls never match a cost range).
    pub min_cost_nanos: Option<i64>,
    pub max_cost_nanos: Option<i64>,
    /// Latency range in ms, inclusive.
    pub min_latency_ms: Option<u64>,
    pub max_latency_ms: Option<u64>,
    /// Calls with a score on this metric below this value (`--score-below METRIC=VALUE`).
    pub score_below: Option<(String, f64)>,
    /// Calls this online eval judged and found failing (some assertion failed).
    pub failed_eval: Option<String>,
    /// Calls with negative feedback: a number <= 0 or `false` (a thumbs-down).
    pub negative_feedback: bool,
    /// Calls a reviewer gave this verdict (`bad`, `good`, `unsure`) in a review queue.
    pub review_verdict: Option<String>,
    /// Most traces returned; 0 means no limit.
    pub limit: usize,
    /// Traces skipped before the first returned (pagination).
    pub offset: usize,
}

impl TraceFilter {
    pub const DEFAULT_LIMIT: usize = 50;
}

impl Default for TraceFilter {
    fn default() -> Self {
        TraceFilter {
            since_ms: None,
            until_ms: None,
            model: None,
            tenant: None,
            feature: None,
            user: None,
            session: None,
            status: None,
            error_class: None,
            function: None,
            variant: None,
            origin: None,
            id: None,
            prompt_version: None,
            min_cost_nanos: None,
            max_cost_nanos: None,
            min_latency_ms: None,
            max_latency_ms: None,
            score_below: None,
            failed_eval: None,
            negative_feedback: false,
            review_verdict: None,
            limit: TraceFilter::DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

/// Traces matching `filter`, newest first.
pub fn list_traces<'c>(
    db: impl Into<Db<'c>>,
    filter: &TraceFilter,
) -> Result<Vec<TraceRecord>, StoreError> {
    let (sql, values) = select_sql(filter);
    db.into().query(&sql, &values, trace_row::from_row)
}

/// The statement (and its bound values) that lists `filter`'s traces newest first.
///
/// Each filter is a plain condition, so SQLite can take any index that serves it: every
/// equality filter but model, variant and prompt version has a `(column, started_at_ms)`
/// index whose entries come out already newest first; the others scan
/// `traces_started_at` newest first. No combination sorts its matches
/// (`query_plan_tests.rs`), so a search stops as soon as its page is full.
pub(crate) fn select_sql(filter: &TraceFilter) -> (String, Vec<Value>) {
    let mut sql = format!("SELECT {COLUMNS} FROM traces");
    let mut values: Vec<Value> = Vec::new();
    let mut conditions = 0;
    // `test` is a fixed condition with `{p}` where the bound value goes (maybe more than
    // once); `None` adds a condition without a value.
    let mut push = |test: &str, value: Option<Value>| {
        conditions += 1;
        sql.push_str(if conditions == 1 { " WHERE " } else { " AND " });
        match value {
            Some(value) => {
                values.push(value);
                sql.push_str(&test.replace("{p}", &format!("?{}", values.len())));
            }
            None => sql.push_str(test),
        }
    };
    if let Some(since) = filter.since_ms {
        push("started_at_ms >= {p}", Some(Value::Int(since)));
    }
    if let Some(until) = filter.until_ms {
        push("started_at_ms < {p}", Some(Value::Int(until)));
    }
    if let Some(model) = &filter.model {
        push(
            "(model_requested = {p} OR upstream_model = {p} OR served_model = {p})",
            Some(Value::Text(model.clone())),
        );
    }
    let text_filters = [
        ("tenant = {p}", &filter.tenant),
        ("feature = {p}", &filter.feature),
        ("\"user\" = {p}", &filter.user),
        ("session = {p}", &filter.session),
        ("error_class = {p}", &filter.error_class),
        ("function = {p}", &filter.function),
        ("variant = {p}", &filter.variant),
        ("id = {p}", &filter.id),
    ];
    for (test, value) in text_filters {
        if let Some(v) = value {
            push(test, Some(Value::Text(v.clone())));
        }
    }
    if let Some(status) = filter.status {
        push(
            "status = {p}",
            Some(Value::Text(status.as_str().to_string())),
        );
    }
    if let Some(origin) = filter.origin {
        push(
            "origin = {p}",
            Some(Value::Text(origin.as_str().to_string())),
        );
        if origin != Origin::Live {
            // Spelled out so SQLite may use the partial index `traces_origin` (its
            // WHERE must be implied by the query's text, not by a bound value).
            push("origin <> 'live'", None);
        }
    }
    let int = |v: u64| Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
    let ranges = [
        (
            "prompt_version = {p}",
            filter.prompt_version.map(Value::Int),
        ),
        ("cost_nanos >= {p}", filter.min_cost_nanos.map(Value::Int)),
        ("cost_nanos <= {p}", filter.max_cost_nanos.map(Value::Int)),
        ("latency_ms >= {p}", filter.min_latency_ms.map(int)),
        ("latency_ms <= {p}", filter.max_latency_ms.map(int)),
    ];
    for (test, value) in ranges {
        if let Some(v) = value {
            push(test, Some(v));
        }
    }
    if let Some((metric, below)) = &filter.score_below {
        // The bound is a finite number, written into the SQL as one (no text from the
        // caller goes there: the metric is bound).
        let below = if below.is_finite() { *below } else { 0.0 };
        push(
            &format!("EXISTS (SELECT 1 FROM scores s WHERE s.trace_id = traces.id AND s.metric = {{p}} AND s.value < {below:?})"),
            Some(Value::Text(metric.clone())),
        );
    }
    if let Some(eval) = &filter.failed_eval {
        push(
            "EXISTS (SELECT 1 FROM scores s WHERE s.trace_id = traces.id AND s.eval = {p} AND s.passed = 0)",
            Some(Value::Text(eval.clone())),
        );
    }
    if filter.negative_feedback {
        push(
            "EXISTS (SELECT 1 FROM feedback f WHERE f.trace_id = traces.id AND f.value_kind IN ('number', 'boolean') AND f.value_num <= 0)",
            None,
        );
    }
    if let Some(verdict) = &filter.review_verdict {
        push(
            "EXISTS (SELECT 1 FROM review_labels l WHERE l.trace_id = traces.id AND l.verdict = {p})",
            Some(Value::Text(verdict.clone())),
        );
    }
    sql.push_str(" ORDER BY started_at_ms DESC, rowid DESC");
    if filter.limit > 0 || filter.offset > 0 {
        // No limit with an offset: the most rows either backend can count.
        let limit = if filter.limit == 0 {
            i64::MAX
        } else {
            i64::try_from(filter.limit).unwrap_or(i64::MAX)
        };
        values.push(Value::Int(limit));
        sql.push_str(&format!(" LIMIT ?{}", values.len()));
        values.push(Value::Int(i64::try_from(filter.offset).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" OFFSET ?{}", values.len()));
    }
    (sql, values)
}

/// The trace with id `id` (ids are unique: a caller's reused request id stays with the
/// call that used it first).
pub fn get_trace<'c>(db: impl Into<Db<'c>>, id: &str) -> Result<Option<TraceRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM traces WHERE id = ?1");
    db.into().query_opt(&sql, &values![id], trace_row::from_row)
}

/// The ids of later traces whose caller sent `id` as its request id when it was already
/// taken (stored under fresh ids, `id` kept as `client_request_id`), oldest first, at
/// most `limit`.
pub fn reused_request_id<'c>(
    db: impl Into<Db<'c>>,
    id: &str,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    db.into().query(
        "SELECT id FROM traces WHERE client_request_id = ?1 ORDER BY started_at_ms, rowid LIMIT ?2",
        &values![id, limit],
        |r| r.get(0),
    )
}

/// How many traces the store holds.
pub fn count_traces<'c>(db: impl Into<Db<'c>>) -> Result<u64, StoreError> {
    let n: i64 = db
        .into()
        .query_row("SELECT COUNT(*) FROM traces", &[], |row| row.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "query_plan_tests.rs"]
mod plan_tests;
