#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel report` over any past window (`--since … --until …`), and the monthly review
//! compared with the month before.

mod common;

use common::{project, record_traces, Keel};
use keel_core::money::Nanos;
use keel_core::trace::TraceRecord;

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

/// 2026-09-10 and 2026-10-10, 12:00 UTC, in Unix ms.
const SEPT: i64 = 1_789_041_600_000;
const OCT: i64 = 1_791_633_600_000;

fn call(id: &str, at: i64) -> TraceRecord {
    let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
    t.model_requested = Some("mock-1".into());
    t.input_tokens = Some(100);
    t.output_tokens = Some(10);
    t.cost = Some(Nanos(1_000_000));
    t.latency_ms = 30;
    t
}

fn seeded() -> tempfile::TempDir {
    let dir = project(CONFIG);
    let store = keel_store::Store::open(dir.path().join("keel.db").to_str().unwrap()).unwrap();
    let traces = [
        call("s1", SEPT),
        call("s2", SEPT + 1),
        call("o1", OCT),
        call("o2", OCT + 1),
        call("o3", OCT + 20 * 86_400_000),
    ];
    assert_eq!(record_traces(&store, traces).dropped_total, 0);
    dir
}

#[test]
fn until_reports_any_past_window() {
    let dir = seeded();
    let r = KEEL.json_ok(
        dir.path(),
        &[
            "report",
            "--since",
            "2026-10-01T00:00:00Z",
            "--until",
            "2026-10-15T00:00:00Z",
        ],
    );
    assert_eq!(r["totals"]["requests"], 2, "{r}");
    assert_eq!(r["window"]["until"], "2026-10-15T00:00:00Z");
    assert!(r.get("previous").is_none(), "{r}");
    let bad = KEEL.run(
        dir.path(),
        &[
            "report",
            "--since",
            "2026-10-15T00:00:00Z",
            "--until",
            "2026-10-01T00:00:00Z",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn the_monthly_review_compares_with_the_month_before() {
    let dir = seeded();
    let r = KEEL.json_ok(dir.path(), &["report", "--month", "2026-10"]);
    assert_eq!(r["totals"]["requests"], 3, "{r}");
    assert_eq!(r["previous"]["totals"]["requests"], 2, "{r}");
    assert_eq!(r["previous"]["window"]["since"], "2026-09-01T00:00:00Z");
    assert_eq!(r["previous"]["window"]["until"], "2026-10-01T00:00:00Z");
    let text = KEEL.stdout_ok(dir.path(), &["report", "--month", "2026-10"]);
    assert!(text.contains("Compared with the previous period"), "{text}");
    assert!(text.contains("+50.0%"), "{text}");
    let md = KEEL.stdout_ok(dir.path(), &["report", "--month", "2026-10", "--markdown"]);
    assert!(md.contains("### Compared with the previous period"), "{md}");
    assert!(
        md.contains("> previous: 2026-09-01 00:00 UTC"),
        "not a warning: {md}"
    );
}

/// Scores from an online eval on `trace` (one assertion).
fn judged(store: &keel_store::Store, trace: &str, passed: bool) {
    let mut conn = store.writer_conn().unwrap();
    let row = keel_store::scores::ScoreRow {
        metric: "helpful".into(),
        value: if passed { 0.9 } else { 0.2 },
        passed,
        reason: None,
    };
    keel_store::scores::replace_scores(&mut conn, trace, "quality", "online", &[row], None, OCT)
        .unwrap();
}

#[test]
fn the_report_has_online_quality_per_function_variant_prompt_and_model() {
    let dir = project(CONFIG);
    let store = keel_store::Store::open(dir.path().join("keel.db").to_str().unwrap()).unwrap();
    let traces = (0..6).map(|i| {
        let mut t = call(&format!("f{i}"), OCT + i);
        t.function = Some("support".into());
        t.variant = Some(if i < 3 { "control" } else { "candidate" }.into());
        t.prompt_name = Some("support/answer".into());
        t.prompt_version = Some(if i < 3 { 1 } else { 2 });
        t
    });
    assert_eq!(record_traces(&store, traces).dropped_total, 0);
    for (id, passed) in [("f0", true), ("f1", true), ("f2", false), ("f3", true)] {
        judged(&store, id, passed);
    }
    let thumbs = keel_store::Feedback {
        trace_id: "f3".into(),
        name: "thumbs".into(),
        source: "user".into(),
        value: keel_store::FeedbackValue::Bool(true),
        comment: None,
        key_id: None,
        at_ms: OCT,
    };
    store.record_feedback(&thumbs, "admin").unwrap();
    let window = [
        "report",
        "--since",
        "2026-10-01T00:00:00Z",
        "--until",
        "2026-10-15T00:00:00Z",
    ];

    let r = KEEL.json_ok(dir.path(), &window);
    let q = &r["quality"];
    let f = &q["by_function"][0];
    assert_eq!(f["name"], "support", "{q}");
    assert_eq!(f["judged"], 4);
    assert_eq!(f["pass_rate"], 0.75);
    assert!(f["pass_rate_low"].as_f64().unwrap() < 0.75);
    assert!(f["pass_rate_high"].as_f64().unwrap() > 0.75);
    assert_eq!(f["metrics"][0]["metric"], "helpful");
    assert_eq!(f["metrics"][0]["n"], 4);
    assert!(f["metrics"][0]["low"].as_f64().unwrap() <= f["metrics"][0]["mean"].as_f64().unwrap());
    assert_eq!(f["feedback"]["count"], 1);
    assert_eq!(f["feedback"]["positive"], 1);
    assert_eq!(f["feedback"]["negative"], 0);
    assert_eq!(f["feedback"]["positive_rate"], 1.0);
    let variants: Vec<&str> = q["by_variant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variants, ["support/candidate", "support/control"]);
    assert_eq!(q["by_prompt_version"][1]["name"], "support/answer v2");
    assert_eq!(q["by_model"][0]["name"], "mock-1");
    let c = &q["comparisons"][0];
    assert_eq!(
        (c["baseline"].as_str(), c["variant"].as_str()),
        (Some("control"), Some("candidate"))
    );
    assert!(c["pass_rate"]["verdict"]
        .as_str()
        .unwrap()
        .starts_with("no significant difference"));
    // The existing fields are unchanged.
    assert_eq!(r["totals"]["requests"], 6);

    let text = KEEL.stdout_ok(dir.path(), &window);
    assert!(text.contains("Online quality by variant"), "{text}");
    assert!(text.contains("75.0% ["), "{text}");
    let md = KEEL.stdout_ok(dir.path(), &[&window[..], &["--markdown"]].concat());
    assert!(md.contains("### Online quality by function"), "{md}");

    // A window with traffic but nothing judged: no section.
    let sept = KEEL.stdout_ok(dir.path(), &["report", "--month", "2026-09"]);
    assert!(!sept.contains("Online quality"), "{sept}");
}
