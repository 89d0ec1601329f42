//! Replay runs in the store: `keel replay` re-sends recorded production inputs through a
//! candidate (another variant, prompt version or model) and keeps, per run, every case
//! side by side — what was recorded and what the candidate did.
//!
//! A run row is created first; each case is written as it completes (one small
//! transaction that also bumps the run's counters), so an interrupted run keeps what it
//! did; [`finish_run`] stamps the end. Replayed calls never touch the `traces` table.

use keel_core::money::Nanos;
use rusqlite::{Transaction, TransactionBehavior};
use serde::Serialize;

use crate::error::StoreError;
use crate::sql::{Db, Row};
use crate::values;

/// A run about to start (the id and time are assigned when written).
#[derive(Debug, Clone, PartialEq)]
pub struct NewReplayRun<'a> {
    pub actor: &'a str,
    pub function: &'a str,
    /// `variant`, `prompt_version` or `model`.
    pub candidate_kind: &'a str,
    pub candidate_value: &'a str,
    /// How the recorded traces were chosen (since, limit, filters), as given.
    pub filters: serde_json::Value,
    /// Matching traces left out because their input was not captured.
    pub skipped: u64,
}

/// One stored run; serializes as the `--json` output of `keel replay list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayRun {
    pub id: String,
    pub created_at_ms: i64,
    /// `None` while running, or when the run was interrupted.
    pub finished_at_ms: Option<i64>,
    pub actor: String,
    pub function: String,
    pub candidate_kind: String,
    pub candidate_value: String,
    pub filters: serde_json::Value,
    pub cases: u64,
    /// Cases where the candidate failed (an error is data, not a failed run).
    pub failures: u64,
    pub skipped: u64,
}

/// One side of a case: the recorded call, or the candidate's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallSide {
    pub variant: Option<String>,
    pub prompt_version: Option<i64>,
    /// The configured model name.
    pub model: Option<String>,
    pub output: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// `None` when unknown; never $0 for an unpriced call.
    pub cost_nanos: Option<Nanos>,
    pub unpriced: bool,
    pub latency_ms: u64,
}

/// One recorded input replayed: the old call and the new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayCase {
    pub idx: u64,
    pub trace_id: String,
    pub recorded: CallSide,
    pub new: CallSide,
    /// The candidate's error class and message, when it failed.
    pub error: Option<String>,
}

/// A run with its cases in order; the `--json` output of `keel replay` and `show`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayRunDetail {
    #[serde(flatten)]
    pub run: ReplayRun,
    pub results: Vec<ReplayCase>,
}

/// Start a run at `at_ms`; returns its id (`rpl_<uuid v7>`).
pub fn create_run<'c>(
    db: impl Into<Db<'c>>,
    run: &NewReplayRun<'_>,
    at_ms: i64,
) -> Result<String, StoreError> {
    let id = format!("rpl_{}", uuid::Uuid::now_v7().simple());
    db.into().execute(
        "INSERT INTO replay_runs (id, created_at_ms, actor, function, candidate_kind,
             candidate_value, filters_json, skipped)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        &values![
            &id,
            at_ms,
            run.actor,
            run.function,
            run.candidate_kind,
            run.candidate_value,
            run.filters.to_string(),
            to_i64(run.skipped),
        ],
    )?;
    Ok(id)
}

/// Write one finished case and count it on its run, in one transaction (on SQLite an
/// immediate one: it writes, so it takes the write lock up front rather than failing
/// to upgrade under a concurrent writer).
pub fn record_case<'c>(
    db: impl Into<Db<'c>>,
    run_id: &str,
    case: &ReplayCase,
) -> Result<(), StoreError> {
    match db.into() {
        Db::Sqlite(conn) => {
            let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
            write_case(Db::Sqlite(&tx), run_id, case)?;
            tx.commit()?;
            Ok(())
        }
        db @ Db::Postgres(_) => db.transaction(|tx| write_case(tx, run_id, case)),
    }
}

fn write_case(tx: Db<'_>, run_id: &str, case: &ReplayCase) -> Result<(), StoreError> {
    let (r, n) = (&case.recorded, &case.new);
    tx.execute(
        "INSERT INTO replay_cases (run_id, idx, trace_id,
             recorded_variant, recorded_prompt_version, recorded_model, recorded_output,
             recorded_input_tokens, recorded_output_tokens, recorded_cost_nanos,
             recorded_unpriced, recorded_latency_ms,
             new_variant, new_prompt_version, new_model, new_output, new_input_tokens,
             new_output_tokens, new_cost_nanos, new_unpriced, new_latency_ms, new_error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,
                 ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
        &values![
            run_id,
            to_i64(case.idx),
            &case.trace_id,
            &r.variant,
            r.prompt_version,
            &r.model,
            &r.output,
            r.input_tokens.map(to_i64),
            r.output_tokens.map(to_i64),
            r.cost_nanos.map(|c| c.0),
            r.unpriced,
            to_i64(r.latency_ms),
            &n.variant,
            n.prompt_version,
            &n.model,
            &n.output,
            n.input_tokens.map(to_i64),
            n.output_tokens.map(to_i64),
            n.cost_nanos.map(|c| c.0),
            n.unpriced,
            to_i64(n.latency_ms),
            &case.error,
        ],
    )?;
    tx.execute(
        "UPDATE replay_runs SET cases = cases + 1, failures = failures + ?2 WHERE id = ?1",
        &values![run_id, i64::from(case.error.is_some())],
    )?;
    Ok(())
}

/// Mark the run finished at `at_ms`, with its counts taken from its stored cases.
pub fn finish_run<'c>(db: impl Into<Db<'c>>, run_id: &str, at_ms: i64) -> Result<(), StoreError> {
    db.into().execute(
        "UPDATE replay_runs SET finished_at_ms = ?2,
             cases = (SELECT COUNT(*) FROM replay_cases WHERE run_id = ?1),
             failures = (SELECT COUNT(*) FROM replay_cases WHERE run_id = ?1 AND new_error IS NOT NULL)
         WHERE id = ?1",
        &values![run_id, at_ms],
    )?;
    Ok(())
}

const RUN_COLUMNS: &str = "id, created_at_ms, finished_at_ms, actor, function, candidate_kind,
     candidate_value, filters_json, cases, failures, skipped";

/// The run `id` with its cases in order, if it exists.
pub fn get_run<'c>(db: impl Into<Db<'c>>, id: &str) -> Result<Option<ReplayRunDetail>, StoreError> {
    let db = db.into();
    let sql = format!("SELECT {RUN_COLUMNS} FROM replay_runs WHERE id = ?1");
    let Some(run) = db.query_opt(&sql, &values![id], run_from_row)? else {
        return Ok(None);
    };
    let cases = db.query(
        "SELECT idx, trace_id,
             recorded_variant, recorded_prompt_version, recorded_model, recorded_output,
             recorded_input_tokens, recorded_output_tokens, recorded_cost_nanos,
             recorded_unpriced, recorded_latency_ms,
             new_variant, new_prompt_version, new_model, new_output, new_input_tokens,
             new_output_tokens, new_cost_nanos, new_unpriced, new_latency_ms, new_error
         FROM replay_cases WHERE run_id = ?1 ORDER BY idx",
        &values![id],
        |row| {
            Ok(ReplayCase {
                idx: count(row, 0)?,
                trace_id: row.get(1)?,
                recorded: side_from_row(row, 2)?,
                new: side_from_row(row, 11)?,
                error: row.get(20)?,
            })
        },
    )?;
    Ok(Some(ReplayRunDetail {
        run,
        results: cases,
    }))
}

/// Runs, newest first, of `function` if given, at most `limit` (0 = all).
pub fn list_runs<'c>(
    db: impl Into<Db<'c>>,
    function: Option<&str>,
    limit: usize,
) -> Result<Vec<ReplayRun>, StoreError> {
    let limit = if limit == 0 {
        i64::MAX
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX)
    };
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM replay_runs WHERE CAST(?1 AS TEXT) IS NULL OR function = ?1
         ORDER BY created_at_ms DESC, id DESC LIMIT ?2"
    );
    db.into()
        .query(&sql, &values![function, limit], run_from_row)
}

fn run_from_row(row: &Row<'_>) -> Result<ReplayRun, StoreError> {
    let filters: String = row.get(7)?;
    Ok(ReplayRun {
        id: row.get(0)?,
        created_at_ms: row.get(1)?,
        finished_at_ms: row.get(2)?,
        actor: row.get(3)?,
        function: row.get(4)?,
        candidate_kind: row.get(5)?,
        candidate_value: row.get(6)?,
        filters: serde_json::from_str(&filters)
            .map_err(|e| StoreError::Decode(format!("replay_runs.filters_json: {e}")))?,
        cases: count(row, 8)?,
        failures: count(row, 9)?,
        skipped: count(row, 10)?,
    })
}

/// The nine columns of one side, from `at`: variant, prompt_version, model, output,
/// input_tokens, output_tokens, cost_nanos, unpriced, latency_ms.
fn side_from_row(row: &Row<'_>, at: usize) -> Result<CallSide, StoreError> {
    let opt_count = |i: usize| -> Result<Option<u64>, StoreError> {
        Ok(row
            .get::<Option<i64>>(i)?
            .map(|n| u64::try_from(n).unwrap_or(0)))
    };
    Ok(CallSide {
        variant: row.get(at)?,
        prompt_version: row.get(at + 1)?,
        model: row.get(at + 2)?,
        output: row.get(at + 3)?,
        input_tokens: opt_count(at + 4)?,
        output_tokens: opt_count(at + 5)?,
        cost_nanos: row.get::<Option<i64>>(at + 6)?.map(Nanos),
        unpriced: row.get(at + 7)?,
        latency_ms: count(row, at + 8)?,
    })
}

fn count(row: &Row<'_>, i: usize) -> Result<u64, StoreError> {
    Ok(u64::try_from(row.get::<i64>(i)?).unwrap_or(0))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_run(function: &str) -> NewReplayRun<'_> {
        NewReplayRun {
            actor: "ana",
            function,
            candidate_kind: "model",
            candidate_value: "gpt-4o-mini",
            filters: serde_json::json!({"since": "7d", "limit": 50, "tenant": "acme"}),
            skipped: 2,
        }
    }

    fn case(idx: u64, error: Option<&str>) -> ReplayCase {
        let recorded = CallSide {
            variant: Some("control".into()),
            prompt_version: Some(1),
            model: Some("mock-1".into()),
            output: Some("old".into()),
            input_tokens: Some(10),
            output_tokens: Some(5),
            cost_nanos: Some(Nanos(2_000)),
            unpriced: false,
            latency_ms: 40,
        };
        let new = CallSide {
            variant: Some("control@gpt-4o-mini".into()),
            output: error.is_none().then(|| "new ✓".to_string()),
            cost_nanos: None,
            unpriced: true,
            latency_ms: 12,
            ..recorded.clone()
        };
        ReplayCase {
            idx,
            trace_id: format!("req-{idx}"),
            recorded,
            new,
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn a_run_and_its_cases_round_trip_and_count() {
        for (backend, store, _db) in crate::testing::stores() {
            let conn = store.conn().unwrap();
            let id = create_run(&conn, &new_run("support"), 1_000).unwrap();
            assert!(id.starts_with("rpl_") && id.len() == 36, "{id}");

            // Cases arrive out of order (bounded concurrency); they read back by idx.
            let cases = [case(1, Some("upstream_error: boom")), case(0, None)];
            for c in &cases {
                record_case(&conn, &id, c).unwrap();
            }
            // Before finish_run: an interrupted run still shows what it did.
            let got = get_run(&conn, &id).unwrap().unwrap();
            assert_eq!(
                (got.run.cases, got.run.failures, got.run.skipped),
                (2, 1, 2),
                "{backend}"
            );
            assert_eq!(got.run.finished_at_ms, None);
            assert_eq!(
                got.results,
                vec![cases[1].clone(), cases[0].clone()],
                "{backend}"
            );

            finish_run(&conn, &id, 2_000).unwrap();
            let got = get_run(&conn, &id).unwrap().unwrap();
            assert_eq!(got.run.finished_at_ms, Some(2_000));
            assert_eq!(got.run.actor, "ana");
            assert_eq!(got.run.candidate_kind, "model");
            assert_eq!(got.run.filters["tenant"], "acme");
            assert_eq!((got.run.cases, got.run.failures), (2, 1));

            // The JSON shape: run fields flat, cases with both sides; unknown cost is null.
            let j = serde_json::to_value(&got).unwrap();
            assert_eq!(j["id"], id.as_str());
            assert_eq!(j["results"][0]["recorded"]["cost_nanos"], 2_000);
            assert_eq!(
                j["results"][0]["new"]["cost_nanos"],
                serde_json::Value::Null
            );
            assert_eq!(j["results"][0]["new"]["unpriced"], true);
            assert_eq!(j["results"][1]["error"], "upstream_error: boom");

            assert_eq!(get_run(&conn, "rpl_nope").unwrap(), None, "{backend}");
        }
    }

    #[test]
    fn a_case_index_is_written_once() {
        for (backend, store, _db) in crate::testing::stores() {
            let conn = store.conn().unwrap();
            let id = create_run(&conn, &new_run("support"), 1_000).unwrap();
            record_case(&conn, &id, &case(0, None)).unwrap();
            assert!(record_case(&conn, &id, &case(0, None)).is_err());
            // The failed write did not count.
            assert_eq!(
                get_run(&conn, &id).unwrap().unwrap().run.cases,
                1,
                "{backend}"
            );
        }
    }

    #[test]
    fn runs_list_newest_first_by_function() {
        for (backend, store, _db) in crate::testing::stores() {
            let conn = store.conn().unwrap();
            let a = create_run(&conn, &new_run("support"), 1_000).unwrap();
            let b = create_run(&conn, &new_run("summarize"), 2_000).unwrap();
            let c = create_run(&conn, &new_run("support"), 3_000).unwrap();
            let ids =
                |runs: Vec<ReplayRun>| runs.into_iter().map(|r| r.id).collect::<Vec<String>>();
            assert_eq!(
                ids(list_runs(&conn, None, 0).unwrap()),
                [c.as_str(), b.as_str(), a.as_str()],
                "{backend}"
            );
            assert_eq!(
                ids(list_runs(&conn, Some("support"), 0).unwrap()),
                [c.as_str(), a.as_str()]
            );
            assert_eq!(ids(list_runs(&conn, None, 1).unwrap()), [c.as_str()]);
            assert!(list_runs(&conn, Some("nope"), 0).unwrap().is_empty());
        }
    }
}
