//! Erasure: every stored trace of one subject — a user, a tenant or a session — removed
//! with everything derived from it, for a data-protection request (`keel traces purge`).
//!
//! Batches of [`BATCH`] traces (with the shadow and judge calls made about them) go, each
//! in one transaction with their scores, feedback, online-eval failures,
//! review items (with their claims, labels and skips), dataset drafts, replay cases,
//! stored Responses API responses, and the apps' OpenTelemetry spans of the same trace
//! ids; then audits the purge (`traces.purge`, target `user=U`, the counts as details —
//! never the data). Rollups stay exact: the delete triggers mark the days, which are
//! recomputed from what remains before this returns. A dry run counts the same rows and
//! changes nothing. Cases already pulled into a suite's dataset file live in the
//! repository, not here: they are listed so they can be removed there.

use rusqlite::{params, Connection, TransactionBehavior};
use serde::Serialize;

use crate::audit::{record_audit, NewAuditEvent};
use crate::error::StoreError;

/// The audit action of a purge.
pub const ACTION: &str = "traces.purge";

/// Whose traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    User(String),
    Tenant(String),
    Session(String),
}

impl Subject {
    fn column(&self) -> &'static str {
        match self {
            Subject::User(_) => "user",
            Subject::Tenant(_) => "tenant",
            Subject::Session(_) => "session",
        }
    }

    fn value(&self) -> &str {
        match self {
            Subject::User(v) | Subject::Tenant(v) | Subject::Session(v) => v,
        }
    }

    /// `user=U`, as the audit log names it.
    pub fn target(&self) -> String {
        format!("{}={}", self.column(), self.value())
    }
}

/// What a purge removed (or, dry, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeCounts {
    pub traces: u64,
    pub scores: u64,
    pub feedback: u64,
    pub online_eval_failures: u64,
    pub review_items: u64,
    pub review_labels: u64,
    pub dataset_drafts: u64,
    pub replay_cases: u64,
    pub responses: u64,
    pub app_spans: u64,
    /// Dataset cases pulled into suite files from these traces (`suite: trace-id`): not in
    /// the store; remove them from the repository.
    pub pulled_cases: Vec<String>,
}

/// Where a step's count goes (`None`: not counted on its own).
type Field = Option<fn(&mut PurgeCounts) -> &mut u64>;

/// What goes with the traces in `temp.purge_ids`, in dependency order: (count field,
/// table, which rows).
const STEPS: [(Field, &str, &str); 11] = [
    (Some(|c| &mut c.scores), "scores", "trace_id IN (SELECT id FROM temp.purge_ids)"),
    (Some(|c| &mut c.feedback), "feedback", "trace_id IN (SELECT id FROM temp.purge_ids)"),
    (Some(|c| &mut c.online_eval_failures), "online_eval_failures", "trace_id IN (SELECT id FROM temp.purge_ids)"),
    (None, "review_claims", "item_id IN (SELECT id FROM review_items WHERE trace_id IN (SELECT id FROM temp.purge_ids))"),
    (None, "review_skips", "item_id IN (SELECT id FROM review_items WHERE trace_id IN (SELECT id FROM temp.purge_ids))"),
    (Some(|c| &mut c.review_labels), "review_labels", "trace_id IN (SELECT id FROM temp.purge_ids)"),
    (Some(|c| &mut c.review_items), "review_items", "trace_id IN (SELECT id FROM temp.purge_ids)"),
    (Some(|c| &mut c.dataset_drafts), "dataset_drafts", "trace_id IN (SELECT id FROM temp.purge_ids)"),
    (Some(|c| &mut c.replay_cases), "replay_cases", "trace_id IN (SELECT id FROM temp.purge_ids)"),
    (Some(|c| &mut c.app_spans), "app_spans", "trace_id IN (SELECT otel_trace_id FROM temp.purge_ids WHERE otel_trace_id IS NOT NULL)"),
    (Some(|c| &mut c.responses), "responses", "trace_id IN (SELECT id FROM temp.purge_ids)"),
];

/// Traces per transaction of a purge: the trace writer never waits long for the lock.
pub const BATCH: i64 = 1000;

/// Delete the traces listed in `temp.purge_ids` (`rid`, `id`, `otel_trace_id`) and what
/// derives from them (stored responses of those calls too), adding to `counts`. Shared
/// with retention.
pub(crate) fn delete_selected(tx: &Connection, counts: &mut PurgeCounts) -> Result<(), StoreError> {
    for (field, table, rows) in STEPS {
        let n = tx.execute(&format!("DELETE FROM {table} WHERE {rows}"), [])? as u64;
        if let Some(field) = field {
            *field(counts) += n;
        }
    }
    counts.traces += tx.execute(
        "DELETE FROM traces WHERE rowid IN (SELECT rid FROM temp.purge_ids)",
        [],
    )? as u64;
    Ok(())
}

/// Fill `temp.purge_ids` with `subject`'s traces (at most `limit`) and the calls made
/// about them — shadow mirrors and judge calls, which carry their text but no user,
/// tenant or session of their own (`parent_id` names the call); the subject's own count.
fn select(tx: &Connection, subject: &Subject, limit: i64) -> Result<i64, StoreError> {
    tx.execute_batch("DROP TABLE IF EXISTS temp.purge_ids")?;
    tx.execute(
        &format!(
            "CREATE TEMP TABLE purge_ids AS SELECT rowid AS rid, id, otel_trace_id FROM traces
             WHERE {} = ?1 LIMIT ?2",
            subject.column()
        ),
        params![subject.value(), limit],
    )?;
    let own: i64 = tx.query_row("SELECT count(*) FROM temp.purge_ids", [], |r| r.get(0))?;
    tx.execute(
        "INSERT INTO temp.purge_ids SELECT rowid, id, otel_trace_id FROM traces
         WHERE parent_id IN (SELECT id FROM temp.purge_ids)
           AND rowid NOT IN (SELECT rid FROM temp.purge_ids)",
        [],
    )?;
    Ok(own)
}

/// Dataset cases pulled into suite files from the traces in `temp.purge_ids`.
fn pulled_cases(tx: &Connection) -> Result<Vec<String>, StoreError> {
    let mut q = tx.prepare(
        "SELECT suite || ': trace-' || trace_id FROM dataset_drafts
         WHERE pulled_at_ms IS NOT NULL AND trace_id IN (SELECT id FROM temp.purge_ids)
         ORDER BY suite, trace_id",
    )?;
    let cases = q.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(cases)
}

/// Remove (or with `dry_run` count) every trace of `subject` and what derives from it.
///
/// [`BATCH`] traces per transaction (with what derives from them), the audit entry last:
/// a purge that is interrupted removed part of the data and is run again to finish. A dry
/// run reads only (no write lock).
pub fn purge(
    conn: &mut Connection,
    subject: &Subject,
    dry_run: bool,
    (actor, reason, now_ms): (&str, &str, i64),
) -> Result<PurgeCounts, StoreError> {
    if dry_run {
        return count(conn, subject);
    }
    let mut counts = PurgeCounts::default();
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let own = select(&tx, subject, BATCH)?;
        counts.pulled_cases.extend(pulled_cases(&tx)?);
        delete_selected(&tx, &mut counts)?;
        tx.execute_batch("DROP TABLE temp.purge_ids")?;
        tx.commit()?;
        if own < BATCH {
            break;
        }
    }
    // For a tenant, also every response it stored (of calls already gone, say).
    if let Subject::Tenant(t) = subject {
        counts.responses += conn.execute("DELETE FROM responses WHERE tenant = ?1", [t])? as u64;
    }
    counts.pulled_cases.sort();
    record_audit(
        &*conn,
        now_ms,
        &NewAuditEvent {
            actor,
            action: ACTION,
            target: &subject.target(),
            from_value: None,
            to_value: None,
            reason: Some(reason),
            details: serde_json::to_value(&counts).ok(),
        },
    )?;
    crate::rollup::rebuild_dirty(conn)?;
    Ok(counts)
}

/// What a purge of `subject` would remove, read in one read transaction.
fn count(conn: &mut Connection, subject: &Subject) -> Result<PurgeCounts, StoreError> {
    let tx = conn.transaction()?;
    select(&tx, subject, -1)?;
    let mut counts = PurgeCounts {
        pulled_cases: pulled_cases(&tx)?,
        ..Default::default()
    };
    let n = |sql: &str| -> Result<u64, StoreError> {
        let v: i64 = tx.query_row(sql, [], |r| r.get(0))?;
        Ok(u64::try_from(v).unwrap_or(0))
    };
    for (field, table, rows) in STEPS {
        if let Some(field) = field {
            *field(&mut counts) = n(&format!("SELECT count(*) FROM {table} WHERE {rows}"))?;
        }
    }
    counts.traces = n("SELECT count(*) FROM temp.purge_ids")?;
    if let Subject::Tenant(t) = subject {
        let v: i64 = tx.query_row(
            "SELECT count(*) FROM responses WHERE tenant = ?1
               AND trace_id NOT IN (SELECT id FROM temp.purge_ids)",
            [t],
            |r| r.get(0),
        )?;
        counts.responses += u64::try_from(v).unwrap_or(0);
    }
    tx.execute_batch("DROP TABLE temp.purge_ids")?;
    tx.rollback()?;
    Ok(counts)
}

#[cfg(test)]
#[path = "purge_tests.rs"]
mod tests;
