#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The PostgreSQL store: migrated once however many replicas start together, traces
//! written and read back exactly as on SQLite, rollups exact with two writers at once,
//! and a writer that keeps traces while the database is unreachable and says so.
//!
//! Each test has its own database on the server at `KEEL_TEST_POSTGRES` (see
//! `keel_store::testing`), dropped when it ends.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use keel_core::money::Nanos;
use keel_core::trace::{Origin, TraceRecord, TraceStatus};
use keel_store::rollup::{self, Counts};
use keel_store::sql::{Db, Postgres};
use keel_store::testing::{session_setting, CutProxy, TestDb};
use keel_store::{
    count_traces, get_trace, list_traces, spawn, spawn_postgres, Store, StoreError, TraceFilter,
    WriterOptions,
};

const T0: i64 = 1_764_000_451_123;

fn trace(i: usize) -> TraceRecord {
    let mut t = TraceRecord::new(
        format!("req-{i}"),
        T0 + (i as i64) * 61_000,
        "openai",
        "/v1/chat/completions",
    );
    t.model_requested = Some(["gpt-4o-mini", "claude-haiku"][i % 2].into());
    t.user = Some(format!("user-{}", i % 3));
    t.tenant = (i % 4 == 0).then(|| "acme".to_string());
    t.tags = vec!["a".into(), format!("n{i}")];
    t.input = Some(format!("question {i} — ünïcode ?1 '"));
    t.output = Some(format!("answer {i}"));
    t.input_tokens = Some(10 + i as u64);
    t.output_tokens = Some(5);
    t.cost = (i % 5 != 0).then_some(Nanos(1_000 * i as i64));
    t.unpriced = i % 5 == 0;
    t.latency_ms = 100 + i as u64;
    t.stream = i % 2 == 1;
    t.ttft_ms = t.stream.then_some(40);
    if i % 7 == 0 {
        t.status = TraceStatus::Error;
        t.http_status = 502;
        t.error_class = Some("upstream_5xx".into());
    }
    t.origin = if i % 9 == 0 {
        Origin::Eval
    } else {
        Origin::Live
    };
    t
}

fn write_postgres(pg: &std::sync::Arc<Postgres>, traces: Vec<TraceRecord>) {
    let (writer, handle) = spawn_postgres(
        pg.clone(),
        WriterOptions {
            max_batch: 16,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    traces.into_iter().for_each(|t| writer.record(t));
    let stats = handle.shutdown();
    assert_eq!(stats.dropped_total, 0);
}

#[test]
fn replicas_opening_a_new_database_together_migrate_it_once() {
    let db = TestDb::new();
    let url = db.url();
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Postgres::open(&url))
        })
        .collect();
    let pools: Vec<_> = opened
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    let conn = pools[0].conn().unwrap();
    let applied: Vec<(i64, String)> = Db::from(&conn)
        .query(
            "SELECT version, name FROM schema_migrations ORDER BY version",
            &[],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        applied,
        vec![
            (28, "0028_baseline".to_string()),
            (29, "0029_traces_by_day".to_string())
        ]
    );
    assert_eq!(pools[3].schema_version().unwrap(), 29);
    // Opening again finds nothing to do.
    Postgres::open(&url).unwrap();
    assert_eq!(count_traces(&conn).unwrap(), 0);
}

#[test]
fn a_store_written_by_a_newer_keel_is_refused_with_the_versions() {
    let db = TestDb::new();
    let pg = Postgres::open(&db.url()).unwrap();
    let conn = pg.conn().unwrap();
    Db::from(&conn)
        .batch("INSERT INTO schema_migrations VALUES (999, '0999_future', 'x')")
        .unwrap();
    let err = Postgres::open(&db.url()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 999,
                supported: 29,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.to_string().contains("password"));
}

#[test]
fn a_bad_url_or_an_unreachable_server_says_what_to_fix() {
    let err = Postgres::new("postgres://u@host:notaport/db").unwrap_err();
    assert!(err.to_string().contains("postgres://user"), "{err}");
    let pg = Postgres::new("postgres://keel:secret@127.0.0.1:1/nowhere").unwrap();
    let err = pg.conn().unwrap_err().to_string();
    assert!(err.contains("postgres://keel@127.0.0.1:1/nowhere"), "{err}");
    assert!(
        !err.contains("secret"),
        "the password is never shown: {err}"
    );
}

#[test]
fn keels_sessions_run_without_jit_unless_the_url_asks_for_it() {
    let db = TestDb::new();
    let url = db.url();
    assert_eq!(session_setting(&url, "jit"), "off");
    // Other options in the URL are kept beside it.
    let with_options = format!("{url}?options=-c%20work_mem%3D8MB");
    assert_eq!(session_setting(&with_options, "jit"), "off");
    assert_eq!(session_setting(&with_options, "work_mem"), "8MB");
    // A URL that sets jit itself is obeyed.
    let jit_on = format!("{url}?options=-c%20jit%3Don");
    assert_eq!(session_setting(&jit_on, "jit"), "on");
}

#[test]
fn traces_read_back_from_postgres_exactly_as_from_sqlite() {
    let db = TestDb::new();
    let pg = Postgres::open(&db.url()).unwrap();
    let mut traces: Vec<TraceRecord> = (0..60).map(trace).collect();
    // A caller's reused request id: stored under a fresh id, the caller's kept.
    let mut reused = trace(3);
    reused.started_at_ms += 5;
    traces.push(reused);
    write_postgres(&pg, traces.clone());

    let sqlite = Store::open(":memory:").unwrap();
    let (writer, handle) = spawn(&sqlite, WriterOptions::default()).unwrap();
    traces.into_iter().for_each(|t| writer.record(t));
    handle.shutdown();

    let conn = pg.conn().unwrap();
    let reader = sqlite.reader().unwrap();
    assert_eq!(count_traces(&conn).unwrap(), 61);
    let filters = [
        TraceFilter::default(),
        TraceFilter {
            limit: 0,
            ..TraceFilter::default()
        },
        TraceFilter {
            limit: 0,
            offset: 50,
            ..TraceFilter::default()
        },
        TraceFilter {
            limit: 7,
            offset: 3,
            ..TraceFilter::default()
        },
        TraceFilter {
            user: Some("user-1".into()),
            ..TraceFilter::default()
        },
        TraceFilter {
            model: Some("claude-haiku".into()),
            status: Some(TraceStatus::Error),
            ..TraceFilter::default()
        },
        TraceFilter {
            origin: Some(Origin::Eval),
            ..TraceFilter::default()
        },
        TraceFilter {
            min_cost_nanos: Some(20_000),
            max_latency_ms: Some(150),
            ..TraceFilter::default()
        },
        TraceFilter {
            since_ms: Some(T0 + 600_000),
            until_ms: Some(T0 + 1_800_000),
            tenant: Some("acme".into()),
            ..TraceFilter::default()
        },
    ];
    for f in &filters {
        let mut on_pg = list_traces(&conn, f).unwrap();
        let mut on_sqlite = list_traces(&reader, f).unwrap();
        // The reused id's fresh id differs between the two stores.
        for t in on_pg.iter_mut().chain(on_sqlite.iter_mut()) {
            if t.id.starts_with("0") {
                t.id = "fresh".into();
            }
        }
        assert_eq!(on_pg, on_sqlite, "filter {f:?}");
        assert!(
            !on_pg.is_empty(),
            "filter {f:?} matched nothing: not a useful comparison"
        );
    }
    let one = get_trace(&conn, "req-7").unwrap().unwrap();
    assert_eq!(one, get_trace(&reader, "req-7").unwrap().unwrap());
    assert_eq!(one.input.as_deref(), Some("question 7 — ünïcode ?1 '"));
    assert_eq!(one.tags, vec!["a".to_string(), "n7".to_string()]);
    assert_eq!(
        keel_store::reused_request_id(&conn, "req-3", 10)
            .unwrap()
            .len(),
        1
    );
    assert!(get_trace(&conn, "nope").unwrap().is_none());
}

type Rows = HashMap<rollup::RowKey, Counts>;

#[test]
fn two_replicas_writing_at_once_keep_the_rollups_exact() {
    let db = TestDb::new();
    let a = Postgres::open(&db.url()).unwrap();
    let b = Postgres::open(&db.url()).unwrap();
    let writers: Vec<_> = [(a.clone(), 0), (b, 1)]
        .into_iter()
        .map(|(pg, replica)| {
            std::thread::spawn(move || {
                // The same buckets from both replicas, interleaved in time.
                write_postgres(
                    &pg,
                    (0..400).filter(|i| i % 2 == replica).map(trace).collect(),
                );
            })
        })
        .collect();
    writers.into_iter().for_each(|w| w.join().unwrap());

    let conn = a.conn().unwrap();
    let kept: Rows = rollup::all_rows(&conn).unwrap();
    let all_day: u64 = kept
        .iter()
        .filter(|(k, _)| k.0 == rollup::DAY_MS && k.3 == "all")
        .map(|(_, c)| c.requests)
        .sum();
    assert_eq!(
        all_day, 400,
        "every trace counted once in the daily (all) rows"
    );
    Db::from(&conn)
        .transaction(|tx| rollup::rebuild_all(tx))
        .unwrap();
    let rebuilt: Rows = rollup::all_rows(&conn).unwrap();
    assert_eq!(kept.len(), rebuilt.len());
    assert_eq!(
        kept, rebuilt,
        "the rollups the writers kept equal a rebuild from the traces"
    );
}

#[test]
fn a_deleted_trace_marks_its_day_and_the_writer_recomputes_it() {
    let db = TestDb::new();
    let pg = Postgres::open(&db.url()).unwrap();
    write_postgres(&pg, (0..30).map(trace).collect());
    let conn = pg.conn().unwrap();
    Db::from(&conn)
        .execute("DELETE FROM traces WHERE id = ?1", &["req-4".into()])
        .unwrap();
    let marked: i64 = Db::from(&conn)
        .query_row("SELECT COUNT(*) FROM trace_rollup_dirty", &[], |r| r.get(0))
        .unwrap();
    assert_eq!(marked, 1, "the trigger marked the trace's day");
    // The next batch's upkeep recomputes it.
    write_postgres(&pg, vec![trace(100)]);
    let kept = rollup::all_rows(&conn).unwrap();
    Db::from(&conn)
        .transaction(|tx| rollup::rebuild_all(tx))
        .unwrap();
    assert_eq!(kept, rollup::all_rows(&conn).unwrap());
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn while_the_database_is_unreachable_traces_wait_and_the_store_reports_degraded() {
    let db = TestDb::new();
    Postgres::open(&db.url()).unwrap();
    let proxy = CutProxy::start(TestDb::server_addr());
    let pg = Postgres::new(&db.url_via(&proxy.addr)).unwrap();
    let (writer, handle) = spawn_postgres(
        pg,
        WriterOptions {
            capacity: 500,
            max_batch: 50,
            full_wait: Duration::ZERO,
        },
    )
    .unwrap();
    for i in 0..40 {
        writer.record(trace(i));
    }
    wait_for("the first traces", Duration::from_secs(10), || {
        writer.written_total() == 40
    });
    assert!(!writer.store_degraded());

    proxy.cut();
    for i in 40..240 {
        writer.record(trace(i));
    }
    wait_for("the writer to notice", Duration::from_secs(10), || {
        writer.store_degraded()
    });
    assert!(writer.store_error().is_some());
    assert_eq!(writer.written_total(), 40);
    assert_eq!(
        writer.dropped_total(),
        0,
        "the queue absorbs what it can hold"
    );
    // Past the queue's room, records are dropped and counted, never blocking.
    for i in 240..1000 {
        writer.record(trace(i));
    }
    // 960 offered since the cut: the queue holds 500, the batch being retried up to 50.
    let dropped = writer.dropped_total();
    assert!((410..=460).contains(&dropped), "dropped {dropped}");

    proxy.restore();
    wait_for("the writer to recover", Duration::from_secs(20), || {
        writer.written_total() + writer.dropped_total() == 1000
    });
    assert!(!writer.store_degraded());
    let stats = handle.shutdown();
    let direct = Postgres::new(&db.url()).unwrap();
    let conn = direct.conn().unwrap();
    assert_eq!(count_traces(&conn).unwrap(), stats.written_total);
    assert_eq!(stats.written_total + stats.dropped_total, 1000);
    assert!(
        stats.written_total >= 540,
        "written {}",
        stats.written_total
    );
}
