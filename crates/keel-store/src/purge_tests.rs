//! Erasure: a user's traces go with everything derived from them; other users' stay; a
//! dry run changes nothing; the purge is audited without the data; rollups match what
//! remains.

use keel_core::trace::TraceRecord;

use crate::purge::{purge, PurgeCounts, Subject, ACTION};
use crate::testing::{stores, TestDb};
use crate::{trace_row, values, Conn, Store};

fn call(id: &str, user: &str, tenant: &str, otel: &str) -> TraceRecord {
    let mut t = TraceRecord::new(id.into(), 1_000_000, "openai", "/v1/chat/completions");
    t.user = Some(user.into());
    t.tenant = Some(tenant.into());
    t.otel_trace_id = Some(otel.into());
    t.input = Some(format!("secret of {user}"));
    t
}

/// Each backend's store (with its database's guard) and a connection to it, seeded.
fn seeded() -> Vec<(&'static str, Store, Option<TestDb>, Conn)> {
    stores()
        .into_iter()
        .map(|(backend, store, db)| {
            let w = store.conn().unwrap();
            seed(&w);
            (backend, store, db, w)
        })
        .collect()
}

fn seed(w: &Conn) {
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
    trace_row::insert_batch(w, &traces).unwrap();
    w.db().batch(
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
}

fn count(c: &Conn, sql: &str) -> i64 {
    c.db().query_row(sql, &[], |r| r.get(0)).unwrap()
}

#[test]
fn a_users_traces_go_with_what_derives_from_them() {
    for (backend, _store, _db, w) in seeded() {
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
        let dry = purge(&w, &user, true, ("ops", "DSR-1", 5)).unwrap();
        assert_eq!(dry, want, "{backend}");
        assert_eq!(
            count(&w, "SELECT count(*) FROM traces"),
            4,
            "{backend}: a dry run changes nothing"
        );
        assert_eq!(count(&w, "SELECT count(*) FROM audit_events"), 0);

        let done = purge(&w, &user, false, ("ops", "DSR-1", 5)).unwrap();
        assert_eq!(done, want, "{backend}");
        assert_eq!(count(&w, "SELECT count(*) FROM traces"), 1, "{backend}");
        assert_eq!(
            count(&w, "SELECT count(*) FROM traces WHERE input LIKE '%u1%'"),
            0
        );
        assert_eq!(
            count(&w, "SELECT count(*) FROM scores"),
            1,
            "{backend}: u2's score stays"
        );
        assert_eq!(count(&w, "SELECT count(*) FROM review_claims"), 0);
        assert_eq!(
            count(&w, "SELECT count(*) FROM app_spans WHERE trace_id = 't2'"),
            1
        );
        assert_eq!(count(&w, "SELECT count(*) FROM responses"), 1);
        // Audited, with the counts and not the data.
        let (target, details): (String, String) = w
            .db()
            .query_row(
                "SELECT target, details_json FROM audit_events WHERE action = ?1",
                &values![ACTION],
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
            1,
            "{backend}"
        );
        assert_eq!(count(&w, "SELECT count(*) FROM trace_rollup_dirty"), 0);
    }
}

#[test]
fn a_tenant_purge_takes_every_response_it_stored() {
    for (backend, _store, _db, w) in seeded() {
        w.db()
            .batch(
                "INSERT INTO responses (id, tenant, trace_id, created_ms, response_json, conversation_json)
                   VALUES ('resp_x', 'acme', 'gone-already', 1, '{}', '[]');",
            )
            .unwrap();
        let tenant = Subject::Tenant("acme".into());
        let dry = purge(&w, &tenant, true, ("ops", "offboarding", 5)).unwrap();
        assert_eq!((dry.traces, dry.responses), (4, 3), "{backend}");
        let done = purge(&w, &tenant, false, ("ops", "offboarding", 5)).unwrap();
        assert_eq!(done.traces, 4, "{backend}: the judge call of a goes too");
        assert_eq!(done.responses, 3, "{backend}");
        assert_eq!(count(&w, "SELECT count(*) FROM responses"), 0);
        let nobody = purge(&w, &Subject::Session("none".into()), false, ("ops", "x", 6)).unwrap();
        assert_eq!(nobody, PurgeCounts::default(), "{backend}");
    }
}

#[test]
fn a_large_subject_goes_in_batches_and_a_dry_run_counts_it_all() {
    for (backend, _store, _db, w) in seeded() {
        let many: Vec<TraceRecord> = (0..2_500)
            .map(|i| call(&format!("big-{i}"), "big", "globex", "t9"))
            .collect();
        trace_row::insert_batch(&w, &many).unwrap();
        let user = Subject::User("big".into());
        let dry = purge(&w, &user, true, ("ops", "DSR-2", 5)).unwrap();
        assert_eq!(dry.traces, 2_500, "{backend}");
        assert_eq!(
            count(&w, "SELECT count(*) FROM traces WHERE \"user\" = 'big'"),
            2_500
        );
        let done = purge(&w, &user, false, ("ops", "DSR-2", 5)).unwrap();
        assert_eq!(
            done.traces,
            2_500,
            "{backend}: three batches of at most {}",
            crate::purge::BATCH
        );
        assert_eq!(
            count(&w, "SELECT count(*) FROM traces WHERE \"user\" = 'big'"),
            0
        );
        assert_eq!(
            count(&w, "SELECT count(*) FROM traces"),
            4,
            "{backend}: the others stay"
        );
        assert_eq!(
            count(
                &w,
                "SELECT count(*) FROM audit_events WHERE action = 'traces.purge'"
            ),
            1,
            "{backend}: one audit entry for the whole purge"
        );
    }
}

#[test]
fn a_purge_runs_on_the_mut_connection_the_cli_holds() {
    // The CLI passes a `&mut Connection`.
    let store = Store::open(":memory:").unwrap();
    let mut c = store.writer_conn().unwrap();
    let done = purge(&mut c, &Subject::User("x".into()), false, ("ops", "x", 1)).unwrap();
    assert_eq!(done, PurgeCounts::default());
}
