//! `review_intake`'s tests, on both backends: where a new queue starts, and what each
//! source offers past its cursor (covered, live, successful calls only).

use super::*;
use crate::scores::{replace_scores, test_stores, ScoreRow};
use crate::{trace_row, Conn};
use keel_core::trace::{GuardOutcome, Origin, TraceRecord, TraceStatus};

fn call(id: &str, at: i64, function: &str) -> TraceRecord {
    let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
    t.function = Some(function.into());
    t.model_requested = Some("fast".into());
    t
}

fn guard(action: &str) -> GuardOutcome {
    GuardOutcome {
        policy: "p".into(),
        check: "pii".into(),
        stage: "output".into(),
        action: action.into(),
        score: None,
        evidence: Vec::new(),
    }
}

fn score(conn: &Conn, trace: &str, passed: bool, at: i64) {
    let row = ScoreRow {
        metric: "helpful".into(),
        value: if passed { 1.0 } else { 0.0 },
        passed,
        reason: None,
    };
    replace_scores(conn, trace, "q", "online", &[row], None, at).unwrap();
}

fn rowid_of(conn: &Conn, id: &str) -> i64 {
    conn.db()
        .query_row(
            "SELECT rowid FROM traces WHERE id = ?1",
            &values![id],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn a_new_queue_starts_at_the_rows_written_since_and_its_cursors_are_kept() {
    for (backend, store, _db) in test_stores() {
        let conn = store.conn().unwrap();
        // Nothing yet: both cursors at 0.
        let w = watermarks(&conn, "q", 100).unwrap();
        assert_eq!(
            (w.traces_rowid, w.scores_rowid, w.feedback_at_ms),
            (0, 0, 100)
        );
        trace_row::insert_batch(&conn, &[call("a", 50, "f"), call("b", 150, "f")]).unwrap();
        score(&conn, "a", true, 60);
        score(&conn, "b", true, 160);
        let w = watermarks(&conn, "q", 100).unwrap();
        assert_eq!(w.traces_rowid, rowid_of(&conn, "a"), "{backend}");
        assert_eq!(
            w.scores_rowid,
            max_scores_rowid(&conn).unwrap() - 1,
            "{backend}"
        );
        // Everything is older than the start: the cursors are at the newest rows.
        let w = watermarks(&conn, "late", 1_000).unwrap();
        assert_eq!(
            w.traces_rowid,
            max_traces_rowid(&conn).unwrap(),
            "{backend}"
        );
        assert_eq!(
            w.scores_rowid,
            max_scores_rowid(&conn).unwrap(),
            "{backend}"
        );
        let kept = Watermarks {
            traces_rowid: 7,
            scores_rowid: 8,
            feedback_at_ms: 9,
        };
        set_watermarks(&conn, "q", &kept).unwrap();
        assert_eq!(watermarks(&conn, "q", 100).unwrap(), kept, "{backend}");
        let moved = Watermarks {
            traces_rowid: 10,
            ..kept
        };
        set_watermarks(&conn, "q", &moved).unwrap();
        assert_eq!(watermarks(&conn, "q", 100).unwrap(), moved, "{backend}");
    }
}

#[test]
fn new_traces_are_covered_live_successful_calls_read_in_batches_with_their_flags() {
    for (backend, store, _db) in test_stores() {
        let conn = store.conn().unwrap();
        let mut flagged = call("flagged", 1, "support");
        flagged.guardrails = vec![guard("redact"), guard("log")];
        let mut redacted = call("redacted", 2, "support");
        redacted.guardrails = vec![guard("redact")];
        let mut failed = call("failed", 3, "support");
        failed.status = TraceStatus::Error;
        let mut replay = call("replay", 4, "support");
        replay.origin = Origin::Replay;
        trace_row::insert_batch(
            &conn,
            &[
                flagged,
                redacted,
                failed,
                replay,
                call("other", 5, "billing"),
                call("plain", 6, "support"),
            ],
        )
        .unwrap();
        let cov = Coverage {
            function: Some("support"),
            ..Coverage::default()
        };
        let (got, next) = new_traces(&conn, &cov, 0, 100).unwrap();
        let got: Vec<(&str, bool)> = got.iter().map(|t| (t.id.as_str(), t.flagged)).collect();
        assert_eq!(
            got,
            [("flagged", true), ("redacted", false), ("plain", false)],
            "{backend}"
        );
        assert_eq!(next, max_traces_rowid(&conn).unwrap(), "{backend}");
        // A full batch stops at its last row; the next pass goes on from there.
        let (first, next) = new_traces(&conn, &cov, 0, 2).unwrap();
        assert_eq!(first.len(), 2, "{backend}");
        assert_eq!(next, rowid_of(&conn, "redacted"), "{backend}");
        let (rest, _) = new_traces(&conn, &cov, next, 2).unwrap();
        assert_eq!(rest.len(), 1, "{backend}");
        assert_eq!(rest[0].id, "plain", "{backend}");
        // Read up to date: nothing new, the cursor stays.
        let end = max_traces_rowid(&conn).unwrap();
        assert_eq!(new_traces(&conn, &cov, end, 2).unwrap(), (vec![], end));
    }
}

#[test]
fn new_scores_wait_for_a_young_scores_trace_and_pass_over_an_old_one() {
    for (backend, store, _db) in test_stores() {
        let conn = store.conn().unwrap();
        trace_row::insert_batch(&conn, &[call("a", 1, "support"), call("b", 1, "billing")])
            .unwrap();
        score(&conn, "a", false, 100);
        score(&conn, "b", false, 100);
        // `lost`'s trace never came (old); `young`'s is not written yet.
        score(&conn, "lost", false, 100);
        score(&conn, "young", false, 1_000);
        score(&conn, "a2", true, 1_000);
        let cov = Coverage {
            function: Some("support"),
            ..Coverage::default()
        };
        let (got, next) = new_scores(&conn, &cov, 0, 100, 500).unwrap();
        let ids: Vec<&str> = got.iter().map(|s| s.trace_id.as_str()).collect();
        assert_eq!(ids, ["a"], "{backend}");
        assert_eq!(
            (
                got[0].eval.as_str(),
                got[0].metric.as_str(),
                got[0].value,
                got[0].passed
            ),
            ("q", "helpful", 0.0, false),
            "{backend}"
        );
        // Stopped just before `young`: read again next time.
        let young: i64 = max_scores_rowid(&conn).unwrap() - 1;
        assert_eq!(next, young - 1, "{backend}");
        trace_row::insert_batch(
            &conn,
            &[call("young", 2, "support"), call("a2", 2, "support")],
        )
        .unwrap();
        let (got, next) = new_scores(&conn, &cov, next, 100, 500).unwrap();
        let ids: Vec<&str> = got.iter().map(|s| s.trace_id.as_str()).collect();
        assert_eq!(ids, ["young", "a2"], "{backend}");
        assert_eq!(next, max_scores_rowid(&conn).unwrap(), "{backend}");
        // People's scores are not the intake's.
        replace_scores(
            &conn,
            "a",
            "q",
            "human",
            &[ScoreRow {
                metric: "verdict".into(),
                value: 0.0,
                passed: false,
                reason: None,
            }],
            None,
            2_000,
        )
        .unwrap();
        let (got, _) = new_scores(&conn, &cov, next, 100, 500).unwrap();
        assert!(got.is_empty(), "{backend}: {got:?}");
    }
}

#[test]
fn negative_feedback_is_offered_once_a_call_is_not_in_the_queue() {
    use crate::feedback::{upsert_feedback, Feedback, FeedbackValue};
    for (backend, store, _db) in test_stores() {
        let conn = store.conn().unwrap();
        let calls: Vec<_> = ["down", "false", "up", "cat", "queued", "old"]
            .iter()
            .map(|id| call(id, 1, "support"))
            .collect();
        trace_row::insert_batch(&conn, &calls).unwrap();
        for (i, (id, value)) in [
            ("down", FeedbackValue::Number(-1.0)),
            ("false", FeedbackValue::Bool(false)),
            ("up", FeedbackValue::Number(1.0)),
            ("cat", FeedbackValue::Category("rude".into())),
            ("queued", FeedbackValue::Number(0.0)),
            ("old", FeedbackValue::Number(0.0)),
        ]
        .into_iter()
        .enumerate()
        {
            let at = if id == "old" { 5 } else { 100 + i as i64 };
            let fb = Feedback {
                trace_id: id.into(),
                name: "thumbs".into(),
                source: "user".into(),
                value,
                comment: None,
                key_id: None,
                at_ms: at,
            };
            upsert_feedback(&conn, &fb, "admin").unwrap();
        }
        crate::review::enqueue(&conn, "q", "queued", "sample", 1, 50, None).unwrap();
        let cov = Coverage::default();
        let (ids, newest) = new_negative_feedback(&conn, "q", &cov, 50, 100).unwrap();
        assert_eq!(ids, ["down", "false"], "{backend}");
        assert_eq!(newest, 101, "{backend}");
        let (ids, newest) = new_negative_feedback(&conn, "q", &cov, 500, 100).unwrap();
        assert!(ids.is_empty(), "{backend}");
        assert_eq!(newest, 500, "{backend}");
        let narrow = Coverage {
            tenant: Some("acme"),
            ..Coverage::default()
        };
        assert!(new_negative_feedback(&conn, "q", &narrow, 0, 100)
            .unwrap()
            .0
            .is_empty());
        assert_eq!(entered_since(&conn, "q", 50).unwrap(), 1, "{backend}");
        assert_eq!(entered_since(&conn, "q", 51).unwrap(), 0, "{backend}");
    }
}
