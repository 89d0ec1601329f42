#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The weekly report over a hand-made week of traces with known numbers, written through
//! the public writer and read back as `keel report` would: the computed report, its JSON,
//! and both renderings.

use keel_core::money::Nanos;
use keel_core::trace::{TraceRecord, TraceStatus};
use keel_store::testing::stores;
use keel_store::{
    build_report, render_markdown, render_table, spawn, CallerKind, Percentiles, Report, Store,
    StoreError, WriterOptions,
};

const SINCE: i64 = 1_714_953_600_000; // 2024-05-06 00:00 UTC
const UNTIL: i64 = SINCE + 7 * 24 * 3600 * 1000; // 2024-05-13 00:00 UTC

fn t(id: &str, offset_ms: i64, model: Option<&str>) -> TraceRecord {
    let mut t = TraceRecord::new(
        id.into(),
        SINCE + offset_ms,
        "openai",
        "/v1/chat/completions",
    );
    t.model_requested = model.map(str::to_string);
    t
}

/// 17 traces in the window, 2 outside it.
fn week() -> Vec<TraceRecord> {
    let mut traces = Vec::new();
    // `fast`: 10 priced calls by key k1 for acme/chat, latency 10..=100 ms, 150 tokens
    // and $0.00015 each; the first four are streamed with TTFT 5..=8 ms.
    for i in 0..10u64 {
        let mut x = t(&format!("fast-{i}"), 1000 + i as i64, Some("fast"));
        x.key_id = Some("k1".into());
        x.tenant = Some("acme".into());
        x.feature = Some("chat".into());
        x.latency_ms = 10 * (i + 1);
        x.input_tokens = Some(100);
        x.output_tokens = Some(50);
        x.cost = Some(Nanos(150_000));
        if i < 4 {
            x.stream = true;
            x.ttft_ms = Some(5 + i);
        } else if i == 9 {
            x.ttft_ms = Some(999); // not streamed: must not count as TTFT
        }
        traces.push(x);
    }
    // `smart`: user u1 of globex/search; three priced calls at $0.002 and one error.
    for (i, latency) in [200u64, 300, 400].into_iter().enumerate() {
        let mut x = t(&format!("smart-{i}"), 2000 + i as i64, Some("smart"));
        x.user = Some("u1".into());
        x.tenant = Some("globex".into());
        x.feature = Some("search".into());
        x.latency_ms = latency;
        x.input_tokens = Some(500);
        x.output_tokens = Some(100);
        x.cost = Some(Nanos(2_000_000));
        traces.push(x);
    }
    let mut err = t("smart-err", 2100, Some("smart"));
    err.user = Some("u1".into());
    err.tenant = Some("globex".into());
    err.feature = Some("search".into());
    err.latency_ms = 50;
    err.status = TraceStatus::Error;
    err.http_status = 502;
    err.error_class = Some("upstream_5xx".into());
    traces.push(err);
    // `local`: no known price; tenant acme only.
    for (i, latency) in [30u64, 40].into_iter().enumerate() {
        let mut x = t(&format!("local-{i}"), 3000 + i as i64, Some("local"));
        x.tenant = Some("acme".into());
        x.feature = Some("chat".into());
        x.latency_ms = latency;
        x.input_tokens = Some(1000);
        x.output_tokens = Some(200);
        x.unpriced = true;
        traces.push(x);
    }
    // Rejected before a model was known.
    let mut auth = t("auth", 4000, None);
    auth.latency_ms = 1;
    auth.status = TraceStatus::Error;
    auth.http_status = 401;
    auth.error_class = Some("auth".into());
    traces.push(auth);
    // Outside the window (until is exclusive).
    let mut before = t("before", -1, Some("fast"));
    before.cost = Some(Nanos(1_000_000_000));
    traces.push(before);
    let mut at_until = t("at-until", UNTIL - SINCE, Some("fast"));
    at_until.cost = Some(Nanos(1_000_000_000));
    traces.push(at_until);
    traces
}

/// The week written through the writer and reported, on each backend.
fn reports(top_n: usize) -> Vec<(&'static str, Report)> {
    stores()
        .into_iter()
        .map(|(backend, store, _db)| {
            let r = report_of(&store, week(), top_n);
            (backend, r)
        })
        .collect()
}

fn report_of(store: &Store, traces: Vec<TraceRecord>, top_n: usize) -> Report {
    let n = traces.len() as u64;
    let (writer, handle) = spawn(store, WriterOptions::default()).unwrap();
    for trace in traces {
        writer.record(trace);
    }
    let stats = handle.shutdown();
    assert_eq!(stats.written_total, n);
    build_report(&store.conn().unwrap(), SINCE, UNTIL, top_n).unwrap()
}

/// The SQLite report, after checking that PostgreSQL's is the same in every number.
fn report(top_n: usize) -> Report {
    let mut all = reports(top_n);
    let (_, sqlite) = all.remove(0);
    for (backend, r) in all {
        assert_eq!(r, sqlite, "{backend} differs from sqlite");
    }
    sqlite
}

fn p(p50: u64, p95: u64, p99: u64) -> Percentiles {
    Percentiles { p50, p95, p99 }
}

#[test]
fn totals_are_exact() {
    let r = report(10);
    let t = &r.totals;
    assert_eq!(t.requests, 17);
    assert_eq!(t.errors, 2);
    assert_eq!(t.error_rate, 2.0 / 17.0);
    assert_eq!(t.input_tokens, 10 * 100 + 3 * 500 + 2 * 1000);
    assert_eq!(t.output_tokens, 10 * 50 + 3 * 100 + 2 * 200);
    // (4500 + 1200) tokens over the 15 calls with usage.
    assert_eq!(t.tokens_per_call, Some(380.0));
    assert_eq!(t.cost.nanos(), Nanos(10 * 150_000 + 3 * 2_000_000));
    assert_eq!(t.cost.usd(), "0.0075");
    assert_eq!(t.unpriced_calls, 2);
    // Sorted latencies: 1 10 20 30 30 40 40 50 50 60 70 80 90 100 200 300 400.
    assert_eq!(t.latency_ms, p(50, 400, 400));
    assert_eq!(t.ttft_ms, Some(p(6, 8, 8)));
    assert_eq!(r.window.since, "2024-05-06T00:00:00Z");
    assert_eq!(r.window.until, "2024-05-13T00:00:00Z");
}

#[test]
fn breakdowns_are_sorted_by_cost_then_requests() {
    let r = report(10);
    let names =
        |rows: &[keel_store::GroupRow]| rows.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&r.by_model), ["smart", "fast", "local", "(none)"]);
    assert_eq!(names(&r.by_feature), ["search", "chat", "(none)"]);
    assert_eq!(names(&r.by_tenant), ["globex", "acme", "(none)"]);

    let smart = &r.by_model[0].stats;
    assert_eq!(
        (smart.requests, smart.errors, smart.error_rate),
        (4, 1, 0.25)
    );
    assert_eq!(smart.cost.nanos(), Nanos(6_000_000));
    assert_eq!(smart.tokens_per_call, Some(600.0));
    assert_eq!(smart.latency_ms, p(200, 400, 400));
    assert_eq!(smart.ttft_ms, None);

    let fast = &r.by_model[1].stats;
    assert_eq!((fast.requests, fast.errors, fast.error_rate), (10, 0, 0.0));
    assert_eq!(fast.cost.usd(), "0.0015");
    assert_eq!(fast.latency_ms, p(50, 100, 100));
    assert_eq!(fast.ttft_ms, Some(p(6, 8, 8)));

    let local = &r.by_model[2].stats;
    assert_eq!(local.cost.nanos(), Nanos(0));
    assert_eq!(local.unpriced_calls, 2);
    assert_eq!(local.tokens_per_call, Some(1200.0));

    let none = &r.by_model[3].stats;
    assert_eq!(
        (none.requests, none.errors, none.tokens_per_call),
        (1, 1, None)
    );

    let chat = &r.by_feature[1].stats;
    assert_eq!((chat.requests, chat.unpriced_calls), (12, 2));
    assert_eq!(chat.cost.nanos(), Nanos(1_500_000));
}

#[test]
fn top_callers_use_key_then_user_then_tenant() {
    let r = report(10);
    let callers: Vec<(&str, CallerKind, u64, i64)> = r
        .top_callers
        .iter()
        .map(|c| (c.caller.as_str(), c.kind, c.requests, c.cost.nanos().0))
        .collect();
    assert_eq!(
        callers,
        [
            ("u1", CallerKind::User, 4, 6_000_000),
            ("k1", CallerKind::Key, 10, 1_500_000),
            ("acme", CallerKind::Tenant, 2, 0),
            ("(anonymous)", CallerKind::Anonymous, 1, 0),
        ]
    );
    assert_eq!(r.top_callers[1].tokens_per_call, Some(150.0));
    assert_eq!(r.top_callers[2].unpriced_calls, 2);
    assert_eq!(report(2).top_callers.len(), 2);
}

#[test]
fn unpriced_calls_are_listed_per_model() {
    let r = report(10);
    assert_eq!(r.unpriced.len(), 1);
    let u = &r.unpriced[0];
    assert_eq!(
        (u.model.as_str(), u.calls, u.input_tokens, u.output_tokens),
        ("local", 2, 2000, 400)
    );
}

#[test]
fn json_has_costs_as_nanos_and_exact_dollar_strings() {
    let r = report(10);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["totals"]["cost_nanos"], 7_500_000);
    assert_eq!(json["totals"]["cost_usd"], "0.0075");
    assert_eq!(json["by_model"][0]["name"], "smart");
    assert_eq!(json["by_model"][0]["cost_usd"], "0.006");
    assert_eq!(json["by_model"][0]["ttft_ms"], serde_json::Value::Null);
    assert_eq!(json["by_model"][1]["latency_ms"]["p95"], 100);
    assert_eq!(json["top_callers"][0]["kind"], "user");
    assert_eq!(json["top_callers"][0]["cost_usd"], "0.006");
    assert_eq!(json["unpriced"][0]["model"], "local");
    assert_eq!(json["window"]["since_ms"], SINCE);
}

#[test]
fn table_shows_the_key_numbers_and_warns_about_unpriced_calls() {
    let text = render_table(&report(10));
    for needle in [
        "Keel report: 2024-05-06 00:00 UTC → 2024-05-13 00:00 UTC",
        "17 requests · 2 errors (11.8%) · cost ≥ $0.0075 + 2 unpriced calls",
        "By model",
        "By feature",
        "By tenant",
        "Top callers by spend",
        "$0.006",
        "≥ $0.0015",
        "1 (25.0%)",
        "50 / 400 / 400 ms",
        "6 / 8 / 8 ms",
        "4,500",
        "Unpriced calls",
        "NOT counted as $0",
        "Models: local.",
        "(anonymous)",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // Sections come in reading order.
    let at = |s: &str| text.find(s).unwrap();
    assert!(at("Totals") < at("By model") && at("By model") < at("By feature"));
    assert!(at("By tenant") < at("Top callers") && at("Top callers") < at("Unpriced calls"));
}

#[test]
fn markdown_is_github_tables() {
    let md = render_markdown(&report(10));
    for needle in [
        "## Keel report: 2024-05-06 00:00 UTC → 2024-05-13 00:00 UTC",
        "### By model",
        "| model | requests | errors |",
        "| --- | ---: | ---: |",
        "| smart | 4 | 1 (25.0%) | 1,500 | 300 | 600 | $0.006 | 0 | 200 / 400 / 400 ms | — |",
        "| 1 | u1 | user | 4 | $0.006 | 600 | 0 |",
        "| local | 2 | 0 (0.0%) | 2,000 | 400 | 1,200 | unpriced | 2 | 30 / 40 / 40 ms | — |",
        "| 3 | acme | tenant | 2 | unpriced | 1,200 | 2 |",
        "| local | 2 | 2,000 | 400 |",
        "NOT counted as $0",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in:\n{md}");
    }
}

#[test]
fn an_empty_window_says_so() {
    for (backend, store, _db) in stores() {
        let r = build_report(&store.conn().unwrap(), SINCE, UNTIL, 10).unwrap();
        assert!(r.is_empty(), "{backend}");
        assert_eq!(r.totals.requests, 0);
        assert_eq!(r.totals.ttft_ms, None);
        assert!(r.by_model.is_empty() && r.top_callers.is_empty() && r.unpriced.is_empty());
        assert!(render_table(&r).contains("No traces in this window"));
        assert!(render_markdown(&r).contains("No traces in this window"));
        assert_eq!(
            serde_json::to_value(&r).unwrap()["totals"]["cost_usd"],
            "0.00",
            "{backend}"
        );
    }
}

#[test]
fn a_backwards_window_is_an_error() {
    for (backend, store, _db) in stores() {
        let err = build_report(&store.conn().unwrap(), UNTIL, SINCE, 10).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidWindow { .. }),
            "{backend}: {err}"
        );
    }
}

#[test]
fn a_report_with_everything_priced_says_so() {
    for (backend, store, _db) in stores() {
        let mut x = t("one", 10, Some("fast"));
        x.input_tokens = Some(1);
        x.output_tokens = Some(1);
        x.cost = Some(Nanos(1));
        let r = report_of(&store, vec![x], 10);
        let text = render_table(&r);
        assert!(
            text.contains("None: every call with usage had a known price."),
            "{backend}: {text}"
        );
        assert!(!text.contains("NOT counted"), "{backend}: {text}");
        assert!(text.contains("$0.000000001"), "{backend}: {text}");
    }
}

/// The Markdown report as a whole, pinned: a change to its layout must be reviewed
/// (`cargo insta review`), not slipped in.
#[test]
fn the_markdown_report_is_pinned() {
    insta::assert_snapshot!("weekly_report_markdown", render_markdown(&report(10)));
}

/// The terminal table as a whole, pinned.
#[test]
fn the_terminal_report_is_pinned() {
    insta::assert_snapshot!("weekly_report_table", render_table(&report(10)));
}

#[test]
fn embeddings_get_their_own_section_only_when_there_are_some() {
    assert!(report(3).embeddings.is_none(), "no embeddings in the week");
    for (backend, store, _db) in stores() {
        let mut traces = week();
        for (i, tenant) in ["acme", "acme", "globex"].iter().enumerate() {
            let mut e = TraceRecord::new(
                format!("emb-{i}"),
                SINCE + 5_000,
                "openai",
                "/v1/embeddings",
            );
            e.model_requested = Some("embed-small".into());
            e.tenant = Some((*tenant).into());
            e.feature = Some("search".into());
            e.input_tokens = Some(1_000);
            e.output_tokens = Some(0);
            e.cost = Some(Nanos(20_000));
            traces.push(e);
        }
        let r = report_of(&store, traces, 3);
        let e = r.embeddings.as_ref().expect("an embeddings section");
        assert_eq!(e.totals.requests, 3, "{backend}");
        assert_eq!(e.totals.cost.nanos(), Nanos(60_000), "{backend}");
        assert_eq!(e.by_model.len(), 1, "{backend}");
        assert_eq!(e.by_model[0].name, "embed-small", "{backend}");
        let tenants: Vec<&str> = e.by_tenant.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(tenants, ["acme", "globex"], "{backend}");
        // Still in the overall figures.
        assert_eq!(r.totals.requests, 17 + 3, "{backend}");
        let md = render_markdown(&r);
        assert!(md.contains("Embeddings by model"), "{backend}: {md}");
        assert!(md.contains("embed-small"), "{backend}: {md}");
    }
}

#[test]
fn scope_stats_and_the_previous_period_read_the_same_traffic() {
    use keel_core::scope::{Scope, ScopeKind};
    for (backend, store, _db) in stores() {
        report_of(&store, week(), 10);
        let conn = store.conn().unwrap();
        let acme = Scope {
            kind: ScopeKind::Tenant,
            value: Some("acme".into()),
        };
        let s = keel_store::report::scope_stats(&conn, &acme, SINCE, UNTIL).unwrap();
        assert_eq!((s.requests, s.unpriced_calls), (12, 2), "{backend}");
        assert_eq!(s.cost.nanos(), Nanos(1_500_000), "{backend}");
        assert_eq!(s.ttft_ms, Some(p(6, 8, 8)), "{backend}");
        let all = keel_store::report::scope_stats(&conn, &Scope::GLOBAL, SINCE, UNTIL).unwrap();
        assert_eq!((all.requests, all.errors), (17, 2), "{backend}");
        assert_eq!(all.latency_ms, p(50, 400, 400), "{backend}");

        let prev = keel_store::previous_period(&conn, SINCE, UNTIL).unwrap();
        assert_eq!(prev.totals, all, "{backend}");
        assert_eq!(prev.window.since, "2024-05-06T00:00:00Z");
        // The week before holds the one trace written just before it.
        let before = keel_store::previous_period(&conn, SINCE - 7 * 86_400_000, SINCE).unwrap();
        assert_eq!(before.totals.requests, 1, "{backend}");
        assert!(keel_store::previous_period(&conn, UNTIL, SINCE).is_err());

        let functions = keel_store::report::function_breakdown(&conn, SINCE, UNTIL).unwrap();
        assert_eq!(
            functions.len(),
            1,
            "{backend}: no function calls, one (none) row"
        );
        assert_eq!(functions[0].name, "(none)", "{backend}");
    }
}
