//! Retention (`[retention]`, migration 0028): traces older than their origin's window
//! deleted with everything derived from them (the same deletes as an erasure,
//! `purge::delete_selected`), and captured text older than the capture window dropped
//! (`input` and `output` set to NULL; tokens, cost, scores and the rest kept), plus the
//! stored Responses API conversations older than the live capture window. Small
//! transactions of `batch` rows, so the trace writer is never held up for long; the
//! rollups of deleted days are recomputed at the end; a run that removed anything is
//! audited (`retention.run`, the counts).

use serde::Serialize;

use crate::audit::{record_audit, NewAuditEvent};
use crate::error::StoreError;
use crate::purge::{create_ids, delete_selected, drop_ids, PurgeCounts};
use crate::rollup::DAY_MS;
use crate::sql::Db;
use crate::values;

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
pub fn run_retention<'c>(
    db: impl Into<Db<'c>>,
    rules: &[Cutoffs<'_>],
    batch: usize,
    now_ms: i64,
) -> Result<RetentionCounts, StoreError> {
    let db = db.into();
    let mut counts = RetentionCounts::default();
    let batch = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
    for rule in rules {
        if let Some(before) = rule.traces_before_ms {
            delete_traces(db, rule.origin, before, batch, &mut counts.deleted)?;
        }
        if let Some(before) = rule.capture_before_ms {
            counts.captures_dropped += drop_captures(db, rule.origin, before, batch)?;
            if rule.origin == "live" {
                counts.responses_dropped += drop_responses(db, before, batch)?;
            }
        }
    }
    if !counts.is_empty() {
        record_audit(
            db,
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
    crate::rollup::repair(db)?;
    Ok(counts)
}

/// Stored conversations created before `before`, `batch` at a time (by primary key:
/// `responses` has no `rowid` on PostgreSQL, and neither backend deletes with a LIMIT).
fn drop_responses(db: Db<'_>, before: i64, batch: i64) -> Result<u64, StoreError> {
    let mut dropped = 0u64;
    loop {
        let n = db.execute(
            "DELETE FROM responses WHERE id IN
               (SELECT id FROM responses WHERE created_ms < ?1 LIMIT ?2)",
            &values![before, batch],
        )?;
        dropped += n;
        if i64::try_from(n).unwrap_or(i64::MAX) < batch {
            return Ok(dropped);
        }
    }
}

fn delete_traces(
    db: Db<'_>,
    origin: &str,
    before: i64,
    batch: i64,
    counts: &mut PurgeCounts,
) -> Result<(), StoreError> {
    loop {
        let found = db.exclusive_for("retention", |tx| {
            create_ids(tx)?;
            let found = tx.execute(
                "INSERT INTO purge_ids SELECT rowid, id, otel_trace_id FROM traces
                 WHERE started_at_ms < ?1 AND origin = ?2 ORDER BY started_at_ms LIMIT ?3",
                &values![before, origin, batch],
            )?;
            delete_selected(tx, counts)?;
            drop_ids(tx)?;
            Ok(found)
        })?;
        if i64::try_from(found).unwrap_or(i64::MAX) < batch {
            return Ok(());
        }
    }
}

/// Drop the text of `origin`'s traces started before `before`. Cutoffs move once a day
/// (they fall on UTC midnights), so one pass per cutoff does it: `retention_marks` keeps
/// the last cutoff passed, and later runs that day read nothing. A pass reads every older
/// trace once, in `started_at_ms` order, so one written late with an old time is caught
/// the next day.
fn drop_captures(db: Db<'_>, origin: &str, before: i64, batch: i64) -> Result<u64, StoreError> {
    let done: Option<i64> = db.query_opt(
        "SELECT capture_done_before_ms FROM retention_marks WHERE origin = ?1",
        &values![origin],
        |r| r.get(0),
    )?;
    if done.is_some_and(|d| d >= before) {
        return Ok(0);
    }
    // Keyset over (started_at_ms, rowid): each batch reads on from where the last one
    // stopped, never again through rows already without text.
    let mut dropped = 0u64;
    let mut at = (i64::MIN, i64::MIN);
    loop {
        let rows: Vec<(i64, i64)> = db.exclusive_for("retention", |tx| {
            let rows: Vec<(i64, i64)> = tx.query(
                "SELECT started_at_ms, rowid FROM traces
                 WHERE (started_at_ms, rowid) > (?1, ?2) AND started_at_ms < ?3 AND origin = ?4
                 ORDER BY started_at_ms, rowid LIMIT ?5",
                &values![at.0, at.1, before, origin, batch],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let sets: Vec<_> = rows.iter().map(|(_, rowid)| values![*rowid]).collect();
            dropped += tx
                .execute_many(
                    "UPDATE traces SET input = NULL, output = NULL
                     WHERE rowid = ?1 AND (input IS NOT NULL OR output IS NOT NULL)",
                    &sets,
                )?
                .iter()
                .sum::<u64>();
            Ok(rows)
        })?;
        match rows.last() {
            Some(&last) if i64::try_from(rows.len()).unwrap_or(i64::MAX) == batch => at = last,
            _ => break,
        }
    }
    db.execute(
        "INSERT INTO retention_marks (origin, capture_done_before_ms) VALUES (?1, ?2)
         ON CONFLICT (origin) DO UPDATE SET capture_done_before_ms = excluded.capture_done_before_ms",
        &values![origin, before],
    )?;
    Ok(dropped)
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
