//! How a `TraceRecord` maps to a row of `traces` and back: the column list, the insert
//! statement (which also maintains the rollups), and the conversions (tags as JSON text,
//! cost as integer nanos, booleans as 0/1, status as text).
//!
//! Both directions destructure `TraceRecord` exhaustively, so a field added to it does
//! not compile until it has a column here (and a migration).

use keel_core::money::Nanos;
use keel_core::trace::{Origin, TraceRecord, TraceStatus};
use rusqlite::types::Type;
use rusqlite::{params, Connection, Row, Statement};

use crate::rollup::{RollupBatch, Sample};

/// Every column, in the order `from_row` reads them.
pub(crate) const COLUMNS: &str = "id, started_at_ms, api, endpoint, key_id, tenant, feature, user, session, tags, \
     model_requested, provider, upstream_model, served_model, system_fingerprint, stream, input, output, \
     input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_nanos, unpriced, latency_ms, ttft_ms, \
     status, http_status, error_class, error_message, finish_reason, \
     function, variant, prompt_name, prompt_version, release_id, origin, attempts_json, cache, saved_cost_nanos, parent_id, guardrails_json, \
     otel_trace_id, otel_span_id, otel_parent_span_id, usage_estimated";

const INSERT_SQL: &str = "INSERT INTO traces (id, started_at_ms, api, endpoint, key_id, tenant, feature, user, session, tags, \
     model_requested, provider, upstream_model, served_model, system_fingerprint, stream, input, output, \
     input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_nanos, unpriced, latency_ms, ttft_ms, \
     status, http_status, error_class, error_message, finish_reason, \
     function, variant, prompt_name, prompt_version, release_id, origin, attempts_json, cache, saved_cost_nanos, parent_id, guardrails_json, \
     otel_trace_id, otel_span_id, otel_parent_span_id, usage_estimated, client_request_id) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, \
     ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38, ?39, ?40, ?41, ?42, ?43, ?44, ?45, ?46, ?47) \
     ON CONFLICT (id) DO NOTHING";

/// Insert `traces` in one transaction, with the rollup rows they touch (aggregated in
/// memory first, so a batch costs one upsert per touched row, not per trace). The
/// statements are prepared once per connection and cached.
///
/// The traces come first: a rollup that cannot be updated (a damaged row) never costs
/// them. The rollup writes run under a savepoint; on failure it is rolled back, the
/// batch's days are marked for recomputation from the traces, and the traces commit.
pub(crate) fn insert_batch(conn: &mut Connection, traces: &[TraceRecord]) -> rusqlite::Result<()> {
    let mut tx = conn.transaction()?;
    let mut rollups = RollupBatch::default();
    {
        let mut stmt = tx.prepare_cached(INSERT_SQL)?;
        for t in traces {
            // Ids are unique: a caller's id that is taken moves to `client_request_id`
            // and the trace gets a fresh one (migration 0018).
            if insert_one(&mut stmt, t, &t.id, None)? == 0 {
                let fresh = uuid::Uuid::now_v7().to_string();
                insert_one(&mut stmt, t, &fresh, Some(&t.id))?;
            }
            rollups.add(&Sample::of(t));
        }
    }
    let written = {
        let sp = tx.savepoint()?;
        match rollups.write(&sp) {
            Ok(()) => sp.commit(),
            Err(e) => Err(e),
        }
    };
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot update the rollups for a batch; its days will be recomputed from the traces");
        let (lo, hi) = traces.iter().fold((i64::MAX, i64::MIN), |(lo, hi), t| {
            (lo.min(t.started_at_ms), hi.max(t.started_at_ms))
        });
        if lo <= hi {
            crate::rollup::mark_dirty(&tx, lo, hi.saturating_add(1))?;
        }
    }
    tx.commit()
}

/// Token counts and durations are u64 in Rust, i64 in SQLite; anything past i64::MAX
/// is not a real count, so it is clamped rather than failing the batch.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Insert `t` under `id`; the rows written (0 when `id` is taken).
fn insert_one(
    stmt: &mut Statement<'_>,
    t: &TraceRecord,
    id: &str,
    client_request_id: Option<&str>,
) -> rusqlite::Result<usize> {
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
        tags,
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
        attempts,
        cache,
        saved_cost,
        parent_id,
        guardrails,
        otel_trace_id,
        otel_span_id,
        otel_parent_span_id,
        usage_estimated,
    } = t;
    let tags = serde_json::to_string(tags)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let attempts_json = if attempts.is_empty() {
        None
    } else {
        Some(
            serde_json::to_string(attempts)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
        )
    };
    let guardrails_json = if guardrails.is_empty() {
        None
    } else {
        Some(
            serde_json::to_string(guardrails)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
        )
    };
    stmt.execute(params![
        id,
        started_at_ms,
        api,
        endpoint,
        key_id,
        tenant,
        feature,
        user,
        session,
        tags,
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
        attempts_json,
        cache,
        saved_cost.map(|c| c.0),
        parent_id,
        guardrails_json,
        otel_trace_id,
        otel_span_id,
        otel_parent_span_id,
        usage_estimated,
        client_request_id,
    ])
}

fn get_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v))
}

fn get_opt_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    let v: Option<i64> = row.get(idx)?;
    v.map(|v| u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v)))
        .transpose()
}

fn conversion<E>(idx: usize, e: E) -> rusqlite::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))
}

#[derive(Debug, thiserror::Error)]
#[error("unknown trace status or origin '{0}'")]
struct UnknownStatus(String);

/// Read a row selected with [`COLUMNS`].
pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<TraceRecord> {
    let tags: String = row.get(9)?;
    let tags: Vec<String> = serde_json::from_str(&tags).map_err(|e| conversion(9, e))?;
    let status: String = row.get(26)?;
    let status =
        TraceStatus::parse(&status).ok_or_else(|| conversion(26, UnknownStatus(status)))?;
    let http_status: i64 = row.get(27)?;
    let http_status = u16::try_from(http_status)
        .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(27, http_status))?;
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
        cost: row.get::<_, Option<i64>>(22)?.map(Nanos),
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
        attempts: match row.get::<_, Option<String>>(37)? {
            None => Vec::new(),
            Some(j) => serde_json::from_str(&j).map_err(|e| conversion(37, e))?,
        },
        cache: row.get(38)?,
        saved_cost: row.get::<_, Option<i64>>(39)?.map(Nanos),
        parent_id: row.get(40)?,
        guardrails: match row.get::<_, Option<String>>(41)? {
            None => Vec::new(),
            Some(j) => serde_json::from_str(&j).map_err(|e| conversion(41, e))?,
        },
        otel_trace_id: row.get(42)?,
        otel_span_id: row.get(43)?,
        otel_parent_span_id: row.get(44)?,
        usage_estimated: row.get(45)?,
    })
}
