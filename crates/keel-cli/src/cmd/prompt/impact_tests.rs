//! Unit tests of the cost projection, on traces seeded into a real store.

use std::path::Path;

use keel_core::trace::{TraceRecord, TraceStatus};
use keel_registry::VariableSource;

use super::*;

const CONFIG: &str = r#"
[gateway]
store = "keel.db"
[providers.mock]
kind = "mock"
[models.fast]
provider = "mock"
upstream_model = "gpt-4o-mini"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
[models.house]
provider = "mock"
upstream_model = "house-1"
[functions.support]
[[functions.support.variants]]
name = "a"
prompt = "support/answer"
model = "fast"
weight = 1
"#;

const OLD: &str = r#"
[[messages]]
role = "system"
content = "You are a support agent for {{ product }}."
[[messages]]
role = "user"
content = "{{ question }}"
[variables.product]
type = "string"
[variables.question]
type = "string"
"#;

/// `support/answer` v1 (`OLD`) → v2 (`OLD` + 200 tokens in the system message), projected
/// onto the traffic in `[since, until)`.
fn impact_of_200_tokens(
    conn: &keel_store::Conn,
    config: &Config,
    since: i64,
    until: i64,
) -> Impact {
    let parse = |text: &str| {
        keel_registry::parse_prompt("support/answer", Path::new("answer.toml"), text).unwrap()
    };
    let longer = OLD.replace(
        "for {{ product }}.",
        &format!("for {{{{ product }}}}.{}", " token".repeat(200)),
    );
    let (old, new) = (parse(OLD), parse(&longer));
    compute(
        conn.into(),
        config,
        "support/answer",
        (1, &old),
        (2, &new),
        since,
        until,
    )
    .unwrap()
}

fn trace(i: usize, at: i64, prompt: &str) -> TraceRecord {
    let mut t = TraceRecord::new(format!("t{i}"), at, "openai", "/v1/chat/completions");
    t.prompt_name = Some(prompt.into());
    t.prompt_version = Some(1);
    t.input_tokens = Some(40);
    t
}

/// A config in a temp folder and its store, seeded with `traces`.
fn seeded(traces: Vec<TraceRecord>) -> (tempfile::TempDir, Config, keel_store::Conn) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keel.toml"), CONFIG).unwrap();
    let config = Config::load(&dir.path().join("keel.toml")).unwrap();
    let (store, conn) = crate::cmd::open_store(&config).unwrap();
    let (writer, handle) = keel_store::spawn(&store, keel_store::WriterOptions::default()).unwrap();
    for t in traces {
        writer.record(t);
    }
    drop(writer);
    assert_eq!(handle.shutdown().dropped_total, 0);
    (dir, config, conn)
}

#[test]
fn money_math_and_signs() {
    // 200 tokens × 3000 calls at $0.15/Mtok.
    let change = monthly_change(200.0, 3000.0, Nanos(150_000_000));
    assert_eq!(change, Nanos(90_000_000));
    assert_eq!(signed_dollars(change), "+$0.09");
    assert_eq!(signed_dollars(Nanos(-1_500_000_000)), "-$1.50");
    assert_eq!(signed_dollars(Nanos::ZERO), "$0.00");
    assert_eq!(monthly_change(-0.5, 10.0, Nanos(150_000_000)), Nanos(-750));
}

#[test]
fn plus_200_tokens_on_3000_calls_a_month_is_plus_9_cents() {
    let until = now_ms();
    let since = until - 30 * DAY_MS;
    let step = 30 * DAY_MS / 3000;
    let mut traces = Vec::new();
    for i in 0..3000 {
        let mut t = trace(i, until - 1_000 - step * i as i64, "support/answer");
        if i < 2000 {
            // Called as a raw model…
            t.model_requested = Some("fast".into());
        } else {
            // …and through a function, priced by its variant's model.
            t.model_requested = Some("support".into());
            t.function = Some("support".into());
            t.variant = Some("a".into());
        }
        t.upstream_model = Some("gpt-4o-mini".into());
        if i < 5 {
            t.input = Some(
                r#"{"model":"support","variables":{"product":"Acme","question":"Where is my order?"}}"#
                    .into(),
            );
        }
        traces.push(t);
    }
    // Unpriced: left out of the total, never $0.
    for i in 0..100 {
        let mut t = trace(10_000 + i, until - DAY_MS, "support/answer");
        t.model_requested = Some("house".into());
        t.upstream_model = Some("house-1".into());
        traces.push(t);
    }
    // Not counted: another prompt, before the window, an error that reached no model.
    traces.push(trace(20_000, until - DAY_MS, "other/prompt"));
    traces.push(trace(20_001, since - DAY_MS, "support/answer"));
    let mut failed = trace(20_002, until - DAY_MS, "support/answer");
    failed.status = TraceStatus::Error;
    failed.input_tokens = None;
    traces.push(failed);

    let (_dir, config, conn) = seeded(traces);
    let i = impact_of_200_tokens(&conn, &config, since, until);

    assert_eq!(
        i.pair.source,
        VariableSource::Recorded {
            used: 5,
            skipped: 0
        }
    );
    assert_eq!(i.observed_days, 30);
    assert_eq!(i.calls(), 3100);
    assert_eq!(i.unpriced_calls(), 100);
    let o200k: Vec<_> = i
        .tokens
        .iter()
        .filter(|d| d.encoding == Encoding::O200kBase)
        .collect();
    assert_eq!(o200k.len(), 1);
    assert_eq!(o200k[0].delta(), 200.0);

    let row = |f: Option<&str>, m: &str| {
        i.rows
            .iter()
            .find(|r| r.function.as_deref() == f && r.upstream_model.as_deref() == Some(m))
            .unwrap()
    };
    let direct = row(None, "gpt-4o-mini");
    assert_eq!(
        (direct.calls, direct.price_source.as_str()),
        (2000, "models.fast")
    );
    assert_eq!(direct.monthly_change, Some(Nanos(60_000_000)));
    let via_function = row(Some("support"), "gpt-4o-mini");
    assert_eq!(via_function.calls, 1000);
    assert_eq!(via_function.monthly_change, Some(Nanos(30_000_000)));
    let house = row(None, "house-1");
    assert_eq!(
        (house.monthly_change, house.encoding),
        (None, Encoding::Estimate)
    );
    assert_eq!(i.total(), Some(Nanos(90_000_000)));

    let text = paragraph(&i);
    assert!(text.contains("+$0.09"), "{text}");
    assert!(text.contains("100 calls on unpriced models"), "{text}");
    let j = to_json(&i);
    assert_eq!(j["monthly_change_usd"], "+0.09");
    assert_eq!(j["monthly_change_nanos"], 90_000_000);
    assert_eq!(j["variables"]["source"], "recorded");
}

#[test]
fn a_short_history_is_scaled_to_a_month() {
    let until = now_ms();
    // 100 calls over the last 10 days of a 30-day window → 300 a month.
    let traces = (0..100)
        .map(|i| {
            let mut t = trace(
                i,
                until - 1_000 - i as i64 * (DAY_MS / 10),
                "support/answer",
            );
            t.model_requested = Some("fast".into());
            t.upstream_model = Some("gpt-4o-mini".into());
            t
        })
        .collect();
    let (_dir, config, conn) = seeded(traces);
    let since = until - 30 * DAY_MS;
    let i = impact_of_200_tokens(&conn, &config, since, until);
    assert_eq!(i.observed_days, 10);
    assert_eq!(i.pair.source, VariableSource::Synthetic { skipped: 0 });
    let r = &i.rows[0];
    assert_eq!(r.monthly_calls, 300.0);
    // 200 × 300 × $0.15/Mtok = $0.009
    assert_eq!(r.monthly_change, Some(Nanos(9_000_000)));

    // No traffic at all: tokens still counted, with the configured function's model.
    let (_dir, config, conn) = seeded(Vec::new());
    let i = impact_of_200_tokens(&conn, &config, since, until);
    assert!(i.rows.is_empty());
    assert_eq!(i.observed_days, 0);
    assert_eq!(i.tokens[0].encoding, Encoding::O200kBase);
    assert_eq!(i.total(), None);
    assert!(paragraph(&i).contains("no cost projection"));
}
