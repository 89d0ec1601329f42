#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Traces by day on PostgreSQL (migration 0029): a store made by the previous version
//! is migrated with its traces, rowids and ids; the writer creates each day's partition;
//! ids stay unique across days; a day past the hot window is detached whole, leaving the
//! rollups, the report and the traces in agreement; a row of a day without its
//! partition is refused (there is no default partition).

use keel_core::money::Nanos;
use keel_core::trace::{Origin, TraceRecord, TraceStatus};
use keel_store::partitions::{day_partitions, detach_before};
use keel_store::rollup::{self, DAY_MS};
use keel_store::sql::{Db, Postgres, Value};
use keel_store::testing::TestDb;
use keel_store::{count_traces, spawn, Store, WriterOptions};

/// 2026-11-01T00:00:00Z.
const DAY0: i64 = 1_761_955_200_000;

fn trace(id: &str, at: i64) -> TraceRecord {
    let mut t = TraceRecord::new(id.to_string(), at, "openai", "/v1/chat/completions");
    t.origin = Origin::Live;
    t.status = TraceStatus::Ok;
    t.cost = Some(Nanos(1_000));
    t
}

fn write(store: &Store, traces: Vec<TraceRecord>) {
    let (writer, handle) = spawn(store, WriterOptions::default()).unwrap();
    traces.into_iter().for_each(|t| writer.record(t));
    assert_eq!(handle.shutdown().dropped_total, 0);
}

fn one<T: keel_store::sql::FromValue>(db: Db<'_>, sql: &str) -> T {
    db.query_row(sql, &[], |r| r.get(0)).unwrap()
}

#[test]
fn a_store_at_version_28_is_migrated_with_its_traces_rowids_and_ids() {
    let db = TestDb::new();
    db.migrate_until(28);
    {
        let pg = Postgres::new(&db.url()).unwrap();
        let conn = pg.conn().unwrap();
        let d = Db::from(&conn);
        for (i, day) in [0, 0, 1, 3].iter().enumerate() {
            d.execute(
                "INSERT INTO traces (id, started_at_ms, api, endpoint, stream, unpriced, latency_ms, status, http_status)
                 VALUES (?1, ?2, 'chat', '/v1/chat/completions', 0, 0, 5, 'ok', 200)",
                &[Value::from(format!("old-{i}")), Value::Int(DAY0 + day * DAY_MS + 1000)],
            )
            .unwrap();
        }
    }
    let store = Store::open(&db.url()).unwrap();
    let conn = store.conn().unwrap();
    let d = conn.db();
    assert_eq!(store.schema_version(), 29);
    assert_eq!(count_traces(&conn).unwrap(), 4);
    let days: Vec<String> = day_partitions(d)
        .unwrap()
        .into_iter()
        .map(|p| p.day)
        .collect();
    assert_eq!(days, ["2025-11-01", "2025-11-02", "2025-11-04"]);
    assert_eq!(one::<i64>(d, "SELECT COUNT(*) FROM trace_ids"), 4);
    let rowids: Vec<i64> = d
        .query("SELECT rowid FROM traces ORDER BY rowid", &[], |r| r.get(0))
        .unwrap();
    assert_eq!(rowids, [1, 2, 3, 4]);
    // New traces go on after the migrated ones, and a migrated id is still taken.
    write(
        &store,
        vec![
            trace("new-1", DAY0 + 2 * DAY_MS),
            trace("old-0", DAY0 + 5 * DAY_MS),
        ],
    );
    let after: Vec<(i64, String, Option<String>)> = d
        .query(
            "SELECT rowid, id, client_request_id FROM traces WHERE rowid > 4 ORDER BY rowid",
            &[],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|(rowid, _, _)| *rowid > 4));
    assert_eq!(after[0].1, "new-1");
    assert_ne!(
        after[1].1, "old-0",
        "a taken id on another day gets a fresh one"
    );
    assert_eq!(after[1].2.as_deref(), Some("old-0"));
}

#[test]
fn old_days_are_detached_whole_and_every_figure_agrees_after() {
    let db = TestDb::new();
    let store = Store::open(&db.url()).unwrap();
    let traces: Vec<TraceRecord> = (0..40)
        .map(|i| trace(&format!("t-{i}"), DAY0 + (i % 4) * DAY_MS + i * 1000))
        .collect();
    write(&store, traces);
    let conn = store.conn().unwrap();
    let d = conn.db();
    assert_eq!(day_partitions(d).unwrap().len(), 4);

    // A dry run counts and changes nothing.
    let dry = detach_before(d, DAY0 + 2 * DAY_MS, true, "test", DAY0).unwrap();
    assert_eq!((dry.days.len(), dry.traces), (2, 20));
    assert_eq!(count_traces(&conn).unwrap(), 40);

    let done = detach_before(d, DAY0 + 2 * DAY_MS + 5, false, "test", DAY0).unwrap();
    assert_eq!(done.before, "2025-11-03");
    let tables: Vec<&str> = done.days.iter().map(|p| p.table.as_str()).collect();
    assert_eq!(
        tables,
        ["traces_archived_d20251101", "traces_archived_d20251102"]
    );
    assert_eq!(done.traces, 20);
    assert_eq!(count_traces(&conn).unwrap(), 20);
    // The archived rows are still in the database, out of every figure.
    assert_eq!(
        one::<i64>(d, "SELECT COUNT(*) FROM traces_archived_d20251101"),
        10
    );
    assert_eq!(one::<i64>(d, "SELECT COUNT(*) FROM trace_ids"), 20);
    let kept = rollup::all_rows(d).unwrap();
    let day_requests: u64 = kept
        .iter()
        .filter(|(k, _)| k.0 == DAY_MS && k.3 == "all")
        .map(|(_, c)| c.requests)
        .sum();
    assert_eq!(day_requests, 20, "the rollups lost the detached days");
    let audit = keel_store::list_audit(d, 0, 0).unwrap();
    assert!(
        audit.iter().any(|e| e.action == "store.detach"),
        "{audit:?}"
    );

    // A late trace for a detached day gets a new partition of that day.
    write(&store, vec![trace("late", DAY0 + 10)]);
    assert_eq!(count_traces(&conn).unwrap(), 21);
    // Nothing left before the cutoff but the late day: detaching again takes it.
    let again = detach_before(d, DAY0 + DAY_MS, false, "test", DAY0).unwrap();
    assert_eq!(again.traces, 1);
    assert_eq!(again.days[0].table, "traces_archived_d20251101_2");
}

/// The writer remembers which days' partitions exist and stops asking for them; a day
/// detached behind its back (here while it runs) is made again on the next batch of
/// that day, and nothing is dropped.
#[test]
fn a_running_writer_makes_a_day_again_after_it_was_detached() {
    let db = TestDb::new();
    let store = Store::open(&db.url()).unwrap();
    let conn = store.conn().unwrap();
    let d = conn.db();
    let (writer, handle) = spawn(&store, WriterOptions::default()).unwrap();
    let written = |n: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while writer.written_total() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer wrote {} of {n}",
                writer.written_total()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    writer.record(trace("first", DAY0 + 10));
    written(1);
    writer.record(trace("second", DAY0 + 20));
    written(2);
    let detached = detach_before(d, DAY0 + DAY_MS, false, "test", DAY0).unwrap();
    assert_eq!(detached.traces, 2);
    writer.record(trace("after-detach", DAY0 + 30));
    written(3);
    assert_eq!(writer.dropped_total(), 0);
    drop(writer);
    assert_eq!(handle.shutdown().dropped_total, 0);
    assert_eq!(count_traces(&conn).unwrap(), 1);
    assert_eq!(
        one::<String>(d, "SELECT id FROM traces_d20251101"),
        "after-detach"
    );
}

#[test]
fn a_row_for_a_day_without_its_partition_is_refused_until_the_day_is_made() {
    let db = TestDb::new();
    let store = Store::open(&db.url()).unwrap();
    let conn = store.conn().unwrap();
    let d = conn.db();
    let insert = |d: Db<'_>| {
        d.execute(
            "INSERT INTO traces (id, started_at_ms, api, endpoint, stream, unpriced, latency_ms, status, http_status)
             VALUES ('direct', ?1, 'chat', '/v1/chat/completions', 0, 0, 5, 'ok', 200)",
            &[Value::Int(DAY0 + 500)],
        )
    };
    // No default partition (see migration 0029): the writer makes the day first.
    assert!(insert(d).is_err());
    write(&store, vec![trace("via-writer", DAY0 + 900)]);
    insert(d).unwrap();
    assert_eq!(one::<i64>(d, "SELECT COUNT(*) FROM traces_d20251101"), 2);
}

#[test]
fn a_sqlite_store_says_partitions_are_postgresqls() {
    let store = Store::open(":memory:").unwrap();
    let conn = store.conn().unwrap();
    let err = detach_before(conn.db(), DAY0, true, "test", DAY0).unwrap_err();
    assert!(err.to_string().contains("[retention]"), "{err}");
}
