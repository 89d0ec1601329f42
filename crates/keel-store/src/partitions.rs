//! Traces by day on PostgreSQL (migration 0029): `traces` is partitioned by range of
//! `started_at_ms`, one partition per UTC day (`traces_dYYYYMMDD`), so a query with a
//! time range reads only its days, and a day past the hot window leaves the table whole
//! — detached, not deleted row by row — and stays in the database as
//! `traces_archived_dYYYYMMDD` until an operator dumps or drops it.
//!
//! The writer makes a batch's days before inserting it ([`ensure_days`], under the
//! trace write lock, so replicas never race to create one). Detaching
//! ([`detach_before`]) takes the same lock, frees the archived traces' ids, and
//! recomputes the rollups of the days it removed, so the dashboard, the report and the
//! traces agree afterwards, as after retention. SQLite has none of this: one file, and
//! `[retention]` deletes.

use serde::Serialize;
use time::macros::format_description;

use crate::audit::{record_audit, NewAuditEvent};
use crate::error::StoreError;
use crate::rollup::{floor_to, mark_dirty, rebuild_dirty, take_write_turn, DAY_MS};
use crate::sql::{Db, Dialect, Value};

/// The audit action of a detach that removed something.
pub const ACTION: &str = "store.detach";
/// What a detached day's table is renamed to (then the day's date).
pub const ARCHIVED_PREFIX: &str = "traces_archived_d";
const DAY_PREFIX: &str = "traces_d";

/// Create the partitions of the days `starts_ms` fall on, when missing (PostgreSQL, where
/// a row of a day without its partition is refused; nothing on SQLite). The caller holds
/// the trace write lock. Days in `known` are taken as made and not asked for; the days
/// asked for are returned, for the caller to add to `known` once its transaction commits.
pub(crate) fn ensure_days(
    db: Db<'_>,
    starts_ms: impl Iterator<Item = i64>,
    known: Option<&KnownDays>,
) -> Result<Vec<i64>, StoreError> {
    if db.dialect() != Dialect::Postgres {
        return Ok(Vec::new());
    }
    let mut days: Vec<i64> = starts_ms
        .map(|ms| floor_to(ms, DAY_MS))
        .filter(|d| !known.is_some_and(|k| k.0.contains(d)))
        .collect();
    days.sort_unstable();
    days.dedup();
    if !days.is_empty() {
        let sets: Vec<Vec<Value>> = days.iter().map(|d| vec![Value::Int(*d)]).collect();
        db.execute_many("SELECT keel_trace_partition(?1)", &sets)?;
    }
    Ok(days)
}

/// The days whose partitions the trace writer has made or found, so a batch of a known
/// day skips the check (`keel_trace_partition`: ~0.23 ms of server time per batch, for
/// a day that almost always exists). A day can stop existing behind its back (a
/// detach, on any replica): a batch of it is then refused as a row without a partition
/// ([`is_missing_partition`]), and the writer forgets what it knew and writes it again.
#[derive(Debug, Default)]
pub(crate) struct KnownDays(std::collections::HashSet<i64>);

impl KnownDays {
    /// At most this many days are remembered (a writer fed old days — a long backfill —
    /// starts over past it rather than grow).
    const MAX: usize = 366;

    /// Remember `days` as made (their transaction committed).
    pub(crate) fn add(&mut self, days: &[i64]) {
        if self.0.len() + days.len() > Self::MAX {
            self.0.clear();
        }
        self.0.extend(days);
    }

    pub(crate) fn forget(&mut self) {
        self.0.clear();
    }
}

/// Whether `e` is PostgreSQL refusing a row because no partition holds its day (SQLSTATE
/// 23514 with "no partition of relation … found for row"; a CHECK constraint's 23514 is
/// not this).
pub(crate) fn is_missing_partition(e: &StoreError) -> bool {
    let StoreError::Postgres(e) = e else {
        return false;
    };
    e.as_db_error().is_some_and(|db| {
        db.code() == &tokio_postgres::error::SqlState::CHECK_VIOLATION
            && db.message().starts_with("no partition of relation")
    })
}

/// One day's partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayPartition {
    /// `2026-09-01` (UTC).
    pub day: String,
    pub day_ms: i64,
    /// The partition's table (`traces_d20260901`), or where it went when detached
    /// (`traces_archived_d20260901`).
    pub table: String,
    pub traces: u64,
}

/// What a detach did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DetachReport {
    /// Days strictly before this one (UTC) were detached.
    pub before: String,
    pub dry_run: bool,
    pub days: Vec<DayPartition>,
    pub traces: u64,
}

fn day_text(day_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(day_ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(format_description!("[year]-[month]-[day]")).ok())
        .unwrap_or_else(|| day_ms.to_string())
}

/// The day a partition's name stands for (`traces_d20260901` → its UTC midnight).
fn day_of(table: &str) -> Option<i64> {
    let digits = table.strip_prefix(DAY_PREFIX)?;
    let date = time::Date::parse(digits, format_description!("[year][month][day]")).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000)
}

/// `traces_archived_dYYYYMMDD`, or `…_2`, `…_3` when that day was detached before (a
/// late trace made the day again).
fn archive_name(db: Db<'_>, date: &str) -> Result<String, StoreError> {
    let base = format!("{ARCHIVED_PREFIX}{date}");
    let mut name = base.clone();
    let mut n = 1;
    while db.query_row(
        "SELECT to_regclass(?1) IS NOT NULL",
        &[Value::from(name.as_str())],
        |r| r.get::<bool>(0),
    )? {
        n += 1;
        name = format!("{base}_{n}");
    }
    Ok(name)
}

/// Every day partition, oldest first, without counting rows.
pub fn day_partitions<'c>(db: impl Into<Db<'c>>) -> Result<Vec<DayPartition>, StoreError> {
    let db = db.into();
    if db.dialect() != Dialect::Postgres {
        return Err(StoreError::PostgresOnly {
            what: "partitioning traces by day",
        });
    }
    let tables: Vec<String> = db.query(
        "SELECT c.relname::TEXT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'traces'::regclass ORDER BY 1",
        &[],
        |r| r.get(0),
    )?;
    let mut days: Vec<DayPartition> = tables
        .into_iter()
        .filter_map(|table| {
            let day_ms = day_of(&table)?;
            Some(DayPartition {
                day: day_text(day_ms),
                day_ms,
                table,
                traces: 0,
            })
        })
        .collect();
    days.sort_by_key(|d| d.day_ms);
    Ok(days)
}

/// Detach every day partition before `before_ms` (floored to its UTC day): its traces
/// leave `traces` (and so every figure Keel shows) in one step and stay in the database
/// as `traces_archived_dYYYYMMDD`; their ids are freed and the rollups of those days
/// recomputed. One transaction; audited when something was detached. With `dry_run`,
/// only counts.
pub fn detach_before<'c>(
    db: impl Into<Db<'c>>,
    before_ms: i64,
    dry_run: bool,
    actor: &str,
    now_ms: i64,
) -> Result<DetachReport, StoreError> {
    let db = db.into();
    let before = floor_to(before_ms, DAY_MS);
    let candidates: Vec<DayPartition> = day_partitions(db)?
        .into_iter()
        .filter(|d| d.day_ms + DAY_MS <= before)
        .collect();
    db.transaction(|tx| {
        take_write_turn(tx)?;
        let mut days = Vec::with_capacity(candidates.len());
        for mut d in candidates.clone() {
            // Names come from the catalogue and match `traces_dYYYYMMDD`: safe to quote.
            d.traces = tx.query_row(&format!("SELECT COUNT(*) FROM \"{}\"", d.table), &[], |r| {
                r.get::<i64>(0)
            })? as u64;
            if !dry_run {
                let archived = archive_name(tx, &d.table[DAY_PREFIX.len()..])?;
                tx.execute(
                    &format!(
                        "DELETE FROM trace_ids WHERE id IN (SELECT id FROM \"{}\")",
                        d.table
                    ),
                    &[],
                )?;
                tx.batch(&format!(
                    "ALTER TABLE traces DETACH PARTITION \"{0}\";
                     ALTER TABLE \"{0}\" RENAME TO \"{archived}\"",
                    d.table
                ))?;
                mark_dirty(tx, d.day_ms, d.day_ms + DAY_MS)?;
                d.table = archived;
            }
            days.push(d);
        }
        let traces = days.iter().map(|d| d.traces).sum();
        let report = DetachReport {
            before: day_text(before),
            dry_run,
            days,
            traces,
        };
        if !dry_run && !report.days.is_empty() {
            rebuild_dirty(tx)?;
            record_audit(
                tx,
                now_ms,
                &NewAuditEvent {
                    actor,
                    action: ACTION,
                    target: "traces",
                    from_value: None,
                    to_value: None,
                    reason: None,
                    details: Some(serde_json::json!({
                        "before": report.before,
                        "days": report.days.len(),
                        "traces": report.traces,
                        "tables": report.days.iter().map(|d| d.table.as_str()).collect::<Vec<_>>(),
                    })),
                },
            )?;
        }
        Ok(report)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{select_sql, TraceFilter};
    use crate::testing::TestDb;
    use crate::Store;
    use keel_core::trace::TraceRecord;

    /// Newest first reads the days in order (an ordered Append), so a search stops in the
    /// newest days when its page is full. A default partition would turn it into a
    /// Merge Append that opens every day first (migration 0029); this fails if one comes
    /// back.
    #[test]
    fn newest_first_reads_the_days_in_order() {
        let db = TestDb::new();
        let store = Store::open(&db.url()).unwrap();
        let conn = store.conn().unwrap();
        let traces: Vec<TraceRecord> = (0..300)
            .map(|i| {
                let mut t = TraceRecord::new(
                    format!("t-{i}"),
                    1_761_955_200_000 + (i % 3) * DAY_MS + i,
                    "openai",
                    "/v1/chat/completions",
                );
                t.tenant = Some(format!("tenant-{}", i % 5));
                t
            })
            .collect();
        crate::trace_row::insert_batch(&conn, &traces).unwrap();
        let d = conn.db();
        d.batch("ANALYZE traces; SET enable_sort = off; SET enable_seqscan = off")
            .unwrap();
        for filter in [
            TraceFilter::default(),
            TraceFilter {
                min_cost_nanos: Some(5_000_000_000),
                ..TraceFilter::default()
            },
            TraceFilter {
                tenant: Some("tenant-2".into()),
                ..TraceFilter::default()
            },
        ] {
            let (sql, values) = select_sql(&filter);
            let plan: Vec<String> = d
                .query(&format!("EXPLAIN {sql}"), &values, |r| r.get(0))
                .unwrap()
                .into_iter()
                .collect();
            let plan = plan.join("\n");
            assert!(
                plan.contains("Append") && !plan.contains("Merge Append") && !plan.contains("Sort"),
                "{filter:?}:\n{plan}"
            );
        }
    }
}
