//! Erasure: every stored trace of one subject — a user, a tenant or a session — removed
//! with everything derived from it, for a data-protection request (`keel traces purge`).
//!
//! One transaction removes the traces (with the shadow and judge calls made about them),
//! their scores, feedback, online-eval failures,
//! review items (with their claims, labels and skips), dataset drafts, replay cases,
//! stored Responses API responses, and the apps' OpenTelemetry spans of the same trace
//! ids; then audits the purge (`traces.purge`, target `user=U`, the counts as details —
//! never the data). Rollups stay exact: the delete triggers mark the days, which are
//! recomputed from what remains before this returns. A dry run counts the same rows and
//! changes nothing. Cases already pulled into a suite's dataset file live in the
//! repository, not here: they are listed so they can be removed there.

use rusqlite::{Connection, TransactionBehavior};
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

/// The deletes, in dependency order, over `temp.purge_ids`.
const STEPS: [(Field, &str); 11] = [
    (Some(|c| &mut c.scores), "DELETE FROM scores WHERE trace_id IN (SELECT id FROM temp.purge_ids)"),
    (Some(|c| &mut c.feedback), "DELETE FROM feedback WHERE trace_id IN (SELECT id FROM temp.purge_ids)"),
    (Some(|c| &mut c.online_eval_failures), "DELETE FROM online_eval_failures WHERE trace_id IN (SELECT id FROM temp.purge_ids)"),
    (None, "DELETE FROM review_claims WHERE item_id IN (SELECT id FROM review_items WHERE trace_id IN (SELECT id FROM temp.purge_ids))"),
    (None, "DELETE FROM review_skips WHERE item_id IN (SELECT id FROM review_items WHERE trace_id IN (SELECT id FROM temp.purge_ids))"),
    (Some(|c| &mut c.review_labels), "DELETE FROM review_labels WHERE trace_id IN (SELECT id FROM temp.purge_ids)"),
    (Some(|c| &mut c.review_items), "DELETE FROM review_items WHERE trace_id IN (SELECT id FROM temp.purge_ids)"),
    (Some(|c| &mut c.dataset_drafts), "DELETE FROM dataset_drafts WHERE trace_id IN (SELECT id FROM temp.purge_ids)"),
    (Some(|c| &mut c.replay_cases), "DELETE FROM replay_cases WHERE trace_id IN (SELECT id FROM temp.purge_ids)"),
    (Some(|c| &mut c.app_spans), "DELETE FROM app_spans WHERE trace_id IN (SELECT otel_trace_id FROM temp.purge_ids WHERE otel_trace_id IS NOT NULL)"),
    (Some(|c| &mut c.traces), "DELETE FROM traces WHERE rowid IN (SELECT rid FROM temp.purge_ids)"),
];

/// Delete the traces listed in `temp.purge_ids` (`rid`, `id`, `otel_trace_id`) and what
/// derives from them (stored responses of those calls too), adding to `counts`. Shared
/// with retention.
pub(crate) fn delete_selected(tx: &Connection, counts: &mut PurgeCounts) -> Result<(), StoreError> {
    for (field, sql) in STEPS {
        let n = tx.execute(sql, [])? as u64;
        if let Some(field) = field {
            *field(counts) += n;
        }
    }
    counts.responses += tx.execute(
        "DELETE FROM responses WHERE trace_id IN (SELECT id FROM temp.purge_ids)",
        [],
    )? as u64;
    Ok(())
}

/// Remove (or with `dry_run` count) every trace of `subject` and what derives from it.
pub fn purge(
    conn: &mut Connection,
    subject: &Subject,
    dry_run: bool,
    (actor, reason, now_ms): (&str, &str, i64),
) -> Result<PurgeCounts, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch("DROP TABLE IF EXISTS temp.purge_ids")?;
    tx.execute(
        &format!(
            "CREATE TEMP TABLE purge_ids AS SELECT rowid AS rid, id, otel_trace_id FROM traces WHERE {} = ?1",
            subject.column()
        ),
        [subject.value()],
    )?;
    // The calls made about them carry their text too: shadow mirrors and judge calls
    // (no user, tenant or session of their own; `parent_id` names the call).
    tx.execute(
        "INSERT INTO temp.purge_ids SELECT rowid, id, otel_trace_id FROM traces
         WHERE parent_id IN (SELECT id FROM temp.purge_ids)
           AND rowid NOT IN (SELECT rid FROM temp.purge_ids)",
        [],
    )?;
    let mut counts = PurgeCounts::default();
    let mut pulled = tx.prepare(
        "SELECT suite || ': trace-' || trace_id FROM dataset_drafts
         WHERE pulled_at_ms IS NOT NULL AND trace_id IN (SELECT id FROM temp.purge_ids)
         ORDER BY suite, trace_id",
    )?;
    counts.pulled_cases = pulled
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    drop(pulled);
    delete_selected(&tx, &mut counts)?;
    // For a tenant, also every response it stored (of calls already gone, say).
    if let Subject::Tenant(t) = subject {
        counts.responses += tx.execute("DELETE FROM responses WHERE tenant = ?1", [t])? as u64;
    }
    tx.execute_batch("DROP TABLE temp.purge_ids")?;
    if dry_run {
        tx.rollback()?;
        return Ok(counts);
    }
    let details = serde_json::to_value(&counts).ok();
    record_audit(
        &tx,
        now_ms,
        &NewAuditEvent {
            actor,
            action: ACTION,
            target: &subject.target(),
            from_value: None,
            to_value: None,
            reason: Some(reason),
            details,
        },
    )?;
    tx.commit()?;
    crate::rollup::rebuild_dirty(conn)?;
    Ok(counts)
}

#[cfg(test)]
#[path = "purge_tests.rs"]
mod tests;
