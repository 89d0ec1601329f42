//! `from_traces`' tests: a function call gives its variables, a plain call its messages;
//! a correction becomes `expected`; redaction; appends skip duplicates and change the
//! dataset's hash, so the lock fails until re-locked.

use super::*;
use crate::dataset::{dataset_hash, scan_dataset};
use keel_core::trace::TraceRecord;

fn function_call(id: &str, question: &str) -> TraceRecord {
    let mut t = TraceRecord::new(id.into(), 1, "openai", "/v1/chat/completions");
    t.function = Some("support-answer".into());
    t.feature = Some("help".into());
    t.input = Some(
        json!({"model": "support-answer", "variables": {"product": "Keel", "question": question}})
            .to_string(),
    );
    t
}

#[test]
fn a_function_call_gives_its_variables_and_a_correction_its_expected() {
    let c = case_from_trace(
        &function_call("t1", "How do I get a refund?"),
        Some("Within 30 days."),
        &[],
        "review-verdict=bad",
        7,
    )
    .unwrap();
    assert_eq!(c.id, "trace-t1");
    assert_eq!(c.variables["question"], json!("How do I get a refund?"));
    assert_eq!(c.input, None);
    assert_eq!(c.expected, Some(json!("Within 30 days.")));
    assert_eq!(c.metadata["trace_id"], json!("t1"));
    assert_eq!(c.metadata["function"], json!("support-answer"));
    assert_eq!(c.metadata["feature"], json!("help"));
    assert_eq!(c.metadata["added_from"], json!("review-verdict=bad"));
    // The line written is compact: no empty fields.
    let line = serde_json::to_string(&c).unwrap();
    assert!(
        !line.contains("null") && !line.contains("\"assert\""),
        "{line}"
    );
}

#[test]
fn a_plain_call_gives_its_messages_and_a_call_without_input_none() {
    let mut t = TraceRecord::new("t2".into(), 1, "openai", "/v1/chat/completions");
    t.input = Some(
        json!({"model": "mock-1", "messages": [{"role": "user", "content": "Hi there"}]})
            .to_string(),
    );
    let c = case_from_trace(&t, None, &[], "all", 1).unwrap();
    match c.input {
        Some(CaseInput::Messages(m)) => assert_eq!(m[0].text_content(), "Hi there"),
        other => panic!("{other:?}"),
    }
    assert!(c.variables.is_empty() && c.expected.is_none());
    t.input = None;
    assert_eq!(
        case_from_trace(&t, None, &[], "all", 1).unwrap_err(),
        NoCase::NoInput
    );
}

#[test]
fn the_functions_redaction_applies_to_every_text_of_the_case() {
    let t = function_call("t3", "Mail me at ana@example.com please");
    let c = case_from_trace(
        &t,
        Some("We wrote to ana@example.com."),
        &[Kind::Email],
        "all",
        1,
    )
    .unwrap();
    let q = c.variables["question"].as_str().unwrap();
    assert!(
        !q.contains("ana@example.com") && q.contains("[EMAIL_1]"),
        "{q}"
    );
    let e = c.expected.as_ref().and_then(Value::as_str).unwrap();
    assert!(
        e.contains("[EMAIL_1]"),
        "the same value gets the same placeholder: {e}"
    );
    let plain = case_from_trace(&t, None, &[], "all", 1).unwrap();
    assert!(plain.variables["question"]
        .as_str()
        .unwrap()
        .contains("ana@example.com"));
}

#[test]
fn appends_skip_duplicates_and_break_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    // An existing file without a final newline, holding one question.
    std::fs::write(&path, r#"{"id": "refund-1", "variables": {"product": "Keel", "question": "How do I get a refund?"}}"#).unwrap();
    let locked = dataset_hash(&std::fs::read(&path).unwrap());
    assert!(scan_dataset(&path, "s", Some(&locked), true).is_ok());

    let cases = vec![
        case_from_trace(
            &function_call("a", "How do I get a refund?"),
            None,
            &[],
            "all",
            1,
        )
        .unwrap(),
        case_from_trace(
            &function_call("b", "Where is my invoice?"),
            None,
            &[],
            "all",
            1,
        )
        .unwrap(),
        case_from_trace(
            &function_call("c", "Where is my invoice?"),
            None,
            &[],
            "all",
            1,
        )
        .unwrap(),
    ];
    let done = append_cases(&path, cases).unwrap();
    assert_eq!(done.added, vec!["trace-b"]);
    assert_eq!(
        done.duplicates,
        vec!["trace-a", "trace-c"],
        "same input as refund-1, and as b"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.starts_with(r#"{"id": "refund-1""#),
        "the existing line is kept byte for byte"
    );

    // The lock now fails, naming the fix.
    let err = scan_dataset(&path, "s", Some(&locked), true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("changed since it was locked") && err.contains("keel eval lock s"),
        "{err}"
    );
    // Adding the same again adds nothing and leaves the file alone.
    let again = append_cases(
        &path,
        vec![case_from_trace(
            &function_call("b", "Where is my invoice?"),
            None,
            &[],
            "all",
            1,
        )
        .unwrap()],
    )
    .unwrap();
    assert!(again.added.is_empty());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn the_redacted_kinds_are_those_of_the_policies_guarding_the_function() {
    let text = r#"
[providers.mock]
kind = "mock"
[models.m]
provider = "mock"
upstream_model = "m"
[functions.support]
[[functions.support.variants]]
name = "a"
prompt = "p"
model = "m"
weight = 100
[functions.other]
[[functions.other.variants]]
name = "a"
prompt = "p"
model = "m"
weight = 100
[guardrails.policies.pii]
functions = ["support"]
[[guardrails.policies.pii.checks]]
check = "pii"
action = "redact"
kinds = ["email"]
[[guardrails.policies.pii.checks]]
check = "pii"
name = "phones"
action = "log"
kinds = ["phone"]
[guardrails.policies.everyone]
default = true
[[guardrails.policies.everyone.checks]]
check = "secrets"
action = "redact"
kinds = ["aws_access_key"]
"#;
    let config = Config::from_toml(text, Path::new("keel.toml")).unwrap();
    // Its own policy's redact check and the default policy's; never a `log` check's.
    assert_eq!(
        redaction_kinds(&config, Some("support")),
        vec![Kind::AwsAccessKey, Kind::Email]
    );
    assert_eq!(
        redaction_kinds(&config, Some("other")),
        vec![Kind::AwsAccessKey]
    );
    assert_eq!(redaction_kinds(&config, None), vec![Kind::AwsAccessKey]);
}

#[test]
fn the_same_question_with_its_variables_in_another_order_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    std::fs::write(
        &path,
        "{\"id\": \"q1\", \"variables\": {\"question\": \"Hi?\", \"product\": \"Keel\"}}\n",
    )
    .unwrap();
    let mut t = function_call("t9", "Hi?");
    t.input = Some(
        json!({"model": "support-answer", "variables": {"product": "Keel", "question": "Hi?"}})
            .to_string(),
    );
    let c = case_from_trace(&t, None, &[], "all", 1).unwrap();
    let done = append_cases(&path, vec![c]).unwrap();
    assert_eq!(done.duplicates, ["trace-t9"]);
    assert!(done.added.is_empty());
}
