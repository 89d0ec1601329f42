//! PostgreSQL writes a batch's rollup rows in two statements whatever the batch holds:
//! one read of the stored rows (the keys passed as arrays and joined) and one upsert
//! of the merged rows (the values passed as arrays and `unnest`ed).
//!
//! Row by row, the 18-odd reads and 18-odd upserts of a batch were pipelined in one
//! round trip but still executed one statement each on the server — 16–28 µs of
//! PostgreSQL's CPU per trace in batches of 100 (`pg_cost`), on the cores the gateway
//! serves from. The caller holds the trace write lock, so no other replica changes
//! these rows between the read and the upsert.
//!
//! How the read is planned matters (`StoredRead`): its best plan is an index probe per
//! key, whatever the table's size. A cached statement moves to a generic plan after five
//! runs and keeps it; one settled on while the table was small scans all of it and
//! keeps doing so as it grows (120 ms a batch at 300,000 rows). So the trace writer's
//! read is a cached statement run where hash and merge joins and sequential scans are
//! turned off for the transaction ([`INDEX_LOOKUPS_ONLY`], sent with its savepoint):
//! its generic plan is made of index probes then, at any size, and the parse and plan
//! (~0.37 ms of server time a batch) are paid once per connection. Other callers (a
//! rebuild) have the read planned each time instead.

use crate::error::StoreError;
use crate::rollup_cache::CachedKey;
use crate::rollup_counts::Counts;
use crate::sql::{PgConn, Row};
use tokio_postgres::types::{ToSql, Type};

/// The stored counts of the rows whose keys are given, with each key's position.
const SELECT_ROWS: &str = "SELECT k.i, r.requests, r.errors, r.input_tokens, \
     r.output_tokens, r.calls_with_usage, r.cost_nanos, r.unpriced, r.latency_hist, \
     r.ttft_hist \
     FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[]) \
          WITH ORDINALITY AS k(res_ms, origin, dim, bucket_ms, value, i) \
     JOIN trace_rollups r ON r.res_ms = k.res_ms AND r.origin = k.origin \
          AND r.dim = k.dim AND r.bucket_ms = k.bucket_ms AND r.value = k.value";

/// Every row given replaces the stored one (keys are distinct: one per batch entry).
const UPSERT_ROWS: &str = concat!(
    "INSERT INTO trace_rollups (res_ms, origin, dim, bucket_ms, \
     value, requests, errors, input_tokens, output_tokens, calls_with_usage, cost_nanos, \
     unpriced, latency_hist, ttft_hist) \
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], \
          $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], \
          $11::bigint[], $12::bigint[], $13::bytea[], $14::bytea[])",
    crate::rollup::replace_stored_counts!()
);

/// Settings, local to the transaction, under which [`StoredRead::CachedIndexLookups`]
/// may run: with sequential scans and hash and merge joins priced out, the planner's
/// way to the rows is a nested loop over the keys probing the primary key index, so a
/// generic plan cached now stays one probe per key however the table grows (the
/// stale-plan test checks both how many rows were scanned and how many fetched by
/// index). A cached plan is not re-planned when settings change, but is when the
/// table's statistics do: that re-plan happens at execution, so with these settings too.
pub(crate) const INDEX_LOOKUPS_ONLY: &str =
    "SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; \
     SET LOCAL enable_mergejoin = off";

/// How [`merge_and_write`] reads the stored rows on PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoredRead {
    /// A cached statement: only in a transaction that ran [`INDEX_LOOKUPS_ONLY`] first
    /// (every `trace_row::insert_batch`, which sends them with its savepoint; on any
    /// connection, since every run of this statement's text is under them).
    CachedIndexLookups,
    /// Parsed and planned anew each run (an unnamed statement): right for any caller.
    PlannedEachTime,
}

/// Counts past i64::MAX are not real counts; clamped as everywhere else.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The key columns of `rows`, one array per column, in [`SELECT_ROWS`]'s order.
struct KeyArrays<'r> {
    res_ms: Vec<i64>,
    origin: Vec<&'r str>,
    dim: Vec<&'r str>,
    bucket_ms: Vec<i64>,
    value: Vec<&'r str>,
}

impl<'r> KeyArrays<'r> {
    fn of(rows: &'r [(CachedKey, Counts)]) -> KeyArrays<'r> {
        let mut k = KeyArrays {
            res_ms: Vec::with_capacity(rows.len()),
            origin: Vec::with_capacity(rows.len()),
            dim: Vec::with_capacity(rows.len()),
            bucket_ms: Vec::with_capacity(rows.len()),
            value: Vec::with_capacity(rows.len()),
        };
        for ((res_ms, bucket_ms, origin, dim, value), _) in rows {
            k.res_ms.push(*res_ms);
            k.origin.push(origin);
            k.dim.push(dim.as_str());
            k.bucket_ms.push(*bucket_ms);
            k.value.push(value);
        }
        k
    }
}

/// Add the stored counts to `rows`, then store the sums: one read, one upsert.
pub(crate) fn merge_and_write(
    pg: &PgConn,
    rows: &mut [(CachedKey, Counts)],
    read: StoredRead,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let stored = {
        let k = KeyArrays::of(rows);
        let params: [(&(dyn ToSql + Sync), Type); 5] = [
            (&k.res_ms, Type::INT8_ARRAY),
            (&k.origin, Type::TEXT_ARRAY),
            (&k.dim, Type::TEXT_ARRAY),
            (&k.bucket_ms, Type::INT8_ARRAY),
            (&k.value, Type::TEXT_ARRAY),
        ];
        match read {
            StoredRead::CachedIndexLookups => {
                let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
                pg.query_typed(SELECT_ROWS, &values)?
            }
            StoredRead::PlannedEachTime => pg.query_planned_each_time(SELECT_ROWS, &params)?,
        }
    };
    for row in &stored {
        let position: i64 = Row::Postgres(row).get(0)?;
        let counts = Counts::from_row(&Row::Postgres(row), 1)?;
        // WITH ORDINALITY counts from 1.
        let entry = usize::try_from(position - 1)
            .ok()
            .and_then(|i| rows.get_mut(i))
            .ok_or_else(|| StoreError::Decode(format!("rollup read: no key at {position}")))?;
        entry.1.merge(&counts);
    }
    let k = KeyArrays::of(rows);
    let column = |f: fn(&Counts) -> i64| -> Vec<i64> { rows.iter().map(|(_, c)| f(c)).collect() };
    let requests = column(|c| int(c.requests));
    let errors = column(|c| int(c.errors));
    let input_tokens = column(|c| int(c.input_tokens));
    let output_tokens = column(|c| int(c.output_tokens));
    let calls_with_usage = column(|c| int(c.calls_with_usage));
    let cost_nanos = column(|c| c.cost_nanos);
    let unpriced = column(|c| int(c.unpriced));
    let latency: Vec<Vec<u8>> = rows.iter().map(|(_, c)| c.latency.encode()).collect();
    let ttft: Vec<Vec<u8>> = rows.iter().map(|(_, c)| c.ttft.encode()).collect();
    pg.query_typed(
        UPSERT_ROWS,
        &[
            &k.res_ms,
            &k.origin,
            &k.dim,
            &k.bucket_ms,
            &k.value,
            &requests,
            &errors,
            &input_tokens,
            &output_tokens,
            &calls_with_usage,
            &cost_nanos,
            &unpriced,
            &latency,
            &ttft,
        ],
    )?;
    Ok(())
}
