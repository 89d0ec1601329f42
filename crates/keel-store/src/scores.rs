//! Scores on traces: what online evals' judges found (and, later, reviewers), and the
//! figures `keel online status` and the dashboard read about the judging itself.
//!
//! A judged call has one row per assertion (its metric, or its type when unnamed); the
//! call passed when every row passed. Judging the same call again for the same eval and
//! source replaces its rows. A call the judge could not grade is not scored: it is kept
//! in `online_eval_failures`, so a judge outage never reads as bad answers.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::StoreError;

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
pub fn replace_scores(
    conn: &mut Connection,
    trace_id: &str,
    eval: &str,
    source: &str,
    rows: &[ScoreRow],
    judge_cost_nanos: Option<i64>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    tx.execute(
        "DELETE FROM scores WHERE trace_id = ?1 AND eval = ?2 AND source = ?3",
        params![trace_id, eval, source],
    )?;
    {
        let mut stmt = tx.prepare(
            "INSERT OR REPLACE INTO scores
               (trace_id, eval, metric, source, value, passed, reason, judge_cost_nanos, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for (i, r) in rows.iter().enumerate() {
            let cost = if i == 0 { judge_cost_nanos } else { None };
            stmt.execute(params![
                trace_id,
                eval,
                r.metric,
                source,
                r.value.clamp(0.0, 1.0),
                r.passed,
                r.reason,
                cost,
                now_ms
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Keep that `eval` could not judge `trace_id`, and why.
pub fn record_failure(
    conn: &Connection,
    eval: &str,
    trace_id: &str,
    at_ms: i64,
    error: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO online_eval_failures (eval, trace_id, at_ms, error) VALUES (?1, ?2, ?3, ?4)",
        params![eval, trace_id, at_ms, error],
    )?;
    Ok(())
}

/// Every score on `trace_id`, by eval then metric.
pub fn scores_for_trace(conn: &Connection, trace_id: &str) -> Result<Vec<StoredScore>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT eval, metric, source, value, passed, reason, judge_cost_nanos, created_at_ms
           FROM scores WHERE trace_id = ?1 ORDER BY eval, source, rowid",
    )?;
    let rows = stmt.query_map(params![trace_id], |r| {
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
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
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
pub fn judging_figures(
    conn: &Connection,
    eval: &str,
    since_ms: i64,
) -> Result<JudgingFigures, StoreError> {
    let (judged, passed): (i64, i64) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(ok), 0) FROM (
           SELECT MIN(passed) AS ok FROM scores
            WHERE eval = ?1 AND created_at_ms >= ?2 AND source IN ('online', 'backfill')
            GROUP BY trace_id)",
        params![eval, since_ms],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let failures: i64 = conn.query_row(
        "SELECT COUNT(*) FROM online_eval_failures WHERE eval = ?1 AND at_ms >= ?2",
        params![eval, since_ms],
        |r| r.get(0),
    )?;
    let last: Option<(String, i64)> = conn
        .query_row(
            "SELECT error, at_ms FROM online_eval_failures WHERE eval = ?1
              ORDER BY at_ms DESC LIMIT 1",
            params![eval],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
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
pub fn judge_spend_since(conn: &Connection, eval: &str, since_ms: i64) -> Result<i64, StoreError> {
    let tag = judge_tag(eval);
    let spent: i64 = conn.query_row(
        "SELECT COALESCE(SUM(cost_nanos), 0) FROM traces
          WHERE origin = 'judge' AND started_at_ms >= ?1
            AND EXISTS (SELECT 1 FROM json_each(traces.tags) WHERE value = ?2)",
        params![since_ms, tag],
        |r| r.get(0),
    )?;
    Ok(spent)
}

/// Live calls in an eval's scope since `since_ms`: `function` or `model` (the one the eval
/// covers), narrowed by tenant or feature.
pub fn scope_traffic(
    conn: &Connection,
    function: Option<&str>,
    model: Option<&str>,
    tenant: Option<&str>,
    feature: Option<&str>,
    since_ms: i64,
) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM traces
          WHERE origin = 'live' AND started_at_ms >= ?1
            AND (?2 IS NULL OR function = ?2) AND (?3 IS NULL OR model_requested = ?3)
            AND (?4 IS NULL OR tenant = ?4) AND (?5 IS NULL OR feature = ?5)",
        params![since_ms, function, model, tenant, feature],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

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
        let store = Store::open(":memory:").unwrap();
        let mut conn = store.writer_conn().unwrap();
        replace_scores(
            &mut conn,
            "t1",
            "q",
            "online",
            &[row("helpful", 0.9, true), row("word-count", 0.0, false)],
            Some(42),
            1_000,
        )
        .unwrap();
        replace_scores(
            &mut conn,
            "t2",
            "q",
            "online",
            &[row("helpful", 0.8, true)],
            None,
            1_000,
        )
        .unwrap();
        let f = judging_figures(&conn, "q", 0).unwrap();
        assert_eq!((f.judged, f.passed), (2, 1));
        // Judged again: the new rows replace the old ones.
        replace_scores(
            &mut conn,
            "t1",
            "q",
            "online",
            &[row("helpful", 1.0, true)],
            None,
            2_000,
        )
        .unwrap();
        let s = scores_for_trace(&conn, "t1").unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].value, s[0].passed), (1.0, true));
        let f = judging_figures(&conn, "q", 0).unwrap();
        assert_eq!((f.judged, f.passed), (2, 2));
        assert_eq!(judging_figures(&conn, "q", 1_500).unwrap().judged, 1);
    }

    #[test]
    fn failures_are_counted_with_the_last_error() {
        let store = Store::open(":memory:").unwrap();
        let conn = store.writer_conn().unwrap();
        record_failure(&conn, "q", "t1", 100, "upstream_rate_limit: slow down").unwrap();
        record_failure(&conn, "q", "t2", 200, "upstream_timeout: 30s").unwrap();
        let f = judging_figures(&conn, "q", 150).unwrap();
        assert_eq!(f.failures, 1);
        assert_eq!(f.last_error.as_deref(), Some("upstream_timeout: 30s"));
        assert_eq!(f.judged, 0);
    }
}
