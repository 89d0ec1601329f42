//! `store_copy`'s tests: every table copied with its ids, an interrupted copy resumed
//! without a row twice, a non-empty target refused, the table list complete.

use super::*;
use crate::testing::TestDb;
use crate::{get_trace, spawn, WriterOptions};
use keel_core::trace::TraceRecord;

fn trace(i: usize) -> TraceRecord {
    let mut t = TraceRecord::new(
        format!("req-{i}"),
        1_764_000_000_000 + i as i64 * 1000,
        "openai",
        "/v1/chat/completions",
    );
    t.model_requested = Some("gpt-4o-mini".into());
    t.user = Some(format!("u{}", i % 5));
    t.input = Some(format!("in {i}"));
    t.input_tokens = Some(i as u64);
    t.latency_ms = 50;
    t
}

/// A SQLite file store with `n` traces and a row or two in tables with identities.
fn source(dir: &tempfile::TempDir, n: usize) -> Store {
    let store = Store::open(dir.path().join("keel.db").to_str().unwrap()).unwrap();
    let (writer, handle) = spawn(&store, WriterOptions::default()).unwrap();
    (0..n).for_each(|i| writer.record(trace(i)));
    handle.shutdown();
    let c = store.writer_conn().unwrap();
    c.execute_batch(
        "INSERT INTO prompt_versions VALUES ('greet', 1, 'h1', '{}', 1, 'ann', 'first', NULL);
         INSERT INTO prompt_labels VALUES ('greet', 'prod', 1, 2);
         INSERT INTO api_keys (id, secret_hash, tenant, created_at_ms, created_by, updated_at_ms)
              VALUES ('k1', 'abc', 'acme', 1, 'ann', 1);
         INSERT INTO incidents (id, title, status, opened_at_ms, opened_by, first_signal_ms)
              VALUES (7, 'spend spike', 'open', 5, 'ann', 5);
         INSERT INTO incident_events (incident_id, at_ms, kind, actor, text)
              VALUES (7, 6, 'note', 'ann', 'looking');
         INSERT INTO audit_events (at_ms, actor, action, target) VALUES (3, 'ann', 'key.create', 'k1');",
    )
    .unwrap();
    store
}

#[test]
fn every_table_is_copied_with_its_ids_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let from = source(&dir, 30);
    let db = TestDb::new();
    let to = Store::open(&db.url()).unwrap();
    let mut seen = Vec::new();
    let report = copy_store(&from, &to, |p| {
        seen.push((p.table.to_string(), p.copied, p.total))
    })
    .unwrap();
    assert!(!report.resumed);
    assert!(report.mismatches().is_empty(), "{:?}", report.tables);
    assert_eq!(report.rollup_traces, 30);
    let count = |t: &str| report.tables.iter().find(|c| c.table == t).unwrap().target;
    assert_eq!(
        (
            count("traces"),
            count("incidents"),
            count("incident_events")
        ),
        (30, 1, 1)
    );
    assert!(seen.contains(&("traces".to_string(), 30, 30)));

    let conn = to.conn().unwrap();
    let reader = from.reader().unwrap();
    assert_eq!(
        get_trace(&conn, "req-4").unwrap(),
        get_trace(&reader, "req-4").unwrap()
    );
    // Ids kept, and new rows numbered past them.
    let next: i64 = conn
        .db()
        .query_row(
            "INSERT INTO incidents (title, status, opened_at_ms, opened_by, first_signal_ms) \
             VALUES ('next', 'open', 9, 'bob', 9) RETURNING id",
            &[],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(next, 8);
    let rowids: (i64, i64) = conn
        .db()
        .query_row("SELECT MIN(rowid), MAX(rowid) FROM traces", &[], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(rowids, (1, 30), "trace rowids are the source's");
    // The rollups equal what the source's writer kept.
    assert_eq!(
        crate::rollup::all_rows(&conn).unwrap(),
        crate::rollup::all_rows(&reader).unwrap()
    );
    // Done: the progress table is gone, and a second copy is refused.
    let err = copy_store(&from, &to, |_| {}).unwrap_err();
    assert!(
        matches!(err, StoreError::CopyTargetNotEmpty { .. }),
        "{err}"
    );
}

#[test]
fn an_interrupted_copy_goes_on_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let from = source(&dir, 2 * BATCH + 300);
    let db = TestDb::new();
    let url = db.url();
    let first = {
        let from_path = from.path().to_string();
        let url = url.clone();
        std::thread::spawn(move || {
            let from = Store::open(&from_path).unwrap();
            let to = Store::open(&url).unwrap();
            copy_store(&from, &to, |p| {
                if p.table == "traces" && p.copied >= BATCH as u64 {
                    panic!("interrupted after the first batch");
                }
            })
        })
        .join()
    };
    assert!(first.is_err(), "the first run was interrupted");
    let to = Store::open(&url).unwrap();
    let report = copy_store(&from, &to, |_| {}).unwrap();
    assert!(report.resumed);
    assert!(report.mismatches().is_empty(), "{:?}", report.tables);
    let conn = to.conn().unwrap();
    let distinct: i64 = conn
        .db()
        .query_row("SELECT COUNT(DISTINCT id) FROM traces", &[], |r| r.get(0))
        .unwrap();
    assert_eq!(distinct, (2 * BATCH + 300) as i64);
    // Every copied trace has its id claimed.
    let claimed: i64 = conn
        .db()
        .query_row("SELECT COUNT(*) FROM trace_ids", &[], |r| r.get(0))
        .unwrap();
    assert_eq!(claimed, distinct);
}

#[test]
fn the_table_list_names_every_table_of_the_schema() {
    let db = TestDb::new();
    let to = Store::open(&db.url()).unwrap();
    let conn = to.conn().unwrap();
    let mut on_pg: Vec<String> = conn
        .db()
        .query(
            "SELECT table_name::TEXT FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1",
            &[],
            |r| r.get(0),
        )
        .unwrap();
    // Rebuilt or filled from the traces rather than copied.
    on_pg.retain(|t| {
        ![
            "schema_migrations",
            "trace_rollups",
            "trace_rollup_dirty",
            "trace_ids",
        ]
        .contains(&t.as_str())
    });
    let mut listed: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    listed.sort();
    assert_eq!(listed, on_pg);
}

#[test]
fn copying_the_wrong_way_is_refused() {
    let a = Store::open(":memory:").unwrap();
    let b = Store::open(":memory:").unwrap();
    assert!(matches!(
        copy_store(&a, &b, |_| {}),
        Err(StoreError::CopyDirection)
    ));
}
