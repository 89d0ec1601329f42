//! `keel store copy`: an existing SQLite store moved into PostgreSQL, every table, ids and
//! hashes as they were, resumable, and counted at the end.
//!
//! Tables are copied one at a time in a fixed order (a parent before the rows that
//! point at it), each in SQLite rowid order, [`BATCH`] rows per PostgreSQL transaction.
//! The same transaction records how far the table got (`store_copy_progress`), so a
//! copy that is interrupted (a crash, Ctrl-C, a dropped connection) and run again goes
//! on from the last batch that committed, never copying a row twice. Trace ids, rowids
//! and every other id are copied as they are, and the identity sequences moved past
//! them, so new rows never collide. The rollups are derived data: they are recomputed
//! from the copied traces on the target rather than copied. At the end every table is
//! counted on both sides; the progress table is removed only when all counts agree.

use crate::error::StoreError;
use crate::sql::{Db, Value};
use crate::Store;

/// Rows per PostgreSQL transaction.
pub const BATCH: usize = 1000;

/// Every table copied, parents first. `trace_rollups` and `trace_rollup_dirty` are
/// rebuilt instead; `schema_migrations` belongs to each store.
pub const TABLES: &[&str] = &[
    "traces",
    "prompt_versions",
    "prompt_labels",
    "prompt_label_moves",
    "audit_events",
    "releases",
    "replay_runs",
    "replay_cases",
    "eval_runs",
    "eval_results",
    "eval_cache",
    "api_keys",
    "alert_events",
    "function_splits",
    "function_split_moves",
    "app_spans",
    "playground_drafts",
    "scores",
    "online_eval_failures",
    "feedback",
    "review_items",
    "review_claims",
    "review_labels",
    "review_skips",
    "review_intake",
    "dataset_versions",
    "dataset_drafts",
    "model_versions",
    "model_version_watch",
    "switches",
    "budget_freezes",
    "incidents",
    "incident_events",
    "canary_leases",
    "canary_runs",
    "responses",
    "retention_marks",
];

/// Tables whose `id` (or, for traces, `rowid`) is an identity column on PostgreSQL.
const IDENTITY: &[(&str, &str)] = &[
    ("traces", "rowid"),
    ("scores", "rowid"),
    ("responses", "rowid"),
    ("prompt_label_moves", "id"),
    ("audit_events", "id"),
    ("alert_events", "id"),
    ("function_split_moves", "id"),
    ("review_items", "id"),
    ("dataset_drafts", "id"),
    ("incidents", "id"),
    ("incident_events", "id"),
    ("canary_runs", "id"),
];

/// Where a copy is, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct CopyProgress<'a> {
    pub table: &'a str,
    /// Rows of this table on the target so far (including an earlier run's).
    pub copied: u64,
    /// Rows of this table in the source.
    pub total: u64,
}

/// One table counted on both sides at the end.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableCount {
    pub table: String,
    pub source: u64,
    pub target: u64,
}

/// What a finished copy found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CopyReport {
    /// Whether this run went on from an interrupted one.
    pub resumed: bool,
    pub tables: Vec<TableCount>,
    /// Traces the rollups were rebuilt from.
    pub rollup_traces: u64,
}

impl CopyReport {
    /// Tables whose counts differ (empty after a good copy).
    pub fn mismatches(&self) -> Vec<&TableCount> {
        self.tables
            .iter()
            .filter(|t| t.source != t.target)
            .collect()
    }
}

/// Copy every table of the SQLite store `from` into the PostgreSQL store `to` (both
/// opened, so both at the current schema version). `progress` is called after each
/// batch. Refuses a target that already holds data unless it is an interrupted copy.
pub fn copy_store(
    from: &Store,
    to: &Store,
    mut progress: impl FnMut(CopyProgress<'_>),
) -> Result<CopyReport, StoreError> {
    if from.is_postgres() || !to.is_postgres() {
        return Err(StoreError::CopyDirection);
    }
    let source = from.reader()?;
    let target = to.conn()?;
    let db = target.db();
    let resumed = has_progress_table(db)?;
    if !resumed {
        let held: i64 = db.query_row(
            "SELECT (SELECT COUNT(*) FROM traces) + (SELECT COUNT(*) FROM prompt_versions) \
             + (SELECT COUNT(*) FROM api_keys) + (SELECT COUNT(*) FROM audit_events)",
            &[],
            |r| r.get(0),
        )?;
        if held > 0 {
            return Err(StoreError::CopyTargetNotEmpty {
                store: to.path().to_string(),
            });
        }
        db.batch(
            "CREATE TABLE store_copy_progress (tbl TEXT PRIMARY KEY, after_rowid BIGINT NOT NULL)",
        )?;
    }
    for table in TABLES {
        copy_table(&source, db, table, &mut progress)?;
    }
    for (table, column) in IDENTITY {
        db.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                 COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            ),
            &[],
        )?;
    }
    let rollup_traces = db.transaction(|tx| crate::rollup::rebuild_all(tx))?;
    let mut tables = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let count = format!("SELECT COUNT(*) FROM {table}");
        let source_rows: i64 = Db::from(&source).query_row(&count, &[], |r| r.get(0))?;
        let target_rows: i64 = db.query_row(&count, &[], |r| r.get(0))?;
        tables.push(TableCount {
            table: table.to_string(),
            source: u64::try_from(source_rows).unwrap_or(0),
            target: u64::try_from(target_rows).unwrap_or(0),
        });
    }
    let report = CopyReport {
        resumed,
        tables,
        rollup_traces,
    };
    if report.mismatches().is_empty() {
        db.batch("DROP TABLE store_copy_progress")?;
    }
    Ok(report)
}

fn has_progress_table(db: Db<'_>) -> Result<bool, StoreError> {
    db.query_row(
        "SELECT to_regclass('store_copy_progress') IS NOT NULL",
        &[],
        |r| r.get(0),
    )
}

/// Copy one table from where an earlier run stopped, a batch per transaction.
fn copy_table(
    source: &rusqlite::Connection,
    target: Db<'_>,
    table: &str,
    progress: &mut impl FnMut(CopyProgress<'_>),
) -> Result<(), StoreError> {
    let total: i64 =
        source.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
    let total = u64::try_from(total).unwrap_or(0);
    let mut after: i64 = target
        .query_opt(
            "SELECT after_rowid FROM store_copy_progress WHERE tbl = ?1",
            &[Value::from(table)],
            |r| r.get(0),
        )?
        .unwrap_or(i64::MIN);
    // SQLite's own rowid orders the read; traces keep it as their `rowid` column.
    let mut stmt = source.prepare(&format!(
        "SELECT rowid, * FROM {table} WHERE rowid > ?1 ORDER BY rowid LIMIT {BATCH}"
    ))?;
    let mut columns: Vec<String> = stmt
        .column_names()
        .skip(1)
        .map(|c| format!("\"{c}\""))
        .collect();
    // Where PostgreSQL has an explicit rowid, it is the source's (cursors point at it).
    let keep_rowid = IDENTITY.contains(&(table, "rowid"));
    if keep_rowid {
        columns.insert(0, "rowid".to_string());
    }
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
    let insert = format!(
        "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
        columns.join(", "),
        placeholders.join(", ")
    );
    // Traces go into their day's partition, and their ids are claimed (migration 0029).
    let trace_columns = if table == "traces" {
        let at = |name: &str| columns.iter().position(|c| c == name);
        at("\"id\"").zip(at("\"started_at_ms\""))
    } else {
        None
    };
    let mut copied: i64 =
        target.query_row(&format!("SELECT COUNT(*) FROM {table}"), &[], |r| r.get(0))?;
    loop {
        let mut rows: Vec<Vec<Value>> = Vec::new();
        let mut last = after;
        let mut cursor = stmt.query([after])?;
        while let Some(row) = cursor.next()? {
            let n = row.as_ref().column_count();
            let mut values = Vec::with_capacity(n);
            last = row.get(0)?;
            let first = if keep_rowid { 0 } else { 1 };
            for i in first..n {
                values.push(Value::from_sqlite(row.get_ref(i)?)?);
            }
            rows.push(values);
        }
        drop(cursor);
        if rows.is_empty() {
            progress(CopyProgress {
                table,
                copied: u64::try_from(copied).unwrap_or(0),
                total,
            });
            return Ok(());
        }
        target.transaction(|tx| {
            if let Some((id, started)) = trace_columns {
                let start = |r: &Vec<Value>| match r[started] {
                    Value::Int(ms) => Some(ms),
                    _ => None,
                };
                crate::partitions::ensure_days(tx, rows.iter().filter_map(start), None)?;
                let claims: Vec<Vec<Value>> = rows
                    .iter()
                    .map(|r| vec![r[id].clone(), r[started].clone()])
                    .collect();
                tx.execute_many(crate::trace_row::CLAIM_ID_SQL, &claims)?;
            }
            let inserted = tx.execute_many(&insert, &rows)?;
            tx.execute(
                "INSERT INTO store_copy_progress (tbl, after_rowid) VALUES (?1, ?2) \
                 ON CONFLICT (tbl) DO UPDATE SET after_rowid = excluded.after_rowid",
                &[Value::from(table), Value::Int(last)],
            )?;
            copied += inserted.iter().sum::<u64>() as i64;
            Ok(())
        })?;
        after = last;
        progress(CopyProgress {
            table,
            copied: u64::try_from(copied).unwrap_or(0),
            total,
        });
    }
}

#[cfg(test)]
#[path = "store_copy_tests.rs"]
mod tests;
