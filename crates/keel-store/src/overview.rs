//! What the dashboard's overview shows, read from the rollups (`rollup`) so it answers
//! in milliseconds on a store of millions of traces: totals, breakdowns by model,
//! function, feature and tenant, and the charts over time, of live traffic.
//!
//! The window ends with the current 5-minute bucket and spans exactly the asked length
//! back from there (so "24h" covers the last 23 h 55 min to 24 h, to the rollups'
//! 5-minute grain). Each range read (the window, each chart bucket) is covered with the
//! fewest rollup rows: whole UTC days from daily rows, whole hours from hourly rows, the
//! ragged ends from 5-minute rows — a few thousand rows for 30 days whatever the
//! traffic. Counts, tokens and costs are exact; latency and
//! TTFT percentiles are histogram estimates within 1/32 (3.1 %) of the exact
//! nearest-rank values, exact below 32 ms. `keel report` stays exact: it reads the traces.

use std::collections::HashMap;

use keel_core::money::Nanos;
use serde::Serialize;

use crate::error::StoreError;
use crate::report::{GroupRow, GroupStats, Percentiles};
use crate::rollup::{floor_to, Counts, Dim, COUNT_COLUMNS, FINE_MS, LEVELS};
use crate::sql::Db;
use crate::values;

/// One chart bucket `[start_ms, start_ms + width)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Bucket {
    pub start_ms: i64,
    pub requests: u64,
    pub errors: u64,
    /// Priced calls only; unpriced calls are counted in `unpriced`.
    pub cost: Nanos,
    pub unpriced: u64,
    pub latency_ms: Option<Percentiles>,
    pub ttft_ms: Option<Percentiles>,
}

/// The overview of live traffic over `[since_ms, until_ms)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    pub since_ms: i64,
    pub until_ms: i64,
    pub totals: GroupStats,
    pub by_model: Vec<GroupRow>,
    pub by_function: Vec<GroupRow>,
    pub by_feature: Vec<GroupRow>,
    pub by_tenant: Vec<GroupRow>,
    /// Equal buckets, oldest first, empty ones included (a chart point per bucket).
    pub timeline: Vec<Bucket>,
}

impl Overview {
    /// True when no live trace started in the window.
    pub fn is_empty(&self) -> bool {
        self.totals.requests == 0
    }
}

/// `a / b` rounded up, for `b > 0`.
fn ceil_div(a: i64, b: i64) -> i64 {
    -((-a).div_euclid(b))
}

/// The window of length `span_ms` that ends with the 5-minute bucket holding `now_ms`.
pub fn aligned_window(now_ms: i64, span_ms: i64) -> (i64, i64) {
    let until = floor_to(now_ms, FINE_MS) + FINE_MS;
    (until - span_ms, until)
}

/// The overview of the `span_ms` up to now (see [`aligned_window`]), its charts in
/// `buckets` buckets. A bucket is a whole number of 5-minute rollups: the width is
/// `span_ms / buckets` rounded up to 5 minutes.
pub fn overview<'c>(
    db: impl Into<Db<'c>>,
    now_ms: i64,
    span_ms: i64,
    buckets: usize,
) -> Result<Overview, StoreError> {
    let conn = db.into();
    let (since_ms, until_ms) = aligned_window(now_ms, span_ms);
    if span_ms <= 0 || buckets == 0 {
        return Err(StoreError::InvalidWindow { since_ms, until_ms });
    }
    let n = i64::try_from(buckets).unwrap_or(1);
    let width = ceil_div(ceil_div(span_ms, n), FINE_MS).max(1) * FINE_MS;
    let (timeline, totals) = timeline(conn, since_ms, until_ms, width)?;
    Ok(Overview {
        since_ms,
        until_ms,
        totals: totals.stats(),
        by_model: breakdown(conn, since_ms, until_ms, Dim::Model)?,
        by_function: breakdown(conn, since_ms, until_ms, Dim::Function)?,
        by_feature: breakdown(conn, since_ms, until_ms, Dim::Feature)?,
        by_tenant: breakdown(conn, since_ms, until_ms, Dim::Tenant)?,
        timeline,
    })
}

/// Live traffic per function variant over the `span_ms` up to now (see
/// [`aligned_window`]): one row per `function` + `VARIANT_SEP` + `variant`, as
/// `report::variant_breakdown` names them, from the rollups (percentiles estimated).
pub fn variant_breakdown<'c>(
    db: impl Into<Db<'c>>,
    now_ms: i64,
    span_ms: i64,
) -> Result<Vec<GroupRow>, StoreError> {
    let (since_ms, until_ms) = aligned_window(now_ms, span_ms);
    breakdown(db.into(), since_ms, until_ms, Dim::Variant)
}

/// The rollup buckets that tile `[from, to)` (multiples of 5 minutes), as
/// (width, first start, end) runs: the coarsest whole buckets in the middle, finer ones
/// at the ends. `level` is the coarsest index into `LEVELS` to use.
fn tiles(from: i64, to: i64, level: usize, out: &mut Vec<(i64, i64, i64)>) {
    if from >= to {
        return;
    }
    let Some(&res) = LEVELS.get(level) else {
        return;
    };
    if level == 0 {
        out.push((res, from, to));
        return;
    }
    let (lo, hi) = (ceil_div(from, res) * res, floor_to(to, res));
    if lo >= hi {
        tiles(from, to, level - 1, out);
    } else {
        tiles(from, lo, level - 1, out);
        out.push((res, lo, hi));
        tiles(hi, to, level - 1, out);
    }
}

/// Every live rollup row of `dim` that together covers `[from, to)` exactly, each as
/// (value, counts).
fn rows(
    conn: Db<'_>,
    dim: Dim,
    from: i64,
    to: i64,
    mut each: impl FnMut(&str, Counts),
) -> Result<(), StoreError> {
    let mut runs = Vec::new();
    tiles(from, to, LEVELS.len() - 1, &mut runs);
    let sql = format!(
        "SELECT value, {COUNT_COLUMNS} FROM trace_rollups \
         WHERE res_ms = ?1 AND origin = 'live' AND dim = ?2 AND bucket_ms >= ?3 AND bucket_ms < ?4"
    );
    for (res, lo, hi) in runs {
        conn.query(&sql, &values![res, dim.as_str(), lo, hi], |row| {
            let value: String = row.get(0)?;
            each(&value, Counts::from_row(row, 1)?);
            Ok(())
        })?;
    }
    Ok(())
}

/// The chart buckets of `width` over the window, and their total.
fn timeline(
    conn: Db<'_>,
    since_ms: i64,
    until_ms: i64,
    width: i64,
) -> Result<(Vec<Bucket>, Counts), StoreError> {
    let n = ceil_div(until_ms - since_ms, width);
    let mut total = Counts::default();
    let mut out = Vec::new();
    for i in 0..n {
        let start = since_ms + i * width;
        let mut c = Counts::default();
        rows(
            conn,
            Dim::All,
            start,
            (start + width).min(until_ms),
            |_, r| c.merge(&r),
        )?;
        total.merge(&c);
        out.push(Bucket {
            start_ms: start,
            requests: c.requests,
            errors: c.errors,
            cost: Nanos(c.cost_nanos),
            unpriced: c.unpriced,
            latency_ms: c.latency.percentiles(),
            ttft_ms: c.ttft.percentiles(),
        });
    }
    Ok((out, total))
}

/// One row per value of `dim` over the window, sorted like the report's breakdowns
/// (cost, then requests, descending, then name).
fn breakdown(
    conn: Db<'_>,
    since_ms: i64,
    until_ms: i64,
    dim: Dim,
) -> Result<Vec<GroupRow>, StoreError> {
    let mut groups: HashMap<String, Counts> = HashMap::new();
    rows(conn, dim, since_ms, until_ms, |value, c| {
        match groups.get_mut(value) {
            Some(g) => g.merge(&c),
            None => {
                groups.insert(value.to_string(), c);
            }
        }
    })?;
    let mut out: Vec<GroupRow> = groups
        .into_iter()
        .map(|(name, c)| GroupRow {
            name,
            stats: c.stats(),
        })
        .collect();
    crate::report::sort_groups(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_a_range_exactly_with_the_coarsest_buckets() {
        const H: i64 = 3_600_000;
        const D: i64 = 24 * H;
        let mut t = Vec::new();
        // 30 days from 10:05 on day 1: 5-minute rows to 11:00, hours to midnight,
        // 29 days... then hours and 5-minute rows up to 10:05 on day 31.
        tiles(D + 10 * H + 300_000, 31 * D + 10 * H + 300_000, 2, &mut t);
        assert_eq!(
            t,
            vec![
                (FINE_MS, D + 10 * H + 300_000, D + 11 * H),
                (H, D + 11 * H, 2 * D),
                (D, 2 * D, 31 * D),
                (H, 31 * D, 31 * D + 10 * H),
                (FINE_MS, 31 * D + 10 * H, 31 * D + 10 * H + 300_000),
            ]
        );
        let mut t = Vec::new();
        tiles(5 * FINE_MS, 9 * FINE_MS, 2, &mut t);
        assert_eq!(t, vec![(FINE_MS, 5 * FINE_MS, 9 * FINE_MS)]);
        let mut t = Vec::new();
        tiles(H, H, 2, &mut t);
        assert!(t.is_empty());
    }
}
