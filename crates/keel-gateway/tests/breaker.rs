#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Circuit breakers, in-process: a model that keeps failing is skipped (its attempt
//! recorded as `circuit_open`) until a probe after the cool-down; with nowhere else to
//! go the caller gets 503 `circuit_open`; the state is in /metrics and /status.

mod common;

use std::time::Duration;

use common::{chat_body, Harness, Options};
use serde_json::Value;

const EXTRA: &str = r#"
[providers.down]
kind = "mock"
[providers.down.mock]
rate_500 = 1.0

[models.down]
provider = "down"
upstream_model = "mock-down"
fallbacks = ["local"]
[models.down.circuit_breaker]
consecutive_failures = 2
cooldown = "300ms"

[models.alone]
provider = "down"
upstream_model = "mock-down"
circuit_breaker = { enabled = true, consecutive_failures = 1, cooldown = "1h" }
"#;

async fn start() -> Harness {
    Harness::with(Options {
        extra: EXTRA.into(),
        ..Options::default()
    })
    .await
}

async fn call(h: &Harness, model: &str, id: &str) -> reqwest::Response {
    h.post_json(
        "/v1/chat/completions",
        &chat_body(model, "hi"),
        &[("x-keel-request-id", id)],
    )
    .await
}

#[tokio::test]
async fn an_open_breaker_is_skipped_until_its_probe() {
    let h = start().await;
    for id in ["b-1", "b-2"] {
        assert_eq!(call(&h, "down", id).await.status(), 200);
    }
    assert!(h
        .metrics()
        .await
        .contains(r#"keel_circuit_state{model="down"} 2"#));
    let status: Value = h.get("/status").await.json().await.unwrap();
    assert_eq!(status["models"]["down"]["circuit"], "open", "{status}");
    // Open: `down` is not even tried.
    assert_eq!(call(&h, "down", "b-3").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(350)).await;
    // Cooled down: one probe (fails again), then the fallback.
    assert_eq!(call(&h, "down", "b-4").await.status(), 200);
    let metrics = h.metrics().await;
    assert!(
        metrics.contains(r#"keel_circuit_opened_total{model="down"} 2"#),
        "{metrics}"
    );
    let (_, traces) = h.finish().await;
    let outcomes = |id: &str| -> Vec<String> {
        common::trace(&traces, id)
            .attempts
            .iter()
            .map(|a| format!("{}:{}", a.model, a.outcome))
            .collect()
    };
    assert_eq!(outcomes("b-3"), ["down:circuit_open", "local:ok"]);
    assert_eq!(outcomes("b-4"), ["down:upstream_server_error", "local:ok"]);
}

#[tokio::test]
async fn with_nowhere_to_go_an_open_breaker_answers_503() {
    let h = start().await;
    assert_eq!(call(&h, "alone", "a-1").await.status(), 502);
    let resp = call(&h, "alone", "a-2").await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "circuit_open");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`alone`"));
    let (_, traces) = h.finish().await;
    assert_eq!(
        common::trace(&traces, "a-2").error_class.as_deref(),
        Some("circuit_open")
    );
}
