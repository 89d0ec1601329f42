//! Reading traces back: the filters of `keel traces` and the dashboard, one trace by id,
//! and the row count. Every value reaches SQL as a bound parameter, never as text.

use keel_core::trace::{Origin, TraceRecord, TraceStatus};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension};

use crate::error::StoreError;
use crate::trace_row::{self, COLUMNS};

/// Which traces to list. Every `Some` narrows the result; the default lists the
/// [`TraceFilter::DEFAULT_LIMIT`] newest traces.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceFilter {
    /// Unix ms, inclusive.
    pub since_ms: Option<i64>,
    /// Unix ms, exclusive.
    pub until_ms: Option<i64>,
    /// Matches the model requested, the upstream model or the served model.
    pub model: Option<String>,
    pub tenant: Option<String>,
    pub feature: Option<String>,
    pub user: Option<String>,
    pub session: Option<String>,
    pub status: Option<TraceStatus>,
    pub error_class: Option<String>,
    /// The function called (`model = "support-answer"`).
    pub function: Option<String>,
    pub variant: Option<String>,
    /// Live traffic, or eval / replay calls; `None` lists all.
    pub origin: Option<keel_core::trace::Origin>,
    /// The request id (`x-keel-request-id`).
    pub id: Option<String>,
    pub prompt_version: Option<i64>,
    /// Cost range in nano-dollars, inclusive (unpriced calls never match a cost range).
    pub min_cost_nanos: Option<i64>,
    pub max_cost_nanos: Option<i64>,
    /// Latency range in ms, inclusive.
    pub min_latency_ms: Option<u64>,
    pub max_latency_ms: Option<u64>,
    /// Calls with a score on this metric below this value (`--score-below METRIC=VALUE`).
    pub score_below: Option<(String, f64)>,
    /// Calls this online eval judged and found failing (some assertion failed).
    pub failed_eval: Option<String>,
    /// Most traces returned; 0 means no limit.
    pub limit: usize,
    /// Traces skipped before the first returned (pagination).
    pub offset: usize,
}

impl TraceFilter {
    pub const DEFAULT_LIMIT: usize = 50;
}

impl Default for TraceFilter {
    fn default() -> Self {
        TraceFilter {
            since_ms: None,
            until_ms: None,
            model: None,
            tenant: None,
            feature: None,
            user: None,
            session: None,
            status: None,
            error_class: None,
            function: None,
            variant: None,
            origin: None,
            id: None,
            prompt_version: None,
            min_cost_nanos: None,
            max_cost_nanos: None,
            min_latency_ms: None,
            max_latency_ms: None,
            score_below: None,
            failed_eval: None,
            limit: TraceFilter::DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

/// Traces matching `filter`, newest first.
pub fn list_traces(
    conn: &Connection,
    filter: &TraceFilter,
) -> Result<Vec<TraceRecord>, StoreError> {
    let (sql, values) = select_sql(filter);
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(values), trace_row::from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The statement (and its bound values) that lists `filter`'s traces newest first.
///
/// Each filter is a plain condition, so SQLite can take any index that serves it: every
/// equality filter but model, variant and prompt version has a `(column, started_at_ms)`
/// index whose entries come out already newest first; the others scan
/// `traces_started_at` newest first. No combination sorts its matches
/// (`query_plan_tests.rs`), so a search stops as soon as its page is full.
pub(crate) fn select_sql(filter: &TraceFilter) -> (String, Vec<Value>) {
    let mut sql = format!("SELECT {COLUMNS} FROM traces");
    let mut values: Vec<Value> = Vec::new();
    let mut conditions = 0;
    // `test` is a fixed condition with `{p}` where the bound value goes (maybe more than
    // once); `None` adds a condition without a value.
    let mut push = |test: &str, value: Option<Value>| {
        conditions += 1;
        sql.push_str(if conditions == 1 { " WHERE " } else { " AND " });
        match value {
            Some(value) => {
                values.push(value);
                sql.push_str(&test.replace("{p}", &format!("?{}", values.len())));
            }
            None => sql.push_str(test),
        }
    };
    if let Some(since) = filter.since_ms {
        push("started_at_ms >= {p}", Some(Value::Integer(since)));
    }
    if let Some(until) = filter.until_ms {
        push("started_at_ms < {p}", Some(Value::Integer(until)));
    }
    if let Some(model) = &filter.model {
        push(
            "(model_requested = {p} OR upstream_model = {p} OR served_model = {p})",
            Some(Value::Text(model.clone())),
        );
    }
    let text_filters = [
        ("tenant = {p}", &filter.tenant),
        ("feature = {p}", &filter.feature),
        ("user = {p}", &filter.user),
        ("session = {p}", &filter.session),
        ("error_class = {p}", &filter.error_class),
        ("function = {p}", &filter.function),
        ("variant = {p}", &filter.variant),
        ("id = {p}", &filter.id),
    ];
    for (test, value) in text_filters {
        if let Some(v) = value {
            push(test, Some(Value::Text(v.clone())));
        }
    }
    if let Some(status) = filter.status {
        push(
            "status = {p}",
            Some(Value::Text(status.as_str().to_string())),
        );
    }
    if let Some(origin) = filter.origin {
        push(
            "origin = {p}",
            Some(Value::Text(origin.as_str().to_string())),
        );
        if origin != Origin::Live {
            // Spelled out so SQLite may use the partial index `traces_origin` (its
            // WHERE must be implied by the query's text, not by a bound value).
            push("origin <> 'live'", None);
        }
    }
    let int = |v: u64| Value::Integer(i64::try_from(v).unwrap_or(i64::MAX));
    let ranges = [
        (
            "prompt_version = {p}",
            filter.prompt_version.map(Value::Integer),
        ),
        (
            "cost_nanos >= {p}",
            filter.min_cost_nanos.map(Value::Integer),
        ),
        (
            "cost_nanos <= {p}",
            filter.max_cost_nanos.map(Value::Integer),
        ),
        ("latency_ms >= {p}", filter.min_latency_ms.map(int)),
        ("latency_ms <= {p}", filter.max_latency_ms.map(int)),
    ];
    for (test, value) in ranges {
        if let Some(v) = value {
            push(test, Some(v));
        }
    }
    if let Some((metric, below)) = &filter.score_below {
        // The bound is a finite number, written into the SQL as one (no text from the
        // caller goes there: the metric is bound).
        let below = if below.is_finite() { *below } else { 0.0 };
        push(
            &format!("EXISTS (SELECT 1 FROM scores s WHERE s.trace_id = traces.id AND s.metric = {{p}} AND s.value < {below:?})"),
            Some(Value::Text(metric.clone())),
        );
    }
    if let Some(eval) = &filter.failed_eval {
        push(
            "EXISTS (SELECT 1 FROM scores s WHERE s.trace_id = traces.id AND s.eval = {p} AND s.passed = 0)",
            Some(Value::Text(eval.clone())),
        );
    }
    sql.push_str(" ORDER BY started_at_ms DESC, rowid DESC");
    if filter.limit > 0 || filter.offset > 0 {
        let limit = if filter.limit == 0 {
            -1
        } else {
            i64::try_from(filter.limit).unwrap_or(i64::MAX)
        };
        values.push(Value::Integer(limit));
        sql.push_str(&format!(" LIMIT ?{}", values.len()));
        values.push(Value::Integer(
            i64::try_from(filter.offset).unwrap_or(i64::MAX),
        ));
        sql.push_str(&format!(" OFFSET ?{}", values.len()));
    }
    (sql, values)
}

/// The trace with id `id` (ids are unique: a caller's reused request id stays with the
/// call that used it first).
pub fn get_trace(conn: &Connection, id: &str) -> Result<Option<TraceRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM traces WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], trace_row::from_row).optional()?)
}

/// The ids of later traces whose caller sent `id` as its request id when it was already
/// taken (stored under fresh ids, `id` kept as `client_request_id`), oldest first, at
/// most `limit`.
pub fn reused_request_id(
    conn: &Connection,
    id: &str,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM traces WHERE client_request_id = ?1 ORDER BY started_at_ms, rowid LIMIT ?2",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let ids = stmt
        .query_map(rusqlite::params![id, limit], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// How many traces the store holds.
pub fn count_traces(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM traces", [], |row| row.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Store;
    use keel_core::money::Nanos;

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
        let mut unpriced =
            TraceRecord::new("req-unpriced".into(), 6, "openai", "/v1/chat/completions");
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
}

#[cfg(test)]
#[path = "query_plan_tests.rs"]
mod plan_tests;
