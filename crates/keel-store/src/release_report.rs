//! The lineage report behind `keel releases`: every release (prompt version × pinned model
//! × parameters × tools, see `keel_core::release`) with when it was deployed, when it
//! first and last served, and its traffic, errors, cost and latency over a window.
//!
//! Counts and sums are one `GROUP BY release_id` over the listed releases' traces (the
//! `traces_release` index), exact integers for money; percentiles are nearest-rank over
//! each release's latencies in the window ([`Percentiles::nearest_rank`], as in the
//! weekly report). Unpriced calls are counted on their own, never as $0.
//!
//! Each row also carries the newest finished candidate eval runs of its release
//! (`eval_runs`, joined on the release id), counted by case, and the online quality of
//! its live calls in the window (`quality_figures`, the same figures as `keel report`).

use std::collections::HashMap;

use keel_core::money::Nanos;
use keel_core::release::Release;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::StoreError;
use crate::quality::release_quality_sums;
use crate::quality_figures::QualityRow;
use crate::report::{count, Cost, Percentiles};
use crate::sql::{Db, Dialect};
use crate::values;

/// Which releases to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseFilter {
    /// Only the releases of this function.
    pub function: Option<String>,
    /// Window start (Unix ms): traffic is counted from here, and releases that neither
    /// served nor were deployed since are left out. `None`: all time.
    pub since_ms: Option<i64>,
    /// Most releases to return (0 = all).
    pub limit: usize,
}

/// One release with its history and its traffic in the window; serializes flat (the
/// release's fields, then the times, then the traffic) as the `--json` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseRow {
    #[serde(flatten)]
    pub release: Release,
    /// When the release was first deployed (recorded by the gateway).
    pub created_at_ms: i64,
    /// The first and last trace it served, over all time (not only the window);
    /// `None` when it never served.
    pub first_served_ms: Option<i64>,
    pub last_served_ms: Option<i64>,
    #[serde(flatten)]
    pub traffic: ReleaseTraffic,
    /// Eval runs of this release (as a candidate), newest first, at most five.
    pub evals: Vec<ReleaseEval>,
    /// Online quality of its live calls in the window (judged calls, pass rate, metrics,
    /// feedback); `None` when none was judged or got feedback.
    pub quality: Option<QualityRow>,
}

/// One eval run of a release: `keel eval run` records the release the candidate served.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseEval {
    pub run_id: String,
    pub suite: String,
    pub started_at_ms: i64,
    pub cases: i64,
    pub passed: i64,
    /// `None` when the run checked no gate.
    pub gate_passed: Option<bool>,
}

/// What a release served in the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReleaseTraffic {
    pub requests: u64,
    /// Requests whose status is `error` (client disconnects are not errors).
    pub errors: u64,
    /// `errors / requests`, from 0 to 1; `None` without requests.
    pub error_rate: Option<f64>,
    /// The sum over priced calls only (`cost_nanos`, `cost_usd`).
    #[serde(flatten)]
    pub cost: Cost,
    /// Calls with a known cost.
    pub priced_calls: u64,
    /// Calls with tokens but no known price: their cost is unknown, not $0.
    pub unpriced_calls: u64,
    /// Mean cost of a priced call (rounded to the nano-dollar); `None` without one.
    pub cost_per_call: Option<Cost>,
    /// Mean tokens over the calls that reported them.
    pub input_tokens_per_call: Option<f64>,
    pub output_tokens_per_call: Option<f64>,
    /// Over every request; `None` without requests.
    pub latency_ms: Option<Percentiles>,
    /// Over streamed calls that recorded a time to first token.
    pub ttft_ms: Option<Percentiles>,
}

/// The releases matching `filter`, newest first: by last served (never-served ones
/// last), then by first deployed, then by id.
pub fn list_releases<'c>(
    db: impl Into<Db<'c>>,
    filter: &ReleaseFilter,
) -> Result<Vec<ReleaseRow>, StoreError> {
    let conn = db.into();
    let mut rows = pick_releases(conn, filter)?;
    if rows.is_empty() {
        return Ok(rows);
    }
    let ids = serde_json::to_string(
        &rows
            .iter()
            .map(|r| r.release.id.as_str())
            .collect::<Vec<_>>(),
    )?;
    let since = filter.since_ms.unwrap_or(i64::MIN);
    let mut sums = traffic_sums(conn, &ids, since)?;
    let mut values = latencies(conn, &ids, since)?;
    let listed: Vec<&str> = rows.iter().map(|r| r.release.id.as_str()).collect();
    let quality_sums = release_quality_sums(conn, &listed, since)?;
    let mut quality: HashMap<String, QualityRow> = quality_sums
        .iter()
        .map(|q| (q.name.clone(), QualityRow::from_sums(q)))
        .collect();
    for row in &mut rows {
        row.quality = quality.remove(&row.release.id);
        if let Some(s) = sums.remove(&row.release.id) {
            let (latency, ttft) = values.remove(&row.release.id).unwrap_or_default();
            row.traffic = s.finish(latency, ttft);
        }
        row.evals = release_evals(conn, &row.release.id)?;
    }
    Ok(rows)
}

/// The newest candidate eval runs of a release (uses `eval_runs_release`).
fn release_evals(conn: Db<'_>, release_id: &str) -> Result<Vec<ReleaseEval>, StoreError> {
    conn.query(
        "SELECT id, suite, started_at_ms, cases, passed, gate_passed FROM eval_runs
         WHERE release_id = ?1 AND role = 'candidate' AND status = 'done'
         ORDER BY started_at_ms DESC LIMIT 5",
        &values![release_id],
        |r| {
            Ok(ReleaseEval {
                run_id: r.get(0)?,
                suite: r.get(1)?,
                started_at_ms: r.get(2)?,
                cases: r.get(3)?,
                passed: r.get(4)?,
                gate_passed: r.get(5)?,
            })
        },
    )
}

/// The releases with their first and last served times; `?1` function, `?2` since,
/// `?3` limit (i64::MAX: none).
const PICK_SQL: &str =
    "SELECT id, function, variant, prompt_name, prompt_version, prompt_hash, model, provider,
            upstream_model, params_json, tools_json, created_at_ms, first_served_ms, last_served_ms
     FROM (
         SELECT r.*,
                (SELECT MIN(t.started_at_ms) FROM traces t WHERE t.release_id = r.id AND t.origin = 'live') AS first_served_ms,
                (SELECT MAX(t.started_at_ms) FROM traces t WHERE t.release_id = r.id AND t.origin = 'live') AS last_served_ms
         FROM releases r
         WHERE CAST(?1 AS TEXT) IS NULL OR r.function = ?1
     ) AS served
     WHERE CAST(?2 AS BIGINT) IS NULL OR created_at_ms >= ?2 OR last_served_ms >= ?2
     ORDER BY last_served_ms DESC NULLS LAST, created_at_ms DESC, id ASC
     LIMIT ?3";

/// The releases themselves with their first and last served times (two index seeks
/// each on `traces_release`), filtered, ordered and limited.
fn pick_releases(conn: Db<'_>, filter: &ReleaseFilter) -> Result<Vec<ReleaseRow>, StoreError> {
    let limit = match filter.limit {
        0 => i64::MAX,
        n => i64::try_from(n).unwrap_or(i64::MAX),
    };
    conn.query(
        PICK_SQL,
        &values![&filter.function, filter.since_ms, limit],
        |row| {
            Ok(ReleaseRow {
                release: Release {
                    id: row.get(0)?,
                    function: row.get(1)?,
                    variant: row.get(2)?,
                    prompt_name: row.get(3)?,
                    prompt_version: row.get(4)?,
                    prompt_hash: row.get(5)?,
                    model: row.get(6)?,
                    provider: row.get(7)?,
                    upstream_model: row.get(8)?,
                    params: parse_json::<Map<String, Value>>(&row.get::<String>(9)?, 9)?,
                    tools: row
                        .get::<Option<String>>(10)?
                        .map(|text| parse_json::<Vec<Value>>(&text, 10))
                        .transpose()?,
                },
                created_at_ms: row.get(11)?,
                first_served_ms: row.get(12)?,
                last_served_ms: row.get(13)?,
                traffic: ReleaseTraffic::default(),
                evals: Vec::new(),
                quality: None,
            })
        },
    )
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, idx: usize) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Decode(format!("releases column {idx}: {e}")))
}

/// The sums of one release's traces in the window, in the order `traffic_sums` selects them.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    requests: u64,
    errors: u64,
    cost_nanos: i64,
    priced_calls: u64,
    unpriced_calls: u64,
    input_tokens: u64,
    calls_with_input: u64,
    output_tokens: u64,
    calls_with_output: u64,
}

impl Sums {
    fn finish(self, latencies: Vec<u64>, ttfts: Vec<u64>) -> ReleaseTraffic {
        let ratio = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
        let cost_per_call = i64::try_from(self.priced_calls)
            .ok()
            .filter(|n| *n > 0)
            .map(|n| Cost(Nanos((self.cost_nanos + n / 2) / n)));
        ReleaseTraffic {
            requests: self.requests,
            errors: self.errors,
            error_rate: ratio(self.errors, self.requests),
            cost: Cost(Nanos(self.cost_nanos)),
            priced_calls: self.priced_calls,
            unpriced_calls: self.unpriced_calls,
            cost_per_call,
            input_tokens_per_call: ratio(self.input_tokens, self.calls_with_input),
            output_tokens_per_call: ratio(self.output_tokens, self.calls_with_output),
            latency_ms: Percentiles::nearest_rank(latencies),
            ttft_ms: Percentiles::nearest_rank(ttfts),
        }
    }
}

/// The traces of the releases in `ids` (a JSON array) that started at or after `since`.
/// Live traffic of the listed releases (eval and replay calls are kept apart).
const OF_RELEASES: &str =
    "release_id IN (SELECT value FROM json_each(?1)) AND started_at_ms >= ?2 AND origin = 'live'";
/// [`OF_RELEASES`] in PostgreSQL's words (its JSON array unnested by
/// `json_array_elements_text`).
const OF_RELEASES_PG: &str =
    "release_id IN (SELECT json_array_elements_text(CAST(CAST(?1 AS TEXT) AS JSON))) \
     AND started_at_ms >= ?2 AND origin = 'live'";

fn of_releases(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => OF_RELEASES,
        Dialect::Postgres => OF_RELEASES_PG,
    }
}

/// Counts and sums per release, in one `GROUP BY`.
fn traffic_sums(conn: Db<'_>, ids: &str, since: i64) -> Result<HashMap<String, Sums>, StoreError> {
    let sql = format!(
        "SELECT release_id, COUNT(*), SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END),
                SUM(CASE WHEN unpriced = 0 THEN cost_nanos END),
                SUM(CASE WHEN unpriced = 0 AND cost_nanos IS NOT NULL THEN 1 ELSE 0 END),
                SUM(unpriced),
                SUM(input_tokens), COUNT(input_tokens), SUM(output_tokens), COUNT(output_tokens)
         FROM traces WHERE {} GROUP BY release_id",
        of_releases(conn.dialect())
    );
    let rows = conn.query(&sql, &values![ids, since], |row| {
        Ok((
            row.get::<String>(0)?,
            Sums {
                requests: count(row, 1)?,
                errors: count(row, 2)?,
                cost_nanos: row.get::<Option<i64>>(3)?.unwrap_or(0),
                priced_calls: count(row, 4)?,
                unpriced_calls: count(row, 5)?,
                input_tokens: count(row, 6)?,
                calls_with_input: count(row, 7)?,
                output_tokens: count(row, 8)?,
                calls_with_output: count(row, 9)?,
            },
        ))
    })?;
    Ok(rows.into_iter().collect())
}

/// Latencies of every request and times to first token of streamed ones, in ms.
type Durations = (Vec<u64>, Vec<u64>);

/// Per release, the latency of every request and the time to first token of streamed
/// ones, for the percentiles (bounded by the window).
fn latencies(
    conn: Db<'_>,
    ids: &str,
    since: i64,
) -> Result<HashMap<String, Durations>, StoreError> {
    let sql = format!(
        "SELECT release_id, latency_ms, CASE WHEN stream = 1 THEN ttft_ms END
         FROM traces WHERE {}",
        of_releases(conn.dialect())
    );
    let mut out: HashMap<String, Durations> = HashMap::new();
    conn.query(&sql, &values![ids, since], |row| {
        let entry = out.entry(row.get(0)?).or_default();
        entry.0.push(count(row, 1)?);
        if let Some(ttft) = row.get::<Option<i64>>(2)? {
            entry.1.push(u64::try_from(ttft).unwrap_or(0));
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
#[path = "release_report_tests.rs"]
mod tests;
