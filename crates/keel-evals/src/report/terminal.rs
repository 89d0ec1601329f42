//! `keel eval run` for a person at a terminal: what ran, the metrics (against the
//! baseline when there is one), the regressions and failed calls, and the gate's verdict
//! as the last line.

use std::fmt::Write as _;

use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
use keel_store::evals::EvalResult;

use super::view::{
    arm_line, failing_cases, metric_cells, metric_header, metric_rows, plural, preview, short_hash,
    FailingCase,
};
use crate::runner::RunOutcome;

/// How many regressions, failing cases and failed calls are listed before `… and N more`.
const LISTED: usize = 10;
const PREVIEW_CHARS: usize = 100;

/// The human report of a run; `candidate` and `baseline` are the arms' stored results
/// (those of the failing cases are enough: only they are listed).
pub fn render_terminal(
    o: &RunOutcome,
    candidate: &[EvalResult],
    baseline: &[EvalResult],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Eval suite {} · dataset {} · {} × {}",
        o.suite,
        short_hash(&o.dataset_hash),
        plural(o.cases, "case", "cases"),
        plural(o.repeat as usize, "repeat", "repeats"),
    );
    let _ = writeln!(
        out,
        "candidate  {} · run {}",
        arm_line(&o.candidate),
        o.candidate.run_id
    );
    if let Some(b) = &o.baseline {
        let _ = writeln!(out, "baseline   {} · run {}", arm_line(b), b.run_id);
    }
    let _ = writeln!(out, "\n{}", metrics_table(o));
    if let Some(c) = &o.comparison {
        let mut line = format!("Compared on {} paired cases", c.paired_cases);
        if !c.unpaired.is_empty() {
            let _ = write!(line, " ({} unpaired ignored)", c.unpaired.len());
        }
        let _ = writeln!(
            out,
            "{line}; {} regressed, {} improved.",
            c.regressions.len(),
            c.improvements.len()
        );
        if let Some(v) = &o.verdict {
            let _ = writeln!(out, "Verdict: {v}");
        }
    }
    let failing = failing_cases(o, candidate, baseline);
    let (regressions, others): (Vec<&FailingCase>, Vec<&FailingCase>) =
        failing.iter().partition(|c| c.regression);
    if o.comparison.is_some() {
        if !regressions.is_empty() {
            let _ = writeln!(
                out,
                "\nRegressions ({}: passed in the baseline, fail now):",
                regressions.len()
            );
            list_cases(&mut out, &regressions);
        }
        if !others.is_empty() {
            let ids: Vec<&str> = others.iter().take(LISTED).map(|c| c.case_id).collect();
            let more = others.len().saturating_sub(LISTED);
            let tail = if more > 0 {
                format!(" … and {more} more")
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "\nAlso failing (not passing in the baseline either): {}{tail}",
                ids.join(", ")
            );
        }
    } else if !failing.is_empty() {
        let _ = writeln!(out, "\nFailing cases ({}):", failing.len());
        list_cases(&mut out, &others);
    }
    failed_calls(
        &mut out,
        "candidate",
        &o.candidate.failures,
        o.candidate.failed_calls,
    );
    if let Some(b) = &o.baseline {
        failed_calls(&mut out, "baseline", &b.failures, b.failed_calls);
    }
    gate(&mut out, o);
    out
}

fn metrics_table(o: &RunOutcome) -> Table {
    let with_baseline = o.baseline.is_some();
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(metric_header(o));
    for row in metric_rows(o) {
        table.add_row(metric_cells(&row, with_baseline));
    }
    for i in 1..table.column_count() {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn list_cases(out: &mut String, cases: &[&FailingCase]) {
    for case in cases.iter().take(LISTED) {
        let repeats = if case.repeats > 1 {
            format!(" ({}/{} repeats failed)", case.failed_repeats, case.repeats)
        } else {
            String::new()
        };
        let _ = writeln!(out, "  ✗ {}{repeats}", case.case_id);
        if let Some(error) = case.error {
            let _ = writeln!(
                out,
                "      call failed: {}",
                preview(&one_line(error), PREVIEW_CHARS)
            );
        }
        for reason in &case.reasons {
            let _ = writeln!(
                out,
                "      {}",
                preview(&one_line(reason), PREVIEW_CHARS * 2)
            );
        }
        if let Some(output) = case.output {
            let _ = writeln!(
                out,
                "      output: {}",
                preview(&one_line(output), PREVIEW_CHARS)
            );
        }
    }
    if cases.len() > LISTED {
        let _ = writeln!(
            out,
            "  … and {} more (see --markdown, --junit or --json)",
            cases.len() - LISTED
        );
    }
}

/// `total` counts every failed call; `failures` lists the first of them.
fn failed_calls(out: &mut String, role: &str, failures: &[(String, String)], total: usize) {
    let total = total.max(failures.len());
    if total == 0 {
        return;
    }
    let _ = writeln!(out, "\nFailed calls, {role} ({total}):");
    for (case, error) in failures.iter().take(LISTED) {
        let _ = writeln!(
            out,
            "  {case}: {}",
            preview(&one_line(error), PREVIEW_CHARS)
        );
    }
    let shown = failures.len().min(LISTED);
    if total > shown {
        let _ = writeln!(out, "  … and {} more", total - shown);
    }
}

fn gate(out: &mut String, o: &RunOutcome) {
    let verdict = &o.gate;
    let _ = writeln!(out, "\nGate:");
    if verdict.checked.is_empty() {
        let _ = writeln!(out, "  (no rules)");
    }
    for line in &verdict.checked {
        let mark = if line.contains(": FAILED") {
            "✗"
        } else {
            "·"
        };
        let _ = writeln!(out, "  {mark} {line}");
    }
    // Each failure's message is in its `checked` line; print any that is not.
    for failure in &verdict.failures {
        if !verdict.checked.iter().any(|l| l.contains(&failure.message)) {
            let _ = writeln!(out, "  ✗ {}: {}", failure.rule, failure.message);
        }
    }
    if verdict.passed {
        let _ = writeln!(out, "GATE PASSED");
    } else {
        let _ = writeln!(
            out,
            "GATE FAILED ({})",
            plural(verdict.failures.len(), "rule", "rules")
        );
    }
}
