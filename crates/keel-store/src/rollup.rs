//! Rollups: traffic pre-aggregated per time bucket, so the dashboard's overview reads a
//! few thousand rows instead of millions of traces (see `overview`).
//!
//! `trace_rollups` holds, per bucket (5 minutes, 1 hour and 1 day, UTC), origin and dimension
//! value (`all`, and each model, function, feature and tenant), the sums of the report
//! (requests, errors, tokens, priced cost, unpriced calls) and log-scale histograms of
//! latency and time to first token (`histogram`). Dimensions are rolled up one at a
//! time, never crossed, so the table grows with the number of distinct values, not
//! with their product.
//!
//! Kept exact by construction: the trace writer aggregates each batch in memory and
//! upserts the touched rows in the batch's own transaction ([`RollupBatch`], called by
//! `trace_row::insert_batch`; the SQLite writer keeps the rows of its last batch so the
//! next reads back only the others: `rollup_cache`); migration 0015 backfills existing traces
//! ([`rebuild_all`]). Traces are never updated or deleted by Keel today; if one is
//! (a retention job, an operator's `DELETE` in sqlite3), triggers mark its UTC day in
//! `trace_rollup_dirty`, and [`rebuild_dirty`] — run by the writer after each batch and
//! when a store is opened — recomputes those days from the traces that remain.

use std::collections::HashMap;

use keel_core::trace::{TraceRecord, TraceStatus};

use crate::error::StoreError;
use crate::sql::{Db, Dialect, Row, Value};
use crate::values;

use crate::rollup_cache::{CachedKey, RollupCache};
pub use crate::rollup_counts::Counts;
pub(crate) use crate::rollup_counts::COUNT_COLUMNS;
pub(crate) use crate::rollup_pg::StoredRead;

/// The fine bucket: 5 minutes. The overview's windows are aligned to it.
pub const FINE_MS: i64 = 300_000;
/// The hourly bucket, for the whole hours of a window.
pub const COARSE_MS: i64 = 3_600_000;
/// The daily bucket (UTC days), for the whole days of long windows.
pub const DAY_MS: i64 = 86_400_000;
/// Every bucket width kept, finest first.
pub const LEVELS: [i64; 3] = [FINE_MS, COARSE_MS, DAY_MS];
/// Traces aggregated per upsert when rebuilding from the traces table.
const REBUILD_CHUNK: usize = 100_000;

/// What a rollup row groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    /// Every trace (value `(all)`).
    All,
    Model,
    Function,
    Feature,
    Tenant,
    /// Function and variant, the value joined by `report::VARIANT_SEP` as the report
    /// names it (the experiments page's per-variant numbers).
    Variant,
}

impl Dim {
    pub const EVERY: [Dim; 6] = [
        Dim::All,
        Dim::Model,
        Dim::Function,
        Dim::Feature,
        Dim::Tenant,
        Dim::Variant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dim::All => "all",
            Dim::Model => "model",
            Dim::Function => "function",
            Dim::Feature => "feature",
            Dim::Tenant => "tenant",
            Dim::Variant => "variant",
        }
    }
}

/// The start of the `res`-wide bucket holding `ms`.
pub fn floor_to(ms: i64, res: i64) -> i64 {
    ms - ms.rem_euclid(res)
}

/// The fields of one trace that the rollups count, borrowed from a record or a row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample<'a> {
    pub(crate) started_at_ms: i64,
    pub(crate) origin: &'a str,
    pub(crate) model: Option<&'a str>,
    pub(crate) function: Option<&'a str>,
    pub(crate) feature: Option<&'a str>,
    pub(crate) tenant: Option<&'a str>,
    pub(crate) variant: Option<&'a str>,
    pub(crate) error: bool,
    pub(crate) input_tokens: Option<u64>,
    pub(crate) output_tokens: Option<u64>,
    pub(crate) cost_nanos: Option<i64>,
    pub(crate) unpriced: bool,
    pub(crate) latency_ms: u64,
    /// Streamed calls only, as the report counts them.
    pub(crate) ttft_ms: Option<u64>,
}

impl<'a> Sample<'a> {
    pub(crate) fn of(t: &'a TraceRecord) -> Sample<'a> {
        Sample {
            started_at_ms: t.started_at_ms,
            origin: t.origin.as_str(),
            model: t.model_requested.as_deref(),
            function: t.function.as_deref(),
            feature: t.feature.as_deref(),
            tenant: t.tenant.as_deref(),
            variant: t.variant.as_deref(),
            error: t.status == TraceStatus::Error,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cost_nanos: t.cost.map(|c| c.0),
            unpriced: t.unpriced,
            latency_ms: t.latency_ms,
            ttft_ms: if t.stream { t.ttft_ms } else { None },
        }
    }
}

const SELECT_ROW: &str = "SELECT requests, errors, input_tokens, output_tokens, \
     calls_with_usage, cost_nanos, unpriced, latency_hist, ttft_hist FROM trace_rollups \
     WHERE res_ms = ?1 AND origin = ?2 AND dim = ?3 AND bucket_ms = ?4 AND value = ?5";

/// An upsert's end: a row already stored takes the counts given (merged by the writer).
macro_rules! replace_stored_counts {
    () => {
        " ON CONFLICT (res_ms, origin, dim, bucket_ms, value) DO UPDATE SET \
     requests = excluded.requests, errors = excluded.errors, \
     input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens, \
     calls_with_usage = excluded.calls_with_usage, cost_nanos = excluded.cost_nanos, \
     unpriced = excluded.unpriced, latency_hist = excluded.latency_hist, \
     ttft_hist = excluded.ttft_hist"
    };
}
pub(crate) use replace_stored_counts;

const REPLACE_ROW: &str = concat!(
    "INSERT INTO trace_rollups (res_ms, origin, dim, \
     bucket_ms, value, requests, errors, input_tokens, output_tokens, calls_with_usage, \
     cost_nanos, unpriced, latency_hist, ttft_hist) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    replace_stored_counts!()
);

/// A stored row's new counts, the parameters in [`REPLACE_ROW`]'s order.
const UPDATE_ROW: &str = "UPDATE trace_rollups SET requests = ?6, errors = ?7, \
     input_tokens = ?8, output_tokens = ?9, calls_with_usage = ?10, cost_nanos = ?11, \
     unpriced = ?12, latency_hist = ?13, ttft_hist = ?14 \
     WHERE res_ms = ?1 AND origin = ?2 AND dim = ?3 AND bucket_ms = ?4 AND value = ?5";

/// On PostgreSQL, replicas writing batches at once take turns (a transaction-scoped
/// advisory lock, "keel" then 2), for two reasons: the rollups are read, added to and
/// replaced, and two interleaved batches would lose one's counts; and traces then get
/// their `rowid`s in commit order, so a cursor that reads "rowid > last seen" (review
/// intake, the model version watch) never passes a row committed later with a smaller
/// one. Batches are large, so taking turns costs little.
pub(crate) const TRACE_WRITE_LOCK: i64 = 0x6b65_656c_0000_0002;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key<'a> {
    res_ms: i64,
    bucket_ms: i64,
    origin: &'a str,
    dim: Dim,
    value: (&'a str, &'a str),
}

impl Key<'_> {
    /// The `value` column: the variant dimension's two parts joined as the report does.
    fn value_column(&self) -> std::borrow::Cow<'_, str> {
        match self.dim {
            Dim::Variant => format!(
                "{}{}{}",
                self.value.0,
                crate::report::VARIANT_SEP,
                self.value.1
            )
            .into(),
            _ => self.value.0.into(),
        }
    }
}

/// A batch of traces aggregated in memory, written as the rollup rows it touches (18 per
/// trace at most, far fewer for a busy batch): on SQLite an update for each row already
/// stored and an upsert for each new one, on PostgreSQL one upsert for all (`rollup_pg`).
///
/// Traces are first counted per [`Group`] — the same 5-minute bucket, origin and
/// dimension values — and each group is fanned out to its 18 rows once, when the batch is
/// written: a batch usually holds a handful of groups, so a trace costs one hash and one
/// add instead of 18 of each (6.5k instructions per trace, `bench/instructions.sh`).
#[derive(Debug, Default)]
pub(crate) struct RollupBatch<'a> {
    /// foldhash, seeded per map: SipHash was the batch's biggest cost after SQL; the seed
    /// still keeps client-chosen values (features, tenants) from being made to collide.
    groups: HashMap<Group<'a>, Counts, foldhash::fast::RandomState>,
}

/// What a trace's 18 rollup rows are determined by (besides its numbers): every trace of
/// a group lands in the same rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Group<'a> {
    /// The fine bucket; the coarser ones hold it whole.
    bucket_ms: i64,
    origin: &'a str,
    model: Option<&'a str>,
    function: Option<&'a str>,
    feature: Option<&'a str>,
    tenant: Option<&'a str>,
    variant: Option<&'a str>,
}

impl<'a> Group<'a> {
    fn of(s: &Sample<'a>) -> Group<'a> {
        Group {
            bucket_ms: floor_to(s.started_at_ms, FINE_MS),
            origin: s.origin,
            model: s.model,
            function: s.function,
            feature: s.feature,
            tenant: s.tenant,
            variant: s.variant,
        }
    }

    /// The group name of `dim`, named as the report names it (`(none)` when unset), in
    /// two parts: the variant dimension's is (function, variant) — joined only when the
    /// row is written, so aggregating a batch allocates nothing.
    fn value(&self, dim: Dim) -> (&'a str, &'a str) {
        let v = match dim {
            Dim::All => return ("(all)", ""),
            Dim::Model => self.model,
            Dim::Function => self.function,
            Dim::Feature => self.feature,
            Dim::Tenant => self.tenant,
            Dim::Variant => {
                let variant = self.variant.filter(|v| !v.is_empty()).unwrap_or("(none)");
                return (self.function.unwrap_or(""), variant);
            }
        };
        (v.filter(|v| !v.is_empty()).unwrap_or("(none)"), "")
    }
}

impl<'a> RollupBatch<'a> {
    pub(crate) fn add(&mut self, s: &Sample<'a>) {
        self.groups.entry(Group::of(s)).or_default().add(s);
    }

    /// Every rollup row the batch touches, with its counts.
    fn rows(self) -> HashMap<Key<'a>, Counts, foldhash::fast::RandomState> {
        let mut rows: HashMap<Key<'a>, Counts, foldhash::fast::RandomState> = HashMap::default();
        for (g, counts) in self.groups {
            for res_ms in LEVELS {
                let bucket_ms = floor_to(g.bucket_ms, res_ms);
                for dim in Dim::EVERY {
                    let key = Key {
                        res_ms,
                        bucket_ms,
                        origin: g.origin,
                        dim,
                        value: g.value(dim),
                    };
                    rows.entry(key).or_default().merge(&counts);
                }
            }
        }
        rows
    }

    /// Merge every row into the table (read, add, replace). Run it in the transaction
    /// that writes the traces, so both commit or neither does, after taking the write
    /// turn ([`take_write_turn`]; the trace writer's transaction begins with it). Rows
    /// `known` holds are taken from it instead of read back; with `keep`, the rows as
    /// written are returned for the writer's cache (see `rollup_cache`), with how many
    /// were known. `read` says how PostgreSQL reads the stored rows.
    pub(crate) fn write(
        self,
        db: Db<'_>,
        known: Option<&RollupCache>,
        keep: bool,
        read: StoredRead,
    ) -> Result<Written, StoreError> {
        let mut rows: Vec<(CachedKey, Counts)> = self
            .rows()
            .into_iter()
            .map(|(k, counts)| {
                let value = k.value_column().into_owned();
                (
                    (k.res_ms, k.bucket_ms, k.origin.to_string(), k.dim, value),
                    counts,
                )
            })
            .collect();
        if let Db::Postgres(pg) = db {
            crate::rollup_pg::merge_and_write(pg, &mut rows, read)?;
            return Ok(Written {
                rows: if keep { rows } else { Vec::new() },
                hits: 0,
            });
        }
        let mut hits = 0;
        let mut unknown: Vec<usize> = Vec::with_capacity(rows.len());
        // Rows already stored are updated in place; only new ones go through the upsert
        // (an upsert first tries the insert, finds the key taken, then updates).
        let mut stored_already = vec![false; rows.len()];
        for (i, (key, counts)) in rows.iter_mut().enumerate() {
            match known.and_then(|c| c.get(key)) {
                Some(stored) => {
                    counts.merge(stored);
                    hits += 1;
                    stored_already[i] = true;
                }
                None => unknown.push(i),
            }
        }
        let keys: Vec<Vec<Value>> = unknown
            .iter()
            .map(|&i| {
                let (res_ms, bucket_ms, origin, dim, value) = &rows[i].0;
                values![
                    *res_ms,
                    origin.as_str(),
                    dim.as_str(),
                    *bucket_ms,
                    value.as_str()
                ]
            })
            .collect();
        // One read per row not known (SQLite: a prepared statement, no round trip).
        let stored = db.query_opt_many(SELECT_ROW, &keys, |r| Counts::from_row(r, 0))?;
        for (&i, stored) in unknown.iter().zip(stored) {
            if let Some(stored) = stored {
                rows[i].1.merge(&stored);
                stored_already[i] = true;
            }
        }
        let (mut updates, mut inserts) = (Vec::new(), Vec::new());
        for (row, ((res_ms, bucket_ms, origin, dim, value), counts)) in rows.iter().enumerate() {
            let set = values![
                *res_ms,
                origin.as_str(),
                dim.as_str(),
                *bucket_ms,
                value.as_str(),
                counts.requests,
                counts.errors,
                counts.input_tokens,
                counts.output_tokens,
                counts.calls_with_usage,
                counts.cost_nanos,
                counts.unpriced,
                counts.latency.encode(),
                counts.ttft.encode(),
            ];
            if stored_already[row] {
                updates.push(set);
            } else {
                inserts.push(set);
            }
        }
        // A row the cache or the read said was stored and that is not there after all
        // (it cannot be, under the write lock; still) is written by the upsert.
        let updated = db.execute_many(UPDATE_ROW, &updates)?;
        inserts.extend(
            updates
                .into_iter()
                .zip(updated)
                .filter(|(_, n)| *n == 0)
                .map(|(set, _)| set),
        );
        db.execute_many(REPLACE_ROW, &inserts)?;
        Ok(Written {
            rows: if keep { rows } else { Vec::new() },
            hits,
        })
    }
}

/// What [`RollupBatch::write`] wrote, for the writer's cache.
#[derive(Debug, Default)]
pub(crate) struct Written {
    /// The rows as now stored (empty unless asked for).
    pub(crate) rows: Vec<(CachedKey, Counts)>,
    /// Rows taken from the cache instead of read back.
    pub(crate) hits: u64,
}

/// The trace columns a rebuild reads, in the order `OwnedSample::from_row` reads them.
const SAMPLE_COLUMNS: &str = "started_at_ms, origin, model_requested, function, feature, \
     tenant, status = 'error', input_tokens, output_tokens, cost_nanos, unpriced, latency_ms, \
     CASE WHEN stream = 1 THEN ttft_ms END, variant";
/// How many columns [`SAMPLE_COLUMNS`] names.
const SAMPLE_COLUMN_COUNT: usize = 14;

/// A trace row read back for a rebuild (owned, so a chunk can be borrowed by a batch).
struct OwnedSample {
    started_at_ms: i64,
    origin: String,
    model: Option<String>,
    function: Option<String>,
    feature: Option<String>,
    tenant: Option<String>,
    variant: Option<String>,
    error: bool,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cost_nanos: Option<i64>,
    unpriced: bool,
    latency_ms: u64,
    ttft_ms: Option<u64>,
}

impl OwnedSample {
    fn from_row(row: &Row<'_>) -> Result<OwnedSample, StoreError> {
        let count = |i: usize| -> Result<Option<u64>, StoreError> {
            Ok(row
                .get::<Option<i64>>(i)?
                .map(|v| u64::try_from(v).unwrap_or(0)))
        };
        Ok(OwnedSample {
            started_at_ms: row.get(0)?,
            origin: row.get(1)?,
            model: row.get(2)?,
            function: row.get(3)?,
            feature: row.get(4)?,
            tenant: row.get(5)?,
            error: row.get(6)?,
            input_tokens: count(7)?,
            output_tokens: count(8)?,
            cost_nanos: row.get(9)?,
            unpriced: row.get(10)?,
            latency_ms: count(11)?.unwrap_or(0),
            ttft_ms: count(12)?,
            variant: row.get(13)?,
        })
    }

    fn sample(&self) -> Sample<'_> {
        Sample {
            started_at_ms: self.started_at_ms,
            origin: &self.origin,
            model: self.model.as_deref(),
            function: self.function.as_deref(),
            feature: self.feature.as_deref(),
            tenant: self.tenant.as_deref(),
            variant: self.variant.as_deref(),
            error: self.error,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost_nanos: self.cost_nanos,
            unpriced: self.unpriced,
            latency_ms: self.latency_ms,
            ttft_ms: self.ttft_ms,
        }
    }
}

/// Add the traces that started in `[since, until)` (every trace for `None`) to the
/// rollups, a chunk at a time (in `rowid` order) so memory stays bounded on a large
/// store. Returns how many traces were read.
fn add_traces(db: Db<'_>, range: Option<(i64, i64)>) -> Result<u64, StoreError> {
    let (lo, hi) = range.unwrap_or((i64::MIN, i64::MAX));
    let sql = format!(
        "SELECT {SAMPLE_COLUMNS}, rowid FROM traces \
         WHERE started_at_ms >= ?1 AND started_at_ms < ?2 AND rowid > ?3 ORDER BY rowid LIMIT ?4"
    );
    let mut total = 0u64;
    let mut after = i64::MIN;
    loop {
        let chunk: Vec<(OwnedSample, i64)> =
            db.query(&sql, &values![lo, hi, after, REBUILD_CHUNK], |r| {
                Ok((OwnedSample::from_row(r)?, r.get(SAMPLE_COLUMN_COUNT)?))
            })?;
        let Some(last) = chunk.last() else {
            return Ok(total);
        };
        after = last.1;
        total += chunk.len() as u64;
        let mut batch = RollupBatch::default();
        chunk.iter().for_each(|(s, _)| batch.add(&s.sample()));
        batch.write(db, None, false, StoredRead::PlannedEachTime)?;
        if chunk.len() < REBUILD_CHUNK {
            return Ok(total);
        }
    }
}

/// Recompute every rollup from the traces (migration 0015's backfill; also a repair).
/// Returns how many traces were read. Run it in a transaction.
pub fn rebuild_all<'c>(db: impl Into<Db<'c>>) -> Result<u64, StoreError> {
    let db = db.into();
    take_write_turn(db)?;
    db.execute("DELETE FROM trace_rollups", &[])?;
    db.execute("DELETE FROM trace_rollup_dirty", &[])?;
    add_traces(db, None)
}

/// On PostgreSQL, wait for the trace writers' turn ([`TRACE_WRITE_LOCK`]) before
/// touching rollup rows: a rebuild that deleted rows first and then waited for the lock
/// would deadlock with a writer holding it and waiting for those rows.
pub(crate) fn take_write_turn(db: Db<'_>) -> Result<(), StoreError> {
    if db.dialect() == Dialect::Postgres {
        db.execute(
            "SELECT pg_advisory_xact_lock(?1)",
            &[Value::Int(TRACE_WRITE_LOCK)],
        )?;
    }
    Ok(())
}

/// Mark every day that overlaps `[since_ms, until_ms)` for recomputation (for code that
/// changes traces in bulk; the triggers do it row by row). Run [`rebuild_dirty`] after.
pub fn mark_dirty<'c>(
    db: impl Into<Db<'c>>,
    since_ms: i64,
    until_ms: i64,
) -> Result<(), StoreError> {
    let db = db.into();
    let mut day = floor_to(since_ms, DAY_MS);
    while day < until_ms {
        db.execute(
            "INSERT OR IGNORE INTO trace_rollup_dirty (day_ms) VALUES (?1)",
            &[Value::Int(day)],
        )?;
        day += DAY_MS;
    }
    Ok(())
}

/// Whether some day waits for [`rebuild_dirty`] (cheap: the writer asks after each batch).
fn has_dirty(db: Db<'_>) -> Result<bool, StoreError> {
    db.query_row(
        "SELECT EXISTS (SELECT 1 FROM trace_rollup_dirty)",
        &[],
        |r| r.get(0),
    )
}

/// Recompute the rollups of every day marked dirty from the traces it still holds (its
/// 5-minute, hourly and daily rows all start within it), and clear the marks. Returns
/// the days rebuilt. Run it in a transaction.
pub fn rebuild_dirty<'c>(db: impl Into<Db<'c>>) -> Result<usize, StoreError> {
    let db = db.into();
    take_write_turn(db)?;
    let days: Vec<i64> = db.query(
        "SELECT day_ms FROM trace_rollup_dirty ORDER BY day_ms",
        &[],
        |r| r.get(0),
    )?;
    for day in &days {
        db.execute(
            "DELETE FROM trace_rollups WHERE bucket_ms >= ?1 AND bucket_ms < ?2",
            &values![*day, day + DAY_MS],
        )?;
        add_traces(db, Some((*day, day + DAY_MS)))?;
    }
    db.execute("DELETE FROM trace_rollup_dirty", &[])?;
    Ok(days.len())
}

/// [`rebuild_dirty`] in its own transaction when some day is marked (a cheap check
/// when none is): what the writer runs after each batch and `Store::open` at start.
pub(crate) fn repair<'c>(db: impl Into<Db<'c>>) -> Result<usize, StoreError> {
    let db = db.into();
    if !has_dirty(db)? {
        return Ok(0);
    }
    db.transaction(|tx| rebuild_dirty(tx))
}

/// A rollup row's key: (resolution, bucket start, origin, dimension, value).
pub type RowKey = (i64, i64, String, String, String);

/// Every rollup row by its key: how the tests compare the rollups kept by the writer
/// with a rebuild from the traces.
pub fn all_rows<'c>(db: impl Into<Db<'c>>) -> Result<HashMap<RowKey, Counts>, StoreError> {
    let sql =
        format!("SELECT res_ms, bucket_ms, origin, dim, value, {COUNT_COLUMNS} FROM trace_rollups");
    let rows = db.into().query(&sql, &[], |r| {
        Ok((
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
            Counts::from_row(r, 5)?,
        ))
    })?;
    Ok(rows.into_iter().collect())
}

#[cfg(test)]
#[path = "rollup_tests.rs"]
mod tests;
