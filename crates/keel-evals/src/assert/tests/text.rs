use serde_json::json;

use super::{case_with, out, run, run_text};

#[tokio::test]
async fn equals_compares_trimmed_text() {
    let r = run_text(json!({"type": "equals", "value": "Paris"}), "  Paris\n").await;
    assert!(r.pass, "{r:?}");
    assert_eq!(r.score, 1.0);
    let r = run_text(json!({"type": "equals", "value": "Paris"}), "paris").await;
    assert!(!r.pass);
    assert_eq!(r.score, 0.0);
    assert_eq!(r.reason, "expected to equal `Paris`; got `paris`");
}

#[tokio::test]
async fn equals_with_json_value_compares_the_outputs_json() {
    let a = json!({"type": "equals", "value": {"answer": 1, "tags": ["a"]}});
    let r = run_text(a.clone(), r#"{"tags": ["a"], "answer": 1.0}"#).await;
    assert!(r.pass, "{r:?}");
    let r = run_text(
        a.clone(),
        "```json\n{\"answer\": 1, \"tags\": [\"a\"]}\n```",
    )
    .await;
    assert!(r.pass, "a fenced block is read: {r:?}");
    let r = run_text(a.clone(), r#"{"answer": 2, "tags": ["a"]}"#).await;
    assert!(!r.pass);
    let r = run_text(a, "the answer is 1").await;
    assert!(!r.pass);
    assert!(r.reason.contains("not JSON"), "{}", r.reason);
}

#[tokio::test]
async fn equals_without_value_uses_the_cases_expected() {
    let c = case_with(json!({"id": "c", "expected": "42"}));
    assert!(run(json!({"type": "equals"}), &c, &out("42")).await.pass);
    assert!(!run(json!({"type": "equals"}), &c, &out("41")).await.pass);
    let c = case_with(json!({"id": "c", "expected": {"n": 42}}));
    assert!(
        run(json!({"type": "equals"}), &c, &out(r#"{"n":42}"#))
            .await
            .pass
    );

    let r = run_text(json!({"type": "equals"}), "42").await;
    assert!(!r.pass);
    assert_eq!(r.reason, "equals needs `value` or `expected` in the case");
    let r = run_text(json!({"type": "not-equals"}), "42").await;
    assert!(!r.pass, "negation does not rescue what cannot be evaluated");
}

#[tokio::test]
async fn contains_any_passes_on_one_and_fails_on_none() {
    let a = json!({"type": "contains", "value": ["refund", "money back"]});
    let r = run_text(a.clone(), "We will refund you.").await;
    assert!(r.pass);
    assert_eq!(r.reason, "found [refund]");
    let r = run_text(a, "We will call you.").await;
    assert!(!r.pass);
    assert_eq!(
        r.reason,
        "expected to contain any of [refund, money back]; found none"
    );
    let r = run_text(json!({"type": "contains", "value": "Refund"}), "refund").await;
    assert!(!r.pass, "contains is case-sensitive");
}

#[tokio::test]
async fn contains_all_scores_the_share_found() {
    let a = json!({"type": "contains", "value": ["refund", "days", "receipt"], "mode": "all"});
    let r = run_text(a.clone(), "refund within 30 days, keep the receipt").await;
    assert!(r.pass);
    let r = run_text(a, "refund within 30 days").await;
    assert!(!r.pass);
    assert!((r.score - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(
        r.reason,
        "expected to contain all of [refund, days, receipt]; found [refund, days], missing [receipt]"
    );
}

#[tokio::test]
async fn icontains_ignores_case_and_aliases_set_the_mode() {
    let r = run_text(json!({"type": "icontains", "value": "REFUND"}), "a Refund").await;
    assert!(r.pass);
    assert_eq!(r.name, "icontains");
    let r = run_text(json!({"type": "icontains", "value": "refund"}), "a return").await;
    assert!(!r.pass);
    let a = json!({"type": "icontains-all", "value": ["A", "b"]});
    assert!(run_text(a.clone(), "a B").await.pass);
    assert!(!run_text(a, "a").await.pass);
    let r = run_text(json!({"type": "contains-any", "value": ["x", "y"]}), "y").await;
    assert!(r.pass);
    assert_eq!(r.name, "contains");
}

#[tokio::test]
async fn starts_with_ignores_leading_whitespace() {
    let a = json!({"type": "starts-with", "value": "Dear"});
    assert!(run_text(a.clone(), "\n  Dear customer").await.pass);
    let r = run_text(a, "Hello, dear customer").await;
    assert!(!r.pass);
    assert!(
        r.reason.starts_with("expected to start with `Dear`"),
        "{}",
        r.reason
    );
}

#[tokio::test]
async fn regex_matches_anywhere() {
    let a = json!({"type": "regex", "value": r"order #\d{4}"});
    let r = run_text(a.clone(), "Your order #1234 shipped").await;
    assert!(r.pass);
    assert_eq!(r.reason, "matched `order #1234`");
    let r = run_text(a, "Your order shipped").await;
    assert!(!r.pass);
    assert!(
        r.reason.starts_with(r"expected to match /order #\d{4}/"),
        "{}",
        r.reason
    );
}

#[tokio::test]
async fn is_refusal_knows_common_phrasings() {
    for text in [
        "I can\u{2019}t help with that request.",
        "I'm sorry, but I cannot do that.",
        "As an AI, I have no opinions.",
        "I WON'T write that.",
        "I am unable to share it.",
    ] {
        let r = run_text(json!({"type": "is-refusal"}), text).await;
        assert!(r.pass, "{text}: {r:?}");
    }
    let r = run_text(json!({"type": "is-refusal"}), "Sure! Here is the recipe.").await;
    assert!(!r.pass);
    let r = run_text(
        json!({"type": "not-is-refusal"}),
        "Sure! Here is the recipe.",
    )
    .await;
    assert!(r.pass);
    assert_eq!(r.name, "not-is-refusal");
}

#[tokio::test]
async fn word_count_bounds() {
    let a = json!({"type": "word-count", "min": 2, "max": 4});
    assert!(run_text(a.clone(), "one two three").await.pass);
    let r = run_text(a.clone(), "one two three four five").await;
    assert!(!r.pass);
    assert_eq!(
        r.reason,
        "expected to have 2 to 4 words; word count 5 > max 4"
    );
    let r = run_text(a, "one").await;
    assert_eq!(
        r.reason,
        "expected to have 2 to 4 words; word count 1 < min 2"
    );
    assert!(
        run_text(json!({"type": "word-count", "max": 0}), "  ")
            .await
            .pass
    );
}

#[tokio::test]
async fn char_count_counts_characters_of_the_trimmed_text() {
    let a = json!({"type": "char-count", "max": 5});
    assert!(
        run_text(a.clone(), "  héllo \n").await.pass,
        "5 characters, not bytes"
    );
    let r = run_text(a, "hello!").await;
    assert!(!r.pass);
    assert_eq!(
        r.reason,
        "expected to have at most 5 characters; character count 6 > max 5"
    );
    assert!(
        !run_text(json!({"type": "char-count", "min": 3}), "ab")
            .await
            .pass
    );
}
