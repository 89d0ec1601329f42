//! Erasure: a user's traces go with everything derived from them; other users' stay; a
//! dry run changes nothing; the purge is audited without the data; rollups match what
//! remains.

use keel_core::trace::TraceRecord;
use rusqlite::Connection;

use crate::purge::{purge, PurgeCounts, Subject, ACTION};
use crate::{trace_row, Store};

fn call(id: &str, user: &str, tenant: &str, otel: &str) -> TraceRecord {
    let mut t = TraceRecord::new(id.into(), 1_000_000, "openai", "/v1/chat/completions");
    t.user = Some(user.into());
    t.tenant = Some(tenant.into());
    t.otel_trace_id = Some(otel.into());
    t.input = Some(format!("secret of {user}"));
    t
}

fn seeded() -> (Store, Connection) {
    let store = Store::open(":memory:").unwrap();
    let mut w = store.writer_conn().unwrap();
    let mut judge = TraceRecord::new("j".into(), 1_000_001, "openai", "/v1/chat/completions");
    judge.parent_id = Some("a".into());
    judge.origin = keel_core::trace::Origin::Judge;
    judge.input = Some("judge this: secret of u1".into());
    let traces = [
        call("a", "u1", "acme", "t1"),
        call("b", "u1", "acme", "t1"),
        call("c", "u2", "acme", "t2"),
        judge,
    ];
    trace_row::insert_batch(&mut w, &traces).unwrap();
    w.execute_batch(
        "INSERT INTO scores (trace_id, eval, metric, source, value, passed, created_at_ms)
           VALUES ('a', 'e', 'm', 'online', 1, 1, 1), ('c', 'e', 'm', 'online', 1, 1, 1);
         INSERT INTO feedback (trace_id, name, source, value_num, at_ms) VALUES ('b', 'thumb', 'user', 0, 1);
         INSERT INTO review_items (id, queue, trace_id, reason, entered_at_ms, needed) VALUES (7, 'q', 'a', 'sample', 1, 1);
         INSERT INTO review_claims (item_id, reviewer, claimed_at_ms, expires_at_ms) VALUES (7, 'ann', 1, 2);
         INSERT INTO review_labels (item_id, queue, trace_id, reviewer, labels_json, at_ms) VALUES (7, 'q', 'a', 'ann', '{}', 1);
         INSERT INTO dataset_drafts (suite, trace_id, case_json, added_by, created_at_ms, pulled_at_ms)
           VALUES ('support', 'a', '{}', 'ann', 1, 2);
         INSERT INTO app_spans (trace_id, span_id, name, start_unix_nano, end_unix_nano, status, received_at_ms)
           VALUES ('t1', 's1', 'rag', 1, 2, 'ok', 1), ('t2', 's2', 'rag', 1, 2, 'ok', 1);
         INSERT INTO responses (id, tenant, trace_id, created_ms, response_json, conversation_json)
           VALUES ('resp_a', 'acme', 'a', 1, '{}', '[]'), ('resp_c', 'acme', 'c', 1, '{}', '[]');",
    )
    .unwrap();
    (store, w)
}

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_users_traces_go_with_what_derives_from_them() {
    let (_store, mut w) = seeded();
    let user = Subject::User("u1".into());
    let want = PurgeCounts {
        traces: 3,
        scores: 1,
        feedback: 1,
        review_items: 1,
        review_labels: 1,
        dataset_drafts: 1,
        responses: 1,
        app_spans: 1,
        pulled_cases: vec!["support: trace-a".into()],
        ..Default::default()
    };
    let dry = purge(&mut w, &user, true, ("ops", "DSR-1", 5)).unwrap();
    assert_eq!(dry, want);
    assert_eq!(
        count(&w, "SELECT count(*) FROM traces"),
        4,
        "a dry run changes nothing"
    );
    assert_eq!(count(&w, "SELECT count(*) FROM audit_events"), 0);

    let done = purge(&mut w, &user, false, ("ops", "DSR-1", 5)).unwrap();
    assert_eq!(done, want);
    assert_eq!(count(&w, "SELECT count(*) FROM traces"), 1);
    assert_eq!(
        count(&w, "SELECT count(*) FROM traces WHERE input LIKE '%u1%'"),
        0
    );
    assert_eq!(
        count(&w, "SELECT count(*) FROM scores"),
        1,
        "u2's score stays"
    );
    assert_eq!(count(&w, "SELECT count(*) FROM review_claims"), 0);
    assert_eq!(
        count(&w, "SELECT count(*) FROM app_spans WHERE trace_id = 't2'"),
        1
    );
    assert_eq!(count(&w, "SELECT count(*) FROM responses"), 1);
    // Audited, with the counts and not the data.
    let (target, details): (String, String) = w
        .query_row(
            "SELECT target, details_json FROM audit_events WHERE action = ?1",
            [ACTION],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(target, "user=u1");
    assert!(
        details.contains("\"traces\":3") && !details.contains("secret"),
        "{details}"
    );
    // The rollups count what remains.
    assert_eq!(
        count(
            &w,
            "SELECT sum(requests) FROM trace_rollups WHERE dim = 'all' AND res_ms = 300000"
        ),
        1
    );
}

#[test]
fn a_tenant_purge_takes_every_response_it_stored() {
    let (_store, mut w) = seeded();
    w.execute_batch(
        "INSERT INTO responses (id, tenant, trace_id, created_ms, response_json, conversation_json)
           VALUES ('resp_x', 'acme', 'gone-already', 1, '{}', '[]');",
    )
    .unwrap();
    let done = purge(
        &mut w,
        &Subject::Tenant("acme".into()),
        false,
        ("ops", "offboarding", 5),
    )
    .unwrap();
    assert_eq!(done.traces, 4, "the judge call of a goes too");
    assert_eq!(done.responses, 3);
    assert_eq!(count(&w, "SELECT count(*) FROM responses"), 0);
    let nobody = purge(
        &mut w,
        &Subject::Session("none".into()),
        false,
        ("ops", "x", 6),
    )
    .unwrap();
    assert_eq!(nobody, PurgeCounts::default());
}

#[test]
fn a_large_subject_goes_in_batches_and_a_dry_run_counts_it_all() {
    let (_store, mut w) = seeded();
    let many: Vec<TraceRecord> = (0..2_500)
        .map(|i| call(&format!("big-{i}"), "big", "globex", "t9"))
        .collect();
    trace_row::insert_batch(&mut w, &many).unwrap();
    let user = Subject::User("big".into());
    let dry = purge(&mut w, &user, true, ("ops", "DSR-2", 5)).unwrap();
    assert_eq!(dry.traces, 2_500);
    assert_eq!(
        count(&w, "SELECT count(*) FROM traces WHERE user = 'big'"),
        2_500
    );
    let done = purge(&mut w, &user, false, ("ops", "DSR-2", 5)).unwrap();
    assert_eq!(
        done.traces,
        2_500,
        "three batches of at most {}",
        crate::purge::BATCH
    );
    assert_eq!(
        count(&w, "SELECT count(*) FROM traces WHERE user = 'big'"),
        0
    );
    assert_eq!(
        count(&w, "SELECT count(*) FROM traces"),
        4,
        "the others stay"
    );
    assert_eq!(
        count(
            &w,
            "SELECT count(*) FROM audit_events WHERE action = 'traces.purge'"
        ),
        1,
        "one audit entry for the whole purge"
    );
}
