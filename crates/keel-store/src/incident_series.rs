//! The series an incident's change points are found on, for one scope over a window, in
//! five-minute buckets of live traffic: the rollups (requests, errors, tokens, cost,
//! latency and TTFT histograms), errors by class, online-eval verdicts and users'
//! feedback; and example traces around a moment. The scope is `dim = value` (`function`,
//! `feature`, `tenant` or `model`), or every call (`dim = None`).

use crate::error::StoreError;
use crate::rollup::{Counts, COUNT_COLUMNS};
use crate::sql::Db;
use crate::values;

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
pub fn rollup_buckets<'c>(
    db: impl Into<Db<'c>>,
    dim: Option<&str>,
    value: &str,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<(i64, Counts)>, StoreError> {
    let (dim, value) = match dim {
        Some(d) => (d, value),
        None => ("all", "(all)"),
    };
    db.into().query(
        &format!(
            "SELECT bucket_ms, {COUNT_COLUMNS} FROM trace_rollups
              WHERE res_ms = ?1 AND origin = 'live' AND dim = ?2 AND value = ?3
                AND bucket_ms >= ?4 AND bucket_ms < ?5
              ORDER BY bucket_ms"
        ),
        &values![BUCKET_MS, dim, value, since_ms, until_ms],
        |r| Ok((r.get(0)?, Counts::from_row(r, 1)?)),
    )
}

/// The scope's condition on `alias`, with its value as `?4`. Every call: `?4` is still
/// bound, so it is named (and typed, for PostgreSQL) in an always-true condition.
fn scope_filter(dim: Option<&str>, alias: &str) -> String {
    match dim.and_then(column) {
        Some(c) => format!("AND {alias}.{c} = ?4"),
        None => "AND CAST(?4 AS TEXT) = CAST(?4 AS TEXT)".into(),
    }
}

/// `(bucket start, error class, calls)` of failed live calls in scope.
pub fn error_class_buckets<'c>(
    db: impl Into<Db<'c>>,
    dim: Option<&str>,
    value: &str,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<(i64, String, u64)>, StoreError> {
    db.into().query(
        &format!(
            "SELECT (t.started_at_ms / ?3) * ?3, COALESCE(t.error_class, 'unknown'), COUNT(*)
               FROM traces t
              WHERE t.started_at_ms >= ?1 AND t.started_at_ms < ?2 AND t.origin = 'live'
                AND t.status = 'error' {}
              GROUP BY 1, 2 ORDER BY 1",
            scope_filter(dim, "t")
        ),
        &values![since_ms, until_ms, BUCKET_MS, value],
        |r| Ok((r.get(0)?, r.get(1)?, r.get::<i64>(2)?.max(0) as u64)),
    )
}

/// `(bucket start, rows, rows matching)` of `table` (aliased `x`, joined to its trace
/// by `trace_id`) on live calls in scope, bucketed by the call's time: `matching` (0 or
/// 1 per row, summed) and `filter` are SQL over `x`.
fn joined_buckets(
    db: Db<'_>,
    table: &str,
    matching: &str,
    filter: &str,
    (dim, value): (Option<&str>, &str),
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<(i64, u64, u64)>, StoreError> {
    db.query(
        &format!(
            "SELECT (t.started_at_ms / ?3) * ?3, COUNT(*), SUM({matching})
               FROM {table} x JOIN traces t ON t.id = x.trace_id
              WHERE t.started_at_ms >= ?1 AND t.started_at_ms < ?2 AND t.origin = 'live'
                AND {filter} {}
              GROUP BY 1 ORDER BY 1",
            scope_filter(dim, "t")
        ),
        &values![since_ms, until_ms, BUCKET_MS, value],
        |r| {
            Ok((
                r.get(0)?,
                r.get::<i64>(1)?.max(0) as u64,
                r.get::<Option<i64>>(2)?.unwrap_or(0).max(0) as u64,
            ))
        },
    )
}

/// `(bucket start, judged assertions, passed)` of online-eval scores on live calls in
/// scope, bucketed by the call's time.
pub fn judged_buckets<'c>(
    db: impl Into<Db<'c>>,
    dim: Option<&str>,
    value: &str,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<(i64, u64, u64)>, StoreError> {
    joined_buckets(
        db.into(),
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
pub fn feedback_buckets<'c>(
    db: impl Into<Db<'c>>,
    dim: Option<&str>,
    value: &str,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<(i64, u64, u64)>, StoreError> {
    joined_buckets(
        db.into(),
        "feedback",
        // A CASE, not the comparison: PostgreSQL does not sum booleans.
        "CASE WHEN x.value_num <= 0 THEN 1 ELSE 0 END",
        "x.value_num IS NOT NULL",
        (dim, value),
        since_ms,
        until_ms,
    )
}

/// Up to `limit` live calls in scope from `[from_ms, until_ms)`, failed ones first, then
/// the most expensive: examples to open around a change point.
pub fn example_traces<'c>(
    db: impl Into<Db<'c>>,
    dim: Option<&str>,
    value: &str,
    from_ms: i64,
    until_ms: i64,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    db.into().query(
        &format!(
            "SELECT t.id FROM traces t
              WHERE t.started_at_ms >= ?1 AND t.started_at_ms < ?2 AND t.origin = 'live' {}
              ORDER BY (t.status = 'error') DESC, COALESCE(t.cost_nanos, 0) DESC, t.started_at_ms
              LIMIT ?3",
            scope_filter(dim, "t")
        ),
        &values![from_ms, until_ms, limit, value],
        |r| r.get(0),
    )
}

#[cfg(test)]
#[path = "incident_series_tests.rs"]
mod tests;
