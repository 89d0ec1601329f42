//! How the playground runs an eval suite on a draft. The suite runner lives in
//! `keel-evals`, which depends on this crate, so the gateway cannot call it directly:
//! it declares what it needs here ([`SuiteRunner`]) and `keel serve` hands it the
//! runner from `keel-evals` ([`crate::Gateway::start_with`]). Without one (a gateway
//! embedded elsewhere), the page says suites cannot run here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use keel_core::config::Config;
use keel_registry::Prompt;
use keel_store::Store;

/// Most cases of a suite the playground runs per arm: a page must answer in reasonable
/// time; `keel eval run` runs them all.
pub const MAX_CASES: usize = 50;

/// One suite run on a draft, with the live version as its baseline.
pub struct SuiteJob {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    /// The suite's name in the evals folder.
    pub suite: String,
    pub prompt_name: String,
    /// The draft, tested as the suite's candidate.
    pub draft: Prompt,
    /// The configured model the draft is tried on.
    pub draft_model: String,
    /// The live version the draft is compared with: a label or `vN`.
    pub live_ref: String,
    pub max_cases: usize,
    /// Who ran it (eval runs record their actor).
    pub actor: String,
    /// Tags on every call's trace.
    pub tags: Vec<String>,
}

/// One case of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteCase {
    pub case_id: String,
    pub live_pass: Option<bool>,
    pub draft_pass: bool,
    pub live_score: Option<f64>,
    pub draft_score: f64,
}

/// What the page shows of a suite run: both arms' pass rates, case by case.
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteComparison {
    pub suite: String,
    /// Cases run per arm, and in the dataset.
    pub cases_run: usize,
    pub cases_total: usize,
    pub draft_label: String,
    pub live_label: String,
    pub draft_passed: u64,
    pub live_passed: u64,
    /// The stored eval runs (their results hold every output).
    pub draft_run: String,
    pub live_run: String,
    pub cases: Vec<SuiteCase>,
    /// `parity_or_better` or `regressed` (significant drops only), from keel-evals.
    pub verdict: Option<String>,
    /// The dataset is not locked, or changed since its lock: fine for trying, not a gate.
    pub unlocked: bool,
    /// (case id, error) of calls that failed.
    pub failures: Vec<(String, String)>,
}

/// A boxed future, so the trait stays object-safe.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What `keel-evals` provides to the playground.
pub trait SuiteRunner: Send + Sync {
    /// The suites in `config`'s evals folder whose target renders `prompt` (a prompt
    /// target, or a function variant serving it), by name; and the problems of suite
    /// files that could not be read.
    fn suites_for(&self, config: &Config, prompt: &str) -> (Vec<String>, Vec<String>);

    /// Run the job; the error is a message for the page.
    fn run(&self, job: SuiteJob) -> BoxFuture<Result<SuiteComparison, String>>;

    /// Every suite of the evals folder with the configured models it runs on (for the
    /// Models page), and the problems of suite files that could not be read.
    fn suite_models(&self, _config: &Config) -> (Vec<(String, Vec<String>)>, Vec<String>) {
        (Vec::new(), Vec::new())
    }

    /// Run scheduled canary `suite` on `model` (`crate::canary` decides when).
    fn run_canary(
        &self,
        _config: Arc<Config>,
        _store: Arc<Store>,
        _suite: String,
        _model: String,
        _trigger: &'static str,
        _governor: Arc<keel_governance::Governor>,
    ) -> BoxFuture<Result<crate::canary::CanaryResult, String>> {
        Box::pin(async { Err("this gateway's suite runner cannot run canaries".to_string()) })
    }
}
