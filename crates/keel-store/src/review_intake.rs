//! The review intake's reads: what is new since a queue last looked, in the calls it
//! covers (migration 0022's `review_intake` keeps how far each queue has read).
//!
//! Three sources, each read in bounded batches: new live traces (for random samples and
//! guardrail flags), new online-eval scores (failed evals, low scores) and recent
//! negative feedback. Only live, successful calls are offered; which of them enter a
//! queue, and the daily cap, are decided by `keel_review::intake`.

use crate::error::StoreError;
use crate::sql::{Db, Dialect, Value};
use crate::values;

/// The calls a queue covers: every `Some` narrows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Coverage<'a> {
    pub function: Option<&'a str>,
    /// The configured model that served the call.
    pub model: Option<&'a str>,
    pub feature: Option<&'a str>,
    pub tenant: Option<&'a str>,
}

impl Coverage<'_> {
    /// ` AND …` conditions on the traces table aliased `t`, their values appended to
    /// `values` (numbered after what is there).
    fn sql(&self, values: &mut Vec<Value>) -> String {
        let mut out = String::from(" AND t.origin = 'live' AND t.status = 'ok'");
        for (col, v) in [
            ("t.function", self.function),
            ("t.model_requested", self.model),
            ("t.feature", self.feature),
            ("t.tenant", self.tenant),
        ] {
            if let Some(v) = v {
                values.push(Value::from(v));
                out.push_str(&format!(" AND {col} = ?{}", values.len()));
            }
        }
        out
    }
}

/// How far a queue has read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub traces_rowid: i64,
    pub scores_rowid: i64,
    pub feedback_at_ms: i64,
}

/// Feedback is re-read this far back (by arrival time), so a row committed just after a
/// pass read past its time is still seen.
pub const FEEDBACK_OVERLAP_MS: i64 = 5_000;

/// Where `queue` stands; a queue never seen starts at `start_ms` (what arrived since).
pub fn watermarks<'c>(
    db: impl Into<Db<'c>>,
    queue: &str,
    start_ms: i64,
) -> Result<Watermarks, StoreError> {
    let db = db.into();
    let stored = db.query_opt(
        "SELECT traces_rowid, scores_rowid, feedback_at_ms FROM review_intake WHERE queue = ?1",
        &values![queue],
        |r| {
            Ok(Watermarks {
                traces_rowid: r.get(0)?,
                scores_rowid: r.get(1)?,
                feedback_at_ms: r.get(2)?,
            })
        },
    )?;
    if let Some(w) = stored {
        return Ok(w);
    }
    // The last row before `start_ms`, found through the time indexes.
    let before = |table: &str, col: &str| -> Result<i64, StoreError> {
        db.query_row(
            &format!(
                "SELECT COALESCE((SELECT MIN(rowid) FROM {table} WHERE {col} >= ?1),
                                 (SELECT MAX(rowid) + 1 FROM {table}), 1) - 1"
            ),
            &values![start_ms],
            |r| r.get(0),
        )
    };
    Ok(Watermarks {
        traces_rowid: before("traces", "started_at_ms")?,
        scores_rowid: before("scores", "created_at_ms")?,
        feedback_at_ms: start_ms,
    })
}

pub fn set_watermarks<'c>(
    db: impl Into<Db<'c>>,
    queue: &str,
    w: &Watermarks,
) -> Result<(), StoreError> {
    db.into().execute(
        "INSERT INTO review_intake (queue, traces_rowid, scores_rowid, feedback_at_ms)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (queue) DO UPDATE SET traces_rowid = excluded.traces_rowid,
             scores_rowid = excluded.scores_rowid, feedback_at_ms = excluded.feedback_at_ms",
        &values![queue, w.traces_rowid, w.scores_rowid, w.feedback_at_ms],
    )?;
    Ok(())
}

/// A new covered trace: its id, and whether a guardrail flagged it (a check whose
/// action was `log`: found, let through).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTrace {
    pub id: String,
    pub flagged: bool,
}

/// Whether trace `t`'s guardrail results (a JSON array in text) hold a check whose
/// action was `log`: each backend walks JSON its own way.
fn flagged_sql(db: Db<'_>) -> &'static str {
    match db.dialect() {
        Dialect::Sqlite => {
            "t.guardrails_json IS NOT NULL AND EXISTS (
               SELECT 1 FROM json_each(t.guardrails_json) g
                WHERE json_extract(g.value, '$.action') = 'log')"
        }
        Dialect::Postgres => {
            "t.guardrails_json IS NOT NULL AND EXISTS (
               SELECT 1 FROM json_array_elements(CAST(t.guardrails_json AS json)) AS g(value)
                WHERE g.value ->> 'action' = 'log')"
        }
    }
}

/// Covered traces written after `after_rowid`, oldest first, at most `limit`, and the
/// rowid to read after next time.
pub fn new_traces<'c>(
    db: impl Into<Db<'c>>,
    cov: &Coverage<'_>,
    after_rowid: i64,
    limit: usize,
) -> Result<(Vec<NewTrace>, i64), StoreError> {
    let db = db.into();
    let hi = max_traces_rowid(db)?;
    let mut values = values![after_rowid, hi];
    let cond = cov.sql(&mut values);
    values.push(Value::from(limit));
    let sql = format!(
        "SELECT t.rowid, t.id, {}
           FROM traces t WHERE t.rowid > ?1 AND t.rowid <= ?2{cond}
          ORDER BY t.rowid LIMIT ?{}",
        flagged_sql(db),
        values.len()
    );
    let rows: Vec<(i64, NewTrace)> = db.query(&sql, &values, |r| {
        Ok((
            r.get(0)?,
            NewTrace {
                id: r.get(1)?,
                flagged: r.get(2)?,
            },
        ))
    })?;
    let next = if rows.len() >= limit {
        rows.last().map_or(hi, |(rowid, _)| *rowid)
    } else {
        hi.max(after_rowid)
    };
    Ok((rows.into_iter().map(|(_, t)| t).collect(), next))
}

/// A new online score on a covered call.
#[derive(Debug, Clone, PartialEq)]
pub struct NewScore {
    pub trace_id: String,
    pub eval: String,
    pub metric: String,
    pub value: f64,
    pub passed: bool,
}

/// Online (and backfill) scores on covered calls written after `after_rowid`, oldest
/// first, at most `limit`, and the rowid to read after next time.
///
/// A judge gets a call as it goes to the trace writer, so a fast judge's score can be
/// committed before its trace. A score whose trace is not there yet stops the read
/// just before it (the next pass reads it again) while the score is younger than
/// `pending_since_ms`; an older one whose trace never came (dropped, deleted) is passed
/// over.
///
/// The cursor is `scores.rowid`: SQLite's implicit one; on PostgreSQL an identity
/// column the schema must have (see `scores::test_stores`).
pub fn new_scores<'c>(
    db: impl Into<Db<'c>>,
    cov: &Coverage<'_>,
    after_rowid: i64,
    limit: usize,
    pending_since_ms: i64,
) -> Result<(Vec<NewScore>, i64), StoreError> {
    let db = db.into();
    let hi = max_scores_rowid(db)?;
    let mut values = values![after_rowid, hi];
    let cond = cov.sql(&mut values);
    values.push(Value::from(limit));
    let sql = format!(
        "SELECT s.rowid, s.trace_id, s.eval, s.metric, s.value, s.passed, s.created_at_ms,
                t.id IS NOT NULL
           FROM scores s LEFT JOIN traces t ON t.id = s.trace_id
          WHERE s.rowid > ?1 AND s.rowid <= ?2 AND s.source IN ('online', 'backfill')
            AND (t.id IS NULL OR (1 = 1{cond}))
          ORDER BY s.rowid LIMIT ?{}",
        values.len()
    );
    let rows: Vec<(i64, NewScore, i64, bool)> = db.query(&sql, &values, |r| {
        Ok((
            r.get(0)?,
            NewScore {
                trace_id: r.get(1)?,
                eval: r.get(2)?,
                metric: r.get(3)?,
                value: r.get(4)?,
                passed: r.get(5)?,
            },
            r.get(6)?,
            r.get(7)?,
        ))
    })?;
    let full = rows.len() >= limit;
    let mut next = if full {
        rows.last().map_or(hi, |(rowid, ..)| *rowid)
    } else {
        hi.max(after_rowid)
    };
    let mut out = Vec::with_capacity(rows.len());
    for (rowid, score, created_at_ms, traced) in rows {
        if traced {
            out.push(score);
        } else if created_at_ms >= pending_since_ms {
            next = rowid - 1;
            break;
        }
    }
    Ok((out, next))
}

/// Covered calls with negative feedback (a number <= 0, or `false`) that arrived at or
/// after `since_ms` and are not in `queue` yet, oldest first, at most `limit`, and the newest arrival read (or
/// `since_ms`).
pub fn new_negative_feedback<'c>(
    db: impl Into<Db<'c>>,
    queue: &str,
    cov: &Coverage<'_>,
    since_ms: i64,
    limit: usize,
) -> Result<(Vec<String>, i64), StoreError> {
    let mut values = values![since_ms, queue];
    let cond = cov.sql(&mut values);
    values.push(Value::from(limit));
    // Calls already in the queue are left out: the overlap re-read never fills a batch
    // with them, so a burst larger than a batch is read whole over a few passes.
    let sql = format!(
        "SELECT f.trace_id, f.at_ms FROM feedback f JOIN traces t ON t.id = f.trace_id
          WHERE f.at_ms >= ?1 AND f.value_kind IN ('number', 'boolean') AND f.value_num <= 0
            AND NOT EXISTS (SELECT 1 FROM review_items i
                             WHERE i.queue = ?2 AND i.trace_id = f.trace_id){cond}
          ORDER BY f.at_ms LIMIT ?{}",
        values.len()
    );
    let rows: Vec<(String, i64)> = db
        .into()
        .query(&sql, &values, |r| Ok((r.get(0)?, r.get(1)?)))?;
    let newest = rows
        .iter()
        .map(|(_, at)| *at)
        .max()
        .unwrap_or(since_ms)
        .max(since_ms);
    Ok((rows.into_iter().map(|(id, _)| id).collect(), newest))
}

/// Items that entered `queue` on their own (not added by hand) since `since_ms`: what
/// its daily cap counts.
pub fn entered_since<'c>(
    db: impl Into<Db<'c>>,
    queue: &str,
    since_ms: i64,
) -> Result<u64, StoreError> {
    let n: i64 = db.into().query_row(
        "SELECT COUNT(*) FROM review_items WHERE queue = ?1 AND entered_at_ms >= ?2 AND reason <> 'added'",
        &values![queue, since_ms],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The newest trace's rowid (a queue without trace rules skips to it).
pub fn max_traces_rowid<'c>(db: impl Into<Db<'c>>) -> Result<i64, StoreError> {
    db.into()
        .query_row("SELECT COALESCE(MAX(rowid), 0) FROM traces", &[], |r| {
            r.get(0)
        })
}

/// The newest score's rowid (a queue without score rules skips to it).
pub fn max_scores_rowid<'c>(db: impl Into<Db<'c>>) -> Result<i64, StoreError> {
    db.into()
        .query_row("SELECT COALESCE(MAX(rowid), 0) FROM scores", &[], |r| {
            r.get(0)
        })
}

#[cfg(test)]
#[path = "review_intake_tests.rs"]
mod tests;
