#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The rollups behind the dashboard's overview: kept by the writer batch by batch, they
//! must equal a rebuild from the traces and agree with the exact report over the same
//! window; deleting traces must be followed; the synthetic generator's store must read
//! back the totals it wrote. Each runs on SQLite and PostgreSQL (the synthetic
//! generator writes SQLite only: on PostgreSQL the traffic is spread by `spread`).

use std::collections::HashMap;

use keel_core::money::Nanos;
use keel_core::trace::{Origin, TraceRecord, TraceStatus};
use keel_store::overview::{aligned_window, overview};
use keel_store::rollup::{self, Counts};
use keel_store::sql::{Db, Dialect};
use keel_store::synth::{generate, SynthOptions};
use keel_store::testing::stores;
use keel_store::{build_report, spawn, GroupRow, GroupStats, Store, WriterOptions};

/// 2025-11-24 15:07:31.123 UTC: not on any bucket boundary.
const NOW: i64 = 1_764_000_451_123;
const HOUR: i64 = 3_600_000;

type Rows = HashMap<rollup::RowKey, Counts>;

fn rows(store: &Store) -> Rows {
    rollup::all_rows(&store.conn().unwrap()).unwrap()
}

fn rebuilt(store: &Store) -> Rows {
    let conn = store.conn().unwrap();
    conn.db().transaction(|tx| rollup::rebuild_all(tx)).unwrap();
    rows(store)
}

/// `n` live traces spread over the 31 days before `NOW`, of several models, tenants,
/// features and functions, written by the writer thread in batches of 997 (what the
/// synthetic generator does on SQLite).
fn spread(store: &Store, n: i64) {
    let (writer, handle) = spawn(
        store,
        WriterOptions {
            max_batch: 997,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let span = 31 * 24 * HOUR;
    for i in 0..n {
        let at = NOW - span + span * i / n + (i * 7919) % 60_000;
        let mut t = TraceRecord::new(format!("s{i}"), at, "openai", "/v1/chat/completions");
        t.model_requested = Some(format!("model-{}", i % 5));
        t.tenant = Some(format!("tenant-{}", i % 13));
        t.feature = (i % 3 != 0).then(|| format!("feature-{}", i % 4));
        t.function = (i % 3 == 0).then(|| "f".to_string());
        t.variant = (i % 3 == 0).then(|| ["control", "candidate"][(i % 2) as usize].to_string());
        t.latency_ms = ((i * 131) % 9000) as u64;
        t.stream = i % 5 < 2;
        t.ttft_ms = Some(((i * 17) % 700) as u64);
        t.input_tokens = Some((i % 400) as u64);
        t.output_tokens = Some((i % 90) as u64);
        match i % 37 {
            0 => t.unpriced = true,
            1 => t.status = TraceStatus::Error,
            2 => t.origin = Origin::Eval,
            _ => t.cost = Some(Nanos(500 + i % 1000)),
        }
        writer.record(t);
    }
    assert_eq!(handle.shutdown().written_total, n as u64);
}

/// Hand-made traces around the window's edges and of every kind the rollups tell
/// apart, written by the writer thread in batches of 7.
fn edge_traces(store: &Store) {
    let (writer, handle) = spawn(
        store,
        WriterOptions {
            max_batch: 7,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let (since, until) = aligned_window(NOW, 24 * HOUR);
    for i in 0..300i64 {
        let at = match i % 5 {
            0 => since + i,            // the first 5-minute bucket
            1 => since - 1 - i,        // just before the window
            2 => until - 1 - i,        // the last bucket
            3 => since + 7 * HOUR + i, // the body
            _ => NOW - 40 * HOUR + i,  // far before
        };
        let mut t = TraceRecord::new(format!("e{i}"), at, "openai", "/v1/chat/completions");
        t.model_requested = (i % 7 != 0).then(|| format!("m{}", i % 3));
        t.function = (i % 4 == 0).then(|| "f".to_string());
        t.variant = match i % 8 {
            0 => Some("control".to_string()),
            4 => Some("candidate".to_string()),
            _ => None,
        };
        t.feature = (i % 6 != 0).then(|| ["", "chat"][(i % 2) as usize].to_string());
        t.tenant = Some(format!("t{}", i % 4));
        t.latency_ms = (i as u64 * 37) % 5000;
        t.stream = i % 3 == 0;
        t.ttft_ms = Some(i as u64 % 90);
        t.input_tokens = (i % 9 != 0).then_some(i as u64);
        t.output_tokens = Some(3);
        match i % 11 {
            0 => t.unpriced = true,
            1 => t.status = TraceStatus::Error,
            2 => t.origin = Origin::Eval,
            3 => t.status = TraceStatus::ClientDisconnected,
            _ => t.cost = Some(Nanos(1000 + i)),
        }
        writer.record(t);
    }
    assert_eq!(handle.shutdown().written_total, 300);
}

fn close(estimate: u64, exact: u64) -> bool {
    estimate.abs_diff(exact) as f64 <= (exact as f64 / 32.0).max(1.0)
}

fn same(what: &str, rolled: &GroupStats, exact: &GroupStats) {
    let counts = |s: &GroupStats| {
        (
            s.requests,
            s.errors,
            s.input_tokens,
            s.output_tokens,
            s.cost,
            s.unpriced_calls,
            s.tokens_per_call.map(|t| (t * 1000.0).round() as i64),
        )
    };
    assert_eq!(counts(rolled), counts(exact), "{what}");
    let (r, e) = (rolled.latency_ms, exact.latency_ms);
    assert!(
        close(r.p50, e.p50) && close(r.p95, e.p95) && close(r.p99, e.p99),
        "{what}: latency {r:?} vs {e:?}"
    );
    match (rolled.ttft_ms, exact.ttft_ms) {
        (None, None) => {}
        (Some(r), Some(e)) => assert!(close(r.p50, e.p50) && close(r.p95, e.p95), "{what}"),
        other => panic!("{what}: ttft {other:?}"),
    }
}

fn same_rows(what: &str, rolled: &[GroupRow], exact: &[GroupRow]) {
    let names = |rows: &[GroupRow]| rows.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(rolled), names(exact), "{what}");
    for (r, e) in rolled.iter().zip(exact) {
        same(&format!("{what} {}", r.name), &r.stats, &e.stats);
    }
}

/// The overview over each window against the exact report over the same window.
fn check_overview(conn: Db<'_>) {
    for (span, buckets) in [
        (HOUR, 12),
        (24 * HOUR, 24),
        (7 * 24 * HOUR, 28),
        (30 * 24 * HOUR, 30),
    ] {
        let o = overview(conn, NOW, span, buckets).unwrap();
        assert_eq!((o.since_ms, o.until_ms), aligned_window(NOW, span));
        let exact = build_report(conn, o.since_ms, o.until_ms, 5).unwrap();
        same("totals", &o.totals, &exact.totals);
        same_rows("model", &o.by_model, &exact.by_model);
        same_rows("feature", &o.by_feature, &exact.by_feature);
        same_rows("tenant", &o.by_tenant, &exact.by_tenant);
        let functions =
            keel_store::report::function_breakdown(conn, o.since_ms, o.until_ms).unwrap();
        same_rows("function", &o.by_function, &functions);
        let variants = keel_store::report::variant_breakdown(conn, o.since_ms, o.until_ms).unwrap();
        let rolled = keel_store::overview::variant_breakdown(conn, NOW, span).unwrap();
        same_rows("variant", &rolled, &variants);
        assert_eq!(o.timeline.len(), buckets);
        let width = span / buckets as i64;
        for b in &o.timeline {
            let exact = build_report(conn, b.start_ms, b.start_ms + width, 1).unwrap();
            assert_eq!(
                (b.requests, b.errors, b.cost, b.unpriced),
                (
                    exact.totals.requests,
                    exact.totals.errors,
                    exact.totals.cost.nanos(),
                    exact.totals.unpriced_calls
                ),
                "bucket at {}",
                b.start_ms
            );
        }
    }
}

/// A SQLite store in a file (the tests reopen it), or the PostgreSQL store.
fn file_or_pg(dir: &tempfile::TempDir, backend: &str, pg: Store) -> (Store, String) {
    if backend == "sqlite" {
        let path = dir.path().join("keel.db").to_str().unwrap().to_string();
        (Store::open(&path).unwrap(), path)
    } else {
        let url = pg.path().to_string();
        (pg, url)
    }
}

#[test]
fn rollups_kept_batch_by_batch_equal_a_rebuild_and_the_exact_report() {
    for (backend, store, db) in stores() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = file_or_pg(&dir, backend, store);
        // Synthetic traffic in batches of 997, then edge cases by the writer thread.
        if db.is_none() {
            let w = store.writer_conn().unwrap();
            let opts = SynthOptions {
                count: 6_000,
                days: 31,
                now_ms: NOW,
                seed: 7,
                batch: 997,
            };
            assert_eq!(generate(&w, &opts, |_| {}).unwrap(), 6_000);
        } else {
            spread(&store, 6_000);
        }
        edge_traces(&store);

        let kept = rows(&store);
        assert!(kept.len() > 1000, "{backend}: {}", kept.len());
        let conn = store.conn().unwrap();
        check_overview(conn.db());
        let variants = keel_store::overview::variant_breakdown(&conn, NOW, 24 * HOUR).unwrap();
        assert!(
            variants.iter().any(|r| r.name == "f\u{1f}candidate"),
            "{backend}: {variants:?}"
        );
        assert_eq!(
            kept,
            rebuilt(&store),
            "{backend}: the writer's rollups differ from a rebuild"
        );
    }
}

#[test]
fn deleted_traces_leave_the_rollups_at_the_next_batch_or_open() {
    for (backend, store, _db) in stores() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = file_or_pg(&dir, backend, store);
        edge_traces(&store);
        let before = rows(&store);
        let (since, _) = aligned_window(NOW, 24 * HOUR);

        // Deleted while no writer runs: on SQLite repaired when the store is opened (a
        // PostgreSQL store is shared by replicas: its writers repair after a batch).
        let w = store.conn().unwrap();
        let gone = w
            .db()
            .execute(
                "DELETE FROM traces WHERE started_at_ms < ?1",
                &[since.into()],
            )
            .unwrap();
        assert!(gone > 0);
        drop(w);
        let store = if backend == "sqlite" {
            drop(store);
            let store = Store::open(&path).unwrap();
            let after_open = rows(&store);
            assert_ne!(after_open, before);
            assert_eq!(after_open, rebuilt(&store));
            store
        } else {
            store
        };
        let w = store.conn().unwrap();

        // Deleted while the writer runs: repaired after its next batch.
        w.db()
            .execute("DELETE FROM traces WHERE id LIKE 'e1%'", &[])
            .unwrap();
        let (writer, handle) = spawn(&store, WriterOptions::default()).unwrap();
        writer.record(TraceRecord::new(
            "late".into(),
            NOW,
            "openai",
            "/v1/chat/completions",
        ));
        handle.shutdown();
        let after_batch = rows(&store);
        assert_ne!(after_batch, before, "{backend}");
        assert_eq!(after_batch, rebuilt(&store), "{backend}");
        check_overview(store.conn().unwrap().db());
    }
}

#[test]
fn a_generated_store_reads_back_the_totals_it_wrote() {
    let store = Store::open(":memory:").unwrap();
    let w = store.writer_conn().unwrap();
    let opts = SynthOptions {
        count: 20_000,
        days: 30,
        now_ms: NOW,
        seed: 42,
        batch: 5_000,
    };
    let mut seen = Vec::new();
    assert_eq!(generate(&w, &opts, |n| seen.push(n)).unwrap(), 20_000);
    assert_eq!(seen, vec![5_000, 10_000, 15_000, 20_000]);
    let r = store.reader().unwrap();
    let raw = |sql: &str| -> i64 { r.query_row(sql, [], |row| row.get(0)).unwrap() };
    // Spread over the 30 days, with eval traffic, errors, streams and unpriced calls.
    assert_eq!(raw("SELECT COUNT(*) FROM traces"), 20_000);
    assert!(raw("SELECT MIN(started_at_ms) FROM traces") >= NOW - 30 * 24 * HOUR);
    assert!(raw("SELECT MAX(started_at_ms) FROM traces") < NOW);
    for (sql, share) in [
        ("SELECT COUNT(*) FROM traces WHERE origin = 'eval'", 0.02),
        ("SELECT COUNT(*) FROM traces WHERE status = 'error'", 0.028),
        ("SELECT COUNT(*) FROM traces WHERE stream = 1", 0.4),
        ("SELECT COUNT(*) FROM traces WHERE unpriced = 1", 0.05),
        (
            "SELECT COUNT(*) FROM traces WHERE function IS NOT NULL",
            0.33,
        ),
    ] {
        let got = raw(sql) as f64 / 20_000.0;
        assert!((got - share).abs() < share / 4.0, "{sql}: {got}");
    }
    let o = overview(&r, NOW, 30 * 24 * HOUR, 30).unwrap();
    let live: i64 = r
        .query_row(
            "SELECT COUNT(*) FROM traces WHERE origin = 'live' AND started_at_ms >= ?1 AND started_at_ms < ?2",
            [o.since_ms, o.until_ms],
            |row| row.get(0),
        )
        .unwrap();
    assert!(live > 19_000, "{live}");
    assert_eq!(o.totals.requests as i64, live);
    assert_eq!(o.by_tenant.len(), 40);
    assert_eq!(o.by_model.len(), 5);
    check_overview((&r).into());
}

#[test]
fn a_damaged_rollup_row_never_costs_traces_and_is_recomputed() {
    for (backend, store, _db) in stores() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = file_or_pg(&dir, backend, store);
        edge_traces(&store);
        // Damage every 5-minute row of the live totals: the next batch touching one of
        // them cannot merge into it.
        let w = store.conn().unwrap();
        let garbage = match w.db().dialect() {
            Dialect::Sqlite => "x'ff00ff'",
            Dialect::Postgres => "'\\xff00ff'::bytea",
        };
        let damaged = w
        .db()
        .execute(
            &format!("UPDATE trace_rollups SET latency_hist = {garbage} WHERE dim = 'all' AND res_ms = 300000"),
            &[],
        )
        .unwrap();
        assert!(damaged > 0);
        let (writer, handle) = spawn(&store, WriterOptions::default()).unwrap();
        let (since, until) = aligned_window(NOW, 24 * HOUR);
        for i in 0..20i64 {
            let at = since + (until - since) * i / 20;
            writer.record(TraceRecord::new(
                format!("after-{i}"),
                at,
                "openai",
                "/v1/chat/completions",
            ));
        }
        let report = handle.shutdown();
        assert_eq!(report.written_total, 20, "every trace is kept");
        let conn = store.conn().unwrap();
        let n: i64 = conn
            .db()
            .query_row(
                "SELECT COUNT(*) FROM traces WHERE id LIKE 'after-%'",
                &[],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 20, "{backend}");
        // The batch's days were recomputed from the traces: the rollups equal a rebuild.
        drop(conn);
        assert_eq!(rows(&store), rebuilt(&store), "{backend}");
    }
}
