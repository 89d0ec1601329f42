use std::collections::BTreeMap;

use keel_store::evals::{EvalResult, EvalRun, NewEvalRun};

use super::*;
use crate::assert::AssertionResult;
use crate::compare::{compare, summarize, CaseRecord};
use crate::gate::{check, GateRules};
use crate::runner::{ArmRun, RunOutcome};

pub(super) const N: usize = 20;
/// Cases the baseline passes and the candidate fails.
pub(super) const REGRESSED: [&str; 6] = ["c01", "c02", "c03", "c04", "c05", "c06"];
/// The case whose call fails in the candidate (and fails in the baseline too).
pub(super) const BROKEN: &str = "c20";

fn id(i: usize) -> String {
    format!("c{i:02}")
}

fn record(case: &str, pass: bool, cost: Option<i64>) -> CaseRecord {
    CaseRecord {
        case_id: case.into(),
        pass,
        score: if pass { 1.0 } else { 0.2 },
        metrics: BTreeMap::from([("accuracy".to_string(), if pass { 1.0 } else { 0.0 })]),
        cost_nanos: cost,
        latency_ms: 100,
    }
}

fn assertion(pass: bool, reason: &str) -> AssertionResult {
    AssertionResult {
        name: "contains".into(),
        metric: None,
        pass,
        score: if pass { 1.0 } else { 0.0 },
        weight: 1.0,
        reason: reason.into(),
        judge_reasoning: None,
        judge_cost: None,
    }
}

fn result(
    run: &str,
    case: &str,
    pass: bool,
    output: Option<&str>,
    error: Option<&str>,
) -> EvalResult {
    let reason = if pass {
        "found `refund`"
    } else {
        "expected `refund` | got <nope> & \"more\""
    };
    EvalResult {
        run_id: run.into(),
        case_id: case.into(),
        repeat_idx: 0,
        pass,
        score: if pass { 1.0 } else { 0.2 },
        output: output.map(String::from),
        error: error.map(String::from),
        latency_ms: 1_250,
        cost_nanos: None,
        input_tokens: None,
        output_tokens: None,
        cached: false,
        trace_id: None,
        assertions_json: serde_json::to_string(&vec![assertion(pass, reason)]).unwrap_or_default(),
    }
}

fn arm(role: &'static str, run_id: &str, label: &str, records: Vec<CaseRecord>) -> ArmRun {
    ArmRun {
        run_id: run_id.into(),
        role,
        label: label.into(),
        release_id: Some(format!("rel_{label}")),
        prompt_version: Some(if role == "candidate" { 3 } else { 2 }),
        upstream_model: Some("mock-1".into()),
        stats: summarize(&records, 0.95, 7),
        failures: Vec::new(),
        failed_calls: 0,
        records,
    }
}

/// A candidate (unpriced) that regresses on six cases and fails one call, against a priced
/// baseline, with a gate of min_pass_rate 0.8 and max_regression 0.05.
pub(super) fn regressed() -> (RunOutcome, Vec<EvalResult>, Vec<EvalResult>) {
    let ids: Vec<String> = (1..=N).map(id).collect();
    let base_pass = |c: &str| c != BROKEN;
    let cand_pass = |c: &str| c != BROKEN && !REGRESSED.contains(&c);
    let base_records = ids
        .iter()
        .map(|c| record(c, base_pass(c), Some(1_500)))
        .collect();
    let cand_records = ids.iter().map(|c| record(c, cand_pass(c), None)).collect();
    let baseline = arm("baseline", "evr_base", "production", base_records);
    let mut candidate = arm("candidate", "evr_cand", "staging", cand_records);
    candidate.failures = vec![(BROKEN.into(), "upstream timeout".into())];
    let comparison = compare(&baseline.records, &candidate.records, 0.05, 7);
    let rules = GateRules {
        min_pass_rate: Some(0.8),
        max_regression: Some(0.05),
        ..GateRules::default()
    };
    let gate = check(&rules, &candidate.stats, Some(&comparison));
    let cand_results = ids
        .iter()
        .map(|c| match c.as_str() {
            BROKEN => result("evr_cand", c, false, None, Some("upstream timeout")),
            "c01" => result("evr_cand", c, false, Some("line one\nline | two"), None),
            _ => result(
                "evr_cand",
                c,
                cand_pass(c),
                Some("We can refund you."),
                None,
            ),
        })
        .collect();
    let base_results = ids
        .iter()
        .map(|c| {
            result(
                "evr_base",
                c,
                base_pass(c),
                Some("Baseline says refund."),
                None,
            )
        })
        .collect();
    let outcome = RunOutcome {
        suite: "support".into(),
        dataset_hash: "sha256:0123456789abcdef0123".into(),
        cases: N,
        repeat: 1,
        candidate,
        baseline: Some(baseline),
        comparison: Some(comparison),
        verdict: None,
        gate,
    };
    (outcome, cand_results, base_results)
}

#[test]
fn terminal_names_the_failing_rule_its_amount_and_the_regressions() {
    let (o, cand, base) = regressed();
    assert!(!o.gate.passed);
    let text = render_terminal(&o, &cand, &base);

    assert!(
        text.contains("support") && text.contains("sha256:0123456789ab"),
        "{text}"
    );
    assert!(
        text.contains("staging (release rel_staging, prompt v3, upstream mock-1)"),
        "{text}"
    );
    // 13 of 20 pass: 65.0% against a bar of 80.0%.
    assert!(text.contains("min_pass_rate: FAILED"), "{text}");
    assert!(text.contains("by 15.0 points"), "{text}");
    assert!(
        text.contains("max_regression (pass rate): FAILED"),
        "{text}"
    );
    assert!(text.contains("significant"), "{text}");
    assert!(text.contains("Regressions (6"), "{text}");
    assert!(
        text.contains("✗ c01") && text.contains("expected `refund`"),
        "{text}"
    );
    assert!(text.contains("Failed calls, candidate (1)") && text.contains("upstream timeout"));
    let n = o.gate.failures.len();
    let last = text.lines().last().unwrap_or_default();
    assert_eq!(last, format!("GATE FAILED ({n} rules)"));
}

#[test]
fn unpriced_cost_reads_unpriced_never_zero_dollars() {
    let (o, cand, base) = regressed();
    let text = render_terminal(&o, &cand, &base);
    assert!(text.contains("unpriced (20 cases)"), "{text}");
    assert!(
        text.contains("$0.0000015"),
        "the priced baseline shows its cost: {text}"
    );
    assert!(!text.contains("$0.00 "), "{text}");
    let md = render_markdown(&o, &cand, &base);
    assert!(md.contains("unpriced (20 cases)"), "{md}");
    // Without a baseline, too.
    let alone = RunOutcome {
        baseline: None,
        comparison: None,
        verdict: None,
        ..o
    };
    let text = render_terminal(&alone, &cand, &[]);
    assert!(text.contains("unpriced (20 cases)"), "{text}");
    assert!(text.contains("Failing cases (7)"), "{text}");
}

#[test]
fn markdown_has_the_table_the_verdict_and_escaped_failing_cases() {
    let (o, cand, base) = regressed();
    let md = render_markdown(&o, &cand, &base);
    assert!(
        md.starts_with("## ❌ Keel eval support: gate failed"),
        "{md}"
    );
    assert!(md.contains("| metric | baseline | candidate | delta | p-value | significance |"));
    assert!(md.contains("| pass rate | 95.0%"), "{md}");
    assert!(md.contains("- ❌ min\\_pass\\_rate: FAILED"), "{md}");
    let details = &md[md.find("<details>").unwrap_or(md.len())..];
    assert!(details.contains("Failing cases (7, 6 regressions)"), "{md}");
    assert!(details.contains("c01 (regression)"), "{md}");
    // The reason's pipe, backticks and markup are escaped; the output's newline is a <br>.
    assert!(
        details.contains("expected \\`refund\\` \\| got &lt;nope&gt; &amp;"),
        "{md}"
    );
    assert!(details.contains("line one<br>line \\| two"), "{md}");
    assert!(
        details.contains("Baseline says refund."),
        "the baseline output of a regression"
    );
    assert!(details.contains("call failed: upstream timeout"), "{md}");
    assert!(details.trim_end().ends_with("</details>"));
    // Every table row has as many unescaped pipes as its header.
    for line in details.lines().filter(|l| l.starts_with('|')) {
        let pipes = line.matches('|').count() - line.matches("\\|").count();
        assert_eq!(pipes, 5, "{line}");
    }
}

#[test]
fn markdown_of_a_passing_run_has_no_details() {
    let (mut o, cand, base) = regressed();
    o.gate = check(
        &GateRules::default(),
        &o.candidate.stats,
        o.comparison.as_ref(),
    );
    o.candidate.records.iter_mut().for_each(|r| r.pass = true);
    let passing: Vec<EvalResult> = cand
        .into_iter()
        .map(|r| EvalResult {
            pass: true,
            error: None,
            ..r
        })
        .collect();
    let md = render_markdown(&o, &passing, &base);
    assert!(
        md.starts_with("## ✅ Keel eval support: gate passed"),
        "{md}"
    );
    assert!(!md.contains("<details>"), "{md}");
    assert!(render_terminal(&o, &passing, &base).ends_with("GATE PASSED\n"));
}

#[test]
fn json_is_the_outcome() {
    let (o, _, _) = regressed();
    let value: serde_json::Value = serde_json::from_str(&render_json(&o)).unwrap_or_default();
    assert_eq!(value["suite"], "support");
    assert_eq!(value["gate"]["passed"], false);
    assert_eq!(
        value["comparison"]["regressions"].as_array().map(Vec::len),
        Some(6)
    );
}

fn stored(id: &str, role: &str, gate_passed: Option<bool>, summary: Option<String>) -> EvalRun {
    EvalRun {
        run: NewEvalRun {
            id: id.into(),
            suite: "support".into(),
            started_at_ms: 1_767_225_600_000,
            actor: "ci".into(),
            dataset_hash: "sha256:x".into(),
            role: role.into(),
            target_json: "{}".into(),
            function: Some("support-answer".into()),
            variant: Some("control".into()),
            prompt_name: Some("support".into()),
            prompt_version: Some(3),
            model: Some("fast".into()),
            upstream_model: Some("mock-1".into()),
            release_id: Some("rel_9".into()),
            repeat: 1,
        },
        finished_at_ms: None,
        status: "done".into(),
        cases: 20,
        passed: 13,
        baseline_run: None,
        gate_passed,
        summary_json: summary,
        model_version: None,
    }
}

#[test]
fn history_lists_runs_with_their_gate() {
    let (o, _, _) = regressed();
    let runs = [
        stored("evr_cand", "candidate", Some(false), Some(render_json(&o))),
        EvalRun {
            passed: 19,
            ..stored("evr_base", "baseline", None, None)
        },
    ];
    let versions = [(runs[0].run.dataset_hash.clone(), 3)]
        .into_iter()
        .collect();
    let text = render_history(&runs, &versions);
    assert!(
        text.contains("v3 · "),
        "the dataset version each run used: {text}"
    );
    assert!(text.contains("2026-01-01 00:00 UTC"), "{text}");
    assert!(
        text.contains("support-answer/control") && text.contains("support v3"),
        "{text}"
    );
    assert!(
        text.contains("fast → mock-1") && text.contains("rel_9"),
        "{text}"
    );
    // The summary's case-level rate (13/20), else passed / results (19/20).
    assert!(text.contains("65.0%") && text.contains("95.0%"), "{text}");
    assert!(text.contains("FAILED") && text.contains('—'), "{text}");
    assert!(render_history(&[], &Default::default()).starts_with("No eval runs"));
}

/// The PR comment and the terminal report of a failing gate, pinned: a layout change must
/// be reviewed (`cargo insta review`), not slipped in.
#[test]
fn the_reports_of_a_failing_gate_are_pinned() {
    let (o, cand, base) = regressed();
    insta::assert_snapshot!("failing_gate_markdown", render_markdown(&o, &cand, &base));
    insta::assert_snapshot!("failing_gate_terminal", render_terminal(&o, &cand, &base));
}
