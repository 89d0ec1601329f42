//! `incident_series`' tests, on both backends: a scope's five-minute buckets from the
//! rollups, error classes, judge verdicts and feedback joined to their calls, and the
//! example calls around a moment.

use keel_core::money::Nanos;
use keel_core::trace::{Origin, TraceRecord, TraceStatus};

use super::*;
use crate::testing::stores;
use crate::trace_row;

const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % BUCKET_MS;

fn call(id: &str, at: i64, tenant: &str, error: Option<&str>, cost: i64) -> TraceRecord {
    let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
    t.tenant = Some(tenant.into());
    t.cost = Some(Nanos(cost));
    if let Some(class) = error {
        t.status = TraceStatus::Error;
        t.error_class = (!class.is_empty()).then(|| class.to_string());
    }
    t
}

fn seeded() -> Vec<(&'static str, crate::Store, Option<crate::testing::TestDb>)> {
    let all = stores();
    for (_, store, _) in &all {
        let c = store.conn().unwrap();
        let mut eval = call("eval", T0 + 5, "acme", Some("timeout"), 1);
        eval.origin = Origin::Eval;
        trace_row::insert_batch(
            &c,
            &[
                call("a", T0 + 1, "acme", None, 10),
                call("b", T0 + 2, "acme", Some("timeout"), 5),
                call("c", T0 + BUCKET_MS + 1, "acme", Some(""), 1),
                call("d", T0 + BUCKET_MS + 2, "acme", None, 99),
                call("e", T0 + 3, "globex", Some("rate_limited"), 1),
                eval,
            ],
        )
        .unwrap();
        c.db()
            .batch(
                "INSERT INTO scores (trace_id, eval, metric, source, value, passed, created_at_ms)
                   VALUES ('a', 'e', 'm', 'judge', 1, 1, 1), ('b', 'e', 'm', 'judge', 0, 0, 1),
                          ('d', 'e', 'm', 'judge', 1, 1, 1), ('d', 'e', 'm2', 'rule', 0, 0, 1);
                 INSERT INTO feedback (trace_id, name, source, value_num, at_ms)
                   VALUES ('a', 'thumb', 'user', 1, 1), ('b', 'thumb', 'user', 0, 1),
                          ('c', 'thumb', 'user', -1, 1), ('e', 'thumb', 'user', -1, 1);
                 INSERT INTO feedback (trace_id, name, source, value_text, value_kind, at_ms)
                   VALUES ('d', 'tag', 'user', 'x', 'category', 1);",
            )
            .unwrap();
    }
    all
}

#[test]
fn a_scopes_buckets_come_from_its_rollups() {
    for (backend, store, _db) in seeded() {
        let c = store.conn().unwrap();
        let acme = rollup_buckets(&c, Some("tenant"), "acme", T0, T0 + 3 * BUCKET_MS).unwrap();
        let got: Vec<(i64, u64, u64, i64)> = acme
            .iter()
            .map(|(at, n)| (*at, n.requests, n.errors, n.cost_nanos))
            .collect();
        assert_eq!(
            got,
            [(T0, 2, 1, 15), (T0 + BUCKET_MS, 2, 1, 100)],
            "{backend}: live calls only"
        );
        let all = rollup_buckets(&c, None, "", T0, T0 + BUCKET_MS).unwrap();
        assert_eq!(all.len(), 1, "{backend}");
        assert_eq!(all[0].1.requests, 3, "{backend}");
        assert!(rollup_buckets(&c, Some("tenant"), "acme", 0, T0)
            .unwrap()
            .is_empty());
    }
}

#[test]
fn errors_verdicts_and_feedback_are_bucketed_by_the_calls_time() {
    for (backend, store, _db) in seeded() {
        let c = store.conn().unwrap();
        let until = T0 + 3 * BUCKET_MS;
        assert_eq!(
            error_class_buckets(&c, Some("tenant"), "acme", T0, until).unwrap(),
            [
                (T0, "timeout".to_string(), 1),
                (T0 + BUCKET_MS, "unknown".to_string(), 1)
            ],
            "{backend}"
        );
        let mut every = error_class_buckets(&c, None, "", T0, until).unwrap();
        every.sort();
        assert_eq!(
            every,
            [
                (T0, "rate_limited".to_string(), 1),
                (T0, "timeout".to_string(), 1),
                (T0 + BUCKET_MS, "unknown".to_string(), 1)
            ],
            "{backend}: every live call"
        );
        assert_eq!(
            judged_buckets(&c, Some("tenant"), "acme", T0, until).unwrap(),
            [(T0, 2, 1), (T0 + BUCKET_MS, 1, 1)],
            "{backend}: judge verdicts only"
        );
        assert_eq!(
            feedback_buckets(&c, Some("tenant"), "acme", T0, until).unwrap(),
            [(T0, 2, 1), (T0 + BUCKET_MS, 1, 1)],
            "{backend}: numeric feedback only"
        );
        assert_eq!(
            feedback_buckets(&c, None, "", T0, until).unwrap(),
            [(T0, 3, 2), (T0 + BUCKET_MS, 1, 1)],
            "{backend}"
        );
    }
}

#[test]
fn examples_are_failed_calls_first_then_the_costliest() {
    for (backend, store, _db) in seeded() {
        let c = store.conn().unwrap();
        let until = T0 + 3 * BUCKET_MS;
        assert_eq!(
            example_traces(&c, Some("tenant"), "acme", T0, until, 10).unwrap(),
            ["b", "c", "d", "a"],
            "{backend}"
        );
        assert_eq!(
            example_traces(&c, None, "", T0, until, 2).unwrap(),
            ["b", "e"],
            "{backend}"
        );
        assert_eq!(
            example_traces(&c, Some("model"), "none", T0, until, 2).unwrap(),
            Vec::<String>::new()
        );
    }
}
