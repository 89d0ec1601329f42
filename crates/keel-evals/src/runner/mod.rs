//! Running a suite: plan the arms, execute them through the in-process gateway (traced
//! as eval traffic), write results as they come, then summarise, compare case by case
//! with the baseline, and check the gate.

pub mod exec;
pub mod plan;
pub mod throttle;

use std::collections::HashMap;
use std::sync::Mutex;

use keel_core::config::Config;
use keel_core::trace::Origin;
use keel_gateway::inproc::InProcess;
use keel_store::evals::{create_eval_run, finish_eval_run, set_eval_run_counts, NewEvalRun};
use keel_store::Store;
use serde::Serialize;
use serde_json::json;

use crate::compare::{compare, summarize, Comparison, RunStats};
use crate::dataset::{scan_dataset, DatasetError, DatasetInfo};
use crate::gate::{check, GateVerdict};
use crate::suite::Suite;
use exec::{ArmResults, EngineJudge, ExecOptions, Executor, Progress};
use plan::{Arm, ArmCall, RunOptions};

/// Confidence level of every interval, and the significance level of the paired tests.
pub const LEVEL: f64 = 0.95;
pub const ALPHA: f64 = 0.05;
/// Bootstrap seed: results are reproducible run to run.
pub const SEED: u64 = 0x6b65_656c;

/// Why a run could not start or finish (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("{0}")]
    Plan(String),
    #[error("the {role} cannot run: {why}")]
    Unavailable { role: &'static str, why: String },
    #[error("{0}")]
    Setup(String),
}

/// One arm's run.
#[derive(Debug, Clone, Serialize)]
pub struct ArmRun {
    pub run_id: String,
    pub role: &'static str,
    pub label: String,
    pub release_id: Option<String>,
    pub prompt_version: Option<i64>,
    pub upstream_model: Option<String>,
    pub stats: RunStats,
    /// (case id, error) of the first calls that failed after retries (capped at
    /// [`exec::LISTED_FAILURES`]; `failed_calls` counts them all).
    pub failures: Vec<(String, String)>,
    #[serde(default)]
    pub failed_calls: usize,
    #[serde(skip)]
    pub records: Vec<crate::compare::CaseRecord>,
}

/// Everything a report needs.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub suite: String,
    pub dataset_hash: String,
    pub cases: usize,
    pub repeat: u32,
    pub candidate: ArmRun,
    pub baseline: Option<ArmRun>,
    pub comparison: Option<Comparison>,
    /// With a baseline: parity or better, or regressed (significant drops only).
    pub verdict: Option<crate::compare::Verdict>,
    pub gate: GateVerdict,
}

pub struct RunSettings {
    pub options: RunOptions,
    pub use_cache: bool,
    pub actor: String,
    pub concurrency: Option<usize>,
    pub repeat: Option<u32>,
}

fn now_ms() -> i64 {
    keel_store::prompts::now_ms()
}

/// What a caller other than `keel eval run` narrows a run to (the dashboard's playground
/// runs a suite on a draft: its own prompts, the first cases only, unlocked datasets
/// allowed, its own trace tags). The default is a full `keel eval run`.
#[derive(Clone, Default)]
pub struct RunScope {
    /// Prompts to test instead of the prompts folder's, by name.
    pub folder: Option<HashMap<String, keel_registry::Prompt>>,
    /// Run only the dataset's first N cases.
    pub max_cases: Option<usize>,
    /// Run a dataset that is not locked (or changed since its lock) rather than refuse:
    /// an experiment, not a gate.
    pub allow_unlocked: bool,
    /// More tags on every call's trace.
    pub tags: Vec<String>,
    /// The calls' origin (default `eval`; scheduled canaries run as `canary`).
    pub origin: Option<Origin>,
    /// A serving gateway's governor: the calls are admitted against its budgets and rate
    /// limits (scheduled canaries); `None`: not admitted (eval runs).
    pub governor: Option<std::sync::Arc<keel_governance::Governor>>,
}

/// Run `suite` against `store`'s prompt versions, writing runs and results to it.
pub async fn run_suite(
    config: &Config,
    store: &Store,
    suite: &Suite,
    settings: &RunSettings,
    progress: &dyn Progress,
) -> Result<RunOutcome, EvalError> {
    run_suite_scoped(
        config,
        store,
        suite,
        settings,
        &RunScope::default(),
        progress,
    )
    .await
}

/// [`run_suite`], narrowed by `scope`.
pub async fn run_suite_scoped(
    config: &Config,
    store: &Store,
    suite: &Suite,
    settings: &RunSettings,
    scope: &RunScope,
    progress: &dyn Progress,
) -> Result<RunOutcome, EvalError> {
    // One streaming pass checks every line and the lock; the arms read the cases again
    // one at a time, so the dataset is never held in memory.
    let mut dataset = scan_dataset(
        &suite.dataset_path,
        &suite.name,
        suite.dataset_hash.as_deref(),
        !scope.allow_unlocked,
    )?;
    if let Some(n) = scope.max_cases {
        dataset.cases = dataset.cases.min(n);
    }
    let folder: HashMap<String, keel_registry::Prompt> = match (&scope.folder, &config.prompts_dir)
    {
        (Some(f), _) => f.clone(),
        (None, None) => HashMap::new(),
        (None, Some(dir)) => match keel_registry::load_prompts(dir) {
            Ok(set) => set.prompts.into_iter().collect(),
            Err(issues) => {
                let lines: Vec<String> = issues.iter().map(ToString::to_string).collect();
                return Err(EvalError::Setup(format!(
                    "the prompts folder has errors (run `keel check`):\n{}",
                    lines.join("\n")
                )));
            }
        },
    };
    let plan = plan::plan(config, &folder, suite, &settings.options).map_err(EvalError::Plan)?;
    let engine = InProcess::governed(
        plan.config,
        store,
        Some(scope.origin.unwrap_or(Origin::Eval)),
        &plan.overrides,
        scope.governor.clone(),
    )
    .map_err(|e| EvalError::Setup(e.to_string()))?;
    let conn = Mutex::new(store.conn().map_err(|e| EvalError::Setup(e.to_string()))?);
    let judge = EngineJudge {
        engine: &engine,
        model: suite.judge_model.clone(),
        tags: [
            vec![
                "keel:eval".into(),
                format!("suite:{}", suite.name),
                "judge".into(),
            ],
            scope.tags.clone(),
        ]
        .concat(),
    };
    let opts = ExecOptions {
        concurrency: settings.concurrency.unwrap_or(suite.concurrency).max(1),
        repeat: settings.repeat.unwrap_or(suite.repeat).max(1),
        max_retries: suite.max_retries,
        use_cache: settings.use_cache,
        tags: [
            vec!["keel:eval".into(), format!("suite:{}", suite.name)],
            scope.tags.clone(),
        ]
        .concat(),
    };
    let exec = Executor {
        engine: &engine,
        store: &conn,
        judge: &judge,
        defaults: &suite.assertions,
        opts: &opts,
        progress,
    };
    let mut arms = Vec::new();
    for arm in std::iter::once(&plan.candidate).chain(plan.baseline.as_ref()) {
        arms.push(run_arm(&engine, &exec, &conn, suite, &dataset, arm, settings).await?);
    }
    let candidate = arms.remove(0);
    let baseline = arms.pop();
    let comparison = baseline
        .as_ref()
        .map(|b| compare(&b.records, &candidate.records, ALPHA, SEED));
    let gate = check(&suite.gate, &candidate.stats, comparison.as_ref());
    let outcome = RunOutcome {
        suite: suite.name.clone(),
        dataset_hash: dataset.hash.clone(),
        cases: dataset.cases,
        repeat: opts.repeat,
        candidate,
        baseline,
        verdict: comparison.as_ref().map(Comparison::verdict),
        comparison,
        gate,
    };
    if let Ok(c) = conn.lock() {
        let summary = serde_json::to_string(&outcome).ok();
        let _ = finish_eval_run(
            &*c,
            &outcome.candidate.run_id,
            "done",
            now_ms(),
            summary.as_deref(),
            Some(outcome.gate.passed),
            outcome.baseline.as_ref().map(|b| b.run_id.as_str()),
        );
    }
    let _ = tokio::task::spawn_blocking(move || engine.finish()).await;
    Ok(outcome)
}

async fn run_arm(
    engine: &InProcess,
    exec: &Executor<'_>,
    conn: &Mutex<keel_store::Conn>,
    suite: &Suite,
    dataset: &DatasetInfo,
    arm: &Arm,
    settings: &RunSettings,
) -> Result<ArmRun, EvalError> {
    // What the arm serves, resolved once for the whole run.
    let (identity, release, prompt_version, upstream, function, variant, prompt, model) =
        match &arm.call {
            ArmCall::Variant { function, variant } => {
                let snapshot = engine.snapshot();
                let f = engine.config().functions.get(function);
                let idx = f.and_then(|f| f.variants.iter().position(|v| &v.name == variant));
                match idx.and_then(|i| snapshot.slot(function, i)) {
                    Some(Ok(d)) => (
                        d.release.id.clone(),
                        Some(live_release_id(&d.release)),
                        Some(d.prompt_version),
                        Some(d.release.upstream_model.clone()),
                        Some(function.clone()),
                        Some(variant.clone()),
                        Some(d.prompt_name.clone()),
                        Some(d.model.clone()),
                    ),
                    Some(Err(why)) => {
                        return Err(EvalError::Unavailable {
                            role: arm.role,
                            why: why.to_string(),
                        })
                    }
                    None => {
                        return Err(EvalError::Unavailable {
                            role: arm.role,
                            why: format!("variant `{variant}` was not resolved"),
                        })
                    }
                }
            }
            ArmCall::Model { model } => {
                let upstream = engine
                    .config()
                    .models
                    .get(model)
                    .map(|m| m.upstream_model.clone());
                (
                    format!("model:{model}:{}", upstream.clone().unwrap_or_default()),
                    None,
                    None,
                    upstream,
                    None,
                    None,
                    None,
                    Some(model.clone()),
                )
            }
        };
    let run_id = format!("evr_{}", uuid::Uuid::now_v7().simple());
    let new = NewEvalRun {
        id: run_id.clone(),
        suite: suite.name.clone(),
        started_at_ms: now_ms(),
        actor: settings.actor.clone(),
        dataset_hash: dataset.hash.clone(),
        role: arm.role.to_string(),
        target_json:
            json!({"label": arm.label, "function": function, "variant": variant, "model": model})
                .to_string(),
        function,
        variant,
        prompt_name: prompt,
        prompt_version,
        model,
        upstream_model: upstream.clone(),
        release_id: release.clone(),
        repeat: exec.opts.repeat,
    };
    if let Ok(c) = conn.lock() {
        create_eval_run(&*c, &new).map_err(|e| EvalError::Setup(e.to_string()))?;
    }
    // A line that stops parsing mid-run means the file changed under the run: its
    // results would not belong to the locked dataset.
    let unreadable: Mutex<Option<DatasetError>> = Mutex::new(None);
    let cases = dataset
        .cases()?
        .take(dataset.cases)
        .filter_map(|c| match c {
            Ok(case) => Some(case),
            Err(e) => {
                if let Ok(mut slot) = unreadable.lock() {
                    slot.get_or_insert(e);
                }
                None
            }
        });
    let ArmResults {
        records,
        failures,
        failed_calls,
    } = exec.run_arm(arm, &identity, &run_id, cases).await;
    let unreadable = unreadable.into_inner().ok().flatten();
    if let Some(e) = unreadable.map_or_else(|| dataset.verify_unchanged(&suite.name).err(), Some) {
        // The run's rows are not results of the locked dataset: close it as failed,
        // saying why, rather than leave it `running`.
        if let Ok(c) = conn.lock() {
            let why = json!({ "error": e.to_string() }).to_string();
            let _ = finish_eval_run(&*c, &run_id, "failed", now_ms(), Some(&why), None, None);
        }
        return Err(e.into());
    }
    let stats = summarize(&records, LEVEL, SEED);
    if let Ok(c) = conn.lock() {
        // Results were counted per case × repeat as they came; the run counts cases.
        if let Err(e) = set_eval_run_counts(&*c, &run_id, stats.cases as u64, stats.passed) {
            tracing::warn!(error = %e, run = %run_id, "cannot store an eval run's counts");
        }
    }
    if arm.role == "baseline" {
        if let Ok(c) = conn.lock() {
            let summary = serde_json::to_string(&stats).ok();
            let _ = finish_eval_run(
                &*c,
                &run_id,
                "done",
                now_ms(),
                summary.as_deref(),
                None,
                None,
            );
        }
    }
    Ok(ArmRun {
        run_id,
        role: arm.role,
        label: arm.label.clone(),
        release_id: release,
        prompt_version,
        upstream_model: upstream,
        stats,
        failures,
        failed_calls,
        records,
    })
}

/// The release as the live variant would serve it: eval arms are synthetic variants
/// (`control@candidate`), but their results belong to the release that ships.
fn live_release_id(r: &keel_core::release::Release) -> String {
    keel_core::release::Release::new(
        &r.function,
        r.variant.split('@').next().unwrap_or(&r.variant),
        &r.prompt_name,
        r.prompt_version,
        &r.prompt_hash,
        &r.model,
        &r.provider,
        &r.upstream_model,
        r.params.clone(),
        r.tools.clone(),
    )
    .id
}
