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
