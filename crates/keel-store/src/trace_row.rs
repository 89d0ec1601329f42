//! How a `TraceRecord` maps to a row of `traces` and back: the column list, the insert
//! statement (which also maintains the rollups), and the conversions (tags as JSON text,
//! cost as integer nanos, booleans as 0/1, status as text).
//!
//! Both directions destructure `TraceRecord` exhaustively, so a field added to it does
//! not compile until it has a column here (and a migration).

use std::collections::HashSet;

use tokio_postgres::types::Type;

use crate::error::StoreError;
use crate::partitions::KnownDays;
use crate::rollup::{RollupBatch, Sample, StoredRead};
use crate::rollup_cache::{data_version, RollupCache};
use crate::rollup_pg::INDEX_LOOKUPS_ONLY;
use crate::sql::{Db, Param, PgConn, Row, Value};
use keel_core::money::Nanos;
use keel_core::trace::{Origin, TraceRecord, TraceStatus};

/// Every column but `client_request_id`, in the order `from_row` reads them.
macro_rules! trace_columns {
    () => {
        "id, started_at_ms, api, endpoint, key_id, tenant, feature, \"user\", session, tags, \
     model_requested, provider, upstream_model, served_model, system_fingerprint, stream, input, output, \
     input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_nanos, unpriced, latency_ms, ttft_ms, \
     status, http_status, error_class, error_message, finish_reason, \
     function, variant, prompt_name, prompt_version, release_id, origin, attempts_json, cache, saved_cost_nanos, parent_id, guardrails_json, \
     otel_trace_id, otel_span_id, otel_parent_span_id, usage_estimated"
    };
}

/// Every column, in the order `from_row` reads them.
pub(crate) const COLUMNS: &str = trace_columns!();

/// SQLite: a taken id inserts nothing (the unique index on `traces (id)`).
const INSERT_SQL: &str = concat!(
    "INSERT INTO traces (",
    trace_columns!(),
    ", client_request_id) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, \
     ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38, ?39, ?40, \
     ?41, ?42, ?43, ?44, ?45, ?46, ?47) ON CONFLICT (id) DO NOTHING"
);

/// PostgreSQL: a batch's rows in one `COPY` (ids were claimed in `trace_ids` first: a
/// partitioned table cannot be unique on `id` alone, migration 0029). Row by row, each
/// `INSERT` into the partitioned table set up its partition and ~15 indexes again:
/// 63 µs of server CPU per trace against 15 for the `COPY` (`pg_cost`, 2026-12-06).
const COPY_PG_SQL: &str = concat!(
    "COPY traces (",
    trace_columns!(),
    ", client_request_id) FROM STDIN BINARY"
);

/// The type of each column [`COPY_PG_SQL`] names, in order (binary `COPY` sends each
/// value as its column's type; a test compares them with the table).
const PG_COLUMN_TYPES: [Type; 47] = {
    const T: Type = Type::TEXT;
    const I: Type = Type::INT8;
    [
        T, I, T, T, T, T, T, T, T, T, // id … tags
        T, T, T, T, T, I, T, T, // model_requested … output
        I, I, I, I, I, I, I, I, // input_tokens … ttft_ms
        T, I, T, T, T, // status … finish_reason
        T, T, T, I, T, T, T, T, I, T, T, // function … guardrails_json
        T, T, T, I, T, // otel_trace_id … client_request_id
    ]
};

/// Claim an id for a trace; inserts nothing when another trace holds it (`store copy`).
pub(crate) const CLAIM_ID_SQL: &str =
    "INSERT INTO trace_ids (id, started_at_ms) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING";
/// Claim a batch's ids in one statement; returns those it claimed (an id another trace
/// holds, or one the batch repeats, comes back once at most).
const CLAIM_IDS_PG_SQL: &str = "INSERT INTO trace_ids (id, started_at_ms) \
     SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT (id) DO NOTHING RETURNING id";

/// Insert `traces` in one transaction, with the rollup rows they touch (aggregated in
/// memory first, so a batch costs one upsert per touched row, not per trace). The
/// statement is prepared once per connection and cached; on PostgreSQL the rows are
/// pipelined (one round trip per batch, not per trace).
///
/// The traces come first: a rollup that cannot be updated (a damaged row) never costs
/// them. The rollup writes run under a savepoint; on failure it is rolled back, the
/// batch's days are marked for recomputation from the traces, and the traces commit.
pub(crate) fn insert_batch<'c>(
    db: impl Into<Db<'c>>,
    traces: &[TraceRecord],
) -> Result<(), StoreError> {
    insert_batch_cached(db, traces, None, None)
}

/// [`insert_batch`] for the writer, which remembers what its batches left behind: on
/// SQLite the rollup rows it wrote, so the next batch need not read them back
/// (`rollup_cache`); on PostgreSQL the days whose partitions exist (`KnownDays`).
pub(crate) fn insert_batch_cached<'c>(
    db: impl Into<Db<'c>>,
    traces: &[TraceRecord],
    cache: Option<&mut RollupCache>,
    days: Option<&mut KnownDays>,
) -> Result<(), StoreError> {
    let db = db.into();
    let mut new_days = Vec::new();
    // On PostgreSQL replicas take turns, so rowids follow commit order (see the lock's
    // doc); the lock is taken with BEGIN, in one round trip. On SQLite: BEGIN IMMEDIATE.
    let done = db.exclusive(crate::rollup::TRACE_WRITE_LOCK, |tx| {
        if let Db::Postgres(pg) = tx {
            new_days = crate::partitions::ensure_days(
                tx,
                traces.iter().map(|t| t.started_at_ms),
                days.as_deref(),
            )?;
            insert_claiming_ids(pg, traces)?;
        } else {
            let json = traces
                .iter()
                .map(RowJson::of)
                .collect::<Result<Vec<_>, _>>()?;
            let inserted = tx.execute_rows(
                INSERT_SQL,
                traces.iter().zip(&json).map(|(t, j)| row(t, &t.id, None, j)),
            )?;
            // Ids are unique: a caller's id that is taken moves to `client_request_id`
            // and the trace gets a fresh one (migration 0018).
            let retries: Vec<(&TraceRecord, &RowJson, String)> = traces
                .iter()
                .zip(&json)
                .zip(&inserted)
                .filter(|(_, n)| **n == 0)
                .map(|((t, j), _)| (t, j, fresh_id()))
                .collect();
            if !retries.is_empty() {
                tx.execute_rows(
                    INSERT_SQL,
                    retries.iter().map(|(t, j, id)| row(t, id, Some(&t.id), j)),
                )?;
            }
        }
        // Read after the inserts: the transaction holds SQLite's write lock now, so no
        // other commit can fall between this check and the rows' use.
        let version = match (&cache, tx.dialect()) {
            (Some(_), crate::sql::Dialect::Sqlite) => Some(data_version(tx)?),
            _ => None,
        };
        let known = match (&cache, version) {
            (Some(c), Some(v)) => c.valid_at(v),
            _ => None,
        };
        let mut rollups = RollupBatch::default();
        for t in traces {
            rollups.add(&Sample::of(t));
        }
        // On PostgreSQL the stored rows are read by a cached statement whose plan is
        // kept to index probes (`rollup_pg`); the settings that keep it so come with
        // the savepoint, in its round trip.
        let written = tx.savepoint_with("rollups", INDEX_LOOKUPS_ONLY, |sp| {
            rollups.write(sp, known, version.is_some(), StoredRead::CachedIndexLookups)
        });
        match written {
            Ok(written) => Ok(version.map(|v| (written, v))),
            Err(e) => {
                tracing::warn!(error = %e, "cannot update the rollups for a batch; its days will be recomputed from the traces");
                let (lo, hi) = traces.iter().fold((i64::MAX, i64::MIN), |(lo, hi), t| {
                    (lo.min(t.started_at_ms), hi.max(t.started_at_ms))
                });
                if lo <= hi {
                    crate::rollup::mark_dirty(tx, lo, hi.saturating_add(1))?;
                }
                Ok(None)
            }
        }
    });
    if let (Ok(_), Some(days)) = (&done, days) {
        days.add(&new_days);
    }
    match (done, cache) {
        (Ok(Some((written, version))), Some(cache)) => {
            tracing::trace!(
                rows = written.rows.len(),
                from_cache = written.hits,
                "rollup rows written"
            );
            cache.count_hits(written.hits);
            cache.replace(written.rows, version);
            Ok(())
        }
        (done, cache) => {
            // Nothing known to be stored as the cache would say: rolled back or failed.
            if let Some(cache) = cache {
                cache.clear();
            }
            done.map(|_| ())
        }
    }
}

fn fresh_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// PostgreSQL: claim the batch's ids in `trace_ids`, a fresh one for a trace whose id is
/// taken (the caller's moves to `client_request_id`, as on SQLite), then copy the rows.
fn insert_claiming_ids(pg: &PgConn, traces: &[TraceRecord]) -> Result<(), StoreError> {
    let claim = |ids: Vec<&str>, starts: Vec<i64>| -> Result<HashSet<String>, StoreError> {
        let rows = pg.query_typed(CLAIM_IDS_PG_SQL, &[&ids, &starts])?;
        rows.iter()
            .map(|r| r.try_get::<_, String>(0).map_err(StoreError::from))
            .collect()
    };
    let mut claimed = claim(
        traces.iter().map(|t| t.id.as_str()).collect(),
        traces.iter().map(|t| t.started_at_ms).collect(),
    )?;
    let mut rows = Vec::with_capacity(traces.len());
    let mut fresh: Vec<(String, i64)> = Vec::new();
    for t in traces {
        // `remove`: a batch that repeats an id gets it once, the repeat a fresh one.
        if claimed.remove(&t.id) {
            rows.push(params(t, &t.id, None)?);
        } else {
            let id = fresh_id();
            rows.push(params(t, &id, Some(&t.id))?);
            fresh.push((id, t.started_at_ms));
        }
    }
    if !fresh.is_empty() {
        // Fresh v7 ids are not taken: every one is claimed.
        claim(
            fresh.iter().map(|(id, _)| id.as_str()).collect(),
            fresh.iter().map(|(_, at)| *at).collect(),
        )?;
    }
    pg.copy_in(COPY_PG_SQL, &PG_COLUMN_TYPES, &rows)?;
    Ok(())
}

/// Token counts and durations are u64 in Rust, i64 in SQLite; anything past i64::MAX
/// is not a real count, so it is clamped rather than failing the batch.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `[Param::from(a), Param::from(b), …]`.
macro_rules! params {
    ($($v:expr),+ $(,)?) => { [$(Param::from($v)),+] };
}

/// A trace's columns held as JSON text, serialized once for its row.
struct RowJson {
    tags: String,
    attempts: Option<String>,
    guardrails: Option<String>,
}

impl RowJson {
    fn of(t: &TraceRecord) -> Result<RowJson, StoreError> {
        Ok(RowJson {
            tags: serde_json::to_string(&t.tags)?,
            attempts: if t.attempts.is_empty() {
                None
            } else {
                Some(serde_json::to_string(&t.attempts)?)
            },
            guardrails: if t.guardrails.is_empty() {
                None
            } else {
                Some(serde_json::to_string(&t.guardrails)?)
            },
        })
    }
}

/// A row of [`COPY_PG_SQL`] for `t` stored under `id`, owned.
fn params(
    t: &TraceRecord,
    id: &str,
    client_request_id: Option<&str>,
) -> Result<Vec<Value>, StoreError> {
    let json = RowJson::of(t)?;
    Ok(row(t, id, client_request_id, &json)
        .into_iter()
        .map(Value::from)
        .collect())
}

/// The parameters of [`INSERT_SQL`] (and a row of [`COPY_PG_SQL`]) for `t` stored
/// under `id`, borrowed from it.
fn row<'a>(
    t: &'a TraceRecord,
    id: &'a str,
    client_request_id: Option<&'a str>,
    json: &'a RowJson,
) -> [Param<'a>; 47] {
    let TraceRecord {
        id: _,
        started_at_ms,
        api,
        endpoint,
        key_id,
        tenant,
        feature,
        user,
        session,
        tags: _,
        model_requested,
        provider,
        upstream_model,
        served_model,
        system_fingerprint,
        stream,
        input,
        output,
        input_tokens,
        output_tokens,
        cached_tokens,
        reasoning_tokens,
        cost,
        unpriced,
        latency_ms,
        ttft_ms,
        status,
        http_status,
        error_class,
        error_message,
        finish_reason,
        function,
        variant,
        prompt_name,
        prompt_version,
        release_id,
        origin,
        attempts: _,
        cache,
        saved_cost,
        parent_id,
        guardrails: _,
        otel_trace_id,
        otel_span_id,
        otel_parent_span_id,
        usage_estimated,
    } = t;
    // Tags, attempts and guardrails come serialized, in `json`.
    params![
        id,
        started_at_ms,
        api,
        endpoint,
        key_id,
        tenant,
        feature,
        user,
        session,
        &json.tags,
        model_requested,
        provider,
        upstream_model,
        served_model,
        system_fingerprint,
        stream,
        input,
        output,
        input_tokens.map(int),
        output_tokens.map(int),
        cached_tokens.map(int),
        reasoning_tokens.map(int),
        cost.map(|c| c.0),
        unpriced,
        int(*latency_ms),
        ttft_ms.map(int),
        status.as_str(),
        http_status,
        error_class,
        error_message,
        finish_reason,
        function,
        variant,
        prompt_name,
        prompt_version,
        release_id,
        origin.as_str(),
        &json.attempts,
        cache,
        saved_cost.map(|c| c.0),
        parent_id,
        &json.guardrails,
        otel_trace_id,
        otel_span_id,
        otel_parent_span_id,
        usage_estimated,
        client_request_id,
    ]
}

fn get_u64(row: &Row<'_>, idx: usize) -> Result<u64, StoreError> {
    row.get(idx)
}

fn get_opt_u64(row: &Row<'_>, idx: usize) -> Result<Option<u64>, StoreError> {
    row.get(idx)
}

fn conversion(idx: usize, e: impl std::fmt::Display) -> StoreError {
    StoreError::Decode(format!("traces column {idx}: {e}"))
}

#[derive(Debug, thiserror::Error)]
#[error("unknown trace status or origin '{0}'")]
struct UnknownStatus(String);

/// Read a row selected with [`COLUMNS`].
pub(crate) fn from_row(row: &Row<'_>) -> Result<TraceRecord, StoreError> {
    let tags: String = row.get(9)?;
    let tags: Vec<String> = serde_json::from_str(&tags).map_err(|e| conversion(9, e))?;
    let status: String = row.get(26)?;
    let status =
        TraceStatus::parse(&status).ok_or_else(|| conversion(26, UnknownStatus(status)))?;
    let http_status: i64 = row.get(27)?;
    let http_status = u16::try_from(http_status)
        .map_err(|_| conversion(27, format!("HTTP status {http_status} out of range")))?;
    Ok(TraceRecord {
        id: row.get(0)?,
        started_at_ms: row.get(1)?,
        api: row.get(2)?,
        endpoint: row.get(3)?,
        key_id: row.get(4)?,
        tenant: row.get(5)?,
        feature: row.get(6)?,
        user: row.get(7)?,
        session: row.get(8)?,
        tags,
        model_requested: row.get(10)?,
        provider: row.get(11)?,
        upstream_model: row.get(12)?,
        served_model: row.get(13)?,
        system_fingerprint: row.get(14)?,
        stream: row.get(15)?,
        input: row.get(16)?,
        output: row.get(17)?,
        input_tokens: get_opt_u64(row, 18)?,
        output_tokens: get_opt_u64(row, 19)?,
        cached_tokens: get_opt_u64(row, 20)?,
        reasoning_tokens: get_opt_u64(row, 21)?,
        cost: row.get::<Option<i64>>(22)?.map(Nanos),
        unpriced: row.get(23)?,
        latency_ms: get_u64(row, 24)?,
        ttft_ms: get_opt_u64(row, 25)?,
        status,
        http_status,
        error_class: row.get(28)?,
        error_message: row.get(29)?,
        finish_reason: row.get(30)?,
        function: row.get(31)?,
        variant: row.get(32)?,
        prompt_name: row.get(33)?,
        prompt_version: row.get(34)?,
        release_id: row.get(35)?,
        origin: {
            let o: String = row.get(36)?;
            Origin::parse(&o).ok_or_else(|| conversion(36, UnknownStatus(o)))?
        },
        attempts: match row.get::<Option<String>>(37)? {
            None => Vec::new(),
            Some(j) => serde_json::from_str(&j).map_err(|e| conversion(37, e))?,
        },
        cache: row.get(38)?,
        saved_cost: row.get::<Option<i64>>(39)?.map(Nanos),
        parent_id: row.get(40)?,
        guardrails: match row.get::<Option<String>>(41)? {
            None => Vec::new(),
            Some(j) => serde_json::from_str(&j).map_err(|e| conversion(41, e))?,
        },
        otel_trace_id: row.get(42)?,
        otel_span_id: row.get(43)?,
        otel_parent_span_id: row.get(44)?,
        usage_estimated: row.get(45)?,
    })
}

#[cfg(test)]
#[path = "trace_row_pg_cost.rs"]
mod pg_cost;

#[cfg(test)]
#[path = "trace_row_pg_tests.rs"]
mod pg_tests;
