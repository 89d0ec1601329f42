use keel_core::money::Nanos;
use serde_json::json;

use super::{case, case_with, out, run_judged, FakeJudge};
use crate::assert::evaluate;
use crate::assert::judge::{lexical_support, parse_judge_reply, NoJudge};

fn rubric() -> serde_json::Value {
    json!({"type": "llm-rubric", "rubric": "Apologizes and offers a refund"})
}

#[tokio::test]
async fn llm_rubric_passes_keeps_reasoning_and_cost() {
    let judge = FakeJudge::replying(r#"{"score": 0.9, "reasoning": "Apologizes; offers refund."}"#);
    let c = case_with(json!({"id": "c", "input": "My order broke"}));
    let r = run_judged(rubric(), &c, "Sorry! Here is a refund.", &judge).await;
    assert!(r.pass, "{r:?}");
    assert!((r.score - 0.9).abs() < 1e-9);
    assert_eq!(
        r.judge_reasoning.as_deref(),
        Some("Apologizes; offers refund.")
    );
    assert_eq!(r.judge_cost, Some(Nanos(42)));
    assert_eq!(r.reason, "judge score 0.90 (threshold 0.70)");

    let prompt = judge.last_prompt();
    assert!(
        prompt.contains("<rubric>\nApologizes and offers a refund\n</rubric>"),
        "{prompt}"
    );
    assert!(
        prompt.contains("<input>\nMy order broke\n</input>"),
        "{prompt}"
    );
    assert!(
        prompt.contains("<output>\nSorry! Here is a refund.\n</output>"),
        "{prompt}"
    );
    let asked = judge.asked.lock().expect("lock");
    assert_eq!(asked[0].0, None, "no override: the suite's judge");
    assert_eq!(asked[0].1[0].role, "system");
    assert!(asked[0].1[0].text_content().contains("strict grader"));
}

#[tokio::test]
async fn llm_rubric_fails_below_threshold_and_passes_the_model_override() {
    let judge = FakeJudge::replying(r#"{"score": 0.75, "reasoning": "No refund offered."}"#);
    let a = json!({"type": "llm-rubric", "rubric": "Offers a refund", "threshold": 0.8,
                   "judge": "gpt-4o"});
    let r = run_judged(a, &case(), "Sorry.", &judge).await;
    assert!(!r.pass);
    assert_eq!(
        r.reason,
        "expected to meet the rubric `Offers a refund`; judge score 0.75 (threshold 0.80)"
    );
    assert_eq!(r.judge_reasoning.as_deref(), Some("No refund offered."));
    assert_eq!(
        judge.asked.lock().expect("lock")[0].0.as_deref(),
        Some("gpt-4o")
    );
}

#[tokio::test]
async fn negated_rubric_flips_the_judges_score() {
    let judge = FakeJudge::replying(r#"{"score": 0.2, "reasoning": "Not rude."}"#);
    let a = json!({"type": "not-llm-rubric", "rubric": "Is rude to the customer"});
    let r = run_judged(a, &case(), "Happy to help!", &judge).await;
    assert!(r.pass);
    assert!((r.score - 0.8).abs() < 1e-9);
}

#[test]
fn judge_replies_are_read_robustly() {
    let (s, why) =
        parse_judge_reply("Sure.\n```json\n{\"score\": \"0.6\", \"reason\": \"ok\"}\n```")
            .expect("json in a fence");
    assert_eq!((s, why.as_deref()), (0.6, Some("ok")));
    let (s, _) = parse_judge_reply("{not json} then {\"pass\": true}").expect("pass bool");
    assert_eq!(s, 1.0);
    let (s, why) = parse_judge_reply("The answer is fine.\n**Score:** 0.8.").expect("line");
    assert_eq!((s, why), (0.8, None));
    assert_eq!(parse_judge_reply("SCORE=1").expect("line").0, 1.0);
    let err = parse_judge_reply(r#"{"score": 7}"#).expect_err("out of range");
    assert_eq!(err, "judge score 7 is outside 0..1");
    let err = parse_judge_reply("Looks good to me").expect_err("no score");
    assert_eq!(err, "judge reply has no score: `Looks good to me`");
}

#[tokio::test]
async fn a_malformed_reply_fails_and_keeps_the_reply() {
    let judge = FakeJudge::replying("I think it is pretty good overall.");
    let r = run_judged(rubric(), &case(), "Sorry, refund.", &judge).await;
    assert!(!r.pass);
    assert_eq!(r.score, 0.0);
    assert!(
        r.reason.starts_with("judge reply has no score"),
        "{}",
        r.reason
    );
    assert_eq!(
        r.judge_reasoning.as_deref(),
        Some("I think it is pretty good overall.")
    );
    assert_eq!(r.judge_cost, Some(Nanos(42)));
    // A reply in prose with a SCORE line is fine, and its text is the reasoning.
    let judge = FakeJudge::replying("Offers a refund.\nSCORE: 1");
    let r = run_judged(rubric(), &case(), "Sorry, refund.", &judge).await;
    assert!(r.pass);
    assert_eq!(
        r.judge_reasoning.as_deref(),
        Some("Offers a refund.\nSCORE: 1")
    );
}

#[tokio::test]
async fn a_judge_error_fails_even_when_negated() {
    for a in [rubric(), json!({"type": "not-llm-rubric", "rubric": "x"})] {
        let judge = FakeJudge::new(vec![Err("upstream 503")]);
        let r = run_judged(a, &case(), "text", &judge).await;
        assert!(!r.pass);
        assert_eq!(r.reason, "judge failed: upstream 503");
        assert_eq!(r.judge_cost, None);
    }
    let r = evaluate(&super::assertion(rubric()), &case(), &out("x"), &NoJudge).await;
    assert!(
        r.reason.contains("no judge model configured"),
        "{}",
        r.reason
    );
}

#[tokio::test]
async fn factuality_compares_with_the_expected_answer() {
    let c = case_with(json!({"id": "c", "input": "Capital of France?", "expected": "Paris"}));
    let judge = FakeJudge::replying(r#"{"score": 1, "reasoning": "Same fact."}"#);
    let r = run_judged(json!({"type": "factuality"}), &c, "It is Paris.", &judge).await;
    assert!(r.pass, "{r:?}");
    assert!(judge
        .last_prompt()
        .contains("<expected>\nParis\n</expected>"));

    let judge = FakeJudge::replying(r#"{"score": 0, "reasoning": "Contradicts."}"#);
    let r = run_judged(json!({"type": "factuality"}), &c, "It is Lyon.", &judge).await;
    assert!(!r.pass);
    assert_eq!(r.judge_reasoning.as_deref(), Some("Contradicts."));

    let judge = FakeJudge::replying(r#"{"score": 1}"#);
    let r = run_judged(json!({"type": "factuality"}), &case(), "x", &judge).await;
    assert_eq!(
        r.reason,
        "factuality needs `expected` in the case or `value`"
    );
    assert!(
        judge.asked.lock().expect("lock").is_empty(),
        "no judge call without expected"
    );
}

#[test]
fn lexical_support_counts_content_words_found_in_the_context() {
    let ctx = "Refunds are issued within 30 days of purchase to the original card.";
    // content words: refund(s), issued, within, days, purchase, 30 → all in context
    assert_eq!(
        lexical_support("The refund is issued within 30 days of purchase.", ctx),
        (6, 6)
    );
    // "refund" found; "bitcoin", "wallet", "instantly" not; "60" not
    assert_eq!(
        lexical_support("A refund to your bitcoin wallet instantly, 60", ctx),
        (1, 5)
    );
    assert_eq!(lexical_support("Yes, it is.", ctx), (0, 0));
}

#[tokio::test]
async fn groundedness_combines_the_judge_with_lexical_support() {
    let ctx = "Refunds are issued within 30 days of purchase to the original card.";
    let c = case_with(json!({"id": "c", "context": ctx}));
    let a = json!({"type": "groundedness"});

    let judge = FakeJudge::replying(r#"{"score": 0.9, "reasoning": "Supported."}"#);
    let r = run_judged(a.clone(), &c, "Refunds are issued within 30 days.", &judge).await;
    assert!(r.pass, "{r:?}");
    assert!(
        (r.score - 0.9).abs() < 1e-9,
        "full support leaves the judge's score"
    );
    assert!(judge
        .last_prompt()
        .contains(&format!("<context>\n{ctx}\n</context>")));

    // A fooled judge: 1 of 5 content words in the context → support 0.2 → cap 0.4.
    let judge = FakeJudge::replying(r#"{"score": 1.0, "reasoning": "Looks fine."}"#);
    let r = run_judged(
        a.clone(),
        &c,
        "A refund to your bitcoin wallet instantly, 60",
        &judge,
    )
    .await;
    assert!(!r.pass);
    assert!((r.score - 0.4).abs() < 1e-9, "{r:?}");
    assert!(
        r.reason
            .contains("judge 1.00, lexical support 0.20 (1/5 content words in context)"),
        "{}",
        r.reason
    );

    // A judge that finds it unsupported fails it even with full lexical support.
    let judge = FakeJudge::replying(r#"{"score": 0.1, "reasoning": "Wrong period."}"#);
    let r = run_judged(a.clone(), &c, "Refunds are issued within 30 days.", &judge).await;
    assert!(!r.pass);

    let judge = FakeJudge::replying(r#"{"score": 1}"#);
    let r = run_judged(a, &case(), "x", &judge).await;
    assert!(!r.pass);
    assert_eq!(r.reason, "groundedness needs `context` in the case");
}
