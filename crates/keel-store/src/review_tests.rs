//! `review`'s tests: an item enters once, claims keep two reviewers apart and expire,
//! skips and labels move the queue, and an item with two reviewers takes two labels.

use super::*;
use crate::Store;
use serde_json::json;

const TTL: i64 = 60_000;

fn store() -> (Store, Connection) {
    let store = Store::open(":memory:").unwrap();
    let conn = store.writer_conn().unwrap();
    (store, conn)
}

fn label(conn: &mut Connection, item: i64, reviewer: &str, verdict: &str, at: i64) -> Recorded {
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

#[test]
fn a_trace_enters_a_queue_once_keeping_its_first_reason() {
    let (_s, conn) = store();
    assert!(enqueue(&conn, "q", "t1", "sample", 1, 10, None).unwrap());
    assert!(!enqueue(&conn, "q", "t1", "negative_feedback", 1, 20, None).unwrap());
    assert!(enqueue(&conn, "other", "t1", "added", 1, 20, Some("ana")).unwrap());
    let items = items_for_trace(&conn, "t1").unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1].queue, "q");
    assert_eq!(items[1].reason, "sample");
    assert_eq!(items[0].added_by.as_deref(), Some("ana"));
}

#[test]
fn a_claim_keeps_a_single_review_item_from_a_second_reviewer_until_it_expires() {
    let (_s, mut conn) = store();
    enqueue(&conn, "q", "t1", "sample", 1, 10, None).unwrap();
    enqueue(&conn, "q", "t2", "sample", 1, 20, None).unwrap();
    let a = claim_next(&mut conn, "q", "ana", 1_000, TTL)
        .unwrap()
        .unwrap();
    assert_eq!(a.trace_id, "t1", "oldest first");
    // Asked again, Ana gets the item she holds, not a new one.
    let again = claim_next(&mut conn, "q", "ana", 2_000, TTL)
        .unwrap()
        .unwrap();
    assert_eq!(again.id, a.id);
    // Bo gets the other item while Ana's claim lives…
    let b = claim_next(&mut conn, "q", "bo", 3_000, TTL)
        .unwrap()
        .unwrap();
    assert_eq!(b.trace_id, "t2");
    // …and nothing more once both are claimed.
    assert_eq!(claim_next(&mut conn, "q", "cy", 4_000, TTL).unwrap(), None);
    // Ana's claim (refreshed at 2 000) expires at 62 000: then Cy gets t1.
    let c = claim_next(&mut conn, "q", "cy", 62_000, TTL)
        .unwrap()
        .unwrap();
    assert_eq!(c.trace_id, "t1");
}

#[test]
fn a_two_reviewer_item_is_offered_to_two_people_and_done_after_two_labels() {
    let (_s, mut conn) = store();
    enqueue(&conn, "q", "t1", "sample", 2, 10, None).unwrap();
    let a = claim_next(&mut conn, "q", "ana", 1_000, TTL)
        .unwrap()
        .unwrap();
    let b = claim_next(&mut conn, "q", "bo", 1_000, TTL)
        .unwrap()
        .unwrap();
    assert_eq!(a.id, b.id, "two reviewers share a two-reviewer item");
    assert_eq!(claim_next(&mut conn, "q", "cy", 1_000, TTL).unwrap(), None);
    assert_eq!(
        label(&mut conn, a.id, "ana", "good", 2_000),
        Recorded::Labelled {
            labelled: 1,
            needed: 2
        }
    );
    // Ana has labelled it: nothing more for her.
    assert_eq!(claim_next(&mut conn, "q", "ana", 2_500, TTL).unwrap(), None);
    assert_eq!(
        label(&mut conn, b.id, "bo", "bad", 3_000),
        Recorded::Labelled {
            labelled: 2,
            needed: 2
        }
    );
    // Complete: a third reviewer is refused, Ana may change her own label.
    assert_eq!(
        label(&mut conn, a.id, "cy", "good", 4_000),
        Recorded::AlreadyComplete
    );
    assert!(matches!(
        label(&mut conn, a.id, "ana", "bad", 5_000),
        Recorded::Labelled { labelled: 2, .. }
    ));
    let labels = labels_for_item(&conn, a.id).unwrap();
    assert_eq!(labels.len(), 2);
    assert!(labels.iter().all(|l| l.verdict.as_deref() == Some("bad")));
    assert_eq!(
        label(&mut conn, 999, "ana", "good", 6_000),
        Recorded::NoSuchItem
    );
}

#[test]
fn a_skip_passes_the_item_on_to_others_only() {
    let (_s, mut conn) = store();
    enqueue(&conn, "q", "t1", "sample", 1, 10, None).unwrap();
    let a = claim_next(&mut conn, "q", "ana", 1_000, TTL)
        .unwrap()
        .unwrap();
    skip(&conn, a.id, "ana", 1_500).unwrap();
    assert_eq!(claim_next(&mut conn, "q", "ana", 2_000, TTL).unwrap(), None);
    let b = claim_next(&mut conn, "q", "bo", 2_000, TTL)
        .unwrap()
        .unwrap();
    assert_eq!(b.id, a.id);
}

#[test]
fn progress_counts_open_done_and_today() {
    let (_s, mut conn) = store();
    for (i, t) in ["t1", "t2", "t3"].iter().enumerate() {
        enqueue(&conn, "q", t, "sample", 1, 100 + i as i64, None).unwrap();
    }
    enqueue(&conn, "q", "t4", "added", 1, 200, Some("ana")).unwrap();
    enqueue(&conn, "q", "old", "sample", 1, 5, None).unwrap();
    let item = claim_next(&mut conn, "q", "ana", 300, TTL)
        .unwrap()
        .unwrap();
    assert_eq!(item.trace_id, "old");
    label(&mut conn, item.id, "ana", "good", 300);
    let p = progress(&conn, "q", 50).unwrap();
    assert_eq!(
        p,
        Progress {
            open: 4,
            done: 1,
            labelled_today: 1,
            entered_today: 3
        }
    );
    let exported = labels_since(&conn, "q", 0).unwrap();
    assert_eq!(exported.len(), 1);
    assert_eq!(exported[0].1, "sample");
    assert_eq!(labels_for_trace(&conn, "old").unwrap().len(), 1);
}

#[test]
fn a_given_item_is_claimed_unless_it_needs_nothing_from_the_reviewer() {
    let (_s, mut conn) = store();
    enqueue(&conn, "q", "t1", "sample", 1, 10, None).unwrap();
    enqueue(&conn, "q", "t2", "sample", 1, 20, None).unwrap();
    let t2 = items_for_trace(&conn, "t2").unwrap()[0].id;
    // Ana picks t2 on purpose, although t1 is older.
    assert_eq!(
        claim_item(&mut conn, t2, "ana", 1_000, TTL)
            .unwrap()
            .map(|i| i.trace_id),
        Some("t2".into())
    );
    // Bo cannot take it while Ana holds it; after her label nobody can.
    assert_eq!(claim_item(&mut conn, t2, "bo", 1_000, TTL).unwrap(), None);
    label(&mut conn, t2, "ana", "bad", 2_000);
    assert_eq!(claim_item(&mut conn, t2, "bo", 3_000, TTL).unwrap(), None);
    assert_eq!(claim_item(&mut conn, 999, "bo", 3_000, TTL).unwrap(), None);
}

#[test]
fn a_hand_add_and_its_audit_event_are_written_together_once() {
    let (_s, conn) = store();
    assert!(add_by_hand(&conn, "q", "t1", 2, "ana", 10, "cli").unwrap());
    assert!(!add_by_hand(&conn, "q", "t1", 2, "bo", 20, "dashboard").unwrap());
    let items = items_for_trace(&conn, "t1").unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!((items[0].reason.as_str(), items[0].needed), ("added", 2));
    let events: Vec<(String, String, String)> = conn
        .prepare("SELECT actor, target, to_value FROM audit_events WHERE action = 'review.add'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(events, vec![("ana".into(), "q".into(), "t1".into())]);
}
