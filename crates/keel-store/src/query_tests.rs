//! `query`'s tests: every filter narrows, pagination, ids, counts.

use super::*;
use crate::db::Store;
use keel_core::money::Nanos;
use rusqlite::Connection;

fn full_trace() -> TraceRecord {
    TraceRecord {
        id: "req-full".into(),
        started_at_ms: 1_715_000_000_123,
        api: "anthropic".into(),
        endpoint: "/v1/messages".into(),
        key_id: Some("key_ops".into()),
        tenant: Some("acme".into()),
        feature: Some("support-answer".into()),
        user: Some("u-42".into()),
        session: Some("s-7".into()),
        tags: vec!["beta".into(), "eu, west".into(), "quote\"d".into()],
        model_requested: Some("claude".into()),
        provider: Some("anthropic".into()),
        upstream_model: Some("claude-3-5-haiku-latest".into()),
        served_model: Some("claude-3-5-haiku-20241022".into()),
        system_fingerprint: Some("fp_abc".into()),
        stream: true,
        input: Some(r#"{"messages":[{"role":"user","content":"héllo ✓"}]}"#.into()),
        output: Some("Bonjour\nworld".into()),
        input_tokens: Some(1234),
        output_tokens: Some(56),
        cached_tokens: Some(1000),
        reasoning_tokens: Some(7),
        cost: Some(Nanos(123_456)),
        unpriced: false,
        latency_ms: 987,
        ttft_ms: Some(123),
        status: TraceStatus::ClientDisconnected,
        http_status: 499,
        error_class: Some("client_disconnected".into()),
        error_message: Some("the client went away".into()),
        finish_reason: Some("length".into()),
        function: Some("support-answer".into()),
        variant: Some("candidate".into()),
        prompt_name: Some("support/answer".into()),
        prompt_version: Some(3),
        release_id: Some("rel_0123456789abcdef".into()),
        origin: keel_core::trace::Origin::Eval,
        attempts: vec![keel_core::trace::Attempt {
            model: "claude".into(),
            provider: "anthropic".into(),
            upstream_model: "claude-3-5-haiku-latest".into(),
            outcome: "upstream_rate_limit".into(),
            latency_ms: 12,
            error: Some("slow down".into()),
        }],
        cache: Some("hit".into()),
        saved_cost: Some(Nanos(42)),
        parent_id: Some("req-live".into()),
        guardrails: vec![keel_core::trace::GuardOutcome {
            policy: "pii".into(),
            check: "emails".into(),
            stage: "input".into(),
            action: "redact".into(),
            score: None,
            evidence: vec![keel_core::trace::GuardEvidence {
                what: "email".into(),
                message: Some(1),
                start: 4,
                end: 21,
            }],
        }],
        otel_trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        otel_span_id: Some("00f067aa0ba902b7".into()),
        otel_parent_span_id: Some("b7ad6b7169203331".into()),
        usage_estimated: true,
    }
}

fn seeded(traces: &[TraceRecord]) -> (Store, Connection) {
    let store = Store::open(":memory:").unwrap();
    let mut w = store.writer_connection().unwrap();
    trace_row::insert_batch(&mut w, traces).unwrap();
    let r = store.reader().unwrap();
    (store, r)
}

#[test]
fn every_field_round_trips() {
    let full = full_trace();
    let blank = TraceRecord::new("req-blank".into(), 5, "openai", "/v1/chat/completions");
    let mut unpriced = TraceRecord::new("req-unpriced".into(), 6, "openai", "/v1/chat/completions");
    unpriced.unpriced = true;
    unpriced.input_tokens = Some(u64::try_from(i64::MAX).unwrap());
    let (_store, r) = seeded(&[full.clone(), blank.clone(), unpriced.clone()]);
    assert_eq!(get_trace(&r, "req-full").unwrap(), Some(full));
    assert_eq!(get_trace(&r, "req-blank").unwrap(), Some(blank));
    assert_eq!(get_trace(&r, "req-unpriced").unwrap(), Some(unpriced));
    assert_eq!(get_trace(&r, "nope").unwrap(), None);
    assert_eq!(count_traces(&r).unwrap(), 3);
}

fn t(id: &str, at: i64) -> TraceRecord {
    TraceRecord::new(id.into(), at, "openai", "/v1/chat/completions")
}

fn ids(traces: &[TraceRecord]) -> Vec<&str> {
    traces.iter().map(|t| t.id.as_str()).collect()
}

#[test]
fn filters_narrow_and_results_are_newest_first() {
    let mut a = t("a", 100);
    a.model_requested = Some("fast".into());
    a.upstream_model = Some("gpt-4o-mini".into());
    a.tenant = Some("acme".into());
    let mut b = t("b", 200);
    b.model_requested = Some("smart".into());
    b.served_model = Some("gpt-4o-2024-08-06".into());
    b.tenant = Some("acme".into());
    b.feature = Some("search".into());
    b.status = TraceStatus::Error;
    b.error_class = Some("upstream_timeout".into());
    let mut c = t("c", 300);
    c.user = Some("u1".into());
    c.session = Some("s1".into());
    c.tenant = Some("globex".into());
    let (_s, r) = seeded(&[a, b, c]);

    let list = |f: TraceFilter| ids(&list_traces(&r, &f).unwrap()).join(",");
    assert_eq!(list(TraceFilter::default()), "c,b,a");
    assert_eq!(
        list(TraceFilter {
            since_ms: Some(200),
            ..Default::default()
        }),
        "c,b"
    );
    assert_eq!(
        list(TraceFilter {
            until_ms: Some(200),
            ..Default::default()
        }),
        "a"
    );
    assert_eq!(
        list(TraceFilter {
            model: Some("fast".into()),
            ..Default::default()
        }),
        "a"
    );
    assert_eq!(
        list(TraceFilter {
            model: Some("gpt-4o-mini".into()),
            ..Default::default()
        }),
        "a"
    );
    assert_eq!(
        list(TraceFilter {
            model: Some("gpt-4o-2024-08-06".into()),
            ..Default::default()
        }),
        "b"
    );
    assert_eq!(
        list(TraceFilter {
            tenant: Some("acme".into()),
            ..Default::default()
        }),
        "b,a"
    );
    assert_eq!(
        list(TraceFilter {
            feature: Some("search".into()),
            ..Default::default()
        }),
        "b"
    );
    assert_eq!(
        list(TraceFilter {
            user: Some("u1".into()),
            ..Default::default()
        }),
        "c"
    );
    assert_eq!(
        list(TraceFilter {
            session: Some("s1".into()),
            ..Default::default()
        }),
        "c"
    );
    assert_eq!(
        list(TraceFilter {
            status: Some(TraceStatus::Error),
            ..Default::default()
        }),
        "b"
    );
    assert_eq!(
        list(TraceFilter {
            status: Some(TraceStatus::Ok),
            ..Default::default()
        }),
        "c,a"
    );
    assert_eq!(
        list(TraceFilter {
            error_class: Some("upstream_timeout".into()),
            ..Default::default()
        }),
        "b"
    );
    assert_eq!(
        list(TraceFilter {
            limit: 2,
            ..Default::default()
        }),
        "c,b"
    );
    assert_eq!(
        list(TraceFilter {
            limit: 0,
            ..Default::default()
        }),
        "c,b,a"
    );
    // Several filters at once, the model clause among them.
    assert_eq!(
        list(TraceFilter {
            since_ms: Some(50),
            tenant: Some("acme".into()),
            model: Some("smart".into()),
            status: Some(TraceStatus::Error),
            limit: 10,
            ..Default::default()
        }),
        "b"
    );
    assert_eq!(
        list(TraceFilter {
            tenant: Some("acme".into()),
            user: Some("u1".into()),
            ..Default::default()
        }),
        ""
    );
}

#[test]
fn id_version_cost_latency_and_offset_narrow() {
    let mut a = t("a", 1);
    a.cost = Some(Nanos(100));
    a.latency_ms = 10;
    a.prompt_version = Some(1);
    let mut b = t("b", 2);
    b.cost = Some(Nanos(500));
    b.latency_ms = 50;
    b.prompt_version = Some(2);
    let mut c = t("c", 3);
    c.latency_ms = 90;
    let (_s, r) = seeded(&[a, b, c]);
    let list = |f: TraceFilter| ids(&list_traces(&r, &f).unwrap()).join(",");
    let f = TraceFilter::default;
    assert_eq!(
        list(TraceFilter {
            id: Some("b".into()),
            ..f()
        }),
        "b"
    );
    assert_eq!(
        list(TraceFilter {
            prompt_version: Some(1),
            ..f()
        }),
        "a"
    );
    assert_eq!(
        list(TraceFilter {
            min_cost_nanos: Some(200),
            ..f()
        }),
        "b"
    );
    assert_eq!(
        list(TraceFilter {
            max_cost_nanos: Some(200),
            ..f()
        }),
        "a"
    );
    assert_eq!(
        list(TraceFilter {
            min_latency_ms: Some(50),
            ..f()
        }),
        "c,b"
    );
    assert_eq!(
        list(TraceFilter {
            max_latency_ms: Some(50),
            ..f()
        }),
        "b,a"
    );
    assert_eq!(
        list(TraceFilter {
            limit: 1,
            offset: 1,
            ..f()
        }),
        "b"
    );
    assert_eq!(
        list(TraceFilter {
            limit: 0,
            offset: 2,
            ..f()
        }),
        "a"
    );
}

#[test]
fn filter_values_are_data_not_sql() {
    let mut a = t("a", 1);
    a.tenant = Some("x' OR '1'='1".into());
    let (_s, r) = seeded(&[a, t("b", 2)]);
    let f = TraceFilter {
        tenant: Some("x' OR '1'='1".into()),
        ..Default::default()
    };
    assert_eq!(ids(&list_traces(&r, &f).unwrap()), vec!["a"]);
}

#[test]
fn a_reused_request_id_keeps_both_and_the_id_stays_with_the_first() {
    let mut old = t("dup", 1);
    old.latency_ms = 1;
    let mut new = t("dup", 2);
    new.latency_ms = 2;
    let (_s, r) = seeded(&[old, new]);
    assert_eq!(count_traces(&r).unwrap(), 2);
    // The id resolves to the call that used it first; the later one moved to a
    // fresh id, the caller's kept as `client_request_id` (migration 0018).
    assert_eq!(get_trace(&r, "dup").unwrap().map(|t| t.latency_ms), Some(1));
    let moved: (String, i64) = r
        .query_row(
            "SELECT id, latency_ms FROM traces WHERE client_request_id = 'dup'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_ne!(moved.0, "dup");
    assert_eq!(moved.1, 2);
    assert_eq!(reused_request_id(&r, "dup", 10).unwrap(), vec![moved.0]);
}

/// A large batch: every field round-trips, and an id used again — a few rows earlier,
/// many rows earlier, or by a stored trace — stays with the first call while the later
/// one moves to a fresh id, the caller's kept as `client_request_id`. (Kept from trying
/// multi-row inserts on SQLite, 2026-12-07: they cost more instructions per trace than a
/// prepared one-row insert run per trace, with or without `RETURNING`.)
#[test]
fn a_large_batch_round_trips_and_reused_ids_move_wherever_they_fall() {
    let (store, _) = seeded(&[t("stored", 0)]);
    let mut batch: Vec<TraceRecord> = (0..40)
        .map(|i| {
            let mut x = full_trace();
            x.id = format!("c{i}");
            x.latency_ms = 100 + i;
            x
        })
        .collect();
    let reused = [("c3", 5), ("c1", 20), ("stored", 22), ("c2", 37)];
    for (id, at) in reused {
        batch[at].id = id.into();
    }
    let mut w = store.writer_connection().unwrap();
    trace_row::insert_batch(&mut w, &batch).unwrap();
    let r = store.reader().unwrap();
    assert_eq!(count_traces(&r).unwrap(), 41);
    for at in [7, 30, 39] {
        assert_eq!(
            get_trace(&r, &batch[at].id).unwrap().as_ref(),
            Some(&batch[at])
        );
    }
    for (id, at) in reused {
        let kept = get_trace(&r, id).unwrap().map(|t| t.latency_ms);
        assert_ne!(
            kept,
            Some(100 + at as u64),
            "{id} stays with its first call"
        );
        let moved: i64 = r
            .query_row(
                "SELECT latency_ms FROM traces WHERE client_request_id = ?1",
                [id],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(moved, 100 + at as i64, "{id}");
    }
}

/// The filters that look beyond the trace row: a low score, a failed online eval, a
/// thumbs-down (a number <= 0 or `false`; a category never counts), a reviewer's verdict.
#[test]
fn scores_feedback_and_review_verdicts_narrow() {
    let (store, r) = seeded(&[t("a", 1), t("b", 2), t("c", 3), t("d", 4)]);
    let w = store.writer_conn().unwrap();
    w.execute_batch(
        "INSERT INTO scores (trace_id, eval, metric, source, value, passed, created_at_ms) VALUES
           ('a', 'judge', 'helpful', 'online', 0.2, 0, 1),
           ('b', 'judge', 'helpful', 'online', 0.9, 1, 1),
           ('c', 'other', 'helpful', 'online', 0.9, 0, 1);
         INSERT INTO feedback (trace_id, name, source, value_num, value_text, at_ms, value_kind) VALUES
           ('a', 'thumbs', 'app', 0, NULL, 1, 'boolean'),
           ('b', 'thumbs', 'app', 1, NULL, 1, 'boolean'),
           ('c', 'stars', 'app', -1, NULL, 1, 'number'),
           ('d', 'reason', 'app', NULL, 'wrong_answer', 1, 'category');
         INSERT INTO review_labels (item_id, queue, trace_id, reviewer, verdict, labels_json, correction, at_ms) VALUES
           (1, 'q', 'b', 'ana', 'bad', '{}', 'Within 30 days.', 1),
           (2, 'q', 'c', 'ana', 'good', '{}', NULL, 1);",
    )
    .unwrap();
    let list = |f: TraceFilter| ids(&list_traces(&r, &f).unwrap()).join(",");
    let f = TraceFilter::default;
    assert_eq!(
        list(TraceFilter {
            score_below: Some(("helpful".into(), 0.5)),
            ..f()
        }),
        "a"
    );
    assert_eq!(
        list(TraceFilter {
            failed_eval: Some("judge".into()),
            ..f()
        }),
        "a"
    );
    assert_eq!(
        list(TraceFilter {
            negative_feedback: true,
            ..f()
        }),
        "c,a"
    );
    assert_eq!(
        list(TraceFilter {
            review_verdict: Some("bad".into()),
            ..f()
        }),
        "b"
    );
    assert_eq!(
        list(TraceFilter {
            review_verdict: Some("good".into()),
            negative_feedback: true,
            ..f()
        }),
        "c"
    );
}
