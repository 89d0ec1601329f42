#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel traces purge`: a dry run counts and keeps everything; the purge removes the
//! user's traces (and their feedback), keeps other users', is audited as `traces.purge`
//! with the reason and counts, and the report then counts only what remains; exactly one
//! subject and a reason are required.

mod common;

use common::{project, record_traces, stderr, Keel};
use keel_core::trace::TraceRecord;
use keel_store::{Feedback, FeedbackValue, Store};

const KEEL: Keel = Keel::with_env(&[("KEEL_ACTOR", "dpo")]);

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

fn call(id: &str, user: &str) -> TraceRecord {
    let mut t = TraceRecord::new(
        id.into(),
        keel_store::prompts::now_ms() - 60_000,
        "openai",
        "/v1/chat/completions",
    );
    t.user = Some(user.into());
    t.model_requested = Some("mock-1".into());
    t.input = Some(format!("the words of {user}"));
    t
}

#[test]
fn a_users_traces_are_purged_audited_and_gone_from_the_report() {
    let dir = project(CONFIG);
    let d = dir.path();
    let store = Store::open(d.join("keel.db").to_str().unwrap()).unwrap();
    record_traces(
        &store,
        [call("p-1", "u-42"), call("p-2", "u-42"), call("p-3", "u-7")],
    );
    let mut w = store.writer_conn().unwrap();
    let fb = Feedback {
        trace_id: "p-1".into(),
        name: "thumb".into(),
        source: "user".into(),
        value: FeedbackValue::Bool(false),
        comment: Some("u-42 was unhappy".into()),
        key_id: None,
        at_ms: 1,
    };
    keel_store::feedback::upsert_feedback(&mut w, &fb, "anonymous").unwrap();

    let dry = KEEL.json_ok(
        d,
        &[
            "traces",
            "purge",
            "--user",
            "u-42",
            "--reason",
            "DSR-17",
            "--dry-run",
        ],
    );
    assert_eq!(dry["traces"], 2);
    assert_eq!(dry["feedback"], 1);
    assert_eq!(dry["dry_run"], true);
    let all = KEEL.json_ok(d, &["traces", "list", "--limit", "0"]);
    assert_eq!(
        all.as_array().unwrap().len(),
        3,
        "a dry run keeps everything"
    );

    let out = KEEL.stdout_ok(
        d,
        &["traces", "purge", "--user", "u-42", "--reason", "DSR-17"],
    );
    assert!(
        out.contains("purged user=u-42: 2 traces, 1 feedback value"),
        "{out}"
    );
    let left = KEEL.json_ok(d, &["traces", "list", "--limit", "0"]);
    let ids: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["p-3"]);
    let audit = KEEL.stdout_ok(d, &["audit", "--no-blocks"]);
    assert!(audit.contains("traces.purge"), "{audit}");
    assert!(
        audit.contains("user=u-42") && audit.contains("DSR-17") && audit.contains("dpo"),
        "{audit}"
    );
    assert!(
        !audit.contains("the words of"),
        "the audit keeps no data: {audit}"
    );
    let report = KEEL.json_ok(d, &["report", "--since", "1h"]);
    assert_eq!(report["totals"]["requests"], 1, "{report}");

    // Exactly one subject, and a reason.
    let both = KEEL.run(
        d,
        &[
            "traces", "purge", "--user", "a", "--tenant", "b", "--reason", "x",
        ],
    );
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    let none = KEEL.run(d, &["traces", "purge", "--reason", "x"]);
    assert_eq!(none.status.code(), Some(2), "{}", stderr(&none));
    let blank = KEEL.run(d, &["traces", "purge", "--user", "a", "--reason", " "]);
    assert!(
        !blank.status.success() && stderr(&blank).contains("--reason"),
        "{}",
        stderr(&blank)
    );
}
