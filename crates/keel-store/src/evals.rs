//! Eval runs in the store: a run row created when the run starts, one result row per
//! case and repeat written as it completes (so a long run keeps what it did if it is
//! interrupted, and never sits in memory), the summary at the end, and the response
//! cache keyed by the exact request.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::sql::{Db, Row};
use crate::values;

/// A run as it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvalRun {
    pub id: String,
    pub suite: String,
    pub started_at_ms: i64,
    pub actor: String,
    pub dataset_hash: String,
    /// `candidate` or `baseline`.
    pub role: String,
    pub target_json: String,
    pub function: Option<String>,
    pub variant: Option<String>,
    pub prompt_name: Option<String>,
    pub prompt_version: Option<i64>,
    pub model: Option<String>,
    pub upstream_model: Option<String>,
    pub release_id: Option<String>,
    pub repeat: u32,
}

/// A stored run with its counts and (when finished) its summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRun {
    #[serde(flatten)]
    pub run: NewEvalRun,
    pub finished_at_ms: Option<i64>,
    pub status: String,
    /// Results so far (case × repeat) while the run goes; once it is summarised, its
    /// cases and the cases that passed (see [`set_eval_run_counts`]).
    pub cases: i64,
    pub passed: i64,
    pub baseline_run: Option<String>,
    pub gate_passed: Option<bool>,
    pub summary_json: Option<String>,
    /// The model version that answered, for a scheduled canary's run (`canary_runs`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model_version: Option<String>,
}

/// One case × repeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    pub run_id: String,
    pub case_id: String,
    pub repeat_idx: u32,
    pub pass: bool,
    pub score: f64,
    pub output: Option<String>,
    pub error: Option<String>,
    pub latency_ms: u64,
    pub cost_nanos: Option<i64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cached: bool,
    pub trace_id: Option<String>,
    pub assertions_json: String,
}

pub fn create_eval_run<'c>(db: impl Into<Db<'c>>, r: &NewEvalRun) -> Result<(), StoreError> {
    db.into().execute(
        "INSERT INTO eval_runs (id, suite, started_at_ms, status, actor, dataset_hash, role, target_json,
             function, variant, prompt_name, prompt_version, model, upstream_model, release_id, repeat)
         VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        &values![
            &r.id, &r.suite, r.started_at_ms, &r.actor, &r.dataset_hash, &r.role, &r.target_json,
            &r.function, &r.variant, &r.prompt_name, r.prompt_version, &r.model, &r.upstream_model,
            &r.release_id, r.repeat
        ],
    )?;
    Ok(())
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Write one result and bump the run's counts, in one transaction. A result written
/// again (same run, case and repeat) replaces the first, as `INSERT OR REPLACE` did.
pub fn record_eval_result<'c>(db: impl Into<Db<'c>>, r: &EvalResult) -> Result<(), StoreError> {
    db.into().transaction(|tx| {
        tx.execute(
            "INSERT INTO eval_results (run_id, case_id, repeat_idx, pass, score, output, error,
                 latency_ms, cost_nanos, input_tokens, output_tokens, cached, trace_id, assertions_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (run_id, case_id, repeat_idx) DO UPDATE SET
                 pass = excluded.pass, score = excluded.score, output = excluded.output,
                 error = excluded.error, latency_ms = excluded.latency_ms,
                 cost_nanos = excluded.cost_nanos, input_tokens = excluded.input_tokens,
                 output_tokens = excluded.output_tokens, cached = excluded.cached,
                 trace_id = excluded.trace_id, assertions_json = excluded.assertions_json",
            &values![
                &r.run_id, &r.case_id, r.repeat_idx, r.pass, r.score, &r.output, &r.error,
                int(r.latency_ms), r.cost_nanos, r.input_tokens.map(int), r.output_tokens.map(int),
                r.cached, &r.trace_id, &r.assertions_json
            ],
        )?;
        tx.execute(
            "UPDATE eval_runs SET cases = cases + 1, passed = passed + ?2 WHERE id = ?1",
            &values![&r.run_id, i64::from(r.pass)],
        )?;
        Ok(())
    })
}

/// Replace the counts kept as results came (one per case × repeat) with the run's
/// case-level ones: with `repeat` > 1 a case is one case, passed by the runner's rule
/// (at least half its repeats), so `keel releases`, `keel eval history` and alerts read
/// the same pass rate as the run's report.
pub fn set_eval_run_counts<'c>(
    db: impl Into<Db<'c>>,
    id: &str,
    cases: u64,
    passed: u64,
) -> Result<(), StoreError> {
    db.into().execute(
        "UPDATE eval_runs SET cases = ?2, passed = ?3 WHERE id = ?1",
        &values![id, int(cases), int(passed)],
    )?;
    Ok(())
}

/// Close a run: its status (`done`, `interrupted`, `error`), summary and gate verdict.
pub fn finish_eval_run<'c>(
    db: impl Into<Db<'c>>,
    id: &str,
    status: &str,
    finished_at_ms: i64,
    summary_json: Option<&str>,
    gate_passed: Option<bool>,
    baseline_run: Option<&str>,
) -> Result<(), StoreError> {
    db.into().execute(
        "UPDATE eval_runs SET status = ?2, finished_at_ms = ?3, summary_json = ?4, gate_passed = ?5,
             baseline_run = ?6 WHERE id = ?1",
        &values![id, status, finished_at_ms, summary_json, gate_passed, baseline_run],
    )?;
    Ok(())
}

const RUN_COLS: &str = "id, suite, started_at_ms, actor, dataset_hash, role, target_json, function, variant,
    prompt_name, prompt_version, model, upstream_model, release_id, repeat, finished_at_ms, status, cases,
    passed, baseline_run, gate_passed, summary_json,
    (SELECT c.model_version FROM canary_runs c WHERE c.run_id = eval_runs.id LIMIT 1)";

fn run_row(r: &Row<'_>) -> Result<EvalRun, StoreError> {
    Ok(EvalRun {
        run: NewEvalRun {
            id: r.get(0)?,
            suite: r.get(1)?,
            started_at_ms: r.get(2)?,
            actor: r.get(3)?,
            dataset_hash: r.get(4)?,
            role: r.get(5)?,
            target_json: r.get(6)?,
            function: r.get(7)?,
            variant: r.get(8)?,
            prompt_name: r.get(9)?,
            prompt_version: r.get(10)?,
            model: r.get(11)?,
            upstream_model: r.get(12)?,
            release_id: r.get(13)?,
            repeat: r.get(14)?,
        },
        finished_at_ms: r.get(15)?,
        status: r.get(16)?,
        cases: r.get(17)?,
        passed: r.get(18)?,
        baseline_run: r.get(19)?,
        gate_passed: r.get(20)?,
        summary_json: r.get(21)?,
        model_version: r.get(22)?,
    })
}

pub fn get_eval_run<'c>(db: impl Into<Db<'c>>, id: &str) -> Result<Option<EvalRun>, StoreError> {
    db.into().query_opt(
        &format!("SELECT {RUN_COLS} FROM eval_runs WHERE id = ?1"),
        &values![id],
        run_row,
    )
}

/// Runs of `suite` (all suites when `None`), newest first.
pub fn list_eval_runs<'c>(
    db: impl Into<Db<'c>>,
    suite: Option<&str>,
    limit: usize,
) -> Result<Vec<EvalRun>, StoreError> {
    let limit = if limit == 0 {
        i64::MAX
    } else {
        int(limit as u64)
    };
    db.into().query(
        &format!(
            "SELECT {RUN_COLS} FROM eval_runs WHERE CAST(?1 AS TEXT) IS NULL OR suite = ?1
             ORDER BY started_at_ms DESC, id DESC LIMIT ?2"
        ),
        &values![suite, limit],
        run_row,
    )
}

const RESULT_COLUMNS: &str = "run_id, case_id, repeat_idx, pass, score, output, error, latency_ms,
     cost_nanos, input_tokens, output_tokens, cached, trace_id, assertions_json";

fn result_row(r: &Row<'_>) -> Result<EvalResult, StoreError> {
    let latency: i64 = r.get(7)?;
    Ok(EvalResult {
        run_id: r.get(0)?,
        case_id: r.get(1)?,
        repeat_idx: r.get(2)?,
        pass: r.get(3)?,
        score: r.get(4)?,
        output: r.get(5)?,
        error: r.get(6)?,
        latency_ms: u64::try_from(latency).unwrap_or(0),
        cost_nanos: r.get(8)?,
        input_tokens: r.get::<Option<i64>>(9)?.and_then(|v| u64::try_from(v).ok()),
        output_tokens: r
            .get::<Option<i64>>(10)?
            .and_then(|v| u64::try_from(v).ok()),
        cached: r.get(11)?,
        trace_id: r.get(12)?,
        assertions_json: r.get(13)?,
    })
}

/// Every result of a run, by case id then repeat.
pub fn eval_results<'c>(
    db: impl Into<Db<'c>>,
    run_id: &str,
) -> Result<Vec<EvalResult>, StoreError> {
    db.into().query(
        &format!(
            "SELECT {RESULT_COLUMNS} FROM eval_results WHERE run_id = ?1 ORDER BY case_id, repeat_idx"
        ),
        &values![run_id],
        result_row,
    )
}

/// Every result of a run, by case id then repeat, handed to `f` one at a time (for a
/// report over a run too large to hold). On SQLite the rows are streamed; on
/// PostgreSQL they are read in pages of [`RESULT_PAGE`] (keyset on case and repeat).
pub fn each_eval_result<'c>(
    db: impl Into<Db<'c>>,
    run_id: &str,
    f: &mut dyn FnMut(&EvalResult),
) -> Result<(), StoreError> {
    match db.into() {
        Db::Sqlite(conn) => {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {RESULT_COLUMNS} FROM eval_results WHERE run_id = ?1 ORDER BY case_id, repeat_idx"
            ))?;
            let mut rows = stmt.query([run_id])?;
            while let Some(row) = rows.next()? {
                f(&result_row(&Row::Sqlite(row))?);
            }
            Ok(())
        }
        db @ Db::Postgres(_) => {
            let sql = format!(
                "SELECT {RESULT_COLUMNS} FROM eval_results
                 WHERE run_id = ?1 AND (case_id > ?2 OR (case_id = ?2 AND repeat_idx > ?3))
                 ORDER BY case_id, repeat_idx LIMIT ?4"
            );
            let (mut case, mut repeat) = (String::new(), -1i64);
            loop {
                let page = db.query(
                    &sql,
                    &values![run_id, &case, repeat, RESULT_PAGE],
                    result_row,
                )?;
                for r in &page {
                    f(r);
                }
                match page.last() {
                    Some(last) if page.len() == RESULT_PAGE => {
                        case = last.case_id.clone();
                        repeat = i64::from(last.repeat_idx);
                    }
                    _ => return Ok(()),
                }
            }
        }
    }
}

/// Results read per round trip by [`each_eval_result`] on PostgreSQL.
const RESULT_PAGE: usize = 1_000;

/// The results of `run_id` (every repeat) for the cases that failed at least one repeat
/// in `failing_in` (the same run, or the candidate a baseline is read for), by case id
/// then repeat. What a report lists, without reading a large run's passing results.
pub fn eval_results_of_failing_cases<'c>(
    db: impl Into<Db<'c>>,
    run_id: &str,
    failing_in: &str,
) -> Result<Vec<EvalResult>, StoreError> {
    db.into().query(
        &format!(
            "SELECT {RESULT_COLUMNS} FROM eval_results
             WHERE run_id = ?1 AND case_id IN
                   (SELECT case_id FROM eval_results WHERE run_id = ?2 AND pass = 0)
             ORDER BY case_id, repeat_idx"
        ),
        &values![run_id, failing_in],
        result_row,
    )
}

pub fn cache_get<'c>(db: impl Into<Db<'c>>, key: &str) -> Result<Option<String>, StoreError> {
    db.into().query_opt(
        "SELECT response_json FROM eval_cache WHERE key = ?1",
        &values![key],
        |r| r.get(0),
    )
}

pub fn cache_put<'c>(
    db: impl Into<Db<'c>>,
    key: &str,
    json: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    db.into().execute(
        "INSERT INTO eval_cache (key, response_json, created_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET
             response_json = excluded.response_json, created_at_ms = excluded.created_at_ms",
        &values![key, json, at_ms],
    )?;
    Ok(())
}

/// `(passed, cases)` of the newest finished candidate run of `suite` on `release_id`
/// (cheapest-variant routing's quality bar).
pub fn latest_candidate_result<'c>(
    db: impl Into<Db<'c>>,
    release_id: &str,
    suite: &str,
) -> Result<Option<(i64, i64)>, StoreError> {
    db.into().query_opt(
        "SELECT passed, cases FROM eval_runs WHERE release_id = ?1 AND suite = ?2
           AND role = 'candidate' AND status = 'done'
         ORDER BY started_at_ms DESC LIMIT 1",
        &values![release_id, suite],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, at: i64) -> NewEvalRun {
        NewEvalRun {
            id: id.into(),
            suite: "support".into(),
            started_at_ms: at,
            actor: "t".into(),
            dataset_hash: "sha256:x".into(),
            role: "candidate".into(),
            target_json: "{}".into(),
            function: Some("f".into()),
            variant: Some("control".into()),
            prompt_name: Some("p".into()),
            prompt_version: Some(2),
            model: Some("mock-1".into()),
            upstream_model: Some("mock-1".into()),
            release_id: Some("rel_1".into()),
            repeat: 1,
        }
    }

    fn result(run: &str, case: &str, pass: bool) -> EvalResult {
        EvalResult {
            run_id: run.into(),
            case_id: case.into(),
            repeat_idx: 0,
            pass,
            score: if pass { 1.0 } else { 0.25 },
            output: Some("out".into()),
            error: None,
            latency_ms: 12,
            cost_nanos: None,
            input_tokens: Some(3),
            output_tokens: Some(4),
            cached: false,
            trace_id: None,
            assertions_json: "[]".into(),
        }
    }

    #[test]
    fn a_run_counts_its_results_and_keeps_its_summary() {
        for (backend, store, _db) in crate::testing::stores() {
            let conn = store.conn().unwrap();
            let conn = &conn;
            create_eval_run(conn, &run("r1", 10)).unwrap();
            create_eval_run(conn, &run("r2", 20)).unwrap();
            record_eval_result(conn, &result("r1", "a", true)).unwrap();
            record_eval_result(conn, &result("r1", "b", false)).unwrap();
            let r = get_eval_run(conn, "r1").unwrap().unwrap();
            assert_eq!(
                (r.cases, r.passed, r.status.as_str()),
                (2, 1, "running"),
                "{backend}"
            );
            assert_eq!(r.run, run("r1", 10), "{backend}");
            finish_eval_run(
                conn,
                "r1",
                "done",
                99,
                Some("{\"x\":1}"),
                Some(false),
                Some("r2"),
            )
            .unwrap();
            let r = get_eval_run(conn, "r1").unwrap().unwrap();
            assert_eq!(r.gate_passed, Some(false), "{backend}");
            assert_eq!(r.summary_json.as_deref(), Some("{\"x\":1}"), "{backend}");
            set_eval_run_counts(conn, "r1", 1, 0).unwrap();
            let r = get_eval_run(conn, "r1").unwrap().unwrap();
            assert_eq!((r.cases, r.passed), (1, 0), "{backend}");
            assert_eq!(r.baseline_run.as_deref(), Some("r2"), "{backend}");
            assert_eq!(get_eval_run(conn, "nope").unwrap(), None, "{backend}");
            let all = list_eval_runs(conn, Some("support"), 0).unwrap();
            assert_eq!(
                all.iter().map(|r| r.run.id.as_str()).collect::<Vec<_>>(),
                ["r2", "r1"],
                "{backend}"
            );
            assert_eq!(list_eval_runs(conn, None, 1).unwrap().len(), 1, "{backend}");
            assert!(list_eval_runs(conn, Some("other"), 0).unwrap().is_empty());
            // The latest finished candidate run of a suite on a release.
            assert_eq!(
                latest_candidate_result(conn, "rel_1", "support").unwrap(),
                Some((0, 1)),
                "{backend}"
            );
            assert_eq!(
                latest_candidate_result(conn, "rel_2", "support").unwrap(),
                None
            );
            let res = eval_results(conn, "r1").unwrap();
            assert_eq!(res.len(), 2, "{backend}");
            assert_eq!(res[1].score, 0.25, "{backend}");
            assert_eq!(res[0], result("r1", "a", true), "{backend}");
            assert_eq!(res[0].cost_nanos, None, "unpriced stays unknown, never 0");
            // A result written again replaces the first (and counts again, as before).
            let mut again = result("r1", "b", true);
            again.score = 0.75;
            record_eval_result(conn, &again).unwrap();
            let res = eval_results(conn, "r1").unwrap();
            assert_eq!(res.len(), 2, "{backend}");
            assert_eq!(res[1], again, "{backend}");
            let failing = eval_results_of_failing_cases(conn, "r1", "r1").unwrap();
            assert!(failing.is_empty(), "{backend}");
            record_eval_result(conn, &result("r2", "b", false)).unwrap();
            let failing = eval_results_of_failing_cases(conn, "r1", "r2").unwrap();
            assert_eq!(failing, vec![again.clone()], "{backend}");
        }
    }

    #[test]
    fn each_result_is_handed_over_in_order_however_many_there_are() {
        for (backend, store, _db) in crate::testing::stores() {
            let conn = store.conn().unwrap();
            create_eval_run(&conn, &run("r1", 10)).unwrap();
            // More than a page, with repeats, written out of order.
            let n = RESULT_PAGE + 7;
            for i in (0..n).rev() {
                for repeat in [1, 0] {
                    let mut r = result("r1", &format!("case-{i:05}"), i % 3 != 0);
                    r.repeat_idx = repeat;
                    record_eval_result(&conn, &r).unwrap();
                }
            }
            let mut seen = Vec::new();
            each_eval_result(&conn, "r1", &mut |r| {
                seen.push((r.case_id.clone(), r.repeat_idx))
            })
            .unwrap();
            let want: Vec<(String, u32)> = (0..n)
                .flat_map(|i| [0, 1].map(|rep| (format!("case-{i:05}"), rep)))
                .collect();
            assert_eq!(seen, want, "{backend}");
        }
    }

    #[test]
    fn the_cache_round_trips() {
        for (backend, store, _db) in crate::testing::stores() {
            let conn = store.conn().unwrap();
            assert_eq!(cache_get(&conn, "k").unwrap(), None, "{backend}");
            cache_put(&conn, "k", "{\"text\":\"hi\"}", 1).unwrap();
            assert_eq!(
                cache_get(&conn, "k").unwrap().as_deref(),
                Some("{\"text\":\"hi\"}"),
                "{backend}"
            );
            cache_put(&conn, "k", "{\"text\":\"bye\"}", 2).unwrap();
            assert_eq!(
                cache_get(&conn, "k").unwrap().as_deref(),
                Some("{\"text\":\"bye\"}"),
                "{backend}"
            );
        }
    }
}
