//! Scheduled canaries in the store (migration 0026): the lease that lets exactly one of
//! several replicas run a due canary, and the record of every run — trigger, eval run,
//! the model version that answered, the baseline it was compared with and the verdict.

use serde::Serialize;

use crate::error::StoreError;
use crate::sql::{Db, Row};
use crate::values;

/// Take the lease on `name` for `holder` until `now_ms + ttl_ms`: `true` when it is
/// ours now — free, expired, or already ours (renewed).
///
/// One conditional upsert, checked by the rows it changed: on PostgreSQL the conflicting
/// row is locked and the condition re-read under the lock, so of replicas racing for a
/// free or expired lease exactly one gets it.
pub fn try_acquire_lease<'c>(
    db: impl Into<Db<'c>>,
    name: &str,
    holder: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<bool, StoreError> {
    let n = db.into().exclusive_for(&format!("canary-lease:{name}"), |tx| {
        tx.execute(
            "INSERT INTO canary_leases (name, holder, expires_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
              WHERE canary_leases.expires_ms <= ?4 OR canary_leases.holder = excluded.holder",
            &values![name, holder, now_ms.saturating_add(ttl_ms), now_ms],
        )
    })?;
    Ok(n > 0)
}

/// Give the lease back (only when `holder` holds it).
pub fn release_lease<'c>(
    db: impl Into<Db<'c>>,
    name: &str,
    holder: &str,
) -> Result<(), StoreError> {
    db.into().execute(
        "DELETE FROM canary_leases WHERE name = ?1 AND holder = ?2",
        &values![name, holder],
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

pub fn record_run<'c>(db: impl Into<Db<'c>>, r: &NewCanaryRun<'_>) -> Result<i64, StoreError> {
    db.into().query_row(
        "INSERT INTO canary_runs (canary, suite, model, trigger, started_ms, finished_ms, run_id,
             model_version, baseline_run_id, changed, verdict_json, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING id",
        &values![
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
            &r.verdict_json,
            r.error
        ],
        |row| row.get(0),
    )
}

const COLUMNS: &str = "id, canary, suite, model, trigger, started_ms, finished_ms, run_id, model_version, baseline_run_id, changed, verdict_json, error";

fn row(r: &Row<'_>) -> Result<CanaryRun, StoreError> {
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
pub fn last_run<'c>(db: impl Into<Db<'c>>, canary: &str) -> Result<Option<CanaryRun>, StoreError> {
    db.into().query_opt(
        &format!("SELECT {COLUMNS} FROM canary_runs WHERE canary = ?1 ORDER BY id DESC LIMIT 1"),
        &values![canary],
        row,
    )
}

/// The latest successful run of `canary` on a model version other than `version`: the
/// baseline a run on `version` is compared with.
pub fn last_run_on_other_version<'c>(
    db: impl Into<Db<'c>>,
    canary: &str,
    version: &str,
) -> Result<Option<CanaryRun>, StoreError> {
    db.into().query_opt(
        &format!(
            "SELECT {COLUMNS} FROM canary_runs
              WHERE canary = ?1 AND run_id IS NOT NULL AND model_version IS NOT NULL AND model_version <> ?2
              ORDER BY id DESC LIMIT 1"
        ),
        &values![canary, version],
        row,
    )
}

/// Runs of every canary, newest first.
pub fn list_runs<'c>(db: impl Into<Db<'c>>, limit: usize) -> Result<Vec<CanaryRun>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    db.into().query(
        &format!("SELECT {COLUMNS} FROM canary_runs ORDER BY id DESC LIMIT ?1"),
        &values![limit],
        row,
    )
}

/// The version that answered most of an eval run's calls: each call's
/// `system_fingerprint`, else the model the provider reported.
pub fn answered_version<'c>(
    db: impl Into<Db<'c>>,
    run_id: &str,
) -> Result<Option<String>, StoreError> {
    // The expression repeated and grouped by position: PostgreSQL reads no output
    // name in WHERE.
    db.into().query_opt(
        "SELECT COALESCE(NULLIF(t.system_fingerprint, ''), t.served_model) AS v
           FROM eval_results r JOIN traces t ON t.id = r.trace_id
          WHERE r.run_id = ?1 AND COALESCE(NULLIF(t.system_fingerprint, ''), t.served_model) IS NOT NULL
          GROUP BY 1 ORDER BY COUNT(*) DESC, 1 LIMIT 1",
        &values![run_id],
        |r| r.get(0),
    )
}

/// Calls of an eval run refused with one of `classes` (governance: a budget, a rate
/// limit, a kill switch).
pub fn refused_calls<'c>(
    db: impl Into<Db<'c>>,
    run_id: &str,
    classes: &[&str],
) -> Result<i64, StoreError> {
    let db = db.into();
    let mut n = 0;
    for c in classes {
        n += db.query_row(
            "SELECT COUNT(*) FROM eval_results r JOIN traces t ON t.id = r.trace_id
              WHERE r.run_id = ?1 AND t.error_class = ?2",
            &values![run_id, *c],
            |r| r.get::<i64>(0),
        )?;
    }
    Ok(n)
}

/// Whether `model` changed version (an audited `model.version_changed`) after `since_ms`.
pub fn version_changed_since<'c>(
    db: impl Into<Db<'c>>,
    model: &str,
    since_ms: i64,
) -> Result<bool, StoreError> {
    db.into().query_row(
        "SELECT EXISTS (SELECT 1 FROM audit_events
                         WHERE action = 'model.version_changed' AND target = ?1 AND at_ms > ?2)",
        &values![model, since_ms],
        |r| r.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::alerts::tests::race;
    use crate::testing::stores;

    #[test]
    fn one_holder_at_a_time_until_the_lease_expires() {
        for (backend, store, _db) in stores() {
            let c = store.conn().unwrap();
            assert!(try_acquire_lease(&c, "s@m", "a", 1_000, 10_000).unwrap());
            assert!(!try_acquire_lease(&c, "s@m", "b", 2_000, 10_000).unwrap());
            assert!(
                try_acquire_lease(&c, "s@m", "a", 3_000, 10_000).unwrap(),
                "{backend}: renewed"
            );
            assert!(
                try_acquire_lease(&c, "s@m", "b", 13_000, 10_000).unwrap(),
                "{backend}: expired"
            );
            release_lease(&c, "s@m", "a").unwrap();
            assert!(
                !try_acquire_lease(&c, "s@m", "a", 14_000, 10_000).unwrap(),
                "{backend}: a cannot release b's"
            );
            release_lease(&c, "s@m", "b").unwrap();
            assert!(try_acquire_lease(&c, "s@m", "a", 15_000, 10_000).unwrap());
        }
    }

    #[test]
    fn replicas_racing_for_a_lease_never_both_hold_it() {
        for (backend, store, _db) in stores() {
            // A free lease, then an expired one: each time exactly one racer gets it.
            for (round, now) in [(0, 1_000), (1, 100_000)] {
                let won = race(backend, 6, |i| {
                    let c = store.conn().unwrap();
                    let holder = format!("r{round}-{i}");
                    try_acquire_lease(&c, "s@m", &holder, now, 10_000).unwrap()
                });
                assert_eq!(won.iter().filter(|w| **w).count(), 1, "{backend}: {won:?}");
            }
        }
    }

    #[test]
    fn the_baseline_is_the_last_run_on_another_version() {
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
        for (backend, store, _db) in stores() {
            let c = store.conn().unwrap();
            let first = record_run(&c, &run("r1", "fp_a", 1)).unwrap();
            record_run(&c, &run("r2", "fp_a", 2)).unwrap();
            let third = record_run(
                &c,
                &NewCanaryRun {
                    changed: true,
                    verdict_json: Some("{}".into()),
                    ..run("r3", "fp_b", 3)
                },
            )
            .unwrap();
            assert_eq!(third, first + 2, "{backend}");
            let base = last_run_on_other_version(&c, "s@m", "fp_b")
                .unwrap()
                .unwrap();
            assert_eq!(base.run_id.as_deref(), Some("r2"), "{backend}");
            assert!(!base.changed);
            assert_eq!(
                last_run_on_other_version(&c, "s@m", "fp_c")
                    .unwrap()
                    .unwrap()
                    .run_id
                    .as_deref(),
                Some("r3")
            );
            let last = last_run(&c, "s@m").unwrap().unwrap();
            assert_eq!(
                (last.run_id.as_deref(), last.changed, last.finished_ms),
                (Some("r3"), true, Some(4)),
                "{backend}"
            );
            assert!(last_run(&c, "other").unwrap().is_none());
            let ids: Vec<i64> = list_runs(&c, 2).unwrap().iter().map(|r| r.id).collect();
            assert_eq!(ids, [third, third - 1], "{backend}");
        }
    }

    #[test]
    fn a_runs_version_refusals_and_audited_changes_are_read_back() {
        for (backend, store, _db) in stores() {
            let c = store.conn().unwrap();
            let call = |id: &str, fp: Option<&str>, class: Option<&str>| {
                let mut t = keel_core::trace::TraceRecord::new(
                    id.into(),
                    1,
                    "openai",
                    "/v1/chat/completions",
                );
                t.system_fingerprint = fp.map(Into::into);
                // A refused call reports no model: it counts for no version.
                t.served_model = class.is_none().then(|| "gpt-x-0101".to_string());
                t.error_class = class.map(Into::into);
                t
            };
            crate::trace_row::insert_batch(
                &c,
                &[
                    call("a", Some("fp_b"), None),
                    call("b", Some("fp_b"), None),
                    call("c", Some(""), None),
                    call("d", None, Some("budget_exceeded")),
                    call("e", None, Some("rate_limited")),
                ],
            )
            .unwrap();
            for (i, t) in ["a", "b", "c", "d", "e"].iter().enumerate() {
                c.db()
                    .execute(
                        "INSERT INTO eval_results (run_id, case_id, repeat_idx, pass, score, latency_ms,
                             trace_id, assertions_json) VALUES ('run1', ?1, 0, 1, 1.0, 5, ?2, '[]')",
                        &values![format!("case{i}"), *t],
                    )
                    .unwrap();
            }
            assert_eq!(
                answered_version(&c, "run1").unwrap().as_deref(),
                Some("fp_b"),
                "{backend}"
            );
            assert_eq!(answered_version(&c, "none").unwrap(), None);
            assert_eq!(
                refused_calls(&c, "run1", &["budget_exceeded", "rate_limited", "killed"]).unwrap(),
                2,
                "{backend}"
            );
            assert!(!version_changed_since(&c, "gpt-x", 0).unwrap());
            c.db()
                .execute(
                    "INSERT INTO audit_events (at_ms, actor, action, target)
                     VALUES (50, 'keel', 'model.version_changed', 'gpt-x')",
                    &[],
                )
                .unwrap();
            assert!(version_changed_since(&c, "gpt-x", 0).unwrap(), "{backend}");
            assert!(!version_changed_since(&c, "gpt-x", 50).unwrap());
        }
    }
}
