//! Validation: every error names the field and the fix.

use std::time::Duration;

use keel_core::money::Nanos;
use serde_json::json;

use super::{assertion, invalid};
use crate::assert::{AssertionKind, AssertionSpec, ContainsMode, ASSERTION_TYPES};

#[test]
fn unknown_types_suggest_the_closest() {
    assert_eq!(
        invalid(json!({"type": "contans", "value": "x"})),
        "unknown assertion type `contans` (did you mean `contains`?)"
    );
    assert_eq!(
        invalid(json!({"type": "not-regexp", "value": "x"})),
        "unknown assertion type `not-regexp` (did you mean `not-regex`?)"
    );
    let far = invalid(json!({"type": "sentiment"}));
    assert!(
        far.starts_with("unknown assertion type `sentiment` (known types: equals, contains"),
        "{far}"
    );
}

#[test]
fn every_type_and_its_negation_is_known() {
    for t in ASSERTION_TYPES {
        for written in [t.to_string(), format!("not-{t}")] {
            // The type resolves, so validation gets as far as the weight.
            let err = invalid(json!({"type": written, "weight": -1.0}));
            assert!(err.starts_with("`weight`"), "{written}: {err}");
        }
    }
}

#[test]
fn specs_deny_unknown_fields() {
    let err = toml::from_str::<AssertionSpec>("type = \"levenshtein\"\ntreshold = 0.9\n")
        .expect_err("typo");
    assert!(
        err.to_string().contains("unknown field `treshold`"),
        "{err}"
    );
}

#[test]
fn fields_a_type_does_not_use_are_rejected() {
    assert_eq!(
        invalid(json!({"type": "contains", "value": "x", "threshold": 0.5})),
        "`threshold` does not apply to `contains` (its fields: value, mode)"
    );
    assert_eq!(
        invalid(json!({"type": "is-json", "value": {"type": "object"}})),
        "`value` does not apply to `is-json` (it takes only `weight` and `metric`)"
    );
    assert_eq!(
        invalid(json!({"type": "contains-all", "value": "x", "mode": "any"})),
        "`mode` does not apply to `contains-all` (its fields: value)"
    );
}

#[test]
fn bad_values_name_the_field_and_the_fix() {
    let cases = [
        (
            json!({"type": "regex", "value": "(unclosed"}),
            "`value`: invalid regex pattern `(unclosed`:",
        ),
        (
            json!({"type": "json-schema", "value": {"type": "strin"}}),
            "`value`: invalid JSON schema:",
        ),
        (
            json!({"type": "json-schema", "value": "object"}),
            "`value`: json-schema needs a JSON schema object",
        ),
        (
            json!({"type": "json-path", "path": "$.[oops"}),
            "`path`: invalid JSONPath `$.[oops`:",
        ),
        (
            json!({"type": "json-path"}),
            "`path`: json-path needs a JSONPath query",
        ),
        (
            json!({"type": "contains"}),
            "`value`: contains needs a string or a list of strings",
        ),
        (
            json!({"type": "contains", "value": ["a", 1]}),
            "`value`: contains needs a string or a list",
        ),
        (
            json!({"type": "contains", "value": [""]}),
            "`value`: contains with an empty string matches everything",
        ),
        (
            json!({"type": "icontains", "value": "a", "mode": "some"}),
            "`mode`: expected `any` or `all`, got `some`",
        ),
        (
            json!({"type": "starts-with"}),
            "`value`: starts-with needs a non-empty string",
        ),
        (
            json!({"type": "word-count"}),
            "`min`/`max`: word-count needs at least one bound",
        ),
        (
            json!({"type": "char-count", "min": 10, "max": 5}),
            "`min`: 10 is greater than `max` 5",
        ),
        (
            json!({"type": "levenshtein", "threshold": 1.5}),
            "`threshold`: 1.5 is outside 0..1 (default 0.8)",
        ),
        (
            json!({"type": "rouge-l", "value": 3}),
            "`value`: rouge-l compares with a string",
        ),
        (
            json!({"type": "latency", "value": 1.5}),
            "`value`: latency needs a maximum in milliseconds",
        ),
        (
            json!({"type": "tokens"}),
            "`value`: tokens needs a maximum in output tokens",
        ),
        (
            json!({"type": "cost", "value": -1}),
            "`value`: cost needs a maximum in USD",
        ),
        (
            json!({"type": "tool-call"}),
            "`name`: tool-call needs the tool's name",
        ),
        (
            json!({"type": "tool-call", "name": "f", "arguments": [1]}),
            "`arguments`: must be an object",
        ),
        (
            json!({"type": "llm-rubric"}),
            "`rubric`: llm-rubric needs a rubric",
        ),
        (
            json!({"type": "llm-rubric", "rubric": "x", "judge": " "}),
            "`judge`: must name a model",
        ),
        (
            json!({"type": "command"}),
            "`command`: needs a program and its arguments",
        ),
        (
            json!({"type": "command", "command": []}),
            "`command`: needs a program",
        ),
        (
            json!({"type": "command", "command": ["x"], "timeout_ms": 0}),
            "`timeout_ms`: must be > 0",
        ),
        (
            json!({"type": "equals", "weight": -1}),
            "`weight`: -1 must be a number >= 0 (default 1)",
        ),
        (
            json!({"type": "equals", "metric": " "}),
            "`metric`: must not be empty",
        ),
    ];
    for (spec, want) in cases {
        let err = invalid(spec.clone());
        assert!(err.starts_with(want), "{spec}: got `{err}`, want `{want}…`");
    }
}

#[test]
fn defaults_are_filled_in() {
    let a = assertion(json!({"type": "icontains", "value": ["A", "b"]}));
    assert_eq!(a.weight, 1.0);
    assert!(!a.negate);
    assert!(matches!(
        a.kind,
        AssertionKind::Contains { mode: ContainsMode::Any, case_insensitive: true, ref values } if values == &["A", "b"]
    ));
    match assertion(json!({"type": "command", "command": ["python3", "s.py"]})).kind {
        AssertionKind::Command {
            timeout, threshold, ..
        } => {
            assert_eq!(timeout, Duration::from_secs(30));
            assert_eq!(threshold, 0.5);
        }
        other => panic!("{other:?}"),
    }
    match assertion(json!({"type": "llm-rubric", "rubric": "r"})).kind {
        AssertionKind::LlmRubric {
            threshold, judge, ..
        } => {
            assert_eq!(threshold, 0.7);
            assert_eq!(judge, None);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        assertion(json!({"type": "cost", "value": 0.002})).kind,
        AssertionKind::CostUsd(Nanos(2_000_000))
    ));
    assert!(matches!(
        assertion(json!({"type": "rouge-l"})).kind,
        AssertionKind::RougeL { threshold, expected: None } if threshold == 0.5
    ));
}

#[test]
fn specs_round_trip_through_toml() {
    let text = r#"
type = "not-tool-call"
name = "delete_account"
arguments = { confirm = true }
weight = 2.0
metric = "safety"
"#;
    let spec: AssertionSpec = toml::from_str(text).expect("parses");
    let a = spec.validate().expect("valid");
    assert!(a.negate);
    assert_eq!(a.weight, 2.0);
    assert_eq!(a.display_name(), "safety");
    let back: AssertionSpec =
        serde_json::from_value(serde_json::to_value(&spec).expect("serializes")).expect("parses");
    assert_eq!(back, spec);
}
