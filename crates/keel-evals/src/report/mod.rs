//! The reporters of `keel eval run` and `keel eval history`.
//!
//! Why it exists: one run is read by a person at a terminal, by reviewers in a PR
//! comment, by a CI system's test view (JUnit) and by scripts (`--json`). Each wants the
//! same facts — the comparison with the baseline, the regressions, the failed calls and
//! the gate's verdict — drawn differently.
//!
//! What it owns: one renderer per format ([`render_terminal`], [`render_markdown`],
//! [`render_junit`], [`render_json`], and [`render_history`] for past runs). The
//! renderers draw from the same pieces in `view` (the metric rows and the failing cases),
//! so they cannot disagree. Money is exact dollars; a cost that is unknown reads
//! `unpriced` with its count, never `$0`.

mod history;
mod junit;
mod markdown;
mod terminal;
mod view;

#[cfg(test)]
mod junit_tests;
#[cfg(test)]
mod tests;

pub use history::render_history;
pub use junit::{render_junit, write_junit};
pub use markdown::render_markdown;
pub use terminal::render_terminal;

use crate::runner::RunOutcome;

/// `--json`: the whole outcome, pretty-printed (per-case records are left out; the
/// results live in the store under the run ids).
pub fn render_json(o: &RunOutcome) -> String {
    serde_json::to_string_pretty(o).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("the run outcome could not be serialized: {e}") })
            .to_string()
    })
}
