//! What the dashboard's overview shows, read from the rollups (`rollup`) so it answers
//! in milliseconds on a store of millions of traces: totals, breakdowns by model,
//! function, feature and tenant, and the charts over time, of live traffic.
//!
//! The window ends with the current 5-minute bucket and spans exactly the asked length
//! back from there (so "24h" covers the last 23 h 55 min to 24 h, to the rollups'
//! 5-minute grain). Its body is read from hourly rows, its ragged ends from 5-minute
//! rows; the charts read 5-minute rows. Counts, tokens and costs are exact; latency and
//! TTFT percentiles are histogram estimates within 1/32 (3.1 %) of the exact
//! nearest-rank values, exact below 32 ms. `keel report` stays exact: it reads the traces.

use std::collections::HashMap;

use keel_core::money::Nanos;
use rusqlite::Connection;
use serde::Serialize;

use crate::error::StoreError;
use crate::report::{GroupRow, GroupStats, Percentiles};
use crate::rollup::{floor_to, Counts, Dim, COARSE_MS, COUNT_COLUMNS, FINE_MS};

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
pub fn overview(
    conn: &Connection,
    now_ms: i64,
    span_ms: i64,
    buckets: usize,
) -> Result<Overview, StoreError> {
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

/// Live rows of `dim` at resolution `res_ms` with buckets in `[from, to)`, in bucket
/// order, each as (bucket start, value, counts).
fn rows(
    conn: &Connection,
    dim: Dim,
    res_ms: i64,
    from: i64,
    to: i64,
    mut each: impl FnMut(i64, &str, Counts),
) -> Result<(), StoreError> {
    if from >= to {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT bucket_ms, value, {COUNT_COLUMNS} FROM trace_rollups \
         WHERE res_ms = ?1 AND origin = 'live' AND dim = ?2 AND bucket_ms >= ?3 AND bucket_ms < ?4 \
         ORDER BY bucket_ms"
    ))?;
    let mut rows = stmt.query((res_ms, dim.as_str(), from, to))?;
    while let Some(row) = rows.next()? {
        let value: String = row.get(1)?;
        each(row.get(0)?, &value, Counts::from_row(row, 2)?);
    }
    Ok(())
}

/// The chart buckets of `width` over the window (5-minute rows), and their total.
fn timeline(
    conn: &Connection,
    since_ms: i64,
    until_ms: i64,
    width: i64,
) -> Result<(Vec<Bucket>, Counts), StoreError> {
    let n = usize::try_from(ceil_div(until_ms - since_ms, width)).unwrap_or(0);
    let mut counts: Vec<Counts> = vec![Counts::default(); n];
    rows(conn, Dim::All, FINE_MS, since_ms, until_ms, |at, _, c| {
        let idx = usize::try_from((at - since_ms) / width).unwrap_or(usize::MAX);
        if let Some(slot) = counts.get_mut(idx) {
            slot.merge(&c);
        }
    })?;
    let mut total = Counts::default();
    let mut out = Vec::with_capacity(n);
    for (i, c) in counts.iter().enumerate() {
        total.merge(c);
        out.push(Bucket {
            start_ms: since_ms + i as i64 * width,
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
/// (cost, then requests, descending, then name): whole hours from hourly rows, the
/// ends from 5-minute rows.
fn breakdown(
    conn: &Connection,
    since_ms: i64,
    until_ms: i64,
    dim: Dim,
) -> Result<Vec<GroupRow>, StoreError> {
    let body_from = floor_to(since_ms + COARSE_MS - 1, COARSE_MS);
    let body_to = floor_to(until_ms, COARSE_MS);
    let mut groups: HashMap<String, Counts> = HashMap::new();
    let mut add = |_: i64, value: &str, c: Counts| match groups.get_mut(value) {
        Some(g) => g.merge(&c),
        None => {
            groups.insert(value.to_string(), c);
        }
    };
    if body_from < body_to {
        rows(conn, dim, FINE_MS, since_ms, body_from, &mut add)?;
        rows(conn, dim, COARSE_MS, body_from, body_to, &mut add)?;
        rows(conn, dim, FINE_MS, body_to, until_ms, &mut add)?;
    } else {
        rows(conn, dim, FINE_MS, since_ms, until_ms, &mut add)?;
    }
    let mut out: Vec<GroupRow> = groups
        .into_iter()
        .map(|(name, c)| GroupRow {
            name,
            stats: c.stats(),
        })
        .collect();
    out.sort_by(|a, b| {
        b.stats
            .cost
            .cmp(&a.stats.cost)
            .then(b.stats.requests.cmp(&a.stats.requests))
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(out)
}
