#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel traces show` with the feedback apps sent for a call (`POST /v1/feedback`):
//! `--json` has `"feedback": [{"name", "value", "comment", "source", "at"}]` with each
//! value as the JSON the app sent, and the human output lists them.

mod common;

use common::{project, record_traces, Keel};
use keel_core::trace::TraceRecord;
use keel_store::{Feedback, FeedbackValue, Store};
use serde_json::json;

const KEEL: Keel = Keel::AS_TEST_USER;

const CONFIG: &str = r#"
[gateway]
store = "keel.db"
[providers.mock]
kind = "mock"
[models.mock-1]
provider = "mock"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
"#;

/// 2026-11-01T00:00:00.123Z.
const AT: i64 = 1_793_491_200_123;

fn feedback(name: &str, value: FeedbackValue, comment: Option<&str>, at_ms: i64) -> Feedback {
    Feedback {
        trace_id: "req-fb-1".into(),
        name: name.into(),
        source: "user".into(),
        value,
        comment: comment.map(str::to_string),
        key_id: Some("0123456789ab".into()),
        at_ms,
    }
}

#[test]
fn traces_show_lists_the_feedback_of_the_call() {
    let dir = project(CONFIG);
    let d = dir.path();
    let store = Store::open(d.join("keel.db").to_str().unwrap()).unwrap();
    record_traces(
        &store,
        [
            TraceRecord::new(
                "req-fb-1".into(),
                AT - 1000,
                "openai",
                "/v1/chat/completions",
            ),
            TraceRecord::new(
                "req-fb-2".into(),
                AT - 500,
                "openai",
                "/v1/chat/completions",
            ),
        ],
    );
    for f in [
        feedback("thumbs", FeedbackValue::Number(1.0), None, AT),
        feedback("resolved", FeedbackValue::Bool(false), None, AT + 1),
        feedback(
            "reason",
            FeedbackValue::Category("wrong_answer".into()),
            Some("it quoted last year's price"),
            AT + 2,
        ),
        // A later thumbs-down replaces the thumbs-up.
        feedback(
            "thumbs",
            FeedbackValue::Number(-1.0),
            Some("too long"),
            AT + 3,
        ),
    ] {
        store.record_feedback(&f, "key:0123456789ab").unwrap();
    }

    let v = KEEL.json_ok(d, &["traces", "show", "req-fb-1"]);
    assert_eq!(v["id"], "req-fb-1");
    assert_eq!(
        v["feedback"],
        json!([
            {"name": "resolved", "value": false, "comment": null, "source": "user",
             "at": "2026-11-01T00:00:00.124Z"},
            {"name": "reason", "value": "wrong_answer", "comment": "it quoted last year's price",
             "source": "user", "at": "2026-11-01T00:00:00.125Z"},
            {"name": "thumbs", "value": -1, "comment": "too long", "source": "user",
             "at": "2026-11-01T00:00:00.126Z"},
        ])
    );
    // A call without feedback has an empty list, not a missing field.
    let other = KEEL.json_ok(d, &["traces", "show", "req-fb-2"]);
    assert_eq!(other["feedback"], json!([]));

    let human = KEEL.stdout_ok(d, &["traces", "show", "req-fb-1"]);
    let section = human.split("--- feedback ---").nth(1).unwrap_or_default();
    assert!(
        section.contains("thumbs = -1 (user, 2026-11-01 00:00:00.126 UTC): too long"),
        "{human}"
    );
    assert!(section.contains("resolved = false (user"), "{human}");
    assert!(section.contains("reason = wrong_answer (user"), "{human}");
    let none = KEEL.stdout_ok(d, &["traces", "show", "req-fb-2"]);
    assert!(none.contains("--- feedback ---\n(none)"), "{none}");
}
