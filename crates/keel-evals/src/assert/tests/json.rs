use serde_json::json;

use super::run_text;
use crate::assert::json::{json_eq, json_subset, output_json};

#[tokio::test]
async fn is_json_passes_on_json_and_a_fenced_block() {
    assert!(
        run_text(json!({"type": "is-json"}), r#" {"a": 1} "#)
            .await
            .pass
    );
    assert!(
        run_text(json!({"type": "is-json"}), "```json\n[1, 2]\n```")
            .await
            .pass
    );
    assert!(
        run_text(json!({"type": "is-json"}), "```\n\"x\"\n```")
            .await
            .pass
    );
    let r = run_text(json!({"type": "is-json"}), "Here: {\"a\": 1}").await;
    assert!(!r.pass);
    assert!(
        r.reason.starts_with("expected to be valid JSON; not JSON"),
        "{}",
        r.reason
    );
    let r = run_text(json!({"type": "is-json"}), "").await;
    assert_eq!(
        r.reason,
        "expected to be valid JSON; output is empty, not JSON"
    );
}

#[test]
fn fenced_blocks_are_read_only_when_they_are_the_whole_text() {
    assert!(output_json("```json\n{}\n```").is_ok());
    assert!(output_json("see:\n```json\n{}\n```").is_err());
    assert!(output_json("```json\n{}\n```\n```json\n{}\n```").is_err());
}

#[tokio::test]
async fn json_schema_validates_and_names_the_failing_path() {
    let schema = json!({
        "type": "object",
        "required": ["answer", "confidence"],
        "properties": {"answer": {"type": "string"}, "confidence": {"type": "number", "maximum": 1}}
    });
    let a = json!({"type": "json-schema", "value": schema});
    let r = run_text(a.clone(), r#"{"answer": "yes", "confidence": 0.9}"#).await;
    assert!(r.pass, "{r:?}");
    let r = run_text(a.clone(), r#"{"answer": 3, "confidence": 0.9}"#).await;
    assert!(!r.pass);
    assert!(
        r.reason
            .starts_with("expected to match the JSON schema; /answer: "),
        "{}",
        r.reason
    );
    let r = run_text(a.clone(), r#"{"answer": 3, "confidence": 2}"#).await;
    assert!(r.reason.contains("(and 1 more)"), "{}", r.reason);
    let r = run_text(a, "not json").await;
    assert!(!r.pass);
    assert!(r.reason.contains("not JSON"), "{}", r.reason);
}

#[tokio::test]
async fn json_path_compares_the_match() {
    let doc = r#"{"order": {"id": 7, "items": [{"sku": "a"}, {"sku": "b"}]}}"#;
    let r = run_text(
        json!({"type": "json-path", "path": "$.order.id", "value": 7}),
        doc,
    )
    .await;
    assert!(r.pass, "{r:?}");
    assert_eq!(r.reason, "$.order.id is 7");
    let r = run_text(
        json!({"type": "json-path", "path": "$.order.id", "value": 8}),
        doc,
    )
    .await;
    assert!(!r.pass);
    assert_eq!(
        r.reason,
        "expected to have $.order.id equal 8; $.order.id is 7"
    );
    let many = json!({"type": "json-path", "path": "$.order.items[*].sku", "value": ["a", "b"]});
    assert!(
        run_text(many, doc).await.pass,
        "several matches compare as a list"
    );
}

#[tokio::test]
async fn json_path_without_value_checks_existence() {
    let doc = r#"{"order": {"id": 7}}"#;
    assert!(
        run_text(json!({"type": "json-path", "path": "$.order.id"}), doc)
            .await
            .pass
    );
    let r = run_text(json!({"type": "json-path", "path": "$.order.total"}), doc).await;
    assert!(!r.pass);
    assert_eq!(
        r.reason,
        "expected to have a match for $.order.total; $.order.total matched nothing"
    );
    let r = run_text(json!({"type": "not-json-path", "path": "$.error"}), doc).await;
    assert!(r.pass, "not-json-path asserts absence");
}

#[test]
fn json_equality_compares_numbers_by_value() {
    assert!(json_eq(&json!(1), &json!(1.0)));
    assert!(json_eq(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
    assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    assert!(!json_eq(&json!([1, 2]), &json!([2, 1])));
    assert!(!json_eq(&json!("1"), &json!(1)));
}

#[test]
fn subset_is_recursive_for_objects_and_exact_for_arrays() {
    let got = json!({"city": "Paris", "opts": {"unit": "c", "days": 3}, "tags": [1, 2]});
    assert!(json_subset(&json!({"city": "Paris"}), &got));
    assert!(json_subset(&json!({"opts": {"unit": "c"}}), &got));
    assert!(json_subset(&json!({"tags": [1, 2]}), &got));
    assert!(!json_subset(&json!({"tags": [1]}), &got));
    assert!(!json_subset(&json!({"opts": {"unit": "f"}}), &got));
    assert!(!json_subset(&json!({"country": "FR"}), &got));
}
