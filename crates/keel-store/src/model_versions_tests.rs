//! `model_versions`' tests: the first version is no change, a new one is (once), two
//! fingerprints served at once are not, and one back after the memory window is.

use super::*;
use crate::testing::stores;
use crate::{trace_row, Conn};
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

fn pass(conn: &Conn, traces: &[TraceRecord], now: i64) -> Vec<VersionChange> {
    trace_row::insert_batch(conn, traces).unwrap();
    watch_pass(conn, now - MEMORY, MEMORY, 10_000).unwrap()
}

#[test]
fn a_new_fingerprint_is_a_change_once_and_flapping_is_not() {
    for (backend, store, _db) in stores() {
        let c = store.conn().unwrap();
        let t0 = 100 * DAY;
        // The first version ever seen is no change.
        assert!(pass(
            &c,
            &[call("a1", t0, "fp_a"), call("a2", t0 + 1, "fp_a")],
            t0
        )
        .is_empty());
        // A new one is, once, naming the one before and its first call.
        let changes = pass(
            &c,
            &[call("b1", t0 + 10, "fp_b"), call("b2", t0 + 11, "fp_b")],
            t0 + 20,
        );
        assert_eq!(changes.len(), 1, "{backend}: {changes:?}");
        let ch = &changes[0];
        assert_eq!(
            (ch.old_version.as_str(), ch.new_version.as_str()),
            ("fp_a", "fp_b"),
            "{backend}"
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
        assert!(pass(&c, &flaps, t0 + 200).is_empty(), "{backend}");
        // fp_a comes back after more than the memory window without it: a change again.
        let later = t0 + 100 + MEMORY + DAY;
        pass(&c, &[call("b3", later - 1, "fp_b")], later);
        let back = pass(&c, &[call("a3", later, "fp_a")], later + 1);
        assert_eq!(back.len(), 1, "{backend}");
        assert_eq!(
            (back[0].old_version.as_str(), back[0].new_version.as_str()),
            ("fp_b", "fp_a")
        );

        let v = versions(&c).unwrap();
        assert_eq!(v.len(), 2, "{backend}");
        let a = v.iter().find(|v| v.version == "fp_a").unwrap();
        assert_eq!(
            (a.calls, a.first_trace_id.as_str()),
            (13, "a1"),
            "{backend}"
        );
        assert_eq!(a.last_seen_ms, later);
    }
}

#[test]
fn the_reported_model_counts_when_there_is_no_fingerprint_and_errors_do_not() {
    for (backend, store, _db) in stores() {
        let c = store.conn().unwrap();
        let mut first = call("m1", 10, "");
        first.system_fingerprint = None;
        assert!(pass(&c, &[first], 10).is_empty());
        let mut dated = call("m2", 20, "");
        dated.system_fingerprint = None;
        dated.served_model = Some("gpt-4o-mini-2025-01-01".into());
        let mut failed = call("m3", 30, "fp_z");
        failed.status = TraceStatus::Error;
        let changes = pass(&c, &[dated, failed], 40);
        assert_eq!(changes.len(), 1, "{backend}");
        assert_eq!(
            changes[0].new_version, "gpt-4o-mini-2025-01-01",
            "{backend}"
        );
        // A pass with nothing new finds nothing and keeps its place.
        assert!(watch_pass(&c, 0, MEMORY, 10).unwrap().is_empty());
    }
}

#[test]
fn small_passes_read_every_trace_once() {
    for (backend, store, _db) in stores() {
        let c = store.conn().unwrap();
        let calls: Vec<TraceRecord> = (0..25)
            .map(|i| {
                call(
                    &format!("c{i}"),
                    1_000 + i,
                    if i < 12 { "fp_a" } else { "fp_b" },
                )
            })
            .collect();
        trace_row::insert_batch(&c, &calls).unwrap();
        let mut changes = Vec::new();
        for _ in 0..4 {
            changes.extend(watch_pass(&c, 0, MEMORY, 10).unwrap());
        }
        assert_eq!(changes.len(), 1, "{backend}: {changes:?}");
        assert_eq!(changes[0].first_trace_id, "c12", "{backend}");
        let calls: Vec<i64> = versions(&c).unwrap().iter().map(|v| v.calls).collect();
        assert_eq!(calls, [12, 13], "{backend}");
    }
}

#[test]
fn replicas_watching_at_once_count_each_call_once() {
    for (backend, store, _db) in stores() {
        let c = store.conn().unwrap();
        let calls: Vec<TraceRecord> = (0..40)
            .map(|i| {
                call(
                    &format!("c{i}"),
                    1_000 + i,
                    if i < 20 { "fp_a" } else { "fp_b" },
                )
            })
            .collect();
        trace_row::insert_batch(&c, &calls).unwrap();
        let found = crate::alerts::tests::race(backend, 4, |_| {
            let c = store.conn().unwrap();
            (0..3)
                .map(|_| watch_pass(&c, 0, MEMORY, 7).unwrap().len())
                .sum::<usize>()
        });
        assert_eq!(found.iter().sum::<usize>(), 1, "{backend}: {found:?}");
        let calls: i64 = versions(&c).unwrap().iter().map(|v| v.calls).sum();
        assert_eq!(calls, 40, "{backend}");
    }
}

/// On PostgreSQL a batch can commit after a later one: the watch waits for it rather
/// than stepping past its traces.
#[test]
fn a_batch_committed_late_is_not_skipped() {
    for (backend, store, _db) in stores() {
        if backend != "postgres" {
            continue;
        }
        let c = store.conn().unwrap();
        pass(&c, &[call("a1", 10, "fp_a")], 10);
        // A writer draws a rowid and has not committed yet...
        let slow = store.conn().unwrap();
        slow.db().batch("BEGIN").unwrap();
        slow.db()
            .execute(
                "INSERT INTO traces (id, started_at_ms, api, endpoint, stream, unpriced, latency_ms,
                     status, http_status, model_requested, provider, upstream_model, served_model,
                     system_fingerprint)
                 VALUES ('late', 20, 'openai', '/v1/chat/completions', 0, 0, 1, 'ok', 200,
                     'gpt-4o-mini', 'openai', 'gpt-4o-mini', 'gpt-4o-mini-2024-07-18', 'fp_late')",
                &[],
            )
            .unwrap();
        // ...when a later batch commits and a pass runs.
        trace_row::insert_batch(&c, &[call("a2", 30, "fp_a")]).unwrap();
        let watcher = std::thread::spawn({
            let c = store.conn().unwrap();
            move || watch_pass(&c, 0, MEMORY, 10_000).unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        slow.db().batch("COMMIT").unwrap();
        let mut changes = watcher.join().unwrap();
        changes.extend(watch_pass(&c, 0, MEMORY, 10_000).unwrap());
        assert_eq!(
            changes
                .iter()
                .map(|c| c.new_version.as_str())
                .collect::<Vec<_>>(),
            ["fp_late"],
            "{backend}"
        );
    }
}
