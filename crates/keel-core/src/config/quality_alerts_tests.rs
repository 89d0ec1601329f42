//! Quality alert config: defaults, the scope merged with what the online eval covers,
//! and the scopes refused.

use std::path::Path;

use super::*;
use crate::config::score_source::ScoreSource;
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
scope = "tenant=acme"
sample_rate = 0.1
assert = [{ type = "not-is-refusal" }]
"#;

fn rules(alerts: &str) -> Vec<AlertRule> {
    Config::from_toml(&format!("{BASE}{alerts}"), Path::new("/tmp/keel.toml"))
        .map_err(|e| e.to_string())
        .unwrap()
        .alerting
        .rules
}

#[test]
fn defaults_and_the_scope_merged_with_what_the_eval_covers() {
    let r = rules(
        "[[alerts]]\nname = \"a\"\nmetric = \"online_pass_rate\"\nonline_eval = \"q\"\nscope = \"variant=concise\"\n",
    );
    let q = r[0].quality.as_ref().unwrap();
    assert_eq!(
        r[0].threshold,
        Threshold::Baseline(DEFAULT_BASELINE_WINDOWS)
    );
    assert_eq!((q.min_samples, q.sustained), (DEFAULT_MIN_SAMPLES, 1));
    assert_eq!(q.confidence, DEFAULT_CONFIDENCE);
    assert_eq!(
        r[0].scope_label(),
        "function=support-answer,variant=concise,tenant=acme"
    );
    let r = rules(
        "[[alerts]]\nname = \"b\"\nmetric = \"feedback_negative_rate\"\nabove = 0.2\nsustained = 3\n",
    );
    assert_eq!(r[0].threshold, Threshold::Above(0.2));
    assert_eq!(r[0].scope_label(), "global");
    assert_eq!(r[0].quality.as_ref().unwrap().sustained, 3);
}

#[test]
fn a_scope_outside_the_eval_is_refused() {
    let e = Config::from_toml(
        &format!("{BASE}[[alerts]]\nname = \"a\"\nmetric = \"online_judging_stalled\"\nonline_eval = \"q\"\nscope = \"tenant=other\"\nbelow = 0.5\n"),
        Path::new("/tmp/keel.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("alerts[0].scope"), "{e}");
    assert!(e.contains("outside what online eval `q` judges"), "{e}");
    assert!(e.contains("alerts[0].below"), "{e}");
    let e = Config::from_toml(
        &format!("{BASE}[[alerts]]\nname = \"a\"\nmetric = \"online_pass_rate\"\nonline_eval = \"q\"\nscope = \"variant=long\"\n"),
        Path::new("/tmp/keel.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("function `support-answer` has no variant `long`"),
        "{e}"
    );
    assert!(QualityScope::parse("function=a,function=b").is_err());
    assert!(QualityScope::parse("key=k1").is_err());
}

const QUEUES: &str = r#"
[[review_queues]]
name = "rq"
function = "support-answer"
scope = "tenant=acme"
sample_rate = 0.1
[[review_queues.labels]]
name = "verdict"
type = "choice"
choices = ["good", "bad", "unsure"]
[[review_queues.labels]]
name = "accuracy"
type = "number"
min = 1
max = 5
[[review_queues.labels]]
name = "note"
type = "text"
"#;

fn human_rules(alerts: &str) -> Result<Vec<AlertRule>, String> {
    Config::from_toml(
        &format!("{BASE}{QUEUES}{alerts}"),
        Path::new("/tmp/keel.toml"),
    )
    .map(|c| c.alerting.rules)
    .map_err(|e| e.to_string())
}

#[test]
fn a_rule_reads_the_judge_by_default_and_a_review_queue_with_source_human() {
    let r = human_rules(
        "[[alerts]]\nname = \"j\"\nmetric = \"online_pass_rate\"\nonline_eval = \"q\"\n\
         [[alerts]]\nname = \"h\"\nmetric = \"online_pass_rate\"\nsource = \"human\"\nreview_queue = \"rq\"\nwindow = \"1d\"\n\
         [[alerts]]\nname = \"hs\"\nmetric = \"online_score\"\nsource = \"human\"\nreview_queue = \"rq\"\nscore_metric = \"accuracy\"\n",
    )
    .unwrap();
    let q = |i: usize| r[i].quality.clone().unwrap();
    assert_eq!(q(0).source, ScoreSource::Judge);
    assert_eq!(q(0).scores_eval(), "q");
    assert_eq!(q(1).source, ScoreSource::Human { queue: "rq".into() });
    assert_eq!(q(1).scores_eval(), "rq");
    assert!(q(1).online_eval.is_none());
    // The queue's coverage narrows the calls read.
    assert_eq!(q(1).scope.function.as_deref(), Some("support-answer"));
    assert_eq!(q(1).scope.tenant.as_deref(), Some("acme"));
    assert_eq!(q(2).score_metric.as_deref(), Some("accuracy"));
}

#[test]
fn human_rules_refuse_what_they_cannot_read() {
    let cases = [
        ("metric = \"online_pass_rate\"\nsource = \"people\"\nreview_queue = \"rq\"", "alerts[0].source", "not a score source"),
        ("metric = \"online_pass_rate\"\nsource = \"human\"", "alerts[0].review_queue", "names the review queue"),
        ("metric = \"online_pass_rate\"\nsource = \"human\"\nreview_queue = \"nope\"", "alerts[0].review_queue", "name one of: rq"),
        ("metric = \"online_pass_rate\"\nsource = \"human\"\nreview_queue = \"rq\"\nonline_eval = \"q\"", "alerts[0].online_eval", "replace online_eval"),
        ("metric = \"online_score\"\nsource = \"human\"\nreview_queue = \"rq\"\nscore_metric = \"note\"", "alerts[0].score_metric", "not a scored label"),
        ("metric = \"feedback_negative_rate\"\nsource = \"human\"\nreview_queue = \"rq\"", "alerts[0].source", "cannot read human scores"),
        ("metric = \"online_pass_rate\"\nonline_eval = \"q\"\nreview_queue = \"rq\"", "alerts[0].review_queue", "add source = \"human\""),
        ("metric = \"online_pass_rate\"\nsource = \"human\"\nreview_queue = \"rq\"\nscope = \"tenant=globex\"", "alerts[0].scope", "outside what review queue `rq` covers"),
        ("metric = \"error_rate\"\nabove = 0.1\nsource = \"human\"", "alerts[0].source", "applies to quality rules"),
    ];
    for (keys, path, says) in cases {
        let e = human_rules(&format!("[[alerts]]\nname = \"a\"\n{keys}\n")).unwrap_err();
        assert!(e.contains(path) && e.contains(says), "{keys}:\n{e}");
    }
}
