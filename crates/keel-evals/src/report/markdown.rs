//! `keel eval run --markdown FILE`: a PR comment. A title with the verdict, the
//! comparison table, the gate's rules, and the failing cases folded in a `<details>`
//! block (the regressions first, with the baseline's output beside the candidate's).
//!
//! Every piece of text that comes from a run (outputs, reasons, ids, errors) goes through
//! [`cell`], so a pipe or a newline cannot break the table and HTML or Markdown in an
//! output is shown as text, not rendered.

use std::fmt::Write as _;

use keel_store::evals::EvalResult;

use super::view::{
    arm_line, failing_cases, metric_cells, metric_header, metric_rows, plural, preview, short_hash,
};
use crate::runner::RunOutcome;

/// GitHub caps a comment at 65,536 characters: list at most this many failing cases.
const LISTED: usize = 50;
const PREVIEW_CHARS: usize = 160;

/// Text from a run, safe inside a Markdown table cell: HTML-escaped, Markdown
/// punctuation backslash-escaped, pipes escaped, newlines as `<br>`.
pub(crate) fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '~' | '|' | '#' => {
                out.push('\\');
                out.push(ch);
            }
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push_str("<br>");
                }
            }
            '\n' => out.push_str("<br>"),
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

/// The PR comment for a run; `candidate` and `baseline` are the arms' stored results.
pub fn render_markdown(
    o: &RunOutcome,
    candidate: &[EvalResult],
    baseline: &[EvalResult],
) -> String {
    let mut out = String::new();
    let (mark, verdict) = if o.gate.passed {
        ("✅", "gate passed".to_string())
    } else {
        let n = plural(o.gate.failures.len(), "rule", "rules");
        ("❌", format!("gate failed ({n})"))
    };
    let _ = writeln!(out, "## {mark} Keel eval {}: {verdict}\n", cell(&o.suite));
    let _ = writeln!(
        out,
        "Dataset `{}` · {} × {}  ",
        short_hash(&o.dataset_hash).replace('`', ""),
        plural(o.cases, "case", "cases"),
        plural(o.repeat as usize, "repeat", "repeats"),
    );
    let _ = writeln!(out, "**Candidate:** {}  ", cell(&arm_line(&o.candidate)));
    if let Some(b) = &o.baseline {
        let _ = writeln!(out, "**Baseline:** {}  ", cell(&arm_line(b)));
    }
    out.push('\n');

    let with_baseline = o.baseline.is_some();
    let header: Vec<String> = metric_header(o).iter().map(|h| cell(h)).collect();
    out.push_str(&row(&header));
    let align: Vec<String> = (0..header.len())
        .map(|i| if i == 0 { ":--" } else { "--:" }.to_string())
        .collect();
    out.push_str(&row(&align));
    for metric in metric_rows(o) {
        let cells: Vec<String> = metric_cells(&metric, with_baseline)
            .iter()
            .map(|c| cell(c))
            .collect();
        out.push_str(&row(&cells));
    }
    if let Some(c) = &o.comparison {
        let mut line = format!(
            "\nCompared on {} paired cases: **{} regressed**, {} improved",
            c.paired_cases,
            c.regressions.len(),
            c.improvements.len()
        );
        if !c.unpaired.is_empty() {
            let _ = write!(line, " ({} unpaired ignored)", c.unpaired.len());
        }
        if let Some(v) = &o.verdict {
            let _ = write!(line, ". Verdict: **{v}**");
        }
        let _ = writeln!(out, "{line}.");
    }
    let failed_calls = o.candidate.failed_calls.max(o.candidate.failures.len());
    if failed_calls > 0 {
        let _ = writeln!(out, "\n**Failed calls:** {failed_calls}.");
    }

    let _ = writeln!(out, "\n### Gate\n");
    if o.gate.checked.is_empty() {
        let _ = writeln!(out, "No rules.");
    }
    for line in &o.gate.checked {
        let mark = if line.contains(": FAILED") {
            "❌"
        } else {
            "✅"
        };
        let _ = writeln!(out, "- {mark} {}", cell(line));
    }

    let failing = failing_cases(o, candidate, baseline);
    if failing.is_empty() {
        return out;
    }
    let regressions = failing.iter().filter(|c| c.regression).count();
    let summary = if o.comparison.is_some() {
        format!(
            "Failing cases ({}, {})",
            failing.len(),
            plural(regressions, "regression", "regressions")
        )
    } else {
        format!("Failing cases ({})", failing.len())
    };
    let _ = writeln!(out, "\n<details><summary>{summary}</summary>\n");
    let mut header = vec!["case", "failing assertions", "output"];
    if with_baseline {
        header.push("baseline output");
    }
    out.push_str(&row(&header
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()));
    out.push_str(&row(&vec!["---".to_string(); header.len()]));
    for case in failing.iter().take(LISTED) {
        let mut id = cell(case.case_id);
        if case.regression {
            id.push_str(" (regression)");
        }
        if case.repeats > 1 {
            let _ = write!(
                id,
                " {}/{} repeats failed",
                case.failed_repeats, case.repeats
            );
        }
        let mut reasons: Vec<String> = case.reasons.iter().map(|r| cell(r)).collect();
        if let Some(error) = case.error {
            reasons.insert(0, format!("call failed: {}", cell(error)));
        }
        let output = case
            .output
            .map_or_else(|| "—".into(), |t| cell(&preview(t, PREVIEW_CHARS)));
        let mut cells = vec![id, reasons.join("<br>"), output];
        if with_baseline {
            let base = case
                .baseline_output
                .map_or_else(|| "—".into(), |t| cell(&preview(t, PREVIEW_CHARS)));
            cells.push(base);
        }
        out.push_str(&row(&cells));
    }
    if failing.len() > LISTED {
        let _ = writeln!(
            out,
            "\n… and {} more (see the JUnit or JSON report).",
            failing.len() - LISTED
        );
    }
    out.push_str("\n</details>\n");
    out
}
