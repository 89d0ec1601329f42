//! Scheduled canaries in the store (migration 0026): the lease that lets exactly one of
//! several replicas run a due canary, and the record of every run — trigger, eval run,
//! the model version that answered, the baseline it was compared with and the verdict.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use crate::error::StoreError;

/// Take the lease on `name` for `holder` until `now_ms + ttl_ms`: `true` when it is
/// ours now — free, expired, or already ours (renewed).
pub fn try_acquire_lease(
    conn: &mut Connection,
    name: &str,
    holder: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx.execute(
        "INSERT INTO canary_leases (name, holder, expires_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
          WHERE canary_leases.expires_ms <= ?4 OR canary_leases.holder = excluded.holder",
        params![name, holder, now_ms.saturating_add(ttl_ms), now_ms],
    )?;
    tx.commit()?;
    Ok(n > 0)
}

/// Give the lease back (only when `holder` holds it).
pub fn release_lease(conn: &Connection, name: &str, holder: &str) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM canary_leases WHERE name = ?1 AND holder = ?2",
        params![name, holder],
    )?;
    Ok(())
}

/// One canary run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanaryRun {
    pub id: i64,
    pub canary: String,
    pub suite: String,
    pub model: String,
    pub trigger: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub run_id: Option<String>,
    pub model_version: Option<String>,
    pub baseline_run_id: Option<String>,
    pub changed: bool,
    pub verdict_json: Option<String>,
    pub error: Option<String>,
}

/// A finished run to record.
#[derive(Debug, Clone, Default)]
pub struct NewCanaryRun<'a> {
    pub canary: &'a str,
    pub suite: &'a str,
    pub model: &'a str,
    pub trigger: &'a str,
    pub started_ms: i64,
    pub finished_ms: i64,
    pub run_id: Option<&'a str>,
    pub model_version: Option<&'a str>,
    pub baseline_run_id: Option<&'a str>,
    pub changed: bool,
    pub verdict_json: Option<String>,
    pub error: Option<&'a str>,
}

pub fn record_run(conn: &Connection, r: &NewCanaryRun<'_>) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO canary_runs (canary, suite, model, trigger, started_ms, finished_ms, run_id,
             model_version, baseline_run_id, changed, verdict_json, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            r.canary,
            r.suite,
            r.model,
            r.trigger,
            r.started_ms,
            r.finished_ms,
            r.run_id,
            r.model_version,
            r.baseline_run_id,
            r.changed,
            r.verdict_json,
            r.error
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

const COLUMNS: &str = "id, canary, suite, model, trigger, started_ms, finished_ms, run_id, model_version, baseline_run_id, changed, verdict_json, error";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CanaryRun> {
    Ok(CanaryRun {
        id: r.get(0)?,
        canary: r.get(1)?,
        suite: r.get(2)?,
        model: r.get(3)?,
        trigger: r.get(4)?,
        started_ms: r.get(5)?,
        finished_ms: r.get(6)?,
        run_id: r.get(7)?,
        model_version: r.get(8)?,
        baseline_run_id: r.get(9)?,
        changed: r.get(10)?,
        verdict_json: r.get(11)?,
        error: r.get(12)?,
    })
}

/// The latest run of `canary`.
pub fn last_run(conn: &Connection, canary: &str) -> rusqlite::Result<Option<CanaryRun>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM canary_runs WHERE canary = ?1 ORDER BY id DESC LIMIT 1"),
        params![canary],
        row,
    )
    .optional()
}

/// The latest successful run of `canary` on a model version other than `version`: the
/// baseline a run on `version` is compared with.
pub fn last_run_on_other_version(
    conn: &Connection,
    canary: &str,
    version: &str,
) -> rusqlite::Result<Option<CanaryRun>> {
    conn.query_row(
        &format!(
            "SELECT {COLUMNS} FROM canary_runs
              WHERE canary = ?1 AND run_id IS NOT NULL AND model_version IS NOT NULL AND model_version <> ?2
              ORDER BY id DESC LIMIT 1"
        ),
        params![canary, version],
        row,
    )
    .optional()
}

/// Runs of every canary, newest first.
pub fn list_runs(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<CanaryRun>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM canary_runs ORDER BY id DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map(params![limit], row)?;
    rows.collect()
}

/// The version that answered most of an eval run's calls: each call's
/// `system_fingerprint`, else the model the provider reported.
pub fn answered_version(conn: &Connection, run_id: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT COALESCE(NULLIF(t.system_fingerprint, ''), t.served_model) AS v
           FROM eval_results r JOIN traces t ON t.id = r.trace_id
          WHERE r.run_id = ?1 AND v IS NOT NULL
          GROUP BY v ORDER BY COUNT(*) DESC, v LIMIT 1",
        params![run_id],
        |r| r.get(0),
    )
    .optional()
}

/// Calls of an eval run refused with one of `classes` (governance: a budget, a rate
/// limit, a kill switch).
pub fn refused_calls(conn: &Connection, run_id: &str, classes: &[&str]) -> rusqlite::Result<i64> {
    let mut n = 0;
    let mut stmt = conn.prepare_cached(
        "SELECT COUNT(*) FROM eval_results r JOIN traces t ON t.id = r.trace_id
          WHERE r.run_id = ?1 AND t.error_class = ?2",
    )?;
    for c in classes {
        n += stmt.query_row(params![run_id, c], |r| r.get::<_, i64>(0))?;
    }
    Ok(n)
}

/// Whether `model` changed version (an audited `model.version_changed`) after `since_ms`.
pub fn version_changed_since(
    conn: &Connection,
    model: &str,
    since_ms: i64,
) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM audit_events
                         WHERE action = 'model.version_changed' AND target = ?1 AND at_ms > ?2)",
        params![model, since_ms],
        |r| r.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_conn as conn;

    #[test]
    fn one_holder_at_a_time_until_the_lease_expires() {
        let (_d, mut c) = conn();
        assert!(try_acquire_lease(&mut c, "s@m", "a", 1_000, 10_000).unwrap());
        assert!(!try_acquire_lease(&mut c, "s@m", "b", 2_000, 10_000).unwrap());
        assert!(
            try_acquire_lease(&mut c, "s@m", "a", 3_000, 10_000).unwrap(),
            "renewed"
        );
        assert!(
            try_acquire_lease(&mut c, "s@m", "b", 13_000, 10_000).unwrap(),
            "expired"
        );
        release_lease(&c, "s@m", "a").unwrap();
        assert!(
            !try_acquire_lease(&mut c, "s@m", "a", 14_000, 10_000).unwrap(),
            "a cannot release b's"
        );
        release_lease(&c, "s@m", "b").unwrap();
        assert!(try_acquire_lease(&mut c, "s@m", "a", 15_000, 10_000).unwrap());
    }

    #[test]
    fn the_baseline_is_the_last_run_on_another_version() {
        let (_d, c) = conn();
        fn run<'a>(run: &'a str, version: &'a str, at: i64) -> NewCanaryRun<'a> {
            NewCanaryRun {
                canary: "s@m",
                suite: "s",
                model: "m",
                trigger: "schedule",
                started_ms: at,
                finished_ms: at + 1,
                run_id: Some(run),
                model_version: Some(version),
                ..NewCanaryRun::default()
            }
        }
        record_run(&c, &run("r1", "fp_a", 1)).unwrap();
        record_run(&c, &run("r2", "fp_a", 2)).unwrap();
        record_run(&c, &run("r3", "fp_b", 3)).unwrap();
        let base = last_run_on_other_version(&c, "s@m", "fp_b")
            .unwrap()
            .unwrap();
        assert_eq!(base.run_id.as_deref(), Some("r2"));
        assert!(
            last_run_on_other_version(&c, "s@m", "fp_c")
                .unwrap()
                .unwrap()
                .run_id
                .as_deref()
                == Some("r3")
        );
        assert_eq!(
            last_run(&c, "s@m").unwrap().unwrap().run_id.as_deref(),
            Some("r3")
        );
        assert!(last_run(&c, "other").unwrap().is_none());
    }
}
