//! The series an incident's change points are found on, for one scope over a window, in
//! five-minute buckets of live traffic: the rollups (requests, errors, tokens, cost,
//! latency and TTFT histograms), errors by class, online-eval verdicts and users'
//! feedback; and example traces around a moment. The scope is `dim = value` (`function`,
//! `feature`, `tenant` or `model`), or every call (`dim = None`).

use rusqlite::{params, Connection};

use crate::error::into_sqlite;
use crate::rollup::{Counts, COUNT_COLUMNS};

/// The buckets incidents use: five minutes, as the finest rollups.
pub const BUCKET_MS: i64 = 300_000;

/// The traces column holding a scope kind's value.
fn column(dim: &str) -> Option<&'static str> {
    Some(match dim {
        "function" => "function",
        "feature" => "feature",
        "tenant" => "tenant",
        "model" => "model_requested",
        _ => return None,
    })
}

/// `(bucket start, counts)` of live calls in scope, oldest first (empty buckets absent).
pub fn rollup_buckets(
    conn: &Connection,
    dim: Option<&str>,
    value: &str,
    since_ms: i64,
    until_ms: i64,
) -> rusqlite::Result<Vec<(i64, Counts)>> {
    let (dim, value) = match dim {
        Some(d) => (d, value),
        None => ("all", "(all)"),
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT bucket_ms, {COUNT_COLUMNS} FROM trace_rollups
          WHERE res_ms = ?1 AND origin = 'live' AND dim = ?2 AND value = ?3
            AND bucket_ms >= ?4 AND bucket_ms < ?5
          ORDER BY bucket_ms"
    ))?;
    let rows = stmt.query_map(params![BUCKET_MS, dim, value, since_ms, until_ms], |r| {
        let counts = Counts::from_row(&crate::sql::Row::Sqlite(r), 1).map_err(into_sqlite)?;
        Ok((r.get(0)?, counts))
    })?;
    rows.collect()
}

fn scope_filter(dim: Option<&str>, alias: &str) -> String {
    match dim.and_then(column) {
        Some(c) => format!("AND {alias}.{c} = ?4"),
        None => "AND ?4 = ?4".into(),
    }
}

/// `(bucket start, error class, calls)` of failed live calls in scope.
pub fn error_class_buckets(
    conn: &Connection,
    dim: Option<&str>,
    value: &str,
    since_ms: i64,
    until_ms: i64,
) -> rusqlite::Result<Vec<(i64, String, u64)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT (t.started_at_ms / ?3) * ?3, COALESCE(t.error_class, 'unknown'), COUNT(*)
           FROM traces t
          WHERE t.started_at_ms >= ?1 AND t.started_at_ms < ?2 AND t.origin = 'live'
            AND t.status = 'error' {}
          GROUP BY 1, 2 ORDER BY 1",
        scope_filter(dim, "t")
    ))?;
    let rows = stmt.query_map(params![since_ms, until_ms, BUCKET_MS, value], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
    })?;
    rows.collect()
}

/// `(bucket start, rows, rows matching)` of `table` (aliased `x`, joined to its trace
/// by `trace_id`) on live calls in scope, bucketed by the call's time: `matching` and
/// `filter` are SQL over `x`.
fn joined_buckets(
    conn: &Connection,
    table: &str,
    matching: &str,
    filter: &str,
    (dim, value): (Option<&str>, &str),
    since_ms: i64,
    until_ms: i64,
) -> rusqlite::Result<Vec<(i64, u64, u64)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT (t.started_at_ms / ?3) * ?3, COUNT(*), SUM({matching})
           FROM {table} x JOIN traces t ON t.id = x.trace_id
          WHERE t.started_at_ms >= ?1 AND t.started_at_ms < ?2 AND t.origin = 'live'
            AND {filter} {}
          GROUP BY 1 ORDER BY 1",
        scope_filter(dim, "t")
    ))?;
    let rows = stmt.query_map(params![since_ms, until_ms, BUCKET_MS, value], |r| {
        Ok((
            r.get(0)?,
            r.get::<_, i64>(1)?.max(0) as u64,
            r.get::<_, Option<i64>>(2)?.unwrap_or(0).max(0) as u64,
        ))
    })?;
    rows.collect()
}

/// `(bucket start, judged assertions, passed)` of online-eval scores on live calls in
/// scope, bucketed by the call's time.
pub fn judged_buckets(
    conn: &Connection,
    dim: Option<&str>,
    value: &str,
    since_ms: i64,
    until_ms: i64,
) -> rusqlite::Result<Vec<(i64, u64, u64)>> {
    joined_buckets(
        conn,
        "scores",
        "x.passed",
        "x.source = 'judge'",
        (dim, value),
        since_ms,
        until_ms,
    )
}

/// `(bucket start, numeric feedback values, negative ones (<= 0))` on live calls in
/// scope, bucketed by the call's time.
pub fn feedback_buckets(
    conn: &Connection,
    dim: Option<&str>,
    value: &str,
    since_ms: i64,
    until_ms: i64,
) -> rusqlite::Result<Vec<(i64, u64, u64)>> {
    joined_buckets(
        conn,
        "feedback",
        "x.value_num <= 0",
        "x.value_num IS NOT NULL",
        (dim, value),
        since_ms,
        until_ms,
    )
}

/// Up to `limit` live calls in scope from `[from_ms, until_ms)`, failed ones first, then
/// the most expensive: examples to open around a change point.
pub fn example_traces(
    conn: &Connection,
    dim: Option<&str>,
    value: &str,
    from_ms: i64,
    until_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT t.id FROM traces t
          WHERE t.started_at_ms >= ?1 AND t.started_at_ms < ?2 AND t.origin = 'live' {}
          ORDER BY (t.status = 'error') DESC, COALESCE(t.cost_nanos, 0) DESC, t.started_at_ms
          LIMIT ?3",
        scope_filter(dim, "t")
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![from_ms, until_ms, limit, value], |r| r.get(0))?;
    rows.collect()
}
