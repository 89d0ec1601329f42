use super::*;

fn record(id: &str, pass: bool, score: f64, cost: Option<i64>, latency_ms: u64) -> CaseRecord {
    CaseRecord {
        case_id: id.to_string(),
        pass,
        score,
        metrics: BTreeMap::from([("accuracy".to_string(), score)]),
        cost_nanos: cost,
        latency_ms,
    }
}

#[test]
fn summarize_reports_intervals_cost_and_latency() {
    let records: Vec<CaseRecord> = (1..=10u32)
        .map(|i| {
            let cost = (i != 10).then_some(1_000 * i64::from(i));
            record(
                &format!("c{i}"),
                i <= 8,
                f64::from(i) / 10.0,
                cost,
                u64::from(i) * 100,
            )
        })
        .collect();
    let stats = summarize(&records, 0.95, 1);
    assert_eq!((stats.cases, stats.passed), (10, 8));
    // Wilson 8/10 at 95%.
    assert!((stats.pass_rate.low - 0.490_162_471_5).abs() < 1e-6);
    assert!((stats.pass_rate.high - 0.943_317_848_5).abs() < 1e-6);
    assert!((stats.score.estimate - 0.55).abs() < 1e-12);
    assert_eq!(stats.metric("accuracy"), stats.metrics.get("accuracy"));
    assert_eq!(stats.metric("score"), Some(&stats.score));
    assert_eq!(stats.metric("missing"), None);
    // The unpriced case is counted, not averaged in as $0: mean of 1000..=9000 is 5000.
    assert_eq!((stats.cost.priced_cases, stats.cost.unpriced_cases), (9, 1));
    assert_eq!(stats.cost.total_nanos, 45_000);
    assert_eq!(stats.cost.mean_per_case_nanos, Some(5_000.0));
    assert_eq!(
        (stats.latency_p50_ms, stats.latency_p95_ms),
        (Some(500), Some(1000))
    );
    assert_eq!(stats, summarize(&records, 0.95, 1));
}

#[test]
fn summarize_empty_run() {
    let stats = summarize(&[], 0.95, 1);
    assert_eq!(stats.cases, 0);
    assert_eq!((stats.pass_rate.low, stats.pass_rate.high), (0.0, 1.0));
    assert_eq!(stats.cost.mean_per_case_nanos, None);
    assert_eq!(stats.latency_p95_ms, None);
}

#[test]
fn compare_pairs_by_case_id_and_reports_unpaired() {
    let baseline = vec![
        record("a", true, 1.0, Some(100), 10),
        record("b", true, 1.0, Some(100), 20),
        record("c", false, 0.0, Some(100), 30),
        record("only-base", true, 1.0, Some(100), 40),
    ];
    // Different order, one new case, one duplicated id.
    let candidate = vec![
        record("c", true, 1.0, Some(150), 35),
        record("only-cand", false, 0.0, Some(150), 45),
        record("b", false, 0.0, Some(150), 25),
        record("a", true, 1.0, Some(150), 15),
        record("a", true, 1.0, Some(150), 15),
    ];
    let cmp = compare(&baseline, &candidate, 0.05, 7);
    assert_eq!(cmp.paired_cases, 2);
    assert_eq!(cmp.unpaired, vec!["a", "only-base", "only-cand"]);
    assert_eq!(cmp.regressions, vec!["b"]);
    assert_eq!(cmp.improvements, vec!["c"]);
    assert_eq!((cmp.pass_rate.b, cmp.pass_rate.c), (1, 1));
    assert_eq!(cmp.pass_rate.p_value, 1.0);
    assert!(!cmp.pass_rate.significant);
    let cost = cmp
        .cost_per_case
        .as_ref()
        .map(|d| (d.baseline, d.candidate, d.change_pct));
    assert_eq!(cost, Some((100.0, 150.0, Some(50.0))));
    assert_eq!(
        (cmp.latency_p95.baseline, cmp.latency_p95.candidate),
        (30.0, 35.0)
    );
}

#[test]
fn compare_finds_a_significant_regression() {
    // 20 cases; the candidate fails 10 the baseline passed: b = 10, c = 0,
    // McNemar p = 2/1024 = 0.001953125; pass rate drops 100% → 50%.
    let baseline: Vec<CaseRecord> = (0..20)
        .map(|i| record(&format!("case-{i:02}"), true, 0.9, Some(1_000), 100))
        .collect();
    let candidate: Vec<CaseRecord> = (0..20)
        .map(|i| {
            record(
                &format!("case-{i:02}"),
                i % 2 == 0,
                if i % 2 == 0 { 0.9 } else { 0.2 },
                None,
                100,
            )
        })
        .collect();
    let cmp = compare(&baseline, &candidate, 0.05, 7);
    assert_eq!(cmp.paired_cases, 20);
    assert!(cmp.unpaired.is_empty());
    assert_eq!(cmp.regressions.len(), 10);
    assert_eq!(cmp.regressions[0], "case-01");
    assert!((cmp.pass_rate.delta + 0.5).abs() < 1e-12);
    assert!((cmp.pass_rate.p_value - 0.001_953_125).abs() < 1e-12);
    assert!(cmp.pass_rate.significant);
    // Score: 10 equal differences of -0.7 and 10 zeros → exact Wilcoxon p = 2/1024.
    assert!((cmp.score.delta + 0.35).abs() < 1e-12);
    assert!((cmp.score.p_value - 0.001_953_125).abs() < 1e-12);
    assert!(cmp.score.significant);
    assert!(cmp.score.delta_ci.high < 0.0);
    assert_eq!(cmp.metrics.get("accuracy").map(|m| m.n), Some(20));
    // No case priced in both runs: no cost comparison, never a $0 one.
    assert_eq!((cmp.cost_per_case, cmp.cost_cases), (None, 0));
}

#[test]
fn compare_identical_runs_is_not_significant() {
    let run: Vec<CaseRecord> = (0..8)
        .map(|i| record(&format!("c{i}"), i < 6, f64::from(i) / 8.0, Some(10), 5))
        .collect();
    let cmp = compare(&run, &run, 0.05, 1);
    assert_eq!(cmp.paired_cases, 8);
    assert!(!cmp.pass_rate.significant && !cmp.score.significant);
    assert_eq!((cmp.score.p_value, cmp.score.delta), (1.0, 0.0));
    assert!(cmp.regressions.is_empty() && cmp.improvements.is_empty());
    assert_eq!(cmp.cost_per_case.and_then(|d| d.change_pct), Some(0.0));
}
