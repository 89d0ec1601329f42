//! Review queue config: defaults, every entry rule read, and the mistakes refused with
//! the key that is wrong.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::Config;

const BASE: &str = r#"
[providers.up]
kind = "mock"
[models.mock-1]
provider = "up"
[functions.support-answer]
[[functions.support-answer.variants]]
name = "concise"
prompt = "support/answer"
prompt_label = "production"
model = "mock-1"
weight = 100
[[online_evals]]
name = "q"
function = "support-answer"
sample_rate = 0.1
assert = [{ type = "not-is-refusal" }]
"#;

fn queues(extra: &str) -> Result<Vec<ReviewQueueConfig>, String> {
    Config::from_toml(&format!("{BASE}{extra}"), Path::new("/tmp/keel.toml"))
        .map(|c| c.review_queues)
        .map_err(|e| e.to_string())
}

#[test]
fn defaults_a_verdict_and_a_note_one_reviewer_and_a_daily_cap() {
    let q =
        queues("[[review_queues]]\nname = \"support\"\nfunction = \"support-answer\"\n").unwrap();
    assert_eq!(q.len(), 1);
    let q = &q[0];
    assert_eq!(q.target, ReviewTarget::Function("support-answer".into()));
    assert_eq!(q.reviewers, 1);
    assert_eq!(q.max_items_per_day, 200);
    assert_eq!(q.claim_ttl, Duration::from_secs(900));
    assert!(q.corrections);
    assert!(!q.entry.any(), "no entry rule: filled by hand");
    assert_eq!(q.labels, default_labels());
    assert!(q.verdict().is_some());
}

#[test]
fn every_entry_rule_and_a_custom_schema_are_read() {
    let q = queues(
        r#"
[[review_queues]]
name = "support"
function = "support-answer"
scope = "feature=support"
sample_rate = 0.05
failed_eval = "q"
score_below = "quality=0.6"
negative_feedback = true
guardrail_flagged = true
reviewers = 2
max_items_per_day = 50
claim_ttl = "5m"
corrections = false
labels = [
  { name = "verdict", type = "choice", choices = ["good", "bad"] },
  { name = "accuracy", type = "number", min = 1, max = 5 },
  { name = "note", type = "text" },
]
"#,
    )
    .unwrap();
    let q = &q[0];
    assert_eq!(
        q.scope.as_ref().map(|s| s.to_string()).as_deref(),
        Some("feature=support")
    );
    assert_eq!(q.entry.sample_rate, Some(0.05));
    assert_eq!(q.entry.failed_eval.as_deref(), Some("q"));
    assert_eq!(q.entry.score_below, Some(("quality".into(), 0.6)));
    assert!(q.entry.negative_feedback && q.entry.guardrail_flagged);
    assert_eq!((q.reviewers, q.max_items_per_day), (2, 50));
    assert_eq!(q.claim_ttl, Duration::from_secs(300));
    assert!(!q.corrections);
    assert_eq!(q.labels.len(), 3);
    assert_eq!(q.labels[1].kind, LabelKind::Number { min: 1.0, max: 5.0 });
    assert!(q.labels[1].required && !q.labels[2].required);
}

#[test]
fn mistakes_are_refused_with_the_key_that_is_wrong() {
    for (toml, key) in [
        (
            "name = \"a b\"\nfunction = \"support-answer\"",
            "review_queues[0].name",
        ),
        (
            "name = \"a\"\nfunction = \"nope\"",
            "review_queues[0].function",
        ),
        ("name = \"a\"\nmodel = \"nope\"", "review_queues[0].model"),
        ("name = \"a\"\nscope = \"user=x\"", "review_queues[0].scope"),
        (
            "name = \"a\"\nsample_rate = 1.5",
            "review_queues[0].sample_rate",
        ),
        (
            "name = \"a\"\nfailed_eval = \"nope\"",
            "review_queues[0].failed_eval",
        ),
        (
            "name = \"a\"\nscore_below = \"quality\"",
            "review_queues[0].score_below",
        ),
        ("name = \"a\"\nreviewers = 0", "review_queues[0].reviewers"),
        (
            "name = \"a\"\nmax_items_per_day = 0",
            "review_queues[0].max_items_per_day",
        ),
        (
            "name = \"a\"\nclaim_ttl = \"soon\"",
            "review_queues[0].claim_ttl",
        ),
        (
            "name = \"a\"\nlabels = [{ name = \"v\", type = \"choice\" }]",
            "review_queues[0].labels[0].choices",
        ),
        (
            "name = \"a\"\nlabels = [{ name = \"n\", type = \"number\", min = 5, max = 1 }]",
            "review_queues[0].labels[0].min",
        ),
        (
            "name = \"a\"\nlabels = [{ name = \"n\", type = \"stars\" }]",
            "review_queues[0].labels[0].type",
        ),
    ] {
        let err = queues(&format!("[[review_queues]]\n{toml}\n")).unwrap_err();
        assert!(
            err.contains(key),
            "{toml}: expected an issue at {key}, got: {err}"
        );
    }
    let twice = "[[review_queues]]\nname = \"a\"\n[[review_queues]]\nname = \"a\"\n";
    assert!(queues(twice).unwrap_err().contains("review_queues[1].name"));
    let unknown = queues("[[review_queues]]\nname = \"a\"\nsample = 0.1\n").unwrap_err();
    assert!(unknown.contains("sample"), "{unknown}");
}

#[test]
fn score_below_reads_metric_equals_value() {
    assert_eq!(
        parse_score_below("quality=0.5"),
        Some(("quality".into(), 0.5))
    );
    assert_eq!(
        parse_score_below(" helpful = 1 "),
        Some(("helpful".into(), 1.0))
    );
    assert_eq!(parse_score_below("=0.5"), None);
    assert_eq!(parse_score_below("quality=high"), None);
    assert_eq!(parse_score_below("quality"), None);
}
