use serde_json::json;

use super::{case_with, out, run, run_text};
use crate::assert::similarity::{levenshtein_similarity, rouge_l_f1};

#[test]
fn levenshtein_similarity_is_normalized_by_the_longer_text() {
    assert_eq!(levenshtein_similarity("kitten", "kitten"), 1.0);
    assert!((levenshtein_similarity("kitten", "sitting") - (1.0 - 3.0 / 7.0)).abs() < 1e-9);
    assert_eq!(levenshtein_similarity("", ""), 1.0);
    assert_eq!(
        levenshtein_similarity(" abc ", "abc"),
        1.0,
        "texts are trimmed"
    );
}

#[tokio::test]
async fn levenshtein_against_the_cases_expected() {
    let c = case_with(json!({"id": "c", "expected": "The capital is Paris."}));
    let r = run(
        json!({"type": "levenshtein"}),
        &c,
        &out("The capital is Paris!"),
    )
    .await;
    assert!(r.pass, "default threshold 0.8: {r:?}");
    assert!(r.score > 0.9);
    let r = run(json!({"type": "levenshtein"}), &c, &out("Lyon")).await;
    assert!(!r.pass);
    assert!(
        r.reason
            .starts_with("expected to reach levenshtein similarity 0.80"),
        "{}",
        r.reason
    );
    let strict = json!({"type": "levenshtein", "threshold": 1.0});
    assert!(!run(strict, &c, &out("The capital is Paris!")).await.pass);
}

#[tokio::test]
async fn levenshtein_value_overrides_expected_and_is_required_somewhere() {
    let a = json!({"type": "levenshtein", "value": "colour"});
    assert!(run_text(a, "color").await.pass);
    let r = run_text(json!({"type": "levenshtein"}), "color").await;
    assert!(!r.pass);
    assert_eq!(r.score, 0.0);
    assert_eq!(
        r.reason,
        "levenshtein needs `expected` in the case or `value`"
    );
}

#[test]
fn rouge_l_is_the_lcs_f1_of_word_tokens() {
    let f = rouge_l_f1("The cat sat on the mat.", "the cat is on the mat");
    assert!((f - 5.0 / 6.0).abs() < 1e-9, "{f}");
    let f = rouge_l_f1("the cat", "the cat is on the mat");
    // P = 2/2, R = 2/6 → F = 2·1·(1/3) / (4/3) = 0.5
    assert!((f - 0.5).abs() < 1e-9, "{f}");
    assert_eq!(rouge_l_f1("", ""), 1.0);
    assert_eq!(rouge_l_f1("words", ""), 0.0);
    assert_eq!(rouge_l_f1("alpha beta", "gamma delta"), 0.0);
}

#[tokio::test]
async fn rouge_l_passes_at_the_threshold() {
    let c = case_with(json!({"id": "c", "expected": "Refunds take five business days"}));
    let r = run(
        json!({"type": "rouge-l"}),
        &c,
        &out("refunds take five days"),
    )
    .await;
    assert!(r.pass, "{r:?}");
    let r = run(
        json!({"type": "rouge-l"}),
        &c,
        &out("Please contact support"),
    )
    .await;
    assert!(!r.pass);
    assert_eq!(r.score, 0.0);
    assert!(
        r.reason.starts_with("expected to reach rouge-l 0.50"),
        "{}",
        r.reason
    );
    let r = run_text(json!({"type": "rouge-l"}), "anything").await;
    assert_eq!(r.reason, "rouge-l needs `expected` in the case or `value`");
}
