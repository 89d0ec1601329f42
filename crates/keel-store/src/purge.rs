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

use serde::Serialize;

use crate::audit::{record_audit, NewAuditEvent};
use crate::error::StoreError;
use crate::sql::Db;
use crate::values;

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

/// What goes with the traces in `purge_ids`, in dependency order: (count field,
/// table, which rows).
const STEPS: [(Field, &str, &str); 11] = [
    (
        Some(|c| &mut c.scores),
        "scores",
        "trace_id IN (SELECT id FROM purge_ids)",
    ),
    (
        Some(|c| &mut c.feedback),
        "feedback",
        "trace_id IN (SELECT id FROM purge_ids)",
    ),
    (
        Some(|c| &mut c.online_eval_failures),
        "online_eval_failures",
        "trace_id IN (SELECT id FROM purge_ids)",
    ),
    (
        None,
        "review_claims",
        "item_id IN (SELECT id FROM review_items WHERE trace_id IN (SELECT id FROM purge_ids))",
    ),
    (
        None,
        "review_skips",
        "item_id IN (SELECT id FROM review_items WHERE trace_id IN (SELECT id FROM purge_ids))",
    ),
    (
        Some(|c| &mut c.review_labels),
        "review_labels",
        "trace_id IN (SELECT id FROM purge_ids)",
    ),
    (
        Some(|c| &mut c.review_items),
        "review_items",
        "trace_id IN (SELECT id FROM purge_ids)",
    ),
    (
        Some(|c| &mut c.dataset_drafts),
        "dataset_drafts",
        "trace_id IN (SELECT id FROM purge_ids)",
    ),
    (
        Some(|c| &mut c.replay_cases),
        "replay_cases",
        "trace_id IN (SELECT id FROM purge_ids)",
    ),
    (
        Some(|c| &mut c.app_spans),
        "app_spans",
        "trace_id IN (SELECT otel_trace_id FROM purge_ids WHERE otel_trace_id IS NOT NULL)",
    ),
    (
        Some(|c| &mut c.responses),
        "responses",
        "trace_id IN (SELECT id FROM purge_ids)",
    ),
];

/// Traces per transaction of a purge: the trace writer never waits long for the lock.
pub const BATCH: i64 = 1000;

/// Delete the traces listed in `purge_ids` (`rid`, `id`, `otel_trace_id`) and what
/// derives from them (stored responses of those calls too), adding to `counts`. Shared
/// with retention.
pub(crate) fn delete_selected(tx: Db<'_>, counts: &mut PurgeCounts) -> Result<(), StoreError> {
    for (field, table, rows) in STEPS {
        let n = tx.execute(&format!("DELETE FROM {table} WHERE {rows}"), &[])?;
        if let Some(field) = field {
            *field(counts) += n;
        }
    }
    counts.traces += tx.execute(
        "DELETE FROM traces WHERE rowid IN (SELECT rid FROM purge_ids)",
        &[],
    )?;
    if tx.dialect() == crate::sql::Dialect::Postgres {
        // Their ids are free again (PostgreSQL keeps them in `trace_ids`: migration 0029).
        tx.execute(
            "DELETE FROM trace_ids WHERE id IN (SELECT id FROM purge_ids)",
            &[],
        )?;
    }
    Ok(())
}

/// A new, empty `purge_ids`: the traces a batch removes. A temporary table (this
/// connection's own on both backends, left unqualified: SQLite and PostgreSQL look for
/// temporary tables first), created empty and filled by the caller, because PostgreSQL
/// takes no parameters in `CREATE TABLE … AS`.
pub(crate) fn create_ids(tx: Db<'_>) -> Result<(), StoreError> {
    tx.batch(
        "DROP TABLE IF EXISTS purge_ids;
         CREATE TEMP TABLE purge_ids (rid BIGINT, id TEXT, otel_trace_id TEXT)",
    )
}

/// Drop `purge_ids` (at the end of the transaction that filled it).
pub(crate) fn drop_ids(tx: Db<'_>) -> Result<(), StoreError> {
    tx.batch("DROP TABLE purge_ids")
}

/// Fill `purge_ids` with `subject`'s traces (at most `limit`) and the calls made
/// about them — shadow mirrors and judge calls, which carry their text but no user,
/// tenant or session of their own (`parent_id` names the call); the subject's own count.
fn select(tx: Db<'_>, subject: &Subject, limit: i64) -> Result<i64, StoreError> {
    create_ids(tx)?;
    // Quoted: `user` is a reserved word on PostgreSQL.
    let own = tx.execute(
        &format!(
            "INSERT INTO purge_ids SELECT rowid, id, otel_trace_id FROM traces
             WHERE \"{}\" = ?1 LIMIT ?2",
            subject.column()
        ),
        &values![subject.value(), limit],
    )?;
    tx.execute(
        "INSERT INTO purge_ids SELECT rowid, id, otel_trace_id FROM traces
         WHERE parent_id IN (SELECT id FROM purge_ids)
           AND rowid NOT IN (SELECT rid FROM purge_ids)",
        &[],
    )?;
    Ok(i64::try_from(own).unwrap_or(i64::MAX))
}

/// Dataset cases pulled into suite files from the traces in `purge_ids`.
fn pulled_cases(tx: Db<'_>) -> Result<Vec<String>, StoreError> {
    tx.query(
        "SELECT suite || ': trace-' || trace_id FROM dataset_drafts
         WHERE pulled_at_ms IS NOT NULL AND trace_id IN (SELECT id FROM purge_ids)
         ORDER BY suite, trace_id",
        &[],
        |r| r.get(0),
    )
}

/// Remove (or with `dry_run` count) every trace of `subject` and what derives from it.
///
/// [`BATCH`] traces per transaction (with what derives from them), the audit entry last:
/// a purge that is interrupted removed part of the data and is run again to finish. A dry
/// run reads only (no write lock).
pub fn purge<'c>(
    db: impl Into<Db<'c>>,
    subject: &Subject,
    dry_run: bool,
    (actor, reason, now_ms): (&str, &str, i64),
) -> Result<PurgeCounts, StoreError> {
    let db = db.into();
    if dry_run {
        return count(db, subject);
    }
    let mut counts = PurgeCounts::default();
    loop {
        let own = db.exclusive_for("purge", |tx| {
            let own = select(tx, subject, BATCH)?;
            counts.pulled_cases.extend(pulled_cases(tx)?);
            delete_selected(tx, &mut counts)?;
            drop_ids(tx)?;
            Ok(own)
        })?;
        if own < BATCH {
            break;
        }
    }
    // For a tenant, also every response it stored (of calls already gone, say).
    if let Subject::Tenant(t) = subject {
        counts.responses += db.execute("DELETE FROM responses WHERE tenant = ?1", &values![t])?;
    }
    counts.pulled_cases.sort();
    record_audit(
        db,
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
    crate::rollup::repair(db)?;
    Ok(counts)
}

/// What a purge of `subject` would remove, read in one read transaction (its only
/// write is to the temporary table, dropped before it ends).
fn count(db: Db<'_>, subject: &Subject) -> Result<PurgeCounts, StoreError> {
    db.transaction(|tx| {
        select(tx, subject, i64::MAX)?;
        let mut counts = PurgeCounts {
            pulled_cases: pulled_cases(tx)?,
            ..Default::default()
        };
        let n = |sql: &str| -> Result<u64, StoreError> {
            let v: i64 = tx.query_row(sql, &[], |r| r.get(0))?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        for (field, table, rows) in STEPS {
            if let Some(field) = field {
                *field(&mut counts) = n(&format!("SELECT count(*) FROM {table} WHERE {rows}"))?;
            }
        }
        counts.traces = n("SELECT count(*) FROM purge_ids")?;
        if let Subject::Tenant(t) = subject {
            let v: i64 = tx.query_row(
                "SELECT count(*) FROM responses WHERE tenant = ?1
                   AND trace_id NOT IN (SELECT id FROM purge_ids)",
                &values![t],
                |r| r.get(0),
            )?;
            counts.responses += u64::try_from(v).unwrap_or(0);
        }
        drop_ids(tx)?;
        Ok(counts)
    })
}

#[cfg(test)]
#[path = "purge_tests.rs"]
mod tests;
