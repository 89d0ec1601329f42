//! "Add to dataset" on the dashboard: what the gateway needs of `keel-evals` (which it
//! cannot depend on) to propose a recorded call as an eval case. `keel serve` installs
//! `keel_evals::from_traces::Drafts`. A proposal is a row in `dataset_drafts`, never a
//! write to the suite's file: `keel dataset pull SUITE` writes it, so the change lands
//! through a pull request, like prompts.

use keel_core::config::Config;
use keel_store::sql::Db;

pub trait CaseDrafts: Send + Sync {
    /// The suites in the evals folder a case can be proposed for, by name.
    fn suites(&self, config: &Config) -> Vec<String>;

    /// Make the case `trace_id` gives (redacted by its function's policies, a reviewer's
    /// correction as `expected`) and keep it as a draft for `suite` by `by`. `Ok(false)`:
    /// that call is already proposed for that suite. The error is a message for the page.
    fn propose(
        &self,
        config: &Config,
        conn: Db<'_>,
        suite: &str,
        trace_id: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<bool, String>;
}
