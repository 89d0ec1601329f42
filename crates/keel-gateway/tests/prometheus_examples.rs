#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Prometheus examples in `examples/` stay true to the gateway: every metric the
//! alert rules and the Grafana dashboard query is one a running gateway exposes on
//! `/metrics`, the dashboard is valid JSON with its panels, and every rule has an
//! expression.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::*;
use serde_json::Value;

fn example(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every `keel_…` word in `text`, without the sample suffixes Prometheus adds.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("keel_"))
        .map(|w| {
            let mut w = w.to_string();
            for suffix in ["_bucket", "_sum", "_count", "_total"] {
                if let Some(base) = w.strip_suffix(suffix) {
                    w = base.to_string();
                    break;
                }
            }
            w
        })
        .collect()
}

/// The metric families `/metrics` declares (`# TYPE name kind`), registered or not yet
/// observed.
fn exposed(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// A breaker (its gauges exist from startup), the cache and a guardrail policy, so the
/// labelled families have series once traffic has flowed.
const EXTRA: &str = r#"
[cache]
enabled = true

[models.guarded]
provider = "up"
upstream_model = "mock-1"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
[models.guarded.circuit_breaker]
enabled = true

[guardrails.policies.pii]
models = ["guarded"]
[[guardrails.policies.pii.checks]]
check = "pii"
kinds = ["email"]
on = "input"
action = "redact"
"#;

#[tokio::test]
async fn examples_only_use_metrics_the_gateway_exposes() {
    let h = Harness::with(Options {
        extra: EXTRA.into(),
        ..Options::default()
    })
    .await;
    let mut cached = chat_body("mock-1", "hello");
    cached["temperature"] = 0.into();
    for _ in 0..2 {
        assert_eq!(h.chat(&cached).await.status(), 200);
    }
    let resp = h
        .chat(&chat_body("guarded", "mail me at a@example.com"))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(h.chat(&chat_body("no-such-model", "x")).await.status(), 404);
    let mut exposed = exposed(&h.metrics().await);
    h.finish().await;
    // The one family this traffic cannot reach (a shadow at its concurrency cap).
    exposed.insert("keel_shadow_skipped".into());

    let alerts = example("prometheus/alerts.yml");
    let dashboard = example("grafana/keel-dashboard.json");
    for (file, text) in [("alerts.yml", &alerts), ("keel-dashboard.json", &dashboard)] {
        let used = metric_names(text);
        assert!(used.len() >= 10, "{file} uses too few metrics: {used:?}");
        let unknown: Vec<_> = used.difference(&exposed).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics /metrics does not have: {unknown:?} (exposed: {exposed:?})"
        );
    }

    // The dashboard: valid JSON, panels with queries, each with a grid position.
    let d: Value = serde_json::from_str(&dashboard).unwrap();
    assert_eq!(d["uid"], "keel-gateway");
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    for p in panels {
        assert!(p["gridPos"]["w"].as_u64().unwrap() > 0, "{p}");
        assert!(!p["targets"].as_array().unwrap().is_empty(), "{p}");
    }
    for wanted in [
        "keel_requests",
        "keel_errors",
        "keel_request_duration_seconds",
        "keel_time_to_first_token_seconds",
        "keel_tokens",
        "keel_cost_usd",
        "keel_cache_hits",
        "keel_circuit_state",
        "keel_guardrail_actions",
    ] {
        assert!(
            metric_names(&dashboard).contains(wanted),
            "the dashboard has no panel on {wanted}"
        );
    }

    // The rules: a `groups:` list whose every alert has an expression.
    assert!(alerts.contains("\ngroups:\n"));
    let rules: Vec<&str> = alerts.split("- alert: ").skip(1).collect();
    assert!(rules.len() >= 8);
    for r in &rules {
        assert!(r.contains("expr: "), "rule without expr: {r}");
    }
}
