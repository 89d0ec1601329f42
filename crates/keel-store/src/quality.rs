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

use rusqlite::Connection;

use crate::error::StoreError;
use crate::report::count;

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
    fn key_sql(self) -> &'static str {
        match self {
            QualityGrouping::Function => "COALESCE(NULLIF(t.function, ''), '(none)')",
            QualityGrouping::Variant => {
                "COALESCE(t.function, '') || char(31) || COALESCE(NULLIF(t.variant, ''), '(none)')"
            }
            QualityGrouping::PromptVersion => {
                "CASE WHEN NULLIF(t.prompt_name, '') IS NULL THEN '(none)' \
                 ELSE t.prompt_name || ' v' || COALESCE(t.prompt_version, '?') END"
            }
            QualityGrouping::Model => "COALESCE(NULLIF(t.model_requested, ''), '(none)')",
            QualityGrouping::Release => "t.release_id",
        }
    }

    /// `by_ids`: only the releases in the JSON array `?3` (see [`release_quality_sums`]).
    fn filter_sql(self, by_ids: bool) -> &'static str {
        match (self, by_ids) {
            (QualityGrouping::Release, true) => {
                " AND t.release_id IN (SELECT value FROM json_each(?3))"
            }
            (QualityGrouping::Release, false) => " AND t.release_id IS NOT NULL",
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
/// window, which at scale is hundreds of thousands of lookups for a few scores. The
/// order is forced (`INDEXED BY`, `CROSS JOIN`): left to itself SQLite would rather scan
/// scores in key order to save a sort. Listed releases (`?3`) are walked by
/// `traces_release` instead, as their traffic is.
fn scored(by_ids: bool) -> String {
    scored_where(by_ids, "AND s.source IN ('online', 'backfill')")
}

/// The same for reviewers' verdicts: `human` scores on the `verdict` label, ties left out.
fn human_scored(by_ids: bool) -> String {
    scored_where(
        by_ids,
        "AND s.source = 'human' AND s.metric = 'verdict' AND s.value <> 0.5",
    )
}

fn scored_where(by_ids: bool, which: &str) -> String {
    let base = format!(
        "WHERE t.started_at_ms >= ?1 AND t.started_at_ms < ?2 AND t.origin = 'live' {which}"
    );
    if by_ids {
        format!("FROM traces t JOIN scores s ON s.trace_id = t.id {base}")
    } else {
        format!(
            "FROM scores s INDEXED BY scores_created CROSS JOIN traces t ON t.id = s.trace_id {base} \
             AND s.created_at_ms >= ?1 - {SKEW_MS}"
        )
    }
}

/// Live calls that started in `[?1, ?2)` with their feedback, found the same way.
fn with_feedback(by_ids: bool) -> String {
    let base = "WHERE t.started_at_ms >= ?1 AND t.started_at_ms < ?2 AND t.origin = 'live'";
    if by_ids {
        format!("FROM traces t JOIN feedback f ON f.trace_id = t.id {base}")
    } else {
        format!(
            "FROM feedback f INDEXED BY feedback_at CROSS JOIN traces t ON t.id = f.trace_id {base} \
             AND f.at_ms >= ?1 - {SKEW_MS}"
        )
    }
}

/// Per group, the quality sums of live calls that started in `[since_ms, until_ms)`,
/// sorted by name; groups with neither scores nor feedback are absent.
pub fn quality_sums(
    conn: &Connection,
    since_ms: i64,
    until_ms: i64,
    grouping: QualityGrouping,
) -> Result<Vec<QualitySums>, StoreError> {
    sums(conn, since_ms, until_ms, grouping, None)
}

/// The quality sums of the releases `ids`, over their live calls since `since_ms` (one
/// index range per release on `traces_release`, not every release's calls).
pub fn release_quality_sums(
    conn: &Connection,
    ids: &[&str],
    since_ms: i64,
) -> Result<Vec<QualitySums>, StoreError> {
    let ids = serde_json::to_string(ids)?;
    sums(
        conn,
        since_ms,
        i64::MAX,
        QualityGrouping::Release,
        Some(&ids),
    )
}

fn sums(
    conn: &Connection,
    since_ms: i64,
    until_ms: i64,
    grouping: QualityGrouping,
    release_ids: Option<&str>,
) -> Result<Vec<QualitySums>, StoreError> {
    let by_ids = release_ids.is_some() && grouping == QualityGrouping::Release;
    let ids = release_ids.unwrap_or_default();
    let args: Vec<&dyn rusqlite::ToSql> = if by_ids {
        vec![&since_ms, &until_ms, &ids]
    } else {
        vec![&since_ms, &until_ms]
    };
    let args = args.as_slice();
    let mut groups: BTreeMap<String, QualitySums> = BTreeMap::new();

    // Judged calls: a call passes when every row of every eval on it passed.
    let mut stmt = conn.prepare(&calls_sql(grouping, by_ids))?;
    let mut rows = stmt.query(args)?;
    while let Some(row) = rows.next()? {
        let g = group(&mut groups, row.get(0)?);
        g.judged = count(row, 1)?;
        g.passed = count(row, 2)?;
    }

    // Per eval.
    let mut stmt = conn.prepare(&evals_sql(grouping, by_ids))?;
    let mut rows = stmt.query(args)?;
    while let Some(row) = rows.next()? {
        let eval = EvalSums {
            eval: row.get(1)?,
            judged: count(row, 2)?,
            passed: count(row, 3)?,
        };
        group(&mut groups, row.get(0)?).evals.push(eval);
    }

    // Per metric: count, sum and sum of squares, for a mean with a normal interval.
    let mut stmt = conn.prepare(&metrics_sql(grouping, by_ids))?;
    let mut rows = stmt.query(args)?;
    while let Some(row) = rows.next()? {
        let metric = MetricSums {
            eval: row.get(1)?,
            metric: row.get(2)?,
            n: count(row, 3)?,
            sum: row.get::<_, Option<f64>>(4)?.unwrap_or(0.0),
            sum_squares: row.get::<_, Option<f64>>(5)?.unwrap_or(0.0),
        };
        group(&mut groups, row.get(0)?).metrics.push(metric);
    }

    // Reviewers' verdicts: a call is good when its (mean) human verdict is.
    let mut stmt = conn.prepare(&humans_sql(grouping, by_ids))?;
    let mut rows = stmt.query(args)?;
    while let Some(row) = rows.next()? {
        let g = group(&mut groups, row.get(0)?);
        g.human_reviewed = count(row, 1)?;
        g.human_good = count(row, 2)?;
    }

    // Feedback by kind.
    let mut stmt = conn.prepare(&feedback_sql(grouping, by_ids))?;
    let mut rows = stmt.query(args)?;
    while let Some(row) = rows.next()? {
        group(&mut groups, row.get(0)?).feedback = FeedbackCounts {
            count: count(row, 1)?,
            positive: count(row, 2)?,
            negative: count(row, 3)?,
            category: count(row, 4)?,
        };
    }
    Ok(groups.into_values().collect())
}

// The scored queries group calls by `s.trace_id` (not `t.id`, the same value), so a
// release's calls are walked by `traces_release` rather than every trace in id order.

/// Judged calls and passes per group: a call passes when every row of every eval passed.
fn calls_sql(g: QualityGrouping, by_ids: bool) -> String {
    let (key, filter, scored) = (g.key_sql(), g.filter_sql(by_ids), scored(by_ids));
    format!(
        "SELECT grp, COUNT(*), SUM(ok) FROM ( \
           SELECT {key} AS grp, MIN(s.passed) AS ok {scored}{filter} GROUP BY s.trace_id) \
         GROUP BY grp"
    )
}

/// Calls with a clear human verdict, and the good ones, per group.
fn humans_sql(g: QualityGrouping, by_ids: bool) -> String {
    let (key, filter, scored) = (g.key_sql(), g.filter_sql(by_ids), human_scored(by_ids));
    format!(
        "SELECT grp, COUNT(*), SUM(good) FROM ( \
           SELECT {key} AS grp, MAX(s.value > 0.5) AS good {scored}{filter} GROUP BY s.trace_id) \
         GROUP BY grp"
    )
}

/// Judged calls and passes per group and eval.
fn evals_sql(g: QualityGrouping, by_ids: bool) -> String {
    let (key, filter, scored) = (g.key_sql(), g.filter_sql(by_ids), scored(by_ids));
    format!(
        "SELECT grp, eval, COUNT(*), SUM(ok) FROM ( \
           SELECT {key} AS grp, s.eval AS eval, MIN(s.passed) AS ok {scored}{filter} \
           GROUP BY s.trace_id, s.eval) \
         GROUP BY grp, eval ORDER BY grp, eval"
    )
}

/// Count, sum and sum of squares per group, eval and metric.
fn metrics_sql(g: QualityGrouping, by_ids: bool) -> String {
    let (key, filter, scored) = (g.key_sql(), g.filter_sql(by_ids), scored(by_ids));
    format!(
        "SELECT {key} AS grp, s.eval, s.metric, COUNT(*), SUM(s.value), SUM(s.value * s.value) \
         {scored}{filter} GROUP BY grp, s.eval, s.metric ORDER BY grp, s.eval, s.metric"
    )
}

/// Feedback per group by kind.
fn feedback_sql(g: QualityGrouping, by_ids: bool) -> String {
    let (key, filter, from) = (g.key_sql(), g.filter_sql(by_ids), with_feedback(by_ids));
    format!(
        "SELECT {key} AS grp, COUNT(*), \
                SUM(f.value_kind <> 'category' AND f.value_num > 0), \
                SUM(f.value_kind <> 'category' AND f.value_num <= 0), \
                SUM(f.value_kind = 'category' OR f.value_num IS NULL) \
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
