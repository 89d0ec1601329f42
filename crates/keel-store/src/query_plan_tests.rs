//! The query plans behind trace search: on a store with planner statistics (as the
//! writer keeps them), every filter of the dashboard's trace page, alone and in pairs,
//! reads through an index in newest-first order and never sorts its matches — the
//! property that keeps a search on millions of traces proportional to the rows it
//! scans before the page is full, not to the store.
//!
//! (Learnt here: an index on `(started_at_ms, cost_nanos, latency_ms, status)` to test
//! range filters without reading rows made SQLite sort every match instead — its
//! entries no longer end in the rowid of `ORDER BY started_at_ms DESC, rowid DESC`.)

use keel_core::trace::{Origin, TraceStatus};
use rusqlite::{params_from_iter, Connection};

use super::*;
use crate::db::Store;
use crate::synth::{generate, SynthOptions};

/// One value for each filter the trace page offers (the `id` filter aside: it matches
/// one or two rows, which SQLite rightly sorts after reading them by `traces_id`).
type SetFilter = fn(&mut TraceFilter);

fn filters() -> Vec<(&'static str, SetFilter)> {
    vec![
        ("since", |f| f.since_ms = Some(1_000)),
        ("user", |f| f.user = Some("user-00-001".into())),
        ("session", |f| f.session = Some("sess-00-001-1".into())),
        ("tenant", |f| f.tenant = Some("tenant-03".into())),
        ("feature", |f| f.feature = Some("search".into())),
        ("model", |f| f.model = Some("gpt-4o".into())),
        ("function", |f| f.function = Some("support-answer".into())),
        ("variant", |f| f.variant = Some("control".into())),
        ("error_class", |f| {
            f.error_class = Some("upstream_timeout".into())
        }),
        ("prompt_version", |f| f.prompt_version = Some(2)),
        ("status", |f| f.status = Some(TraceStatus::Error)),
        ("origin live", |f| f.origin = Some(Origin::Live)),
        ("origin eval", |f| f.origin = Some(Origin::Eval)),
        ("min_cost", |f| f.min_cost_nanos = Some(50_000_000)),
        ("max_cost", |f| f.max_cost_nanos = Some(1_000)),
        ("min_latency", |f| f.min_latency_ms = Some(5_000)),
        ("max_latency", |f| f.max_latency_ms = Some(20)),
    ]
}

fn plan(conn: &Connection, filter: &TraceFilter) -> String {
    let (sql, values) = select_sql(filter);
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let rows = stmt
        .query_map(params_from_iter(values), |r| r.get::<_, String>(3))
        .unwrap();
    rows.collect::<Result<Vec<_>, _>>().unwrap().join(" / ")
}

#[test]
fn every_filter_and_pair_of_filters_reads_an_index_newest_first_without_sorting() {
    let store = Store::open(":memory:").unwrap();
    let w = store.writer_connection().unwrap();
    let opts = SynthOptions {
        count: 5_000,
        days: 30,
        now_ms: 1_764_000_000_000,
        seed: 1,
        batch: 5_000,
    };
    generate(&w, &opts, |_| {}).unwrap();
    let r = store.reader().unwrap();
    let all = filters();
    let mut checked = 0;
    let mut problems: Vec<String> = Vec::new();
    for (i, (a, set_a)) in all.iter().enumerate() {
        for (b, set_b) in all.iter().skip(i) {
            let mut f = TraceFilter {
                limit: 51,
                ..TraceFilter::default()
            };
            set_a(&mut f);
            set_b(&mut f);
            let p = plan(&r, &f);
            // Any sort ("USE TEMP B-TREE") would read every match before the first row.
            if p.contains("TEMP B-TREE")
                || !(p.contains("USING INDEX") || p.contains("USING COVERING INDEX"))
            {
                problems.push(format!("{a} + {b}: {p}"));
            }
            checked += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(checked, all.len() * (all.len() + 1) / 2);
    // The partial index of non-live traffic serves an origin filter.
    let eval = TraceFilter {
        origin: Some(Origin::Eval),
        ..TraceFilter::default()
    };
    assert!(
        plan(&r, &eval).contains("traces_origin"),
        "{}",
        plan(&r, &eval)
    );
    // A range filter alone scans the time index, newest first.
    let costly = TraceFilter {
        min_cost_nanos: Some(1),
        ..TraceFilter::default()
    };
    assert!(
        plan(&r, &costly).contains("traces_started_at"),
        "{}",
        plan(&r, &costly)
    );
}
