//! The rules every type shares: negation, names, weights and metrics, failed calls, and
//! the case score.

use keel_core::money::Nanos;
use serde_json::json;

use super::{assertion, case, out, run, run_text};
use crate::assert::{case_score, evaluate, AssertionResult, Judge};

#[tokio::test]
async fn negation_flips_pass_and_score() {
    let r = run_text(
        json!({"type": "not-contains", "value": "refund"}),
        "We will call.",
    )
    .await;
    assert!(r.pass);
    assert_eq!(r.score, 1.0);
    assert_eq!(r.name, "not-contains");
    assert_eq!(r.reason, "found none");
    let r = run_text(
        json!({"type": "not-contains", "value": "refund"}),
        "A refund.",
    )
    .await;
    assert!(!r.pass);
    assert_eq!(r.score, 0.0);
    assert_eq!(
        r.reason,
        "expected not to contain any of [refund]; found [refund]"
    );
    let a = json!({"type": "not-contains", "value": ["a", "b", "c", "d"], "mode": "all"});
    let r = run_text(a, "a b c").await;
    assert!(r.pass, "not all present");
    assert!((r.score - 0.25).abs() < 1e-9);
}

#[tokio::test]
async fn weight_and_metric_propagate() {
    let a = json!({"type": "icontains", "value": "refund", "weight": 3, "metric": "helpfulness"});
    let r = run_text(a, "Refund issued").await;
    assert_eq!(r.name, "helpfulness");
    assert_eq!(r.metric.as_deref(), Some("helpfulness"));
    assert_eq!(r.weight, 3.0);
    let r = run_text(json!({"type": "is-json"}), "{}").await;
    assert_eq!(
        (r.name.as_str(), r.metric, r.weight),
        ("is-json", None, 1.0)
    );
}

#[test]
fn display_name_and_needs_judge() {
    assert_eq!(
        assertion(json!({"type": "not-regex", "value": "x"})).display_name(),
        "not-regex"
    );
    assert_eq!(
        assertion(json!({"type": "regex", "value": "x", "metric": "format"})).display_name(),
        "format"
    );
    assert!(assertion(json!({"type": "llm-rubric", "rubric": "r"})).needs_judge());
    assert!(assertion(json!({"type": "factuality"})).needs_judge());
    assert!(assertion(json!({"type": "groundedness"})).needs_judge());
    assert!(!assertion(json!({"type": "command", "command": ["x"]})).needs_judge());
    assert!(!assertion(json!({"type": "equals", "value": "x"})).needs_judge());
}

#[tokio::test]
async fn a_failed_call_fails_output_assertions_but_still_measures_the_call() {
    let mut o = out("");
    o.error = Some("upstream timeout after 30s".into());
    o.latency_ms = 30_000;
    o.cost = None;
    for a in [
        json!({"type": "contains", "value": "x"}),
        json!({"type": "not-contains", "value": "x"}),
        json!({"type": "is-json"}),
        json!({"type": "not-tool-call", "name": "f"}),
        json!({"type": "llm-rubric", "rubric": "r"}),
    ] {
        let r = run(a.clone(), &case(), &o).await;
        assert!(!r.pass, "{a}");
        assert_eq!(r.score, 0.0);
        assert_eq!(r.reason, "call failed: upstream timeout after 30s");
    }
    let r = run(json!({"type": "latency", "value": 5000}), &case(), &o).await;
    assert_eq!(
        r.reason,
        "expected to take at most 5000 ms; latency 30000 ms"
    );
    let r = run(json!({"type": "not-latency", "value": 5000}), &case(), &o).await;
    assert!(r.pass, "latency is judged on a failed call");
    let r = run(json!({"type": "cost", "value": 1}), &case(), &o).await;
    assert_eq!(r.reason, "unpriced: cost unknown");
    let r = run(json!({"type": "tokens", "value": 100}), &case(), &o).await;
    assert!(r.pass, "output tokens 20 ≤ 100");
}

fn result(pass: bool, score: f64, weight: f64) -> AssertionResult {
    AssertionResult {
        name: "x".into(),
        metric: None,
        pass,
        score,
        weight,
        reason: String::new(),
        judge_reasoning: None,
        judge_cost: None,
    }
}

#[test]
fn case_score_is_the_weighted_mean_and_pass_needs_all() {
    let (pass, score) = case_score(&[result(true, 1.0, 3.0), result(false, 0.0, 1.0)]);
    assert!(!pass);
    assert!((score - 0.75).abs() < 1e-9);
    let (pass, score) = case_score(&[result(true, 0.9, 1.0), result(true, 0.5, 1.0)]);
    assert!(pass);
    assert!((score - 0.7).abs() < 1e-9);
    let (pass, score) = case_score(&[result(true, 1.0, 0.0), result(false, 0.0, 0.0)]);
    assert!(!pass, "a zero-weight failure still fails the case");
    assert!((score - 0.5).abs() < 1e-9, "all weights 0: the plain mean");
    let (_, score) = case_score(&[result(true, 1.0, 0.0), result(false, 0.2, 2.0)]);
    assert!(
        (score - 0.2).abs() < 1e-9,
        "zero weight does not count in the score"
    );
    assert_eq!(case_score(&[]), (true, 1.0));
}

#[test]
fn results_serialize_without_empty_fields() {
    let mut r = result(true, 0.9, 1.0);
    r.judge_reasoning = Some("fine".into());
    r.judge_cost = Some(Nanos(120));
    let v = serde_json::to_value(&r).expect("serializes");
    assert_eq!(
        v,
        json!({"name": "x", "pass": true, "score": 0.9, "weight": 1.0, "reason": "",
               "judge_reasoning": "fine", "judge_cost": 120})
    );
    let back: AssertionResult = serde_json::from_value(v).expect("parses");
    assert_eq!(back, r);
}

#[test]
fn evaluation_can_run_on_a_spawned_task() {
    fn assert_send<T: Send>(_: T) {}
    let (a, c, o) = (assertion(json!({"type": "is-json"})), case(), out("{}"));
    let judge: &dyn Judge = &crate::assert::judge::NoJudge;
    assert_send(evaluate(&a, &c, &o, judge));
}
