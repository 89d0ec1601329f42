//! `model_versions`' tests: the first version is no change, a new one is (once), two
//! fingerprints served at once are not, and one back after the memory window is.

use super::*;
use crate::{trace_row, Store};
use keel_core::trace::{TraceRecord, TraceStatus};

const DAY: i64 = 86_400_000;
const MEMORY: i64 = 7 * DAY;

fn call(id: &str, at: i64, fingerprint: &str) -> TraceRecord {
    let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
    t.model_requested = Some("gpt-4o-mini".into());
    t.provider = Some("openai".into());
    t.upstream_model = Some("gpt-4o-mini".into());
    t.served_model = Some("gpt-4o-mini-2024-07-18".into());
    t.system_fingerprint = Some(fingerprint.into());
    t.status = TraceStatus::Ok;
    t
}

fn pass(conn: &mut Connection, traces: &[TraceRecord], now: i64) -> Vec<VersionChange> {
    trace_row::insert_batch(&*conn, traces).unwrap();
    watch_pass(conn, now - MEMORY, MEMORY, 10_000).unwrap()
}

#[test]
fn a_new_fingerprint_is_a_change_once_and_flapping_is_not() {
    let store = Store::open(":memory:").unwrap();
    let mut c = store.writer_conn().unwrap();
    let t0 = 100 * DAY;
    // The first version ever seen is no change.
    assert!(pass(
        &mut c,
        &[call("a1", t0, "fp_a"), call("a2", t0 + 1, "fp_a")],
        t0
    )
    .is_empty());
    // A new one is, once, naming the one before and its first call.
    let changes = pass(
        &mut c,
        &[call("b1", t0 + 10, "fp_b"), call("b2", t0 + 11, "fp_b")],
        t0 + 20,
    );
    assert_eq!(changes.len(), 1, "{changes:?}");
    let ch = &changes[0];
    assert_eq!(
        (ch.old_version.as_str(), ch.new_version.as_str()),
        ("fp_a", "fp_b")
    );
    assert_eq!((ch.first_trace_id.as_str(), ch.at_ms), ("b1", t0 + 10));
    assert_eq!(ch.deployment, "openai/gpt-4o-mini");
    // Flapping between the two: nothing new.
    let flaps: Vec<TraceRecord> = (0..20)
        .map(|i| {
            call(
                &format!("f{i}"),
                t0 + 100 + i,
                if i % 2 == 0 { "fp_a" } else { "fp_b" },
            )
        })
        .collect();
    assert!(pass(&mut c, &flaps, t0 + 200).is_empty());
    // fp_a comes back after more than the memory window without it: a change again.
    let later = t0 + 100 + MEMORY + DAY;
    pass(&mut c, &[call("b3", later - 1, "fp_b")], later);
    let back = pass(&mut c, &[call("a3", later, "fp_a")], later + 1);
    assert_eq!(back.len(), 1);
    assert_eq!(
        (back[0].old_version.as_str(), back[0].new_version.as_str()),
        ("fp_b", "fp_a")
    );

    let v = versions(&c).unwrap();
    assert_eq!(v.len(), 2);
    let a = v.iter().find(|v| v.version == "fp_a").unwrap();
    assert_eq!((a.calls, a.first_trace_id.as_str()), (13, "a1"));
    assert_eq!(a.last_seen_ms, later);
}

#[test]
fn the_reported_model_counts_when_there_is_no_fingerprint_and_errors_do_not() {
    let store = Store::open(":memory:").unwrap();
    let mut c = store.writer_conn().unwrap();
    let mut first = call("m1", 10, "");
    first.system_fingerprint = None;
    assert!(pass(&mut c, &[first], 10).is_empty());
    let mut dated = call("m2", 20, "");
    dated.system_fingerprint = None;
    dated.served_model = Some("gpt-4o-mini-2025-01-01".into());
    let mut failed = call("m3", 30, "fp_z");
    failed.status = TraceStatus::Error;
    let changes = pass(&mut c, &[dated, failed], 40);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].new_version, "gpt-4o-mini-2025-01-01");
    // A pass with nothing new finds nothing and keeps its place.
    assert!(watch_pass(&mut c, 0, MEMORY, 10).unwrap().is_empty());
}
