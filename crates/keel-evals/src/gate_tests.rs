use super::*;
use crate::compare::{compare, summarize, CaseRecord};

/// `passed` of `n` cases pass; accuracy 0.9 when passing, else 0.3; fixed cost and latency.
fn run(n: usize, passed: usize, cost: Option<i64>, latency_ms: u64) -> Vec<CaseRecord> {
    (0..n)
        .map(|i| CaseRecord {
            case_id: format!("case-{i:03}"),
            pass: i < passed,
            score: if i < passed { 0.9 } else { 0.3 },
            metrics: BTreeMap::from([("accuracy".to_string(), if i < passed { 0.9 } else { 0.3 })]),
            cost_nanos: cost,
            latency_ms,
        })
        .collect()
}

fn rules(toml_text: &str) -> GateRules {
    #[derive(Deserialize)]
    struct Suite {
        gate: GateRules,
    }
    match toml::from_str::<Suite>(toml_text) {
        Ok(suite) => suite.gate,
        Err(e) => panic!("bad gate: {e}"),
    }
}

fn only_failure(verdict: &GateVerdict) -> &GateFailure {
    assert!(!verdict.passed);
    assert_eq!(verdict.exit_status(), ExitStatus::Fail);
    assert_eq!(verdict.failures.len(), 1, "{:?}", verdict.failures);
    &verdict.failures[0]
}

#[test]
fn parses_the_suite_gate_table_and_rejects_unknown_keys() {
    let gate = rules(
        "[gate]\nmin_pass_rate = 0.8\nmin_metric = { accuracy = 0.8 }\nmax_regression = 0.05\n\
         max_cost_increase_pct = 10\nmax_p95_latency_ms = 2000\n",
    );
    assert_eq!(gate.min_pass_rate, Some(0.8));
    assert_eq!(gate.min_metric.get("accuracy"), Some(&0.8));
    assert_eq!(
        (gate.max_regression, gate.max_cost_increase_pct),
        (Some(0.05), Some(10.0))
    );
    assert_eq!(gate.max_p95_latency_ms, Some(2000));
    assert_eq!(gate.validate(), Ok(()));
    let typo = toml::from_str::<GateRules>("min_pass_rates = 0.8");
    assert!(typo.is_err_and(|e| e.to_string().contains("min_pass_rates")));
}

#[test]
fn validate_names_the_key_and_the_fix() {
    let percent = GateRules {
        min_pass_rate: Some(80.0),
        ..GateRules::default()
    };
    assert!(percent
        .validate()
        .is_err_and(|e| e.contains("gate.min_pass_rate") && e.contains("did you mean 0.8")));
    let negative = GateRules {
        max_regression: Some(-0.1),
        ..GateRules::default()
    };
    assert!(negative
        .validate()
        .is_err_and(|e| e.contains("gate.max_regression")));
    let cost = GateRules {
        max_cost_increase_pct: Some(f64::NAN),
        ..GateRules::default()
    };
    assert!(cost
        .validate()
        .is_err_and(|e| e.contains("gate.max_cost_increase_pct")));
    let latency = GateRules {
        max_p95_latency_ms: Some(0),
        ..GateRules::default()
    };
    assert!(latency
        .validate()
        .is_err_and(|e| e.contains("gate.max_p95_latency_ms")));
    let metric = GateRules {
        min_metric: BTreeMap::from([("f1".into(), f64::INFINITY)]),
        ..GateRules::default()
    };
    assert!(metric
        .validate()
        .is_err_and(|e| e.contains("gate.min_metric.f1")));
}

#[test]
fn empty_gate_passes_with_exit_code_0() {
    let verdict = check(
        &GateRules::default(),
        &summarize(&run(3, 0, None, 1), 0.95, 1),
        None,
    );
    assert!(verdict.passed && verdict.failures.is_empty());
    assert_eq!(verdict.exit_status().code(), 0);
}

#[test]
fn min_pass_rate_fails_with_rule_and_amount() {
    let stats = summarize(&run(100, 72, None, 10), 0.95, 1);
    let verdict = check(&rules("[gate]\nmin_pass_rate = 0.8"), &stats, None);
    let failure = only_failure(&verdict);
    assert_eq!(failure.rule, "min_pass_rate");
    assert_eq!(
        (failure.expected.as_str(), failure.actual.as_str()),
        ("≥ 80.0%", "72.0%")
    );
    assert_eq!(failure.by, "8.0 points");
    assert_eq!(
        failure.message,
        "pass rate 72.0% is below min_pass_rate 80.0% (by 8.0 points)"
    );
    assert_eq!(verdict.exit_status().code(), 1);
}

#[test]
fn min_pass_rate_uses_the_point_estimate_not_the_low_end() {
    // 8/10 = 80% meets 0.8 although the Wilson 95% low end is 0.49.
    let stats = summarize(&run(10, 8, None, 10), 0.95, 1);
    assert!(stats.pass_rate.low < 0.5);
    let verdict = check(&rules("[gate]\nmin_pass_rate = 0.8"), &stats, None);
    assert!(verdict.passed, "{:?}", verdict.failures);
    assert_eq!(
        verdict.checked,
        vec!["min_pass_rate: ok — pass rate 80.0% ≥ 80.0%"]
    );
}

#[test]
fn min_metric_fails_below_and_when_missing() {
    let stats = summarize(&run(10, 5, None, 10), 0.95, 1); // accuracy mean 0.6
    let verdict = check(
        &rules("[gate]\nmin_metric = { accuracy = 0.8 }"),
        &stats,
        None,
    );
    let failure = only_failure(&verdict);
    assert_eq!(failure.rule, "min_metric.accuracy");
    assert_eq!(
        failure.message,
        "metric accuracy 0.600 is below min_metric.accuracy 0.800 (by 0.200)"
    );
    let missing = check(&rules("[gate]\nmin_metric = { f1 = 0.5 }"), &stats, None);
    assert_eq!(only_failure(&missing).rule, "min_metric.f1");
    assert!(only_failure(&missing).message.contains("not reported"));
    assert!(check(&rules("[gate]\nmin_metric = { score = 0.6 }"), &stats, None).passed);
}

#[test]
fn max_regression_fails_on_a_significant_drop() {
    // 100% → 50% on 20 paired cases: b = 10, c = 0, p = 0.00195; accuracy and score drop
    // 0.3 with Wilcoxon p = 0.00195 too.
    let baseline = run(20, 20, None, 10);
    let candidate: Vec<CaseRecord> = run(20, 10, None, 10);
    let cmp = compare(&baseline, &candidate, 0.05, 3);
    let stats = summarize(&candidate, 0.95, 3);
    let verdict = check(&rules("[gate]\nmax_regression = 0.05"), &stats, Some(&cmp));
    assert!(!verdict.passed);
    let rules_failed: Vec<&str> = verdict.failures.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(
        rules_failed,
        [
            "max_regression (pass rate)",
            "max_regression (score)",
            "max_regression (metric accuracy)"
        ]
    );
    assert_eq!(
        verdict.failures[0].message,
        "pass rate dropped 50.0 points vs baseline (100.0% → 50.0%, p=0.0020), \
         more than max_regression 5.0 points (by 45.0 points)"
    );
    assert_eq!(verdict.failures[1].by, "0.250");
    // The same drop allowed by a larger bar passes.
    assert!(check(&rules("[gate]\nmax_regression = 0.6"), &stats, Some(&cmp)).passed);
}

#[test]
fn max_regression_ignores_a_drop_that_is_not_significant() {
    // 10/10 → 8/10: b = 2, c = 0, McNemar p = 0.5 — a 20-point drop, but noise.
    let cmp = compare(&run(10, 10, None, 10), &run(10, 8, None, 10), 0.05, 3);
    let stats = summarize(&run(10, 8, None, 10), 0.95, 3);
    let verdict = check(&rules("[gate]\nmax_regression = 0.05"), &stats, Some(&cmp));
    assert!(verdict.passed, "{:?}", verdict.failures);
    assert!(verdict.checked[0].contains("not significant (p=0.5000)"));
}

#[test]
fn baseline_rules_are_not_checked_without_a_baseline() {
    let stats = summarize(&run(10, 2, Some(10), 10), 0.95, 3);
    let gate = rules("[gate]\nmax_regression = 0.0\nmax_cost_increase_pct = 0");
    let verdict = check(&gate, &stats, None);
    assert!(verdict.passed);
    assert_eq!(
        verdict.checked,
        [
            "max_regression: not checked (no baseline)",
            "max_cost_increase_pct: not checked (no baseline)"
        ]
    );
}

#[test]
fn max_cost_increase_fails_with_percentage_points() {
    let cmp = compare(
        &run(10, 10, Some(100_000), 10),
        &run(10, 10, Some(125_000), 10),
        0.05,
        3,
    );
    let stats = summarize(&run(10, 10, Some(125_000), 10), 0.95, 3);
    let verdict = check(
        &rules("[gate]\nmax_cost_increase_pct = 10"),
        &stats,
        Some(&cmp),
    );
    let failure = only_failure(&verdict);
    assert_eq!(failure.rule, "max_cost_increase_pct");
    assert_eq!(
        (failure.actual.as_str(), failure.by.as_str()),
        ("+25.0%", "15.0 percentage points")
    );
    assert_eq!(
        failure.message,
        "cost per case rose 25.0% vs baseline ($0.000100 → $0.000125), \
         more than max_cost_increase_pct 10.0% (by 15.0 percentage points)"
    );
    assert!(
        check(
            &rules("[gate]\nmax_cost_increase_pct = 25"),
            &stats,
            Some(&cmp)
        )
        .passed
    );
    // Unpriced candidate: never compared with $0, and the rule that cannot be checked
    // fails the gate with that reason …
    let unpriced = compare(
        &run(10, 10, Some(100_000), 10),
        &run(10, 10, None, 10),
        0.05,
        3,
    );
    let verdict = check(
        &rules("[gate]\nmax_cost_increase_pct = 10"),
        &stats,
        Some(&unpriced),
    );
    let failure = only_failure(&verdict);
    assert_eq!(failure.rule, "max_cost_increase_pct");
    assert_eq!(failure.actual, "unpriced");
    assert!(
        failure
            .message
            .contains("cannot be checked: 10 of 10 paired cases have no price")
            && failure.message.contains("allow_unpriced = true"),
        "{}",
        failure.message
    );
    // … unless the suite allows unpriced cases.
    let verdict = check(
        &rules("[gate]\nmax_cost_increase_pct = 10\nallow_unpriced = true"),
        &stats,
        Some(&unpriced),
    );
    assert!(verdict.passed);
    assert_eq!(
        verdict.checked,
        ["max_cost_increase_pct: not checked (no case priced in both runs; allow_unpriced)"]
    );
    // A baseline at $0 against a priced candidate cannot hold any percentage.
    let from_zero = compare(
        &run(10, 10, Some(0), 10),
        &run(10, 10, Some(5), 10),
        0.05,
        3,
    );
    let verdict = check(
        &rules("[gate]\nmax_cost_increase_pct = 10"),
        &stats,
        Some(&from_zero),
    );
    assert_eq!(only_failure(&verdict).actual, "from $0");
}
