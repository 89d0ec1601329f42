//! `review`'s tests, on both backends: an item enters once, claims keep two reviewers
//! apart (also two replicas at once) and expire, skips and labels move the queue, and an
//! item with two reviewers takes two labels.

use super::*;
use crate::testing::{stores, TestDb};
use crate::{Conn, Store};
use serde_json::json;

const TTL: i64 = 60_000;

fn label(conn: &Conn, item: i64, reviewer: &str, verdict: &str, at: i64) -> Recorded {
    let labels = json!({ "verdict": verdict });
    record_label(
        conn,
        item,
        reviewer,
        &NewLabel {
            verdict: Some(verdict),
            labels: &labels,
            correction: None,
        },
        at,
    )
    .unwrap()
}

/// Each test body, once per backend (the backend's name for messages).
fn each(test: impl Fn(&str, &Conn)) {
    for (backend, store, _db) in stores() {
        test(backend, &store.conn().unwrap());
    }
}

#[test]
fn a_trace_enters_a_queue_once_keeping_its_first_reason() {
    each(|backend, conn| {
        assert!(enqueue(conn, "q", "t1", "sample", 1, 10, None).unwrap());
        assert!(!enqueue(conn, "q", "t1", "negative_feedback", 1, 20, None).unwrap());
        assert!(enqueue(conn, "other", "t1", "added", 1, 20, Some("ana")).unwrap());
        let items = items_for_trace(conn, "t1").unwrap();
        assert_eq!(items.len(), 2, "{backend}");
        assert_eq!(items[1].queue, "q", "{backend}");
        assert_eq!(items[1].reason, "sample", "{backend}");
        assert_eq!(items[0].added_by.as_deref(), Some("ana"), "{backend}");
        assert_eq!(
            get_item(conn, items[1].id).unwrap().as_ref(),
            Some(&items[1])
        );
        assert_eq!(get_item(conn, 999).unwrap(), None, "{backend}");
    });
}

#[test]
fn a_claim_keeps_a_single_review_item_from_a_second_reviewer_until_it_expires() {
    each(|backend, conn| {
        enqueue(conn, "q", "t1", "sample", 1, 10, None).unwrap();
        enqueue(conn, "q", "t2", "sample", 1, 20, None).unwrap();
        let a = claim_next(conn, "q", "ana", 1_000, TTL).unwrap().unwrap();
        assert_eq!(a.trace_id, "t1", "{backend}: oldest first");
        // Asked again, Ana gets the item she holds, not a new one.
        let again = claim_next(conn, "q", "ana", 2_000, TTL).unwrap().unwrap();
        assert_eq!(again.id, a.id, "{backend}");
        // Bo gets the other item while Ana's claim lives…
        let b = claim_next(conn, "q", "bo", 3_000, TTL).unwrap().unwrap();
        assert_eq!(b.trace_id, "t2", "{backend}");
        // …and nothing more once both are claimed.
        assert_eq!(
            claim_next(conn, "q", "cy", 4_000, TTL).unwrap(),
            None,
            "{backend}"
        );
        // Ana's claim (refreshed at 2 000) expires at 62 000: then Cy gets t1.
        let c = claim_next(conn, "q", "cy", 62_000, TTL).unwrap().unwrap();
        assert_eq!(c.trace_id, "t1", "{backend}");
    });
}

#[test]
fn a_two_reviewer_item_is_offered_to_two_people_and_done_after_two_labels() {
    each(|backend, conn| {
        enqueue(conn, "q", "t1", "sample", 2, 10, None).unwrap();
        let a = claim_next(conn, "q", "ana", 1_000, TTL).unwrap().unwrap();
        let b = claim_next(conn, "q", "bo", 1_000, TTL).unwrap().unwrap();
        assert_eq!(
            a.id, b.id,
            "{backend}: two reviewers share a two-reviewer item"
        );
        assert_eq!(
            claim_next(conn, "q", "cy", 1_000, TTL).unwrap(),
            None,
            "{backend}"
        );
        assert_eq!(
            label(conn, a.id, "ana", "good", 2_000),
            Recorded::Labelled {
                labelled: 1,
                needed: 2
            },
            "{backend}"
        );
        // Ana has labelled it: nothing more for her.
        assert_eq!(
            claim_next(conn, "q", "ana", 2_500, TTL).unwrap(),
            None,
            "{backend}"
        );
        assert_eq!(
            label(conn, b.id, "bo", "bad", 3_000),
            Recorded::Labelled {
                labelled: 2,
                needed: 2
            },
            "{backend}"
        );
        // Complete: a third reviewer is refused, Ana may change her own label.
        assert_eq!(
            label(conn, a.id, "cy", "good", 4_000),
            Recorded::AlreadyComplete,
            "{backend}"
        );
        assert!(
            matches!(
                label(conn, a.id, "ana", "bad", 5_000),
                Recorded::Labelled { labelled: 2, .. }
            ),
            "{backend}"
        );
        let labels = labels_for_item(conn, a.id).unwrap();
        assert_eq!(labels.len(), 2, "{backend}");
        assert!(
            labels.iter().all(|l| l.verdict.as_deref() == Some("bad")),
            "{backend}"
        );
        assert_eq!(labels[0].labels, json!({ "verdict": "bad" }), "{backend}");
        assert_eq!(
            label(conn, 999, "ana", "good", 6_000),
            Recorded::NoSuchItem,
            "{backend}"
        );
    });
}

#[test]
fn a_skip_passes_the_item_on_to_others_only() {
    each(|backend, conn| {
        enqueue(conn, "q", "t1", "sample", 1, 10, None).unwrap();
        let a = claim_next(conn, "q", "ana", 1_000, TTL).unwrap().unwrap();
        skip(conn, a.id, "ana", 1_500).unwrap();
        // Skipping twice is the same skip.
        skip(conn, a.id, "ana", 1_600).unwrap();
        assert_eq!(
            claim_next(conn, "q", "ana", 2_000, TTL).unwrap(),
            None,
            "{backend}"
        );
        let b = claim_next(conn, "q", "bo", 2_000, TTL).unwrap().unwrap();
        assert_eq!(b.id, a.id, "{backend}");
        // Given back, it is offered to Bo again (and Cy may take it).
        release_claim(conn, b.id, "bo").unwrap();
        let c = claim_next(conn, "q", "cy", 2_100, TTL).unwrap().unwrap();
        assert_eq!(c.id, a.id, "{backend}");
    });
}

#[test]
fn progress_counts_open_done_and_today() {
    each(|backend, conn| {
        for (i, t) in ["t1", "t2", "t3"].iter().enumerate() {
            enqueue(conn, "q", t, "sample", 1, 100 + i as i64, None).unwrap();
        }
        enqueue(conn, "q", "t4", "added", 1, 200, Some("ana")).unwrap();
        enqueue(conn, "q", "old", "sample", 1, 5, None).unwrap();
        let item = claim_next(conn, "q", "ana", 300, TTL).unwrap().unwrap();
        assert_eq!(item.trace_id, "old", "{backend}");
        label(conn, item.id, "ana", "good", 300);
        let p = progress(conn, "q", 50).unwrap();
        assert_eq!(
            p,
            Progress {
                open: 4,
                done: 1,
                labelled_today: 1,
                entered_today: 3
            },
            "{backend}"
        );
        assert_eq!(progress(conn, "empty", 0).unwrap(), Progress::default());
        let exported = labels_since(conn, "q", 0).unwrap();
        assert_eq!(exported.len(), 1, "{backend}");
        assert_eq!(exported[0].1, "sample", "{backend}");
        assert_eq!(labels_for_trace(conn, "old").unwrap().len(), 1, "{backend}");
    });
}

#[test]
fn a_given_item_is_claimed_unless_it_needs_nothing_from_the_reviewer() {
    each(|backend, conn| {
        enqueue(conn, "q", "t1", "sample", 1, 10, None).unwrap();
        enqueue(conn, "q", "t2", "sample", 1, 20, None).unwrap();
        let t2 = items_for_trace(conn, "t2").unwrap()[0].id;
        // Ana picks t2 on purpose, although t1 is older.
        assert_eq!(
            claim_item(conn, t2, "ana", 1_000, TTL)
                .unwrap()
                .map(|i| i.trace_id),
            Some("t2".into()),
            "{backend}"
        );
        // Bo cannot take it while Ana holds it; after her label nobody can.
        assert_eq!(
            claim_item(conn, t2, "bo", 1_000, TTL).unwrap(),
            None,
            "{backend}"
        );
        label(conn, t2, "ana", "bad", 2_000);
        assert_eq!(
            claim_item(conn, t2, "bo", 3_000, TTL).unwrap(),
            None,
            "{backend}"
        );
        assert_eq!(
            claim_item(conn, 999, "bo", 3_000, TTL).unwrap(),
            None,
            "{backend}"
        );
    });
}

#[test]
fn a_hand_add_and_its_audit_event_are_written_together_once() {
    each(|backend, conn| {
        assert!(add_by_hand(conn, "q", "t1", 2, "ana", 10, "cli").unwrap());
        assert!(!add_by_hand(conn, "q", "t1", 2, "bo", 20, "dashboard").unwrap());
        let items = items_for_trace(conn, "t1").unwrap();
        assert_eq!(items.len(), 1, "{backend}");
        assert_eq!(
            (items[0].reason.as_str(), items[0].needed),
            ("added", 2),
            "{backend}"
        );
        let events: Vec<(String, String, String, String)> = conn
            .db()
            .query(
                "SELECT actor, target, to_value, details_json FROM audit_events
                  WHERE action = 'review.add'",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            events,
            vec![(
                "ana".into(),
                "q".into(),
                "t1".into(),
                r#"{"source":"cli"}"#.into()
            )],
            "{backend}"
        );
    });
}

#[test]
fn human_verdicts_are_paired_with_the_judges_when_clear_and_judged() {
    use crate::scores::{replace_scores, ScoreRow};
    for (backend, store, _db) in crate::scores::test_stores() {
        let conn = store.conn().unwrap();
        let row = |metric: &str, value: f64| ScoreRow {
            metric: metric.into(),
            value,
            passed: value >= 0.5,
            reason: None,
        };
        // a: good, judge passed; b: bad, judge failed one assertion; c: a tie; d: not
        // judged; e: written before the window.
        for (trace, verdict, at) in [
            ("a", 1.0, 10),
            ("b", 0.0, 10),
            ("c", 0.5, 10),
            ("d", 1.0, 10),
            ("e", 1.0, 1),
        ] {
            replace_scores(
                &conn,
                trace,
                "q",
                "human",
                &[row("verdict", verdict)],
                None,
                at,
            )
            .unwrap();
        }
        replace_scores(&conn, "a", "helpful", "online", &[row("x", 1.0)], None, 5).unwrap();
        replace_scores(
            &conn,
            "b",
            "helpful",
            "online",
            &[row("x", 1.0), row("y", 0.0)],
            None,
            5,
        )
        .unwrap();
        replace_scores(&conn, "c", "helpful", "online", &[row("x", 1.0)], None, 5).unwrap();
        replace_scores(&conn, "e", "helpful", "backfill", &[row("x", 1.0)], None, 5).unwrap();
        let mut got = human_and_judge(&conn, "q", 5).unwrap();
        got.sort();
        assert_eq!(got, [(false, false), (true, true)], "{backend}");
    }
}

/// Several reviewers on two replicas (two stores on one database) ask for an item at the
/// same moment, round after round: a single-review item is never claimed twice.
#[test]
fn reviewers_on_two_replicas_never_claim_the_same_single_review_item() {
    let db = TestDb::new();
    let replicas = [
        Store::open(&db.url()).unwrap(),
        Store::open(&db.url()).unwrap(),
    ];
    let reviewers = 6;
    let setup = replicas[0].conn().unwrap();
    for round in 0..10_i64 {
        let queue = format!("q{round}");
        for i in 0..reviewers {
            enqueue(
                &setup,
                &queue,
                &format!("t{i}"),
                "sample",
                1,
                i as i64,
                None,
            )
            .unwrap();
        }
        let barrier = std::sync::Barrier::new(reviewers);
        let claimed: Vec<Option<i64>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..reviewers)
                .map(|r| {
                    let (store, barrier, queue) = (&replicas[r % 2], &barrier, &queue);
                    s.spawn(move || {
                        let conn = store.conn().unwrap();
                        barrier.wait();
                        claim_next(&conn, queue, &format!("r{r}"), 1_000, TTL)
                            .unwrap()
                            .map(|i| i.id)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut ids: Vec<i64> = claimed.iter().flatten().copied().collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), reviewers, "round {round}: {claimed:?}");
        let claims: i64 = setup
            .db()
            .query_row(
                "SELECT COUNT(*) FROM review_claims c JOIN review_items i ON i.id = c.item_id
                  WHERE i.queue = ?1",
                &crate::values![&queue],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(claims, reviewers as i64, "round {round}");
    }
}

/// Two replicas record a label on the same single-review item at once: one is stored,
/// the other is told the item is complete.
#[test]
fn two_labels_at_once_on_a_single_review_item_store_one() {
    let db = TestDb::new();
    let replicas = [
        Store::open(&db.url()).unwrap(),
        Store::open(&db.url()).unwrap(),
    ];
    let setup = replicas[0].conn().unwrap();
    for round in 0..10 {
        let trace = format!("t{round}");
        enqueue(&setup, "q", &trace, "sample", 1, 1, None).unwrap();
        let id = items_for_trace(&setup, &trace).unwrap()[0].id;
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<Recorded> = std::thread::scope(|s| {
            let handles: Vec<_> = replicas
                .iter()
                .enumerate()
                .map(|(r, store)| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        let conn = store.conn().unwrap();
                        barrier.wait();
                        label(&conn, id, &format!("r{r}"), "good", 10)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let stored = results
            .iter()
            .filter(|r| matches!(r, Recorded::Labelled { .. }))
            .count();
        assert_eq!(stored, 1, "round {round}: {results:?}");
        assert_eq!(
            labels_for_item(&setup, id).unwrap().len(),
            1,
            "round {round}"
        );
        assert_eq!(get_item(&setup, id).unwrap().unwrap().labelled, 1);
    }
}

/// A reviewer labels an item whose claim has expired while another, on another replica,
/// asks for an item at that moment (and so clears expired claims): neither fails.
#[test]
fn a_label_after_an_expired_claim_and_a_claim_at_once_both_succeed() {
    let db = TestDb::new();
    let replicas = [
        Store::open(&db.url()).unwrap(),
        Store::open(&db.url()).unwrap(),
    ];
    let setup = replicas[0].conn().unwrap();
    for round in 0..30 {
        let queue = format!("q{round}");
        enqueue(&setup, &queue, "t", "sample", 1, 1, None).unwrap();
        let item = claim_next(&setup, &queue, "ana", 0, TTL).unwrap().unwrap();
        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            let (barrier, queue, replicas) = (&barrier, &queue, &replicas);
            let labeller = s.spawn(move || {
                let conn = replicas[0].conn().unwrap();
                barrier.wait();
                label(&conn, item.id, "ana", "good", 2 * TTL)
            });
            let claimer = s.spawn(move || {
                let conn = replicas[1].conn().unwrap();
                barrier.wait();
                claim_next(&conn, queue, "bo", 2 * TTL, TTL).unwrap()
            });
            let labelled = labeller.join().unwrap();
            assert!(
                matches!(labelled, Recorded::Labelled { labelled: 1, .. }),
                "round {round}: {labelled:?}"
            );
            claimer.join().unwrap();
        });
    }
}
