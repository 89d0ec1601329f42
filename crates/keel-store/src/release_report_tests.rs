//! `release_report`'s tests: traffic, errors, unpriced calls, windows and online quality per
//! release, over seeded stores (on both backends, but online quality and the query
//! plan: SQLite only).

use super::*;
use crate::db::{Conn, Store};
use crate::releases::record_release;
use crate::testing::TestDb;
use crate::trace_row;
use keel_core::trace::{TraceRecord, TraceStatus};
use rusqlite::Connection;

fn release(function: &str, variant: &str, version: i64, temperature: f64) -> Release {
    let mut params = Map::new();
    params.insert("temperature".into(), temperature.into());
    Release::new(
        function,
        variant,
        "support/answer",
        version,
        "hash",
        "fast",
        "mock",
        "mock-1-2024",
        params,
        None,
    )
}

fn served(id: &str, rel: &Release, at: i64, latency_ms: u64) -> TraceRecord {
    let mut t = TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions");
    t.function = Some(rel.function.clone());
    t.variant = Some(rel.variant.clone());
    t.prompt_name = Some(rel.prompt_name.clone());
    t.prompt_version = Some(rel.prompt_version);
    t.release_id = Some(rel.id.clone());
    t.input_tokens = Some(100);
    t.output_tokens = Some(20);
    t.cost = Some(Nanos(1_000));
    t.latency_ms = latency_ms;
    t
}

/// A SQLite store with `releases` recorded at the given times and `traces` written.
fn seeded(releases: &[(&Release, i64)], traces: &[TraceRecord]) -> (Store, Connection) {
    let store = Store::open(":memory:").unwrap();
    let mut w = store.writer_connection().unwrap();
    for (rel, at) in releases {
        assert!(record_release(&w, rel, *at).unwrap());
    }
    trace_row::insert_batch(&mut w, traces).unwrap();
    let r = store.reader().unwrap();
    (store, r)
}

/// The same store on each backend: (backend, connection, store, PostgreSQL guard).
fn seeded_both(
    releases: &[(&Release, i64)],
    traces: &[TraceRecord],
) -> Vec<(&'static str, Conn, Store, Option<TestDb>)> {
    crate::testing::stores()
        .into_iter()
        .map(|(backend, store, db)| {
            let conn = store.conn().unwrap();
            for (rel, at) in releases {
                record(conn.db(), rel, *at);
            }
            trace_row::insert_batch(&conn, traces).unwrap();
            (backend, conn, store, db)
        })
        .collect()
}

/// `record_release` (SQLite only for now), or the same row written on PostgreSQL.
fn record(db: Db<'_>, rel: &Release, at: i64) {
    match db {
        Db::Sqlite(c) => assert!(record_release(c, rel, at).unwrap()),
        Db::Postgres(_) => {
            let n = db
                .execute(
                    "INSERT INTO releases (id, function, variant, prompt_name, prompt_version,
                         prompt_hash, model, provider, upstream_model, params_json, tools_json, created_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    &values![
                        &rel.id,
                        &rel.function,
                        &rel.variant,
                        &rel.prompt_name,
                        rel.prompt_version,
                        &rel.prompt_hash,
                        &rel.model,
                        &rel.provider,
                        &rel.upstream_model,
                        serde_json::to_string(&rel.params).unwrap(),
                        rel.tools.as_ref().map(|t| serde_json::to_string(t).unwrap()),
                        at,
                    ],
                )
                .unwrap();
            assert_eq!(n, 1);
        }
    }
}

fn all<'c>(conn: impl Into<Db<'c>>) -> Vec<ReleaseRow> {
    list_releases(conn, &ReleaseFilter::default()).unwrap()
}

fn ids(rows: &[ReleaseRow]) -> Vec<&str> {
    rows.iter().map(|r| r.release.id.as_str()).collect()
}

#[test]
fn traffic_is_grouped_per_release_with_first_and_last_served() {
    let v1 = release("support-answer", "control", 1, 0.2);
    let v2 = release("support-answer", "candidate", 2, 0.2);
    let mut traces = vec![
        served("a", &v1, 1_000, 100),
        served("b", &v1, 3_000, 300),
        served("c", &v1, 2_000, 200),
        served("d", &v2, 2_500, 50),
    ];
    let mut stream = served("e", &v2, 2_600, 70);
    stream.stream = true;
    stream.ttft_ms = Some(15);
    traces.push(stream);
    // Not a function call: belongs to no release.
    traces.push(TraceRecord::new(
        "raw".into(),
        9_000,
        "openai",
        "/v1/chat/completions",
    ));
    for (backend, conn, _s, _db) in seeded_both(&[(&v1, 500), (&v2, 2_400)], &traces) {
        let rows = all(&conn);
        // v1 last served at 3000, v2 at 2600: newest first.
        assert_eq!(ids(&rows), [v1.id.as_str(), v2.id.as_str()], "{backend}");
        let r1 = &rows[0];
        assert_eq!(r1.release, v1, "every field of the release comes back");
        assert_eq!(r1.created_at_ms, 500);
        assert_eq!(
            (r1.first_served_ms, r1.last_served_ms),
            (Some(1_000), Some(3_000))
        );
        assert_eq!(r1.traffic.requests, 3);
        assert_eq!(r1.traffic.cost, Cost(Nanos(3_000)));
        assert_eq!(r1.traffic.cost_per_call, Some(Cost(Nanos(1_000))));
        assert_eq!(r1.traffic.input_tokens_per_call, Some(100.0));
        assert_eq!(r1.traffic.output_tokens_per_call, Some(20.0));
        let p = r1.traffic.latency_ms.unwrap();
        assert_eq!((p.p50, p.p95), (200, 300));
        assert_eq!(r1.traffic.ttft_ms, None);

        let r2 = &rows[1];
        assert_eq!(r2.traffic.requests, 2);
        assert_eq!(r2.traffic.latency_ms.unwrap().p50, 50);
        assert_eq!(r2.traffic.ttft_ms.unwrap().p50, 15, "{backend}");
    }
}

#[test]
fn error_rate_counts_errors_but_not_disconnects() {
    let rel = release("support-answer", "control", 1, 0.2);
    let mut err = served("err", &rel, 2, 10);
    err.status = TraceStatus::Error;
    err.cost = None;
    err.input_tokens = None;
    err.output_tokens = None;
    let mut gone = served("gone", &rel, 3, 10);
    gone.status = TraceStatus::ClientDisconnected;
    let traces = [
        served("ok1", &rel, 1, 10),
        err,
        gone,
        served("ok2", &rel, 4, 10),
    ];
    for (backend, conn, _s, _db) in seeded_both(&[(&rel, 0)], &traces) {
        let t = &all(&conn)[0].traffic;
        assert_eq!((t.requests, t.errors), (4, 1), "{backend}");
        assert_eq!(t.error_rate, Some(0.25));
        // The failed call reported no usage: it is neither priced nor unpriced.
        assert_eq!((t.priced_calls, t.unpriced_calls), (3, 0));
        assert_eq!(t.input_tokens_per_call, Some(100.0));
    }
}

#[test]
fn unpriced_calls_are_counted_apart_not_as_zero_dollars() {
    let rel = release("support-answer", "control", 1, 0.2);
    let mut unpriced = served("u", &rel, 2, 10);
    unpriced.cost = None;
    unpriced.unpriced = true;
    let mut cheap = served("p", &rel, 1, 10);
    cheap.cost = Some(Nanos(3_001));
    for (backend, conn, _s, _db) in seeded_both(&[(&rel, 0)], &[cheap, unpriced]) {
        let t = &all(&conn)[0].traffic;
        assert_eq!(t.requests, 2);
        assert_eq!((t.priced_calls, t.unpriced_calls), (1, 1));
        assert_eq!(t.cost, Cost(Nanos(3_001)));
        // The mean is over the priced call only, not diluted by an unknown "$0".
        assert_eq!(t.cost_per_call, Some(Cost(Nanos(3_001))), "{backend}");
    }

    // Only unpriced calls: no cost per call at all.
    let mut only = served("only", &rel, 3, 10);
    only.cost = None;
    only.unpriced = true;
    let other = release("other", "control", 1, 0.2);
    only.release_id = Some(other.id.clone());
    for (backend, conn, _s, _db) in seeded_both(&[(&other, 0)], &[only]) {
        let t = &all(&conn)[0].traffic;
        assert_eq!((t.priced_calls, t.unpriced_calls), (0, 1), "{backend}");
        assert_eq!(t.cost_per_call, None);
    }
}

#[test]
fn a_release_never_served_is_listed_last_with_no_traffic() {
    let served_rel = release("support-answer", "control", 1, 0.2);
    let idle = release("support-answer", "control", 2, 0.2);
    for (backend, conn, _s, _db) in seeded_both(
        &[(&served_rel, 10), (&idle, 5_000)],
        &[served("a", &served_rel, 100, 10)],
    ) {
        let rows = all(&conn);
        assert_eq!(
            ids(&rows),
            [served_rel.id.as_str(), idle.id.as_str()],
            "{backend}"
        );
        let r = &rows[1];
        assert_eq!((r.first_served_ms, r.last_served_ms), (None, None));
        assert_eq!(r.created_at_ms, 5_000);
        assert_eq!(r.traffic, ReleaseTraffic::default());
        assert_eq!(r.traffic.error_rate, None);
        assert_eq!(r.traffic.latency_ms, None);
    }
}

#[test]
fn function_filter_since_window_and_limit() {
    let old = release("support-answer", "control", 1, 0.2);
    let new = release("support-answer", "control", 2, 0.2);
    let fresh = release("support-answer", "candidate", 3, 0.2);
    let other = release("summarize", "control", 1, 0.5);
    let traces = [
        served("o1", &old, 100, 10),
        served("o2", &old, 200, 10),
        served("n1", &new, 300, 10),
        served("n2", &new, 1_500, 10),
        served("x1", &other, 1_600, 10),
    ];
    // `fresh` was deployed at 1200 and has not served yet.
    for (backend, conn, _s, _db) in seeded_both(
        &[(&old, 0), (&new, 250), (&fresh, 1_200), (&other, 50)],
        &traces,
    ) {
        let only = |function: Option<&str>, since_ms: Option<i64>, limit: usize| {
            list_releases(
                &conn,
                &ReleaseFilter {
                    function: function.map(str::to_string),
                    since_ms,
                    limit,
                },
            )
            .unwrap()
        };

        let support = only(Some("support-answer"), None, 0);
        assert_eq!(
            ids(&support),
            [new.id.as_str(), old.id.as_str(), fresh.id.as_str()],
            "{backend}"
        );
        assert!(only(Some("nope"), None, 0).is_empty());

        // Since 1000: `old` neither served nor was deployed since; `fresh` was deployed.
        let recent = only(None, Some(1_000), 0);
        assert_eq!(
            ids(&recent),
            [other.id.as_str(), new.id.as_str(), fresh.id.as_str()]
        );
        // Traffic counts the window only; first served stays the first ever.
        let n = &recent[1];
        assert_eq!(n.traffic.requests, 1);
        assert_eq!(n.first_served_ms, Some(300));

        assert_eq!(
            ids(&only(None, None, 2)),
            [other.id.as_str(), new.id.as_str()],
            "{backend}"
        );
    }
}

#[test]
fn params_and_tools_come_back_as_json_and_rows_serialize_flat() {
    let mut params = Map::new();
    params.insert("max_tokens".into(), 300.into());
    let tools = vec![serde_json::json!({"type": "function", "function": {"name": "lookup_order"}})];
    let rel = Release::new(
        "support-answer",
        "control",
        "support/answer",
        4,
        "h",
        "fast",
        "mock",
        "mock-1",
        params,
        Some(tools),
    );
    for (backend, conn, _s, _db) in seeded_both(&[(&rel, 7)], &[served("a", &rel, 8, 10)]) {
        let rows = all(&conn);
        assert_eq!(rows[0].release, rel, "{backend}");

        let json = serde_json::to_value(&rows[0]).unwrap();
        assert_eq!(json["id"], rel.id.as_str());
        assert_eq!(json["params"]["max_tokens"], 300);
        assert_eq!(json["tools"][0]["function"]["name"], "lookup_order");
        assert_eq!(json["created_at_ms"], 7);
        assert_eq!(json["requests"], 1);
        assert_eq!(json["cost_nanos"], 1_000);
        assert_eq!(json["cost_usd"], "0.000001");
        assert_eq!(json["cost_per_call"]["cost_nanos"], 1_000);
        assert_eq!(json["latency_ms"]["p50"], 10);
    }
}

#[test]
fn traffic_queries_use_the_release_index() {
    let (_s, conn) = seeded(&[], &[]);
    let plan = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map(args, |r| r.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    };
    let sums = plan(
        &format!("SELECT release_id, COUNT(*) FROM traces WHERE {OF_RELEASES} GROUP BY release_id"),
        &[&"[]", &0],
    );
    assert!(sums.contains("traces_release"), "{sums}");
    let pick = plan(PICK_SQL, &[&None::<String>, &None::<i64>, &-1]);
    assert!(pick.contains("traces_release"), "{pick}");
}

#[test]
fn each_release_carries_the_online_quality_of_its_calls_in_the_window() {
    let v1 = release("support-answer", "control", 1, 0.2);
    let v2 = release("support-answer", "control", 2, 0.2);
    let traces = [
        served("a", &v1, 100, 10),
        served("b", &v1, 200, 10),
        served("c", &v1, 2_000, 10),
        served("d", &v2, 300, 10),
    ];
    let (store, _r) = seeded(&[(&v1, 0), (&v2, 0)], &traces);
    let mut w = store.writer_conn().unwrap();
    for (id, passed) in [("a", true), ("b", false), ("c", true)] {
        let row = crate::scores::ScoreRow {
            metric: "helpful".into(),
            value: if passed { 1.0 } else { 0.0 },
            passed,
            reason: None,
        };
        crate::scores::replace_scores(&mut w, id, "q", "online", &[row], None, 1).unwrap();
    }
    let conn = store.reader().unwrap();
    let rows = all(&conn);
    let r1 = rows.iter().find(|r| r.release.id == v1.id).unwrap();
    let q = r1.quality.as_ref().unwrap();
    assert_eq!((q.judged, q.passed), (3, 2));
    assert!(q.pass_rate_low.unwrap() < 2.0 / 3.0 && q.pass_rate_high.unwrap() > 2.0 / 3.0);
    let r2 = rows.iter().find(|r| r.release.id == v2.id).unwrap();
    assert_eq!(r2.quality, None, "no scores, no feedback: no quality");
    let json = serde_json::to_value(r1).unwrap();
    assert_eq!(json["quality"]["judged"], 3);

    // The window: only c (at 2000) is in it.
    let recent = list_releases(
        &conn,
        &ReleaseFilter {
            since_ms: Some(1_000),
            ..ReleaseFilter::default()
        },
    )
    .unwrap();
    let q = recent[0].quality.as_ref().unwrap();
    assert_eq!((q.judged, q.passed), (1, 1));
}

#[test]
fn each_release_carries_its_newest_finished_candidate_eval_runs() {
    let rel = release("support-answer", "control", 1, 0.2);
    for (backend, conn, _s, _db) in seeded_both(&[(&rel, 0)], &[served("a", &rel, 1, 10)]) {
        for (i, (role, status)) in [
            ("candidate", "done"),
            ("baseline", "done"),
            ("candidate", "running"),
            ("candidate", "done"),
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("run-{i}");
            let run = crate::evals::NewEvalRun {
                id: id.clone(),
                suite: "support".into(),
                started_at_ms: 100 + i as i64,
                actor: "t".into(),
                dataset_hash: "h".into(),
                role: role.into(),
                target_json: "{}".into(),
                function: Some(rel.function.clone()),
                variant: Some(rel.variant.clone()),
                prompt_name: None,
                prompt_version: None,
                model: None,
                upstream_model: None,
                release_id: Some(rel.id.clone()),
                repeat: 1,
            };
            crate::evals::create_eval_run(&conn, &run).unwrap();
            crate::evals::set_eval_run_counts(&conn, &id, 10, 7 + i as u64).unwrap();
            if status == "done" {
                let gate = (i == 3).then_some(true);
                crate::evals::finish_eval_run(&conn, &id, "done", 200, None, gate, None).unwrap();
            }
        }
        let evals = &all(&conn)[0].evals;
        let got: Vec<(&str, i64, i64, Option<bool>)> = evals
            .iter()
            .map(|e| (e.run_id.as_str(), e.cases, e.passed, e.gate_passed))
            .collect();
        assert_eq!(
            got,
            [("run-3", 10, 10, Some(true)), ("run-0", 10, 7, None)],
            "{backend}"
        );
    }
}
