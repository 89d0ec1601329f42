//! Eval runs in the store: a run row created when the run starts, one result row per
//! case and repeat written as it completes (so a long run keeps what it did if it is
//! interrupted, and never sits in memory), the summary at the end, and the response
//! cache keyed by the exact request.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;

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

pub fn create_eval_run(conn: &Connection, r: &NewEvalRun) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO eval_runs (id, suite, started_at_ms, status, actor, dataset_hash, role, target_json,
             function, variant, prompt_name, prompt_version, model, upstream_model, release_id, repeat)
         VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            r.id, r.suite, r.started_at_ms, r.actor, r.dataset_hash, r.role, r.target_json,
            r.function, r.variant, r.prompt_name, r.prompt_version, r.model, r.upstream_model,
            r.release_id, r.repeat
        ],
    )?;
    Ok(())
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Write one result and bump the run's counts, in one transaction.
pub fn record_eval_result(conn: &Connection, r: &EvalResult) -> Result<(), StoreError> {
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "INSERT OR REPLACE INTO eval_results (run_id, case_id, repeat_idx, pass, score, output, error,
             latency_ms, cost_nanos, input_tokens, output_tokens, cached, trace_id, assertions_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            r.run_id, r.case_id, r.repeat_idx, r.pass, r.score, r.output, r.error,
            int(r.latency_ms), r.cost_nanos, r.input_tokens.map(int), r.output_tokens.map(int),
            r.cached, r.trace_id, r.assertions_json
        ],
    )?;
    tx.execute(
        "UPDATE eval_runs SET cases = cases + 1, passed = passed + ?2 WHERE id = ?1",
        params![r.run_id, i64::from(r.pass)],
    )?;
    tx.commit()?;
    Ok(())
}

/// Replace the counts kept as results came (one per case × repeat) with the run's
/// case-level ones: with `repeat` > 1 a case is one case, passed by the runner's rule
/// (at least half its repeats), so `keel releases`, `keel eval history` and alerts read
/// the same pass rate as the run's report.
pub fn set_eval_run_counts(
    conn: &Connection,
    id: &str,
    cases: u64,
    passed: u64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE eval_runs SET cases = ?2, passed = ?3 WHERE id = ?1",
        params![id, int(cases), int(passed)],
    )?;
    Ok(())
}

/// Close a run: its status (`done`, `interrupted`, `error`), summary and gate verdict.
pub fn finish_eval_run(
    conn: &Connection,
    id: &str,
    status: &str,
    finished_at_ms: i64,
    summary_json: Option<&str>,
    gate_passed: Option<bool>,
    baseline_run: Option<&str>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE eval_runs SET status = ?2, finished_at_ms = ?3, summary_json = ?4, gate_passed = ?5,
             baseline_run = ?6 WHERE id = ?1",
        params![id, status, finished_at_ms, summary_json, gate_passed, baseline_run],
    )?;
    Ok(())
}

const RUN_COLS: &str = "id, suite, started_at_ms, actor, dataset_hash, role, target_json, function, variant,
    prompt_name, prompt_version, model, upstream_model, release_id, repeat, finished_at_ms, status, cases,
    passed, baseline_run, gate_passed, summary_json,
    (SELECT c.model_version FROM canary_runs c WHERE c.run_id = eval_runs.id LIMIT 1)";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EvalRun> {
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

pub fn get_eval_run(conn: &Connection, id: &str) -> Result<Option<EvalRun>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {RUN_COLS} FROM eval_runs WHERE id = ?1"),
            [id],
            run_row,
        )
        .optional()?)
}

/// Runs of `suite` (all suites when `None`), newest first.
pub fn list_eval_runs(
    conn: &Connection,
    suite: Option<&str>,
    limit: usize,
) -> Result<Vec<EvalRun>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RUN_COLS} FROM eval_runs WHERE ?1 IS NULL OR suite = ?1
         ORDER BY started_at_ms DESC, id DESC LIMIT ?2"
    ))?;
    let limit = if limit == 0 {
        i64::MAX
    } else {
        int(limit as u64)
    };
    let rows = stmt.query_map(params![suite, limit], run_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

const RESULT_COLUMNS: &str = "run_id, case_id, repeat_idx, pass, score, output, error, latency_ms,
     cost_nanos, input_tokens, output_tokens, cached, trace_id, assertions_json";

fn result_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EvalResult> {
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
        input_tokens: r
            .get::<_, Option<i64>>(9)?
            .and_then(|v| u64::try_from(v).ok()),
        output_tokens: r
            .get::<_, Option<i64>>(10)?
            .and_then(|v| u64::try_from(v).ok()),
        cached: r.get(11)?,
        trace_id: r.get(12)?,
        assertions_json: r.get(13)?,
    })
}

/// Every result of a run, by case id then repeat.
pub fn eval_results(conn: &Connection, run_id: &str) -> Result<Vec<EvalResult>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RESULT_COLUMNS} FROM eval_results WHERE run_id = ?1 ORDER BY case_id, repeat_idx"
    ))?;
    let rows = stmt.query_map([run_id], result_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every result of a run, by case id then repeat, handed to `f` one at a time (for a
/// report over a run too large to hold).
pub fn each_eval_result(
    conn: &Connection,
    run_id: &str,
    f: &mut dyn FnMut(&EvalResult),
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {RESULT_COLUMNS} FROM eval_results WHERE run_id = ?1 ORDER BY case_id, repeat_idx"
    ))?;
    let mut rows = stmt.query([run_id])?;
    while let Some(row) = rows.next()? {
        f(&result_row(row)?);
    }
    Ok(())
}

/// The results of `run_id` (every repeat) for the cases that failed at least one repeat
/// in `failing_in` (the same run, or the candidate a baseline is read for), by case id
/// then repeat. What a report lists, without reading a large run's passing results.
pub fn eval_results_of_failing_cases(
    conn: &Connection,
    run_id: &str,
    failing_in: &str,
) -> Result<Vec<EvalResult>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RESULT_COLUMNS} FROM eval_results
         WHERE run_id = ?1 AND case_id IN
               (SELECT case_id FROM eval_results WHERE run_id = ?2 AND pass = 0)
         ORDER BY case_id, repeat_idx"
    ))?;
    let rows = stmt.query_map([run_id, failing_in], result_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn cache_get(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT response_json FROM eval_cache WHERE key = ?1",
            [key],
            |r| r.get(0),
        )
        .optional()?)
}

pub fn cache_put(conn: &Connection, key: &str, json: &str, at_ms: i64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO eval_cache (key, response_json, created_at_ms) VALUES (?1, ?2, ?3)",
        params![key, json, at_ms],
    )?;
    Ok(())
}

/// `(passed, cases)` of the newest finished candidate run of `suite` on `release_id`
/// (cheapest-variant routing's quality bar).
pub fn latest_candidate_result(
    conn: &Connection,
    release_id: &str,
    suite: &str,
) -> rusqlite::Result<Option<(i64, i64)>> {
    use rusqlite::OptionalExtension;
    conn.query_row(
        "SELECT passed, cases FROM eval_runs WHERE release_id = ?1 AND suite = ?2
           AND role = 'candidate' AND status = 'done'
         ORDER BY started_at_ms DESC LIMIT 1",
        [release_id, suite],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Store;

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
        let store = Store::open(":memory:").unwrap();
        let conn = store.writer_conn().unwrap();
        create_eval_run(&conn, &run("r1", 10)).unwrap();
        create_eval_run(&conn, &run("r2", 20)).unwrap();
        record_eval_result(&conn, &result("r1", "a", true)).unwrap();
        record_eval_result(&conn, &result("r1", "b", false)).unwrap();
        let r = get_eval_run(&conn, "r1").unwrap().unwrap();
        assert_eq!((r.cases, r.passed, r.status.as_str()), (2, 1, "running"));
        finish_eval_run(
            &conn,
            "r1",
            "done",
            99,
            Some("{\"x\":1}"),
            Some(false),
            Some("r2"),
        )
        .unwrap();
        let r = get_eval_run(&conn, "r1").unwrap().unwrap();
        assert_eq!(r.gate_passed, Some(false));
        set_eval_run_counts(&conn, "r1", 1, 0).unwrap();
        let r = get_eval_run(&conn, "r1").unwrap().unwrap();
        assert_eq!((r.cases, r.passed), (1, 0));
        assert_eq!(r.baseline_run.as_deref(), Some("r2"));
        let all = list_eval_runs(&conn, Some("support"), 0).unwrap();
        assert_eq!(
            all.iter().map(|r| r.run.id.as_str()).collect::<Vec<_>>(),
            ["r2", "r1"]
        );
        let res = eval_results(&conn, "r1").unwrap();
        assert_eq!(res.len(), 2);
        assert_eq!(res[1].score, 0.25);
        assert_eq!(res[0].cost_nanos, None, "unpriced stays unknown, never 0");
    }

    #[test]
    fn the_cache_round_trips() {
        let store = Store::open(":memory:").unwrap();
        let conn = store.writer_conn().unwrap();
        assert_eq!(cache_get(&conn, "k").unwrap(), None);
        cache_put(&conn, "k", "{\"text\":\"hi\"}", 1).unwrap();
        assert_eq!(
            cache_get(&conn, "k").unwrap().as_deref(),
            Some("{\"text\":\"hi\"}")
        );
    }
}
