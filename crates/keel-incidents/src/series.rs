//! The scope's metrics in five-minute buckets over an incident's window, and their change
//! points ([`crate::changepoint`]) with example traces from the bucket after each.
//!
//! Rates need calls to mean anything: a bucket with fewer than [`MIN_CALLS`] calls (or
//! [`MIN_JUDGED`] verdicts, [`MIN_FEEDBACK`] feedback values) is left out of a rate's
//! series rather than counted as 0 or 100 %. Each metric has a floor: the smallest shift
//! worth reporting (2 points of error rate, 50 ms of latency, 20 tokens per call, …).
//!
//! Sums (spend, guardrail blocks) are rates over the part of a bucket that has happened:
//! the bucket still in progress at the end of the window holds only the minutes so far, so
//! its sum is scaled to a whole bucket by [`coverage`], and left out while less than half
//! of it has elapsed — otherwise every open incident would end in a false drop.

use keel_store::incident_series::{self as q, BUCKET_MS};
use keel_store::rollup::Counts;
use serde::Serialize;

use crate::changepoint::{detect, ChangePoint, DEFAULT_ALPHA};

/// Fewest calls in a bucket for its rates and percentiles.
pub const MIN_CALLS: u64 = 5;
/// Fewest judged assertions in a bucket for its pass rate.
pub const MIN_JUDGED: u64 = 5;
/// Fewest feedback values in a bucket for its negative rate.
pub const MIN_FEEDBACK: u64 = 3;
/// Error classes followed one by one (the most frequent in the window).
pub const TOP_CLASSES: usize = 3;
/// Example traces linked per change point.
pub const EXAMPLES: usize = 3;

/// One metric's buckets and change points.
#[derive(Debug, Clone, Serialize)]
pub struct MetricSeries {
    /// `error_rate`, `errors.<class>`, `latency_p95_ms`, `ttft_p95_ms`,
    /// `spend_usd_per_hour`, `tokens_per_call`, `guardrail_blocks`, `online_pass_rate`,
    /// `negative_feedback_rate`.
    pub metric: String,
    pub points: Vec<(i64, f64)>,
    pub change_points: Vec<Shift>,
}

/// A change point of one metric, with traces to open.
#[derive(Debug, Clone, Serialize)]
pub struct Shift {
    pub metric: String,
    #[serde(flatten)]
    pub point: ChangePoint,
    pub example_traces: Vec<String>,
}

/// A scope string (`function=F`, …, or `None` for global) as (rollup dim, value).
pub fn scope_parts(scope: Option<&str>) -> (Option<String>, String) {
    match scope.and_then(|s| s.split_once('=')) {
        Some((k, v)) => (Some(k.trim().to_string()), v.trim().to_string()),
        None => (None, String::new()),
    }
}

/// The share of the bucket starting at `bucket_ms` that lies before `until_ms` (1 for a
/// finished bucket), or `None` while less than half of it has elapsed.
pub fn coverage(bucket_ms: i64, until_ms: i64) -> Option<f64> {
    let elapsed = (until_ms - bucket_ms).clamp(0, BUCKET_MS);
    (2 * elapsed >= BUCKET_MS).then(|| elapsed as f64 / BUCKET_MS as f64)
}

/// A store error as rusqlite's (this crate's functions still return those).
pub(crate) fn sql(e: keel_store::StoreError) -> rusqlite::Error {
    match e {
        keel_store::StoreError::Sqlite(e) => e,
        other => rusqlite::Error::ToSqlConversionFailure(Box::new(other)),
    }
}

/// Every metric of `scope` over `[since_ms, until_ms)`, with change points.
pub fn metrics(
    conn: keel_store::sql::Db<'_>,
    scope: Option<&str>,
    since_ms: i64,
    until_ms: i64,
) -> rusqlite::Result<Vec<MetricSeries>> {
    let (dim, value) = scope_parts(scope);
    let dim = dim.as_deref();
    let buckets = q::rollup_buckets(conn, dim, &value, since_ms, until_ms).map_err(sql)?;
    let classes = q::error_class_buckets(conn, dim, &value, since_ms, until_ms).map_err(sql)?;
    let judged = q::judged_buckets(conn, dim, &value, since_ms, until_ms).map_err(sql)?;
    let feedback = q::feedback_buckets(conn, dim, &value, since_ms, until_ms).map_err(sql)?;

    let busy = |c: &Counts| c.requests >= MIN_CALLS;
    let from = |f: &dyn Fn(&Counts) -> Option<f64>| -> Vec<(i64, f64)> {
        buckets
            .iter()
            .filter_map(|(b, c)| f(c).map(|v| (*b, v)))
            .collect()
    };
    let mut out = vec![
        (
            "error_rate",
            0.02,
            from(&|c| busy(c).then(|| c.stats().error_rate)),
        ),
        (
            "latency_p95_ms",
            50.0,
            from(&|c| busy(c).then(|| c.stats().latency_ms.p95 as f64)),
        ),
        (
            "ttft_p95_ms",
            50.0,
            from(&|c| {
                busy(c)
                    .then(|| c.stats().ttft_ms.map(|p| p.p95 as f64))
                    .flatten()
            }),
        ),
        (
            "spend_usd_per_hour",
            0.01,
            buckets
                .iter()
                .filter_map(|(b, c)| {
                    let per_hour = c.cost_nanos as f64 / 1e9 * (3_600_000 / BUCKET_MS) as f64;
                    coverage(*b, until_ms).map(|f| (*b, per_hour / f))
                })
                .collect(),
        ),
        (
            "tokens_per_call",
            20.0,
            from(&|c| busy(c).then(|| c.stats().tokens_per_call).flatten()),
        ),
        (
            "guardrail_blocks",
            1.0,
            buckets
                .iter()
                .filter_map(|(b, _)| {
                    let n: u64 = classes
                        .iter()
                        .filter(|(cb, class, _)| cb == b && class.starts_with("guardrail_"))
                        .map(|(_, _, n)| n)
                        .sum();
                    coverage(*b, until_ms).map(|f| (*b, n as f64 / f))
                })
                .collect(),
        ),
    ]
    .into_iter()
    .map(|(m, floor, points)| (m.to_string(), floor, points))
    .collect::<Vec<_>>();

    // The most frequent error classes, each as its share of the bucket's calls.
    let mut totals: Vec<(String, u64)> = Vec::new();
    for (_, class, n) in &classes {
        match totals.iter_mut().find(|(c, _)| c == class) {
            Some(t) => t.1 += n,
            None => totals.push((class.clone(), *n)),
        }
    }
    totals.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (class, _) in totals.into_iter().take(TOP_CLASSES) {
        let points = buckets
            .iter()
            .filter(|(_, c)| busy(c))
            .map(|(b, c)| {
                let n: u64 = classes
                    .iter()
                    .filter(|(cb, cl, _)| cb == b && *cl == class)
                    .map(|(_, _, n)| n)
                    .sum();
                (*b, n as f64 / c.requests as f64)
            })
            .collect();
        out.push((format!("errors.{class}"), 0.02, points));
    }
    out.push((
        "online_pass_rate".into(),
        0.05,
        judged
            .iter()
            .filter(|(_, n, _)| *n >= MIN_JUDGED)
            .map(|(b, n, p)| (*b, *p as f64 / *n as f64))
            .collect(),
    ));
    out.push((
        "negative_feedback_rate".into(),
        0.05,
        feedback
            .iter()
            .filter(|(_, n, _)| *n >= MIN_FEEDBACK)
            .map(|(b, n, neg)| (*b, *neg as f64 / *n as f64))
            .collect(),
    ));

    let mut series = Vec::new();
    for (metric, floor, points) in out {
        let mut change_points = Vec::new();
        for point in detect(&points, DEFAULT_ALPHA, floor) {
            let example_traces = q::example_traces(
                conn,
                dim,
                &value,
                point.at_ms,
                point.at_ms + BUCKET_MS,
                EXAMPLES,
            )
            .map_err(sql)?;
            change_points.push(Shift {
                metric: metric.clone(),
                point,
                example_traces,
            });
        }
        series.push(MetricSeries {
            metric,
            points,
            change_points,
        });
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_bucket_counts_whole_and_the_one_in_progress_in_proportion() {
        assert_eq!(coverage(0, 10 * BUCKET_MS), Some(1.0));
        assert_eq!(coverage(0, BUCKET_MS), Some(1.0));
        assert_eq!(coverage(0, BUCKET_MS * 3 / 4), Some(0.75));
        assert_eq!(coverage(0, BUCKET_MS / 2), Some(0.5));
        // Under half elapsed: too little to compare with whole buckets.
        assert_eq!(coverage(0, BUCKET_MS / 2 - 1), None);
        assert_eq!(coverage(BUCKET_MS, 0), None);
    }
}
