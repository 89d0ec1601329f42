//! Retention (`[retention]`, migration 0028): traces older than their origin's window
//! deleted with everything derived from them (the same deletes as an erasure,
//! `purge::delete_selected`), and captured text older than the capture window dropped
//! (`input` and `output` set to NULL; tokens, cost, scores and the rest kept), plus the
//! stored Responses API conversations older than the live capture window. Small
//! transactions of `batch` rows, so the trace writer is never held up for long; the
//! rollups of deleted days are recomputed at the end; a run that removed anything is
//! audited (`retention.run`, the counts).

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use crate::audit::{record_audit, NewAuditEvent};
use crate::error::StoreError;
use crate::purge::{delete_selected, PurgeCounts};
use crate::rollup::DAY_MS;

/// The audit action of a retention run that removed something.
pub const ACTION: &str = "retention.run";

/// One origin's cutoffs, in ms since the epoch (`None`: keep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs<'a> {
    pub origin: &'a str,
    pub traces_before_ms: Option<i64>,
    pub capture_before_ms: Option<i64>,
}

/// The cutoff of a window ending now: `now - window`, back to that day's UTC midnight,
/// so a day is removed whole, once.
pub fn cutoff(now_ms: i64, window_ms: i64) -> i64 {
    let at = now_ms.saturating_sub(window_ms);
    at - at.rem_euclid(DAY_MS)
}

/// What a run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionCounts {
    /// Whole traces deleted, with what derived from them.
    pub deleted: PurgeCounts,
    /// Traces whose captured text was dropped.
    pub captures_dropped: u64,
    /// Stored responses (conversations) past the live capture window.
    pub responses_dropped: u64,
}

impl RetentionCounts {
    pub fn is_empty(&self) -> bool {
        self.deleted == PurgeCounts::default()
            && self.captures_dropped == 0
            && self.responses_dropped == 0
    }
}

/// Run once over every origin, `batch` rows per transaction.
pub fn run_retention(
    conn: &mut Connection,
    rules: &[Cutoffs<'_>],
    batch: usize,
    now_ms: i64,
) -> Result<RetentionCounts, StoreError> {
    let mut counts = RetentionCounts::default();
    let batch = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
    for rule in rules {
        if let Some(before) = rule.traces_before_ms {
            delete_traces(conn, rule.origin, before, batch, &mut counts.deleted)?;
        }
        if let Some(before) = rule.capture_before_ms {
            counts.captures_dropped += drop_captures(conn, rule.origin, before, batch)?;
            if rule.origin == "live" {
                counts.responses_dropped += drop_responses(conn, before, batch)?;
            }
        }
    }
    if !counts.is_empty() {
        record_audit(
            &*conn,
            now_ms,
            &NewAuditEvent {
                actor: "retention",
                action: ACTION,
                target: "traces",
                from_value: None,
                to_value: None,
                reason: Some("[retention] windows"),
                details: serde_json::to_value(&counts).ok(),
            },
        )?;
    }
    crate::rollup::rebuild_dirty(conn)?;
    Ok(counts)
}

/// Stored conversations created before `before`, `batch` at a time.
fn drop_responses(conn: &Connection, before: i64, batch: i64) -> Result<u64, StoreError> {
    let mut dropped = 0u64;
    loop {
        let n = conn.execute(
            "DELETE FROM responses WHERE rowid IN
               (SELECT rowid FROM responses WHERE created_ms < ?1 LIMIT ?2)",
            params![before, batch],
        )? as u64;
        dropped += n;
        if (n as i64) < batch {
            return Ok(dropped);
        }
    }
}

fn delete_traces(
    conn: &mut Connection,
    origin: &str,
    before: i64,
    batch: i64,
    counts: &mut PurgeCounts,
) -> Result<(), StoreError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch("DROP TABLE IF EXISTS temp.purge_ids")?;
        tx.execute(
            "CREATE TEMP TABLE purge_ids AS SELECT rowid AS rid, id, otel_trace_id FROM traces
             WHERE started_at_ms < ?1 AND origin = ?2 ORDER BY started_at_ms LIMIT ?3",
            params![before, origin, batch],
        )?;
        let found: i64 = tx.query_row("SELECT count(*) FROM temp.purge_ids", [], |r| r.get(0))?;
        delete_selected(&tx, counts)?;
        tx.execute_batch("DROP TABLE temp.purge_ids")?;
        tx.commit()?;
        if found < batch {
            return Ok(());
        }
    }
}

/// Drop the text of `origin`'s traces started before `before`. Cutoffs move once a day
/// (they fall on UTC midnights), so one pass per cutoff does it: `retention_marks` keeps
/// the last cutoff passed, and later runs that day read nothing. A pass reads every older
/// trace once, in `started_at_ms` order, so one written late with an old time is caught
/// the next day.
fn drop_captures(
    conn: &mut Connection,
    origin: &str,
    before: i64,
    batch: i64,
) -> Result<u64, StoreError> {
    let done: Option<i64> = conn
        .query_row(
            "SELECT capture_done_before_ms FROM retention_marks WHERE origin = ?1",
            [origin],
            |r| r.get(0),
        )
        .optional()?;
    if done.is_some_and(|d| d >= before) {
        return Ok(0);
    }
    // Keyset over (started_at_ms, rowid): each batch reads on from where the last one
    // stopped, never again through rows already without text.
    let mut dropped = 0u64;
    let mut at = (i64::MIN, i64::MIN);
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rows: Vec<(i64, i64)> = tx
            .prepare_cached(
                "SELECT started_at_ms, rowid FROM traces
                 WHERE (started_at_ms, rowid) > (?1, ?2) AND started_at_ms < ?3 AND origin = ?4
                 ORDER BY started_at_ms, rowid LIMIT ?5",
            )?
            .query_map(params![at.0, at.1, before, origin, batch], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        let mut clear = tx.prepare_cached(
            "UPDATE traces SET input = NULL, output = NULL
             WHERE rowid = ?1 AND (input IS NOT NULL OR output IS NOT NULL)",
        )?;
        for (_, rowid) in &rows {
            dropped += clear.execute([rowid])? as u64;
        }
        drop(clear);
        tx.commit()?;
        match rows.last() {
            Some(&last) if (rows.len() as i64) == batch => at = last,
            _ => break,
        }
    }
    conn.execute(
        "INSERT INTO retention_marks (origin, capture_done_before_ms) VALUES (?1, ?2)
         ON CONFLICT (origin) DO UPDATE SET capture_done_before_ms = excluded.capture_done_before_ms",
        params![origin, before],
    )?;
    Ok(dropped)
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
