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
//! (`eval_runs`, joined on the release id), counted by case.

use std::collections::HashMap;

use keel_core::money::Nanos;
use keel_core::release::Release;
use rusqlite::types::Type;
use rusqlite::{params, Connection, Row};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::StoreError;
use crate::report::{count, Cost, Percentiles};

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
pub fn list_releases(
    conn: &Connection,
    filter: &ReleaseFilter,
) -> Result<Vec<ReleaseRow>, StoreError> {
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
    for row in &mut rows {
        if let Some(s) = sums.remove(&row.release.id) {
            let (latency, ttft) = values.remove(&row.release.id).unwrap_or_default();
            row.traffic = s.finish(latency, ttft);
        }
        row.evals = release_evals(conn, &row.release.id)?;
    }
    Ok(rows)
}

/// The newest candidate eval runs of a release (uses `eval_runs_release`).
fn release_evals(conn: &Connection, release_id: &str) -> Result<Vec<ReleaseEval>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, suite, started_at_ms, cases, passed, gate_passed FROM eval_runs
         WHERE release_id = ?1 AND role = 'candidate' AND status = 'done'
         ORDER BY started_at_ms DESC LIMIT 5",
    )?;
    let rows = stmt.query_map([release_id], |r| {
        Ok(ReleaseEval {
            run_id: r.get(0)?,
            suite: r.get(1)?,
            started_at_ms: r.get(2)?,
            cases: r.get(3)?,
            passed: r.get(4)?,
            gate_passed: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The releases with their first and last served times; `?1` function, `?2` since,
/// `?3` limit (-1: none).
const PICK_SQL: &str =
    "SELECT id, function, variant, prompt_name, prompt_version, prompt_hash, model, provider,
            upstream_model, params_json, tools_json, created_at_ms, first_served_ms, last_served_ms
     FROM (
         SELECT r.*,
                (SELECT MIN(t.started_at_ms) FROM traces t WHERE t.release_id = r.id AND t.origin = 'live') AS first_served_ms,
                (SELECT MAX(t.started_at_ms) FROM traces t WHERE t.release_id = r.id AND t.origin = 'live') AS last_served_ms
         FROM releases r
         WHERE ?1 IS NULL OR r.function = ?1
     )
     WHERE ?2 IS NULL OR created_at_ms >= ?2 OR last_served_ms >= ?2
     ORDER BY last_served_ms DESC NULLS LAST, created_at_ms DESC, id ASC
     LIMIT ?3";

/// The releases themselves with their first and last served times (two index seeks
/// each on `traces_release`), filtered, ordered and limited.
fn pick_releases(conn: &Connection, filter: &ReleaseFilter) -> Result<Vec<ReleaseRow>, StoreError> {
    let limit = match filter.limit {
        0 => -1, // SQLite: no limit
        n => i64::try_from(n).unwrap_or(i64::MAX),
    };
    let mut stmt = conn.prepare(PICK_SQL)?;
    let rows = stmt.query_map(params![filter.function, filter.since_ms, limit], |row| {
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
                params: json_column::<Map<String, Value>>(row, 9)?,
                tools: row
                    .get::<_, Option<String>>(10)?
                    .map(|text| parse_json::<Vec<Value>>(&text, 10))
                    .transpose()?,
            },
            created_at_ms: row.get(11)?,
            first_served_ms: row.get(12)?,
            last_served_ms: row.get(13)?,
            traffic: ReleaseTraffic::default(),
            evals: Vec::new(),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn json_column<T: serde::de::DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    parse_json(&row.get::<_, String>(idx)?, idx)
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, idx: usize) -> rusqlite::Result<T> {
    serde_json::from_str(text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
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

/// Counts and sums per release, in one `GROUP BY`.
fn traffic_sums(
    conn: &Connection,
    ids: &str,
    since: i64,
) -> Result<HashMap<String, Sums>, StoreError> {
    let sql = format!(
        "SELECT release_id, COUNT(*), SUM(status = 'error'),
                SUM(CASE WHEN unpriced = 0 THEN cost_nanos END),
                SUM(unpriced = 0 AND cost_nanos IS NOT NULL), SUM(unpriced),
                SUM(input_tokens), COUNT(input_tokens), SUM(output_tokens), COUNT(output_tokens)
         FROM traces WHERE {OF_RELEASES} GROUP BY release_id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![ids, since], |row| {
        Ok((
            row.get::<_, String>(0)?,
            Sums {
                requests: count(row, 1)?,
                errors: count(row, 2)?,
                cost_nanos: row.get::<_, Option<i64>>(3)?.unwrap_or(0),
                priced_calls: count(row, 4)?,
                unpriced_calls: count(row, 5)?,
                input_tokens: count(row, 6)?,
                calls_with_input: count(row, 7)?,
                output_tokens: count(row, 8)?,
                calls_with_output: count(row, 9)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Latencies of every request and times to first token of streamed ones, in ms.
type Durations = (Vec<u64>, Vec<u64>);

/// Per release, the latency of every request and the time to first token of streamed
/// ones, for the percentiles (bounded by the window).
fn latencies(
    conn: &Connection,
    ids: &str,
    since: i64,
) -> Result<HashMap<String, Durations>, StoreError> {
    let sql = format!(
        "SELECT release_id, latency_ms, CASE WHEN stream = 1 THEN ttft_ms END
         FROM traces WHERE {OF_RELEASES}"
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(params![ids, since])?;
    let mut out: HashMap<String, Durations> = HashMap::new();
    while let Some(row) = rows.next()? {
        let entry = out.entry(row.get(0)?).or_default();
        entry.0.push(count(row, 1)?);
        if let Some(ttft) = row.get::<_, Option<i64>>(2)? {
            entry.1.push(u64::try_from(ttft).unwrap_or(0));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Store;
    use crate::releases::record_release;
    use crate::trace_row;
    use keel_core::trace::{TraceRecord, TraceStatus};

    fn release(function: &str, variant: &str, version: i64, temperature: f64) -> Release {
        let mut params = Map::new();
        params.insert("temperature".into(), temperature.into());
        Release::new(
            function,
            variant,
            "support/answer",
            version,
            "hash",
            "fast",
            "mock",
            "mock-1-2024",
            params,
            None,
        )
    }

    fn served(id: &str, rel: &Release, at: i64, latency_ms: u64) -> TraceRecord {
        let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
        t.function = Some(rel.function.clone());
        t.variant = Some(rel.variant.clone());
        t.prompt_name = Some(rel.prompt_name.clone());
        t.prompt_version = Some(rel.prompt_version);
        t.release_id = Some(rel.id.clone());
        t.input_tokens = Some(100);
        t.output_tokens = Some(20);
        t.cost = Some(Nanos(1_000));
        t.latency_ms = latency_ms;
        t
    }

    /// A store with `releases` recorded at the given times and `traces` written.
    fn seeded(releases: &[(&Release, i64)], traces: &[TraceRecord]) -> (Store, Connection) {
        let store = Store::open(":memory:").unwrap();
        let mut w = store.writer_connection().unwrap();
        for (rel, at) in releases {
            assert!(record_release(&w, rel, *at).unwrap());
        }
        trace_row::insert_batch(&mut w, traces).unwrap();
        let r = store.reader().unwrap();
        (store, r)
    }

    fn all(conn: &Connection) -> Vec<ReleaseRow> {
        list_releases(conn, &ReleaseFilter::default()).unwrap()
    }

    fn ids(rows: &[ReleaseRow]) -> Vec<&str> {
        rows.iter().map(|r| r.release.id.as_str()).collect()
    }

    #[test]
    fn traffic_is_grouped_per_release_with_first_and_last_served() {
        let v1 = release("support-answer", "control", 1, 0.2);
        let v2 = release("support-answer", "candidate", 2, 0.2);
        let mut traces = vec![
            served("a", &v1, 1_000, 100),
            served("b", &v1, 3_000, 300),
            served("c", &v1, 2_000, 200),
            served("d", &v2, 2_500, 50),
        ];
        let mut stream = served("e", &v2, 2_600, 70);
        stream.stream = true;
        stream.ttft_ms = Some(15);
        traces.push(stream);
        // Not a function call: belongs to no release.
        traces.push(TraceRecord::new(
            "raw".into(),
            9_000,
            "openai",
            "/v1/chat/completions",
        ));
        let (_s, conn) = seeded(&[(&v1, 500), (&v2, 2_400)], &traces);

        let rows = all(&conn);
        // v1 last served at 3000, v2 at 2600: newest first.
        assert_eq!(ids(&rows), [v1.id.as_str(), v2.id.as_str()]);
        let r1 = &rows[0];
        assert_eq!(r1.release, v1, "every field of the release comes back");
        assert_eq!(r1.created_at_ms, 500);
        assert_eq!(
            (r1.first_served_ms, r1.last_served_ms),
            (Some(1_000), Some(3_000))
        );
        assert_eq!(r1.traffic.requests, 3);
        assert_eq!(r1.traffic.cost, Cost(Nanos(3_000)));
        assert_eq!(r1.traffic.cost_per_call, Some(Cost(Nanos(1_000))));
        assert_eq!(r1.traffic.input_tokens_per_call, Some(100.0));
        assert_eq!(r1.traffic.output_tokens_per_call, Some(20.0));
        let p = r1.traffic.latency_ms.unwrap();
        assert_eq!((p.p50, p.p95), (200, 300));
        assert_eq!(r1.traffic.ttft_ms, None);

        let r2 = &rows[1];
        assert_eq!(r2.traffic.requests, 2);
        assert_eq!(r2.traffic.latency_ms.unwrap().p50, 50);
        assert_eq!(r2.traffic.ttft_ms.unwrap().p50, 15);
    }

    #[test]
    fn error_rate_counts_errors_but_not_disconnects() {
        let rel = release("support-answer", "control", 1, 0.2);
        let mut err = served("err", &rel, 2, 10);
        err.status = TraceStatus::Error;
        err.cost = None;
        err.input_tokens = None;
        err.output_tokens = None;
        let mut gone = served("gone", &rel, 3, 10);
        gone.status = TraceStatus::ClientDisconnected;
        let traces = [
            served("ok1", &rel, 1, 10),
            err,
            gone,
            served("ok2", &rel, 4, 10),
        ];
        let (_s, conn) = seeded(&[(&rel, 0)], &traces);

        let t = &all(&conn)[0].traffic;
        assert_eq!((t.requests, t.errors), (4, 1));
        assert_eq!(t.error_rate, Some(0.25));
        // The failed call reported no usage: it is neither priced nor unpriced.
        assert_eq!((t.priced_calls, t.unpriced_calls), (3, 0));
        assert_eq!(t.input_tokens_per_call, Some(100.0));
    }

    #[test]
    fn unpriced_calls_are_counted_apart_not_as_zero_dollars() {
        let rel = release("support-answer", "control", 1, 0.2);
        let mut unpriced = served("u", &rel, 2, 10);
        unpriced.cost = None;
        unpriced.unpriced = true;
        let mut cheap = served("p", &rel, 1, 10);
        cheap.cost = Some(Nanos(3_001));
        let (_s, conn) = seeded(&[(&rel, 0)], &[cheap, unpriced]);

        let t = &all(&conn)[0].traffic;
        assert_eq!(t.requests, 2);
        assert_eq!((t.priced_calls, t.unpriced_calls), (1, 1));
        assert_eq!(t.cost, Cost(Nanos(3_001)));
        // The mean is over the priced call only, not diluted by an unknown "$0".
        assert_eq!(t.cost_per_call, Some(Cost(Nanos(3_001))));

        // Only unpriced calls: no cost per call at all.
        let mut only = served("only", &rel, 3, 10);
        only.cost = None;
        only.unpriced = true;
        let other = release("other", "control", 1, 0.2);
        only.release_id = Some(other.id.clone());
        let (_s, conn) = seeded(&[(&other, 0)], &[only]);
        let t = &all(&conn)[0].traffic;
        assert_eq!((t.priced_calls, t.unpriced_calls), (0, 1));
        assert_eq!(t.cost_per_call, None);
    }

    #[test]
    fn a_release_never_served_is_listed_last_with_no_traffic() {
        let served_rel = release("support-answer", "control", 1, 0.2);
        let idle = release("support-answer", "control", 2, 0.2);
        let (_s, conn) = seeded(
            &[(&served_rel, 10), (&idle, 5_000)],
            &[served("a", &served_rel, 100, 10)],
        );
        let rows = all(&conn);
        assert_eq!(ids(&rows), [served_rel.id.as_str(), idle.id.as_str()]);
        let r = &rows[1];
        assert_eq!((r.first_served_ms, r.last_served_ms), (None, None));
        assert_eq!(r.created_at_ms, 5_000);
        assert_eq!(r.traffic, ReleaseTraffic::default());
        assert_eq!(r.traffic.error_rate, None);
        assert_eq!(r.traffic.latency_ms, None);
    }

    #[test]
    fn function_filter_since_window_and_limit() {
        let old = release("support-answer", "control", 1, 0.2);
        let new = release("support-answer", "control", 2, 0.2);
        let fresh = release("support-answer", "candidate", 3, 0.2);
        let other = release("summarize", "control", 1, 0.5);
        let traces = [
            served("o1", &old, 100, 10),
            served("o2", &old, 200, 10),
            served("n1", &new, 300, 10),
            served("n2", &new, 1_500, 10),
            served("x1", &other, 1_600, 10),
        ];
        // `fresh` was deployed at 1200 and has not served yet.
        let (_s, conn) = seeded(
            &[(&old, 0), (&new, 250), (&fresh, 1_200), (&other, 50)],
            &traces,
        );

        let only = |function: Option<&str>, since_ms: Option<i64>, limit: usize| {
            list_releases(
                &conn,
                &ReleaseFilter {
                    function: function.map(str::to_string),
                    since_ms,
                    limit,
                },
            )
            .unwrap()
        };

        let support = only(Some("support-answer"), None, 0);
        assert_eq!(
            ids(&support),
            [new.id.as_str(), old.id.as_str(), fresh.id.as_str()]
        );
        assert!(only(Some("nope"), None, 0).is_empty());

        // Since 1000: `old` neither served nor was deployed since; `fresh` was deployed.
        let recent = only(None, Some(1_000), 0);
        assert_eq!(
            ids(&recent),
            [other.id.as_str(), new.id.as_str(), fresh.id.as_str()]
        );
        // Traffic counts the window only; first served stays the first ever.
        let n = &recent[1];
        assert_eq!(n.traffic.requests, 1);
        assert_eq!(n.first_served_ms, Some(300));

        assert_eq!(
            ids(&only(None, None, 2)),
            [other.id.as_str(), new.id.as_str()]
        );
    }

    #[test]
    fn params_and_tools_come_back_as_json_and_rows_serialize_flat() {
        let mut params = Map::new();
        params.insert("max_tokens".into(), 300.into());
        let tools =
            vec![serde_json::json!({"type": "function", "function": {"name": "lookup_order"}})];
        let rel = Release::new(
            "support-answer",
            "control",
            "support/answer",
            4,
            "h",
            "fast",
            "mock",
            "mock-1",
            params,
            Some(tools),
        );
        let (_s, conn) = seeded(&[(&rel, 7)], &[served("a", &rel, 8, 10)]);
        let rows = all(&conn);
        assert_eq!(rows[0].release, rel);

        let json = serde_json::to_value(&rows[0]).unwrap();
        assert_eq!(json["id"], rel.id.as_str());
        assert_eq!(json["params"]["max_tokens"], 300);
        assert_eq!(json["tools"][0]["function"]["name"], "lookup_order");
        assert_eq!(json["created_at_ms"], 7);
        assert_eq!(json["requests"], 1);
        assert_eq!(json["cost_nanos"], 1_000);
        assert_eq!(json["cost_usd"], "0.000001");
        assert_eq!(json["cost_per_call"]["cost_nanos"], 1_000);
        assert_eq!(json["latency_ms"]["p50"], 10);
    }

    #[test]
    fn traffic_queries_use_the_release_index() {
        let (_s, conn) = seeded(&[], &[]);
        let plan = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> String {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt.query_map(args, |r| r.get::<_, String>(3)).unwrap();
            rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
        };
        let sums = plan(
            &format!(
                "SELECT release_id, COUNT(*) FROM traces WHERE {OF_RELEASES} GROUP BY release_id"
            ),
            &[&"[]", &0],
        );
        assert!(sums.contains("traces_release"), "{sums}");
        let pick = plan(PICK_SQL, &[&None::<String>, &None::<i64>, &-1]);
        assert!(pick.contains("traces_release"), "{pick}");
    }
}
