//! One scheduled canary run (`[[canaries]]`, scheduled by `keel_gateway::canary`): the
//! locked suite on one pinned model, its calls traced as origin `canary`; the version that
//! answered read from those traces; the run compared case by case — the paired statistics
//! of [`crate::compare`] — with the last run of the same canary on a *different* model
//! version. A significant change (the pass rate by the exact McNemar test — reported
//! first — else any score by the Wilcoxon signed-rank test, at α = 0.05) is audited as `model.behaviour_changed`
//! (target the model; from/to the versions; details: suite, canary, metric, delta and its
//! interval, p-value, the cases that flipped, both run ids), which the alert metric
//! `model_behaviour_changed` reads. Every run is audited as `canary.run` and kept in
//! `canary_runs`.

use keel_core::config::Config;
use keel_core::trace::Origin;
use keel_store::audit::{record_audit, NewAuditEvent};
use keel_store::canaries::{self, NewCanaryRun};
use keel_store::Store;
use serde::Serialize;
use serde_json::json;

use crate::compare::{compare, CaseRecord, Comparison};
use crate::runner::exec::Progress;
use crate::runner::plan::RunOptions;
use crate::runner::{run_suite_scoped, RunScope, RunSettings};
use crate::suite::{load_suite, suite_path};

/// The audit action of a significant change found by a canary.
pub const BEHAVIOUR_CHANGED: &str = "model.behaviour_changed";
/// The audit action of every canary run.
pub const RUN_ACTION: &str = "canary.run";
/// Significance of a change.
const ALPHA: f64 = 0.05;

/// What one canary run found.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryReport {
    pub canary: String,
    pub run_id: String,
    pub model_version: Option<String>,
    pub baseline_run_id: Option<String>,
    pub baseline_version: Option<String>,
    /// A significant change from the baseline.
    pub changed: bool,
    /// The measure that changed most significantly, and by how much.
    pub metric: Option<String>,
    pub delta: Option<f64>,
    pub delta_ci: Option<(f64, f64)>,
    pub p_value: Option<f64>,
    pub flipped_cases: Vec<String>,
    pub pass_rate: f64,
}

struct Quiet;
impl Progress for Quiet {
    fn case_done(&self, _arm: &str, _pass: bool) {}
}

/// The stored results of an eval run as records (repeats: the first of each case).
fn stored_records(conn: keel_store::sql::Db<'_>, run_id: &str) -> Result<Vec<CaseRecord>, String> {
    let results = keel_store::evals::eval_results(conn, run_id).map_err(|e| e.to_string())?;
    let mut out: Vec<CaseRecord> = Vec::new();
    for r in results.into_iter().filter(|r| r.repeat_idx == 0) {
        out.push(CaseRecord {
            case_id: r.case_id,
            pass: r.pass,
            score: r.score,
            metrics: Default::default(),
            cost_nanos: r.cost_nanos,
            latency_ms: r.latency_ms,
        });
    }
    Ok(out)
}

/// The most significant change of `c`, if any: (metric, delta, interval, p-value).
fn significant(c: &Comparison) -> Option<(String, f64, (f64, f64), f64)> {
    if c.pass_rate.significant {
        let r = &c.pass_rate;
        // A conservative interval for the difference of the two rates.
        let ci = (
            r.candidate.low - r.baseline.high,
            r.candidate.high - r.baseline.low,
        );
        // The pass rate first: it is what people read.
        return Some(("pass_rate".into(), r.delta, ci, r.p_value));
    }
    let mut found: Vec<(String, f64, (f64, f64), f64)> = Vec::new();
    for (name, m) in
        std::iter::once(("score", &c.score)).chain(c.metrics.iter().map(|(k, v)| (k.as_str(), v)))
    {
        if m.p_value < ALPHA && m.n > 0 && m.delta != 0.0 {
            found.push((
                name.to_string(),
                m.delta,
                (m.delta_ci.low, m.delta_ci.high),
                m.p_value,
            ));
        }
    }
    found.into_iter().min_by(|a, b| a.3.total_cmp(&b.3))
}

/// Record a run that failed or cannot be compared, with `msg`; the message to return.
fn failed(conn: keel_store::sql::Db<'_>, run: &NewCanaryRun<'_>, msg: String) -> String {
    let rec = NewCanaryRun {
        error: Some(&msg),
        ..run.clone()
    };
    match canaries::record_run(conn, &rec) {
        Ok(_) => msg,
        Err(e) => format!("{msg} (and it could not be recorded: {e})"),
    }
}

/// Run canary `suite` on `model` (trigger `schedule` or `model_changed`), record it, and
/// compare it with the last run on another model version.
pub async fn run(
    config: &Config,
    store: &Store,
    suite_name: &str,
    model: &str,
    trigger: &str,
    governor: Option<std::sync::Arc<keel_governance::Governor>>,
) -> Result<CanaryReport, String> {
    let canary = format!("{suite_name}@{model}");
    let started = keel_store::prompts::now_ms();
    let suite =
        load_suite(&suite_path(&config.evals_dir, suite_name)).map_err(|e| e.to_string())?;
    let settings = RunSettings {
        options: RunOptions {
            model: Some(model.to_string()),
            ..RunOptions::default()
        },
        use_cache: false,
        actor: "keel canary".into(),
        concurrency: None,
        repeat: Some(1),
    };
    let scope = RunScope {
        tags: vec!["keel:canary".into(), format!("canary:{canary}")],
        origin: Some(Origin::Canary),
        governor,
        ..RunScope::default()
    };
    let outcome = run_suite_scoped(config, store, &suite, &settings, &scope, &Quiet).await;
    let conn = store.conn().map_err(|e| e.to_string())?;
    let finished = keel_store::prompts::now_ms();
    // What every record of this run holds (a failed one adds its error).
    let failure = NewCanaryRun {
        canary: &canary,
        suite: suite_name,
        model,
        trigger,
        started_ms: started,
        finished_ms: finished,
        ..NewCanaryRun::default()
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let msg = e.to_string();
            return Err(failed(conn.db(), &failure, msg));
        }
    };
    let run_id = outcome.candidate.run_id.clone();
    // Calls a budget, a rate limit or a switch refused are not the model's behaviour: such
    // a run is recorded and not compared (its cases would look flipped).
    let mut refusing: Vec<&str> = keel_governance::error::BLOCK_CLASSES.to_vec();
    refusing.push("disabled");
    let refused = canaries::refused_calls(&conn, &run_id, &refusing).map_err(|e| e.to_string())?;
    if refused > 0 {
        let msg = format!(
            "{refused} call(s) were refused by a budget, rate limit or switch: the run is kept (eval run {run_id}) but not compared"
        );
        return Err(failed(conn.db(), &failure, msg));
    }
    let version = canaries::answered_version(&conn, &run_id).map_err(|e| e.to_string())?;
    let baseline = match &version {
        Some(v) => {
            canaries::last_run_on_other_version(&conn, &canary, v).map_err(|e| e.to_string())?
        }
        None => None,
    };
    let mut report = CanaryReport {
        canary: canary.clone(),
        run_id: run_id.clone(),
        model_version: version.clone(),
        baseline_run_id: baseline.as_ref().and_then(|b| b.run_id.clone()),
        baseline_version: baseline.as_ref().and_then(|b| b.model_version.clone()),
        changed: false,
        metric: None,
        delta: None,
        delta_ci: None,
        p_value: None,
        flipped_cases: Vec::new(),
        pass_rate: outcome.candidate.stats.pass_rate.estimate,
    };
    let mut verdict = None;
    if let Some(base_run) = report.baseline_run_id.clone() {
        let before = stored_records(conn.db(), &base_run)?;
        let c = compare(&before, &outcome.candidate.records, ALPHA, 7);
        if let Some((metric, delta, ci, p)) = significant(&c) {
            report.changed = true;
            report.metric = Some(metric);
            report.delta = Some(delta);
            report.delta_ci = Some(ci);
            report.p_value = Some(p);
        }
        report.flipped_cases = c
            .regressions
            .iter()
            .chain(&c.improvements)
            .cloned()
            .collect();
        report.flipped_cases.sort();
        verdict = serde_json::to_string(&c).ok();
    }
    canaries::record_run(
        &conn,
        &NewCanaryRun {
            run_id: Some(&run_id),
            model_version: version.as_deref(),
            baseline_run_id: report.baseline_run_id.as_deref(),
            changed: report.changed,
            verdict_json: verdict,
            error: None,
            ..failure.clone()
        },
    )
    .map_err(|e| e.to_string())?;
    let details = json!({
        "suite": suite_name, "canary": canary, "trigger": trigger, "run_id": run_id,
        "model_version": version, "baseline_run_id": report.baseline_run_id,
        "pass_rate": report.pass_rate, "changed": report.changed,
    });
    record_audit(
        &conn,
        finished,
        &NewAuditEvent {
            actor: "keel",
            action: RUN_ACTION,
            target: &canary,
            from_value: report.baseline_version.clone(),
            to_value: version.clone(),
            reason: Some(trigger),
            details: Some(details),
        },
    )
    .map_err(|e| e.to_string())?;
    if report.changed {
        record_audit(
            &conn,
            finished,
            &NewAuditEvent {
                actor: "keel",
                action: BEHAVIOUR_CHANGED,
                target: model,
                from_value: report.baseline_version.clone(),
                to_value: version,
                reason: Some("a scheduled canary found a significant change"),
                details: Some(json!({
                    "suite": suite_name, "canary": canary, "metric": report.metric,
                    "delta": report.delta, "delta_ci": report.delta_ci.map(|(l, h)| [l, h]),
                    "p_value": report.p_value, "flipped_cases": report.flipped_cases,
                    "run_id": run_id, "baseline_run_id": report.baseline_run_id,
                })),
            },
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(report)
}
