#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Load balancing across a model's deployments, in-process: weighted shares, least
//! latency, open circuits skipped, per-deployment rpm limits.

mod common;

use std::collections::HashMap;

use common::{chat_body, Harness, Options};

const EXTRA: &str = r#"
[providers.a]
kind = "mock"
[providers.b]
kind = "mock"
[providers.slow]
kind = "mock"
[providers.slow.mock]
latency_ms = 40
[providers.broken]
kind = "mock"
[providers.broken.mock]
rate_500 = 1.0

[models.split]
[[models.split.deployments]]
provider = "a"
upstream_model = "up-a"
weight = 3
[[models.split.deployments]]
provider = "b"
upstream_model = "up-b"
weight = 1

[models.fastest]
strategy = "least_latency"
[[models.fastest.deployments]]
provider = "slow"
upstream_model = "up-slow"
[[models.fastest.deployments]]
provider = "a"
upstream_model = "up-fast"

[models.healing]
retries = 1
retry_backoff = "1ms"
[models.healing.circuit_breaker]
consecutive_failures = 1
cooldown = "1h"
[[models.healing.deployments]]
provider = "broken"
upstream_model = "up-broken"
[[models.healing.deployments]]
provider = "b"
upstream_model = "up-ok"

[models.capped]
[[models.capped.deployments]]
provider = "a"
upstream_model = "up-capped"
weight = 100
rpm = 2
[[models.capped.deployments]]
provider = "b"
upstream_model = "up-spare"

[models.single]
[[models.single.deployments]]
provider = "a"
upstream_model = "up-single"
rpm = 1
"#;

async fn start() -> Harness {
    Harness::with(Options {
        extra: EXTRA.into(),
        ..Options::default()
    })
    .await
}

/// Send `n` requests to `model` (a few at a time); returns the upstream models that served.
async fn served(h: &Harness, model: &str, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let calls = chunk.iter().map(|i| async move {
            let r = h
                .post_json(
                    "/v1/chat/completions",
                    &chat_body(model, &format!("q{i}")),
                    &[],
                )
                .await;
            assert_eq!(r.status(), 200, "{model}");
            let body: serde_json::Value = r.json().await.unwrap();
            body["model"].as_str().unwrap().to_string()
        });
        for m in futures::future::join_all(calls).await {
            *counts.entry(m).or_default() += 1;
        }
    }
    counts
}

#[tokio::test]
async fn weights_split_the_traffic() {
    let h = start().await;
    let c = served(&h, "split", 400).await;
    let a = c.get("up-a").copied().unwrap_or(0);
    // 75 % ± 4.5 sd of a binomial(400, 0.75).
    assert!((260..=340).contains(&a), "{c:?}");
    h.finish().await;
}

#[tokio::test]
async fn least_latency_prefers_the_faster_deployment() {
    let h = start().await;
    served(&h, "fastest", 10).await; // both get measured
    let c = served(&h, "fastest", 100).await;
    let fast = c.get("up-fast").copied().unwrap_or(0);
    assert!(fast >= 80, "{c:?}");
    h.finish().await;
}

#[tokio::test]
async fn an_open_circuit_is_skipped() {
    let h = start().await;
    // Warm-up: the broken deployment fails once, its breaker opens; the retry goes to
    // the healthy one, so every call still succeeds.
    served(&h, "healing", 10).await;
    let status: serde_json::Value = h.get("/status").await.json().await.unwrap();
    assert_eq!(
        status["models"]["healing"]["deployments"][0]["circuit"], "open",
        "{status}"
    );
    let c = served(&h, "healing", 30).await;
    assert_eq!(c.get("up-ok").copied(), Some(30), "{c:?}");
    let metrics = h.metrics().await;
    assert!(
        metrics.contains(r#"keel_circuit_state{model="healing@broken/up-broken"} 2"#),
        "{metrics}"
    );
    h.finish().await;
}

#[tokio::test]
async fn a_deployment_at_its_rpm_is_skipped_and_a_lone_one_answers_429() {
    let h = start().await;
    let c = served(&h, "capped", 10).await;
    assert_eq!(c.get("up-capped").copied(), Some(2), "{c:?}");
    assert_eq!(c.get("up-spare").copied(), Some(8), "{c:?}");
    assert_eq!(h.chat(&chat_body("single", "one")).await.status(), 200);
    let r = h.chat(&chat_body("single", "two")).await;
    assert_eq!(r.status(), 429);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "deployments_busy");
    h.finish().await;
}
