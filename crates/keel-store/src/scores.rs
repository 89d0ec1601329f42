//! Scores on traces: what online evals' judges found (and, later, reviewers), and the
//! figures `keel online status` and the dashboard read about the judging itself.
//!
//! A judged call has one row per assertion (its metric, or its type when unnamed); the
//! call passed when every row passed. Judging the same call again for the same eval and
//! source replaces its rows. A call the judge could not grade is not scored: it is kept
//! in `online_eval_failures`, so a judge outage never reads as bad answers.

use serde::Serialize;

use crate::error::StoreError;
use crate::sql::{Db, Dialect};
use crate::values;

/// One assertion's result on one call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreRow {
    pub metric: String,
    /// 0..=1.
    pub value: f64,
    pub passed: bool,
    pub reason: Option<String>,
}

/// A stored score, as `keel traces show` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredScore {
    pub eval: String,
    pub metric: String,
    pub source: String,
    pub value: f64,
    pub passed: bool,
    pub reason: Option<String>,
    /// What judging this call cost (on the first metric of the call; `None` elsewhere,
    /// or when no judge was called or its price is unknown).
    pub judge_cost_nanos: Option<i64>,
    pub created_at_ms: i64,
}

/// Replace `trace_id`'s scores from `eval` and `source` with `rows`; `judge_cost_nanos`
/// is kept on the first row.
pub fn replace_scores<'c>(
    db: impl Into<Db<'c>>,
    trace_id: &str,
    eval: &str,
    source: &str,
    rows: &[ScoreRow],
    judge_cost_nanos: Option<i64>,
    now_ms: i64,
) -> Result<(), StoreError> {
    // A metric named twice keeps its last row, placed last: what SQLite's `INSERT OR
    // REPLACE` did (a new rowid), so the rows read back in the same order either way.
    let mut kept: Vec<(usize, &ScoreRow)> = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        kept.retain(|(_, k)| k.metric != r.metric);
        kept.push((i, r));
    }
    let sets: Vec<_> = kept
        .into_iter()
        .map(|(i, r)| {
            let cost = if i == 0 { judge_cost_nanos } else { None };
            values![
                trace_id,
                eval,
                &r.metric,
                source,
                r.value.clamp(0.0, 1.0),
                r.passed,
                &r.reason,
                cost,
                now_ms
            ]
        })
        .collect();
    // On PostgreSQL score writes from all replicas take turns, so `scores.rowid`s follow
    // commit order and the review intake's "rowid > last seen" cursor never passes a row
    // committed later with a smaller one (a judged call writes once: the turn is short).
    db.into().exclusive_for("scores-write", |tx| {
        tx.execute(
            "DELETE FROM scores WHERE trace_id = ?1 AND eval = ?2 AND source = ?3",
            &values![trace_id, eval, source],
        )?;
        // The conflict clause only matters on PostgreSQL, when two replicas score the
        // same call at once: the later write wins, as it would one after the other.
        tx.execute_many(
            "INSERT INTO scores
               (trace_id, eval, metric, source, value, passed, reason, judge_cost_nanos, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (trace_id, eval, metric, source) DO UPDATE SET
                 value = excluded.value, passed = excluded.passed, reason = excluded.reason,
                 judge_cost_nanos = excluded.judge_cost_nanos,
                 created_at_ms = excluded.created_at_ms",
            &sets,
        )?;
        Ok(())
    })
}

/// Keep that `eval` could not judge `trace_id`, and why.
pub fn record_failure<'c>(
    db: impl Into<Db<'c>>,
    eval: &str,
    trace_id: &str,
    at_ms: i64,
    error: &str,
) -> Result<(), StoreError> {
    db.into().execute(
        "INSERT INTO online_eval_failures (eval, trace_id, at_ms, error) VALUES (?1, ?2, ?3, ?4)",
        &values![eval, trace_id, at_ms, error],
    )?;
    Ok(())
}

/// Every score on `trace_id`, by eval then metric.
pub fn scores_for_trace<'c>(
    db: impl Into<Db<'c>>,
    trace_id: &str,
) -> Result<Vec<StoredScore>, StoreError> {
    db.into().query(
        "SELECT eval, metric, source, value, passed, reason, judge_cost_nanos, created_at_ms
           FROM scores WHERE trace_id = ?1 ORDER BY eval, source, rowid",
        &values![trace_id],
        |r| {
            Ok(StoredScore {
                eval: r.get(0)?,
                metric: r.get(1)?,
                source: r.get(2)?,
                value: r.get(3)?,
                passed: r.get(4)?,
                reason: r.get(5)?,
                judge_cost_nanos: r.get(6)?,
                created_at_ms: r.get(7)?,
            })
        },
    )
}

/// The judging figures of one online eval since a time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JudgingFigures {
    /// Calls judged (scored) since `since_ms`.
    pub judged: u64,
    /// Of those, calls where every assertion passed.
    pub passed: u64,
    /// Calls that could not be judged since `since_ms`.
    pub failures: u64,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
}

/// Judged calls, passes and failures of `eval` since `since_ms` (by when they were
/// judged), with its last failure ever.
pub fn judging_figures<'c>(
    db: impl Into<Db<'c>>,
    eval: &str,
    since_ms: i64,
) -> Result<JudgingFigures, StoreError> {
    let db = db.into();
    let (judged, passed): (i64, i64) = db.query_row(
        "SELECT COUNT(*), COALESCE(SUM(ok), 0) FROM (
           SELECT MIN(passed) AS ok FROM scores
            WHERE eval = ?1 AND created_at_ms >= ?2 AND source IN ('online', 'backfill')
            GROUP BY trace_id) AS per_call",
        &values![eval, since_ms],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let failures: i64 = db.query_row(
        "SELECT COUNT(*) FROM online_eval_failures WHERE eval = ?1 AND at_ms >= ?2",
        &values![eval, since_ms],
        |r| r.get(0),
    )?;
    let last: Option<(String, i64)> = db.query_opt(
        "SELECT error, at_ms FROM online_eval_failures WHERE eval = ?1
          ORDER BY at_ms DESC LIMIT 1",
        &values![eval],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(JudgingFigures {
        judged: u64::try_from(judged).unwrap_or(0),
        passed: u64::try_from(passed).unwrap_or(0),
        failures: u64::try_from(failures).unwrap_or(0),
        last_error_at_ms: last.as_ref().map(|(_, at)| *at),
        last_error: last.map(|(e, _)| e),
    })
}

/// The tag an online eval's judge calls carry, so its spend can be summed.
pub fn judge_tag(eval: &str) -> String {
    format!("online:{eval}")
}

/// What `eval`'s judge calls cost since `since_ms` (priced calls only), in nano-dollars.
pub fn judge_spend_since<'c>(
    db: impl Into<Db<'c>>,
    eval: &str,
    since_ms: i64,
) -> Result<i64, StoreError> {
    let db = db.into();
    let tag = judge_tag(eval);
    // `tags` is a JSON array in text; each backend has its own way to walk one.
    let tagged = match db.dialect() {
        Dialect::Sqlite => "EXISTS (SELECT 1 FROM json_each(traces.tags) WHERE value = ?2)",
        Dialect::Postgres => {
            "EXISTS (SELECT 1 FROM json_array_elements_text(CAST(traces.tags AS json)) AS tag(value)
                      WHERE tag.value = ?2)"
        }
    };
    db.query_row(
        &format!(
            "SELECT COALESCE(SUM(cost_nanos), 0) FROM traces
              WHERE origin = 'judge' AND started_at_ms >= ?1 AND {tagged}"
        ),
        &values![since_ms, tag],
        |r| r.get(0),
    )
}

/// Live calls in an eval's scope since `since_ms`: `function` or `model` (the one the eval
/// covers), narrowed by tenant or feature. (The casts type the parameters PostgreSQL
/// cannot type from `IS NULL`.)
pub fn scope_traffic<'c>(
    db: impl Into<Db<'c>>,
    function: Option<&str>,
    model: Option<&str>,
    tenant: Option<&str>,
    feature: Option<&str>,
    since_ms: i64,
) -> Result<u64, StoreError> {
    let n: i64 = db.into().query_row(
        "SELECT COUNT(*) FROM traces
          WHERE origin = 'live' AND started_at_ms >= ?1
            AND (CAST(?2 AS TEXT) IS NULL OR function = ?2) AND (CAST(?3 AS TEXT) IS NULL OR model_requested = ?3)
            AND (CAST(?4 AS TEXT) IS NULL OR tenant = ?4) AND (CAST(?5 AS TEXT) IS NULL OR feature = ?5)",
        &values![since_ms, function, model, tenant, feature],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Fresh stores on both backends for tests that write scores.
#[cfg(test)]
pub(crate) fn test_stores() -> Vec<(&'static str, crate::Store, Option<crate::testing::TestDb>)> {
    crate::testing::stores()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(metric: &str, value: f64, passed: bool) -> ScoreRow {
        ScoreRow {
            metric: metric.into(),
            value,
            passed,
            reason: Some(format!("{metric} reason")),
        }
    }

    #[test]
    fn scores_replace_per_eval_and_source_and_a_call_passes_only_when_all_pass() {
        for (backend, store, _db) in test_stores() {
            let conn = store.conn().unwrap();
            replace_scores(
                &conn,
                "t1",
                "q",
                "online",
                &[row("helpful", 0.9, true), row("word-count", 0.0, false)],
                Some(42),
                1_000,
            )
            .unwrap();
            replace_scores(
                &conn,
                "t2",
                "q",
                "online",
                &[row("helpful", 0.8, true)],
                None,
                1_000,
            )
            .unwrap();
            let s = scores_for_trace(&conn, "t1").unwrap();
            let got: Vec<_> = s
                .iter()
                .map(|s| (s.metric.as_str(), s.judge_cost_nanos))
                .collect();
            assert_eq!(
                got,
                [("helpful", Some(42)), ("word-count", None)],
                "{backend}"
            );
            let f = judging_figures(&conn, "q", 0).unwrap();
            assert_eq!((f.judged, f.passed), (2, 1), "{backend}");
            // Judged again: the new rows replace the old ones.
            replace_scores(
                &conn,
                "t1",
                "q",
                "online",
                &[row("helpful", 1.0, true)],
                None,
                2_000,
            )
            .unwrap();
            let s = scores_for_trace(&conn, "t1").unwrap();
            assert_eq!(s.len(), 1, "{backend}");
            assert_eq!((s[0].value, s[0].passed), (1.0, true), "{backend}");
            let f = judging_figures(&conn, "q", 0).unwrap();
            assert_eq!((f.judged, f.passed), (2, 2), "{backend}");
            assert_eq!(
                judging_figures(&conn, "q", 1_500).unwrap().judged,
                1,
                "{backend}"
            );
        }
    }

    #[test]
    fn a_metric_named_twice_keeps_its_last_row_placed_last() {
        for (backend, store, _db) in test_stores() {
            let conn = store.conn().unwrap();
            replace_scores(
                &conn,
                "t1",
                "q",
                "online",
                &[
                    row("a", 0.1, false),
                    row("b", 0.5, true),
                    row("a", 0.9, true),
                    row("c", 2.0, true),
                ],
                Some(7),
                1_000,
            )
            .unwrap();
            let s = scores_for_trace(&conn, "t1").unwrap();
            let got: Vec<_> = s
                .iter()
                .map(|s| (s.metric.as_str(), s.value, s.judge_cost_nanos))
                .collect();
            // The first row (with the cost) was replaced; values are clamped to 0..=1.
            assert_eq!(
                got,
                [("b", 0.5, None), ("a", 0.9, None), ("c", 1.0, None)],
                "{backend}"
            );
        }
    }

    #[test]
    fn failures_are_counted_with_the_last_error() {
        for (backend, store, _db) in test_stores() {
            let conn = store.conn().unwrap();
            record_failure(&conn, "q", "t1", 100, "upstream_rate_limit: slow down").unwrap();
            record_failure(&conn, "q", "t2", 200, "upstream_timeout: 30s").unwrap();
            let f = judging_figures(&conn, "q", 150).unwrap();
            assert_eq!(f.failures, 1, "{backend}");
            assert_eq!(
                f.last_error.as_deref(),
                Some("upstream_timeout: 30s"),
                "{backend}"
            );
            assert_eq!(f.last_error_at_ms, Some(200), "{backend}");
            assert_eq!(f.judged, 0, "{backend}");
            assert_eq!(
                judging_figures(&conn, "other", 0).unwrap(),
                JudgingFigures::default()
            );
        }
    }

    #[test]
    fn judge_spend_sums_the_tagged_judge_calls_and_scope_traffic_counts_live_calls() {
        use keel_core::money::Nanos;
        use keel_core::trace::{Origin, TraceRecord};
        for (backend, store, _db) in test_stores() {
            let conn = store.conn().unwrap();
            let call = |id: &str, at: i64, origin: Origin, tags: &[&str], cost: i64| {
                let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
                t.origin = origin;
                t.tags = tags.iter().map(|t| t.to_string()).collect();
                t.cost = Some(Nanos(cost));
                t.function = Some("support".into());
                t.model_requested = Some("fast".into());
                t.tenant = Some("acme".into());
                t
            };
            crate::trace_row::insert_batch(
                &conn,
                &[
                    call("j1", 100, Origin::Judge, &["judge", "online:q"], 5),
                    call("j2", 200, Origin::Judge, &["judge", "online:q"], 7),
                    call("j3", 200, Origin::Judge, &["judge", "online:other"], 11),
                    call("j4", 50, Origin::Judge, &["online:q"], 13),
                    call("l1", 200, Origin::Live, &["online:q"], 17),
                    call("l2", 300, Origin::Live, &[], 0),
                ],
            )
            .unwrap();
            assert_eq!(judge_spend_since(&conn, "q", 100).unwrap(), 12, "{backend}");
            assert_eq!(judge_spend_since(&conn, "q", 0).unwrap(), 25, "{backend}");
            assert_eq!(judge_spend_since(&conn, "none", 0).unwrap(), 0, "{backend}");
            let traffic = |f, m, t, since| scope_traffic(&conn, f, m, t, None, since).unwrap();
            assert_eq!(traffic(Some("support"), None, None, 0), 2, "{backend}");
            assert_eq!(
                traffic(None, Some("fast"), Some("acme"), 250),
                1,
                "{backend}"
            );
            assert_eq!(traffic(Some("other"), None, None, 0), 0, "{backend}");
            assert_eq!(traffic(None, None, Some("globex"), 0), 0, "{backend}");
        }
    }
}
