//! Quality alert config: defaults, the scope merged with what the online eval covers,
//! and the scopes refused.

use std::path::Path;

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
