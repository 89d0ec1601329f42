//! Online quality, summed per group of live calls: how many calls the online evals
//! judged and how many passed, each metric's count, sum and sum of squares, and the
//! feedback apps' users gave — per function, variant, prompt version, model or release.
//!
//! Why it exists: `keel report`, `keel releases` and the dashboard's Experiments and
//! prompt pages show quality beside cost and latency, and the figures must be the same
//! everywhere. This module holds only the SQL; [`crate::quality_figures`] turns the sums
//! into rates with intervals and compares variants.
//!
//! Scores and feedback belong to a group through their trace: joined on `traces.id`,
//! live calls only, windowed on the trace's `started_at_ms` like the rest of the report.
//! Scores from `online` and `backfill` judging count as the judges' figures; people's
//! (`human`, from review queues) are their own figure beside them: calls with a clear
//! human verdict and how many were good. A judged call passes when every assertion of
//! every eval on it passed; per eval, when every assertion of that eval passed.

use std::collections::BTreeMap;

use crate::error::StoreError;
use crate::sql::{Db, Dialect, Row, Value};
use crate::values;

/// What the groups are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QualityGrouping {
    /// The function called (`(none)` for a bare model).
    Function,
    /// Function and variant joined by [`crate::report::VARIANT_SEP`], as
    /// [`crate::report::variant_breakdown`] names them.
    Variant,
    /// `prompt_name vN` (`(none)` for calls without a prompt).
    PromptVersion,
    /// The model requested.
    Model,
    /// The release that served the call (calls without one are left out).
    Release,
}

impl QualityGrouping {
    /// A fixed SQL expression over `traces t` (never user input).
    fn key_sql(self, d: Dialect) -> &'static str {
        match (self, d) {
            (QualityGrouping::Function, _) => "COALESCE(NULLIF(t.function, ''), '(none)')",
            // The unit separator (`VARIANT_SEP`), spelled per backend.
            (QualityGrouping::Variant, Dialect::Sqlite) => {
                "COALESCE(t.function, '') || char(31) || COALESCE(NULLIF(t.variant, ''), '(none)')"
            }
            (QualityGrouping::Variant, Dialect::Postgres) => {
                "COALESCE(t.function, '') || chr(31) || COALESCE(NULLIF(t.variant, ''), '(none)')"
            }
            (QualityGrouping::PromptVersion, _) => {
                "CASE WHEN NULLIF(t.prompt_name, '') IS NULL THEN '(none)' \
                 ELSE t.prompt_name || ' v' || COALESCE(CAST(t.prompt_version AS TEXT), '?') END"
            }
            (QualityGrouping::Model, _) => "COALESCE(NULLIF(t.model_requested, ''), '(none)')",
            (QualityGrouping::Release, _) => "t.release_id",
        }
    }

    /// `by_ids`: only the releases in the JSON array `?3` (see [`release_quality_sums`]),
    /// walked per backend.
    fn filter_sql(self, by_ids: bool, d: Dialect) -> &'static str {
        match (self, by_ids, d) {
            (QualityGrouping::Release, true, Dialect::Sqlite) => {
                " AND t.release_id IN (SELECT value FROM json_each(?3))"
            }
            (QualityGrouping::Release, true, Dialect::Postgres) => {
                " AND t.release_id IN (SELECT json_array_elements_text(CAST(CAST(?3 AS TEXT) AS json)))"
            }
            (QualityGrouping::Release, false, _) => " AND t.release_id IS NOT NULL",
            _ => "",
        }
    }
}

/// Judged calls of one eval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvalSums {
    pub eval: String,
    pub judged: u64,
    pub passed: u64,
}

/// One metric's values (0..1), summed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricSums {
    pub eval: String,
    pub metric: String,
    pub n: u64,
    pub sum: f64,
    pub sum_squares: f64,
}

/// Feedback values by kind: positive when the number is above 0 (thumbs 1, `true`),
/// negative at or below 0 (thumbs 0 or -1, `false`); categories are neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedbackCounts {
    pub count: u64,
    pub positive: u64,
    pub negative: u64,
    pub category: u64,
}

/// Everything one group's quality figures are made of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QualitySums {
    /// The group's key (see [`QualityGrouping`]).
    pub name: String,
    /// Calls judged by any eval, and those where every assertion passed.
    pub judged: u64,
    pub passed: u64,
    /// Per eval, by name.
    pub evals: Vec<EvalSums>,
    /// Per eval and metric, by name.
    pub metrics: Vec<MetricSums>,
    pub feedback: FeedbackCounts,
    /// Calls reviewers gave a clear verdict (good or bad; ties between two reviewers and
    /// `unsure` left out), and those found good.
    pub human_reviewed: u64,
    pub human_good: u64,
}

/// How long before the window a score or feedback row may have been written and still
/// belong to a call in it: none should (both come after their call), this absorbs clock
/// skew between replicas.
const SKEW_MS: i64 = 300_000;

/// Live calls that started in `[?1, ?2)` with their scores from judging. A window's scores
/// are found from the scores written since it began (`scores_created`, migration 0021: a
/// sample of the traffic), each call by its id — not by walking every trace of the
/// window, which at scale is hundreds of thousands of lookups for a few scores. On SQLite
/// the order is forced (`INDEXED BY`, `CROSS JOIN`): left to itself it would rather scan
/// scores in key order to save a sort; PostgreSQL's planner takes the join as written.
/// Listed releases (`?3`) are walked by `traces_release` instead, as their traffic is.
fn scored(by_ids: bool, d: Dialect) -> String {
    scored_where(by_ids, "AND s.source IN ('online', 'backfill')", d)
}

/// The same for reviewers' verdicts: `human` scores on the `verdict` label, ties left out.
fn human_scored(by_ids: bool, d: Dialect) -> String {
    scored_where(
        by_ids,
        "AND s.source = 'human' AND s.metric = 'verdict' AND s.value <> 0.5",
        d,
    )
}

fn scored_where(by_ids: bool, which: &str, d: Dialect) -> String {
    let base = format!(
        "WHERE t.started_at_ms >= ?1 AND t.started_at_ms < ?2 AND t.origin = 'live' {which}"
    );
    let from = match (by_ids, d) {
        (true, _) => return format!("FROM traces t JOIN scores s ON s.trace_id = t.id {base}"),
        (false, Dialect::Sqlite) => "FROM scores s INDEXED BY scores_created CROSS JOIN traces t",
        (false, Dialect::Postgres) => "FROM scores s JOIN traces t",
    };
    format!("{from} ON t.id = s.trace_id {base} AND s.created_at_ms >= ?1 - {SKEW_MS}")
}

/// Live calls that started in `[?1, ?2)` with their feedback, found the same way.
fn with_feedback(by_ids: bool, d: Dialect) -> String {
    let base = "WHERE t.started_at_ms >= ?1 AND t.started_at_ms < ?2 AND t.origin = 'live'";
    let from = match (by_ids, d) {
        (true, _) => return format!("FROM traces t JOIN feedback f ON f.trace_id = t.id {base}"),
        (false, Dialect::Sqlite) => "FROM feedback f INDEXED BY feedback_at CROSS JOIN traces t",
        (false, Dialect::Postgres) => "FROM feedback f JOIN traces t",
    };
    format!("{from} ON t.id = f.trace_id {base} AND f.at_ms >= ?1 - {SKEW_MS}")
}

/// Per group, the quality sums of live calls that started in `[since_ms, until_ms)`,
/// sorted by name; groups with neither scores nor feedback are absent.
pub fn quality_sums<'c>(
    db: impl Into<Db<'c>>,
    since_ms: i64,
    until_ms: i64,
    grouping: QualityGrouping,
) -> Result<Vec<QualitySums>, StoreError> {
    sums(db.into(), since_ms, until_ms, grouping, None)
}

/// The quality sums of the releases `ids`, over their live calls since `since_ms` (one
/// index range per release on `traces_release`, not every release's calls).
pub fn release_quality_sums<'c>(
    db: impl Into<Db<'c>>,
    ids: &[&str],
    since_ms: i64,
) -> Result<Vec<QualitySums>, StoreError> {
    let ids = serde_json::to_string(ids)?;
    sums(
        db.into(),
        since_ms,
        i64::MAX,
        QualityGrouping::Release,
        Some(&ids),
    )
}

/// A count column (a `COUNT` or a `SUM` of 0/1; `NULL` reads as 0).
fn count(row: &Row<'_>, idx: usize) -> Result<u64, StoreError> {
    let v: Option<i64> = row.get(idx)?;
    Ok(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
}

fn sums(
    db: Db<'_>,
    since_ms: i64,
    until_ms: i64,
    grouping: QualityGrouping,
    release_ids: Option<&str>,
) -> Result<Vec<QualitySums>, StoreError> {
    let by_ids = release_ids.is_some() && grouping == QualityGrouping::Release;
    let d = db.dialect();
    let args: Vec<Value> = match release_ids {
        Some(ids) if by_ids => values![since_ms, until_ms, ids],
        _ => values![since_ms, until_ms],
    };
    let mut groups: BTreeMap<String, QualitySums> = BTreeMap::new();

    // Judged calls: a call passes when every row of every eval on it passed.
    for (name, judged, passed) in db.query(&calls_sql(grouping, by_ids, d), &args, |r| {
        Ok((r.get::<String>(0)?, count(r, 1)?, count(r, 2)?))
    })? {
        let g = group(&mut groups, name);
        g.judged = judged;
        g.passed = passed;
    }

    // Per eval.
    for (name, eval) in db.query(&evals_sql(grouping, by_ids, d), &args, |r| {
        Ok((
            r.get::<String>(0)?,
            EvalSums {
                eval: r.get(1)?,
                judged: count(r, 2)?,
                passed: count(r, 3)?,
            },
        ))
    })? {
        group(&mut groups, name).evals.push(eval);
    }

    // Per metric: count, sum and sum of squares, for a mean with a normal interval.
    for (name, metric) in db.query(&metrics_sql(grouping, by_ids, d), &args, |r| {
        Ok((
            r.get::<String>(0)?,
            MetricSums {
                eval: r.get(1)?,
                metric: r.get(2)?,
                n: count(r, 3)?,
                sum: r.get::<Option<f64>>(4)?.unwrap_or(0.0),
                sum_squares: r.get::<Option<f64>>(5)?.unwrap_or(0.0),
            },
        ))
    })? {
        group(&mut groups, name).metrics.push(metric);
    }

    // Reviewers' verdicts: a call is good when its (mean) human verdict is.
    for (name, reviewed, good) in db.query(&humans_sql(grouping, by_ids, d), &args, |r| {
        Ok((r.get::<String>(0)?, count(r, 1)?, count(r, 2)?))
    })? {
        let g = group(&mut groups, name);
        g.human_reviewed = reviewed;
        g.human_good = good;
    }

    // Feedback by kind.
    for (name, feedback) in db.query(&feedback_sql(grouping, by_ids, d), &args, |r| {
        Ok((
            r.get::<String>(0)?,
            FeedbackCounts {
                count: count(r, 1)?,
                positive: count(r, 2)?,
                negative: count(r, 3)?,
                category: count(r, 4)?,
            },
        ))
    })? {
        group(&mut groups, name).feedback = feedback;
    }
    // By name in byte order (SQLite's), whatever the PostgreSQL database's collation.
    for g in groups.values_mut() {
        g.evals.sort_by(|a, b| a.eval.cmp(&b.eval));
        g.metrics
            .sort_by(|a, b| (&a.eval, &a.metric).cmp(&(&b.eval, &b.metric)));
    }
    Ok(groups.into_values().collect())
}

// The scored queries group calls by `s.trace_id` (not `t.id`, the same value), so a
// release's calls are walked by `traces_release` rather than every trace in id order.
// They group by `grp` too, which a call's trace decides: PostgreSQL wants every
// selected column grouped.

/// Judged calls and passes per group: a call passes when every row of every eval passed.
fn calls_sql(g: QualityGrouping, by_ids: bool, d: Dialect) -> String {
    let (key, filter, scored) = (g.key_sql(d), g.filter_sql(by_ids, d), scored(by_ids, d));
    format!(
        "SELECT grp, COUNT(*), SUM(ok) FROM ( \
           SELECT {key} AS grp, MIN(s.passed) AS ok {scored}{filter} GROUP BY s.trace_id, grp) \
         AS per_call GROUP BY grp"
    )
}

/// Calls with a clear human verdict, and the good ones, per group.
fn humans_sql(g: QualityGrouping, by_ids: bool, d: Dialect) -> String {
    let (key, filter, scored) = (
        g.key_sql(d),
        g.filter_sql(by_ids, d),
        human_scored(by_ids, d),
    );
    format!(
        "SELECT grp, COUNT(*), SUM(good) FROM ( \
           SELECT {key} AS grp, MAX(CASE WHEN s.value > 0.5 THEN 1 ELSE 0 END) AS good \
           {scored}{filter} GROUP BY s.trace_id, grp) \
         AS per_call GROUP BY grp"
    )
}

/// Judged calls and passes per group and eval.
fn evals_sql(g: QualityGrouping, by_ids: bool, d: Dialect) -> String {
    let (key, filter, scored) = (g.key_sql(d), g.filter_sql(by_ids, d), scored(by_ids, d));
    format!(
        "SELECT grp, eval, COUNT(*), SUM(ok) FROM ( \
           SELECT {key} AS grp, s.eval AS eval, MIN(s.passed) AS ok {scored}{filter} \
           GROUP BY s.trace_id, s.eval, grp) \
         AS per_call GROUP BY grp, eval ORDER BY grp, eval"
    )
}

/// Count, sum and sum of squares per group, eval and metric.
fn metrics_sql(g: QualityGrouping, by_ids: bool, d: Dialect) -> String {
    let (key, filter, scored) = (g.key_sql(d), g.filter_sql(by_ids, d), scored(by_ids, d));
    format!(
        "SELECT {key} AS grp, s.eval, s.metric, COUNT(*), SUM(s.value), SUM(s.value * s.value) \
         {scored}{filter} GROUP BY grp, s.eval, s.metric ORDER BY grp, s.eval, s.metric"
    )
}

/// Feedback per group by kind.
fn feedback_sql(g: QualityGrouping, by_ids: bool, d: Dialect) -> String {
    let (key, filter, from) = (
        g.key_sql(d),
        g.filter_sql(by_ids, d),
        with_feedback(by_ids, d),
    );
    format!(
        "SELECT {key} AS grp, COUNT(*), \
                SUM(CASE WHEN f.value_kind <> 'category' AND f.value_num > 0 THEN 1 ELSE 0 END), \
                SUM(CASE WHEN f.value_kind <> 'category' AND f.value_num <= 0 THEN 1 ELSE 0 END), \
                SUM(CASE WHEN f.value_kind = 'category' OR f.value_num IS NULL THEN 1 ELSE 0 END) \
         {from}{filter} GROUP BY grp"
    )
}

fn group(groups: &mut BTreeMap<String, QualitySums>, name: String) -> &mut QualitySums {
    groups.entry(name.clone()).or_insert_with(|| QualitySums {
        name,
        ..QualitySums::default()
    })
}

#[cfg(test)]
#[path = "quality_tests.rs"]
mod tests;
