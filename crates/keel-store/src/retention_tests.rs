//! Retention: each origin's window, whole days, derived rows with their traces, text
//! dropped without touching rollups, nothing removed twice, every removal audited once.

use keel_core::trace::{Origin, TraceRecord};

use super::*;
use crate::rollup::DAY_MS;
use crate::testing::stores;
use crate::{trace_row, Conn};

const NOW: i64 = 1_800_000_000_000;

fn call(id: &str, days_ago: i64, origin: Origin) -> TraceRecord {
    let mut t = TraceRecord::new(
        id.into(),
        NOW - days_ago * DAY_MS,
        "openai",
        "/v1/chat/completions",
    );
    t.origin = origin;
    t.input = Some("the question".into());
    t.output = Some("the answer".into());
    t
}

fn count(c: &Conn, sql: &str) -> i64 {
    c.db()
        .query_row(sql, &[], |r| r.get::<Option<i64>>(0))
        .unwrap()
        .unwrap_or(0)
}

fn rules() -> Vec<Cutoffs<'static>> {
    vec![
        Cutoffs {
            origin: "live",
            traces_before_ms: Some(cutoff(NOW, 90 * DAY_MS)),
            capture_before_ms: Some(cutoff(NOW, 30 * DAY_MS)),
        },
        Cutoffs {
            origin: "eval",
            traces_before_ms: Some(cutoff(NOW, 7 * DAY_MS)),
            capture_before_ms: None,
        },
    ]
}

#[test]
fn each_origin_keeps_its_window_and_text_goes_before_traces() {
    for (backend, store, _db) in stores() {
        let w = store.conn().unwrap();
        trace_row::insert_batch(
            &w,
            &[
                call("old", 100, Origin::Live),
                call("middle", 40, Origin::Live),
                call("recent", 2, Origin::Live),
                call("old-eval", 10, Origin::Eval),
                call("new-eval", 1, Origin::Eval),
            ],
        )
        .unwrap();
        w.db()
            .batch(&format!(
                "INSERT INTO scores (trace_id, eval, metric, source, value, passed, created_at_ms)
                   VALUES ('old', 'e', 'm', 'online', 1, 1, 1), ('middle', 'e', 'm', 'online', 1, 1, 1);
                 INSERT INTO responses (id, tenant, trace_id, created_ms, response_json, conversation_json)
                   VALUES ('resp_m', 'acme', 'middle', {}, '{{}}', '[]'), ('resp_r', 'acme', 'recent', {}, '{{}}', '[]');",
                NOW - 40 * DAY_MS,
                NOW - 2 * DAY_MS
            ))
            .unwrap();
        w.db().batch("DELETE FROM trace_rollup_dirty").unwrap();

        let counts = run_retention(&w, &rules(), 1, NOW).unwrap();
        assert_eq!(counts.deleted.traces, 2, "{backend}: {counts:?}");
        assert_eq!(counts.deleted.scores, 1, "{backend}");
        assert_eq!(counts.captures_dropped, 1, "{backend}");
        assert_eq!(counts.responses_dropped, 1, "{backend}");
        let left: Vec<(String, Option<String>)> = w
            .db()
            .query(
                "SELECT id, input FROM traces ORDER BY started_at_ms",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            left,
            [
                ("middle".to_string(), None),
                ("recent".to_string(), Some("the question".to_string())),
                ("new-eval".to_string(), Some("the question".to_string())),
            ],
            "{backend}"
        );
        // The text drop kept its trace's tokens and score; the rollups count what remains.
        assert_eq!(
            count(&w, "SELECT count(*) FROM scores WHERE trace_id = 'middle'"),
            1
        );
        assert_eq!(
            count(
                &w,
                "SELECT sum(requests) FROM trace_rollups WHERE dim = 'all' AND res_ms = 86400000"
            ),
            3,
            "{backend}"
        );
        assert_eq!(
            count(
                &w,
                "SELECT count(*) FROM audit_events WHERE action = 'retention.run'"
            ),
            1
        );

        // Again: nothing left to remove, nothing audited.
        let again = run_retention(&w, &rules(), 1000, NOW + 60_000).unwrap();
        assert!(again.is_empty(), "{backend}: {again:?}");
        assert_eq!(
            count(
                &w,
                "SELECT count(*) FROM audit_events WHERE action = 'retention.run'"
            ),
            1
        );
    }
}

#[test]
fn batches_smaller_than_the_work_remove_it_all() {
    for (backend, store, _db) in stores() {
        let w = store.conn().unwrap();
        let old: Vec<TraceRecord> = (0..7)
            .map(|i| call(&format!("o{i}"), 100, Origin::Live))
            .chain((0..5).map(|i| call(&format!("m{i}"), 40, Origin::Live)))
            .collect();
        trace_row::insert_batch(&w, &old).unwrap();
        let counts = run_retention(&w, &rules(), 3, NOW).unwrap();
        assert_eq!(
            (counts.deleted.traces, counts.captures_dropped),
            (7, 5),
            "{backend}"
        );
        assert_eq!(
            count(&w, "SELECT count(*) FROM traces WHERE input IS NOT NULL"),
            0
        );
        assert_eq!(
            count(
                &w,
                "SELECT sum(requests) FROM trace_rollups WHERE dim = 'all' AND res_ms = 86400000"
            ),
            5,
            "{backend}"
        );
    }
}

#[test]
fn dropping_text_marks_no_day_for_a_rollup_rebuild() {
    for (backend, store, _db) in stores() {
        let w = store.conn().unwrap();
        trace_row::insert_batch(&w, &[call("a", 40, Origin::Live)]).unwrap();
        w.db().batch("DELETE FROM trace_rollup_dirty").unwrap();
        w.db()
            .execute("UPDATE traces SET input = NULL, output = NULL", &[])
            .unwrap();
        assert_eq!(
            count(&w, "SELECT count(*) FROM trace_rollup_dirty"),
            0,
            "{backend}"
        );
        w.db()
            .execute("UPDATE traces SET cost_nanos = 5", &[])
            .unwrap();
        assert_eq!(
            count(&w, "SELECT count(*) FROM trace_rollup_dirty"),
            1,
            "{backend}"
        );
    }
}

#[test]
fn a_cutoff_falls_on_a_utc_midnight() {
    let c = cutoff(NOW, 30 * DAY_MS);
    assert_eq!(c.rem_euclid(DAY_MS), 0);
    assert!(c <= NOW - 30 * DAY_MS && c > NOW - 31 * DAY_MS);
}
