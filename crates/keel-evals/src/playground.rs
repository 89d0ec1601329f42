//! The dashboard playground's suite runner: a suite from the evals folder run on a draft
//! (the candidate, in place of the prompts folder's content) and on the live version
//! (the baseline: the label or version the draft started from), through the same
//! planner, executor, comparison and store records as `keel eval run --baseline` — only
//! bounded to the first cases, one sample each, and allowed on an unlocked dataset
//! (an experiment, not a gate).
//!
//! The gateway cannot depend on this crate (this crate depends on it), so it declares
//! [`SuiteRunner`] and `keel serve` installs [`PlaygroundSuites`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use keel_core::config::Config;
use keel_gateway::playground::suites::{
    BoxFuture, SuiteCase, SuiteComparison, SuiteJob, SuiteRunner,
};

use crate::runner::exec::Progress;
use crate::runner::plan::RunOptions;
use crate::runner::{run_suite_scoped, RunOutcome, RunScope, RunSettings};
use crate::suite::{load_suite, suite_path, Suite, Target};

/// The runner `keel serve` gives the playground.
pub struct PlaygroundSuites;

struct Quiet;

impl Progress for Quiet {
    fn case_done(&self, _arm: &str, _pass: bool) {}
}

/// Whether `suite` renders `prompt`: a prompt target naming it, or a function target
/// with a variant serving it (its own variant, else the function's first that does).
fn variant_for(config: &Config, suite: &Suite, prompt: &str) -> Option<Option<String>> {
    match &suite.target {
        Target::Prompt { prompt: p, .. } => (p == prompt).then_some(None),
        Target::Function { function, variant } => {
            let f = config.functions.get(function)?;
            match variant {
                Some(v) => f
                    .variant(v)
                    .filter(|v| v.prompt == prompt)
                    .map(|v| Some(v.name.clone())),
                None => f
                    .variants
                    .iter()
                    .find(|v| v.prompt == prompt)
                    .map(|v| Some(v.name.clone())),
            }
        }
        Target::Model { .. } => None,
    }
}

impl SuiteRunner for PlaygroundSuites {
    fn suites_for(&self, config: &Config, prompt: &str) -> (Vec<String>, Vec<String>) {
        let (mut names, mut problems) = (Vec::new(), Vec::new());
        let Ok(entries) = std::fs::read_dir(&config.evals_dir) else {
            return (names, problems);
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        for file in files {
            match load_suite(&file) {
                Ok(s) if variant_for(config, &s, prompt).is_some() => names.push(s.name),
                Ok(_) => {}
                Err(e) => problems.push(e.to_string()),
            }
        }
        (names, problems)
    }

    fn suite_models(&self, config: &Config) -> (Vec<(String, Vec<String>)>, Vec<String>) {
        crate::suite_models::suite_models(config)
    }

    fn run_canary(
        &self,
        config: Arc<Config>,
        store: Arc<keel_store::Store>,
        suite: String,
        model: String,
        trigger: &'static str,
        governor: Arc<keel_governance::Governor>,
    ) -> BoxFuture<Result<keel_gateway::canary::CanaryResult, String>> {
        Box::pin(async move {
            // The runner's future is not Send: a blocking thread of its own drives it.
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                handle.block_on(crate::canary::run(
                    &config,
                    &store,
                    &suite,
                    &model,
                    trigger,
                    Some(governor),
                ))
            })
            .await
            .map_err(|e| format!("the canary run stopped: {e}"))?
            .map(|r| keel_gateway::canary::CanaryResult {
                run_id: r.run_id,
                model_version: r.model_version,
                changed: r.changed,
                pass_rate: r.pass_rate,
            })
        })
    }

    fn run(&self, job: SuiteJob) -> BoxFuture<Result<SuiteComparison, String>> {
        Box::pin(async move {
            // The runner's future borrows its engine across awaits and need not be Send:
            // it gets a blocking thread of its own, driven by the gateway's runtime.
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || handle.block_on(run_job(job)))
                .await
                .map_err(|e| format!("the suite run stopped: {e}"))?
        })
    }
}

async fn run_job(job: SuiteJob) -> Result<SuiteComparison, String> {
    // Only a suite the page offers (by name, from the evals folder): a form field is
    // never a path to read.
    let (offered, _) = PlaygroundSuites.suites_for(&job.config, &job.prompt_name);
    if !offered.contains(&job.suite) {
        return Err(format!(
            "`{}` is not an eval suite of the evals folder that tests prompt `{}`",
            job.suite, job.prompt_name
        ));
    }
    let file = suite_path(&job.config.evals_dir, &job.suite);
    let mut suite = load_suite(&file).map_err(|e| e.to_string())?;
    let Some(variant) = variant_for(&job.config, &suite, &job.prompt_name) else {
        return Err(format!(
            "suite `{}` does not test prompt `{}`",
            job.suite, job.prompt_name
        ));
    };
    // A prompt target pinned to a label or version would test that, not the draft.
    if let Target::Prompt { label, version, .. } = &mut suite.target {
        *label = None;
        *version = None;
    }
    let settings = RunSettings {
        options: RunOptions {
            variant,
            baseline: Some(job.live_ref.clone()),
            model: Some(job.draft_model.clone()),
            baseline_model: None,
            from_store: false,
        },
        use_cache: true,
        actor: job.actor.clone(),
        concurrency: None,
        repeat: Some(1),
    };
    let scope = RunScope {
        folder: Some(HashMap::from([(
            job.prompt_name.clone(),
            job.draft.clone(),
        )])),
        max_cases: Some(job.max_cases),
        allow_unlocked: true,
        tags: job.tags.clone(),
        origin: None,
        governor: None,
    };
    let total = crate::dataset::scan_dataset(&suite.dataset_path, &suite.name, None, false)
        .map(|d| d.cases)
        .map_err(|e| e.to_string())?;
    let outcome = run_suite_scoped(&job.config, &job.store, &suite, &settings, &scope, &Quiet)
        .await
        .map_err(|e| e.to_string())?;
    Ok(comparison(&suite, total, outcome))
}

fn comparison(suite: &Suite, total: usize, o: RunOutcome) -> SuiteComparison {
    let live: HashMap<&str, &crate::compare::CaseRecord> = o
        .baseline
        .iter()
        .flat_map(|b| b.records.iter())
        .map(|r| (r.case_id.as_str(), r))
        .collect();
    let cases = o
        .candidate
        .records
        .iter()
        .map(|d| {
            let l = live.get(d.case_id.as_str());
            SuiteCase {
                case_id: d.case_id.clone(),
                live_pass: l.map(|l| l.pass),
                draft_pass: d.pass,
                live_score: l.map(|l| l.score),
                draft_score: d.score,
            }
        })
        .collect();
    let failures = o
        .candidate
        .failures
        .iter()
        .map(|(c, e)| (c.clone(), format!("draft: {e}")))
        .chain(
            o.baseline
                .iter()
                .flat_map(|b| b.failures.iter())
                .map(|(c, e)| (c.clone(), format!("live: {e}"))),
        )
        .collect();
    SuiteComparison {
        suite: o.suite.clone(),
        cases_run: o.cases,
        cases_total: total,
        draft_label: o.candidate.label.clone(),
        live_label: o
            .baseline
            .as_ref()
            .map_or_else(String::new, |b| b.label.clone()),
        draft_passed: o.candidate.stats.passed,
        live_passed: o.baseline.as_ref().map_or(0, |b| b.stats.passed),
        draft_run: o.candidate.run_id.clone(),
        live_run: o
            .baseline
            .as_ref()
            .map_or_else(String::new, |b| b.run_id.clone()),
        cases,
        verdict: o.verdict.as_ref().map(ToString::to_string),
        unlocked: suite.dataset_hash.as_deref() != Some(o.dataset_hash.as_str()),
        failures,
    }
}
