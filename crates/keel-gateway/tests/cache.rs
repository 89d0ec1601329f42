#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The response cache, in-process: an identical deterministic request from the same
//! tenant is answered from the cache at $0 with the saved cost traced; other tenants,
//! non-zero temperature, streams and `x-keel-cache: bypass` go upstream; entries expire.

mod common;

use std::time::Duration;

use common::{chat_body, Harness, Options};
use serde_json::{json, Value};

async fn start() -> Harness {
    Harness::with(Options {
        extra: "[cache]\nenabled = true\nttl = \"400ms\"\n".into(),
        ..Options::default()
    })
    .await
}

fn deterministic(text: &str) -> Value {
    let mut b = chat_body("mock-1", text);
    b["temperature"] = json!(0);
    b
}

fn cache_header(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("x-keel-cache")
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn an_identical_request_is_a_hit_at_zero_cost() {
    let h = start().await;
    let first = h
        .post_json(
            "/v1/chat/completions",
            &deterministic("hello"),
            &[("x-keel-request-id", "c-1")],
        )
        .await;
    assert_eq!(cache_header(&first).as_deref(), Some("miss"));
    let first_body: Value = first.json().await.unwrap();
    let second = h
        .post_json(
            "/v1/chat/completions",
            &deterministic("hello"),
            &[("x-keel-request-id", "c-2")],
        )
        .await;
    assert_eq!(cache_header(&second).as_deref(), Some("hit"));
    assert_eq!(
        second
            .headers()
            .get("x-keel-cost-usd")
            .unwrap()
            .to_str()
            .unwrap(),
        "0.00"
    );
    let second_body: Value = second.json().await.unwrap();
    assert_eq!(first_body, second_body, "the stored reply, unchanged");

    // Another tenant does not share the entry.
    let other = h
        .post_json(
            "/v1/chat/completions",
            &deterministic("hello"),
            &[("x-keel-tenant", "acme"), ("x-keel-request-id", "c-3")],
        )
        .await;
    assert_eq!(cache_header(&other).as_deref(), Some("miss"));
    // Bypassed: no read, no write.
    let bypass = h
        .post_json(
            "/v1/chat/completions",
            &deterministic("hello"),
            &[("x-keel-cache", "bypass")],
        )
        .await;
    assert_eq!(cache_header(&bypass), None);
    // Variety asked for: not cached.
    let hot = h.chat(&chat_body("mock-1", "hello")).await;
    assert_eq!(cache_header(&hot), None);
    // Streams always go upstream.
    let mut s = deterministic("hello");
    s["stream"] = json!(true);
    let streamed = h.chat(&s).await;
    assert_eq!(cache_header(&streamed), None);
    let _ = streamed.text().await;

    // Expired after the ttl.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = h.chat(&deterministic("hello")).await;
    assert_eq!(cache_header(&later).as_deref(), Some("miss"));
    let metrics = h.metrics().await;
    assert!(
        metrics.contains(r#"keel_cache_hits_total{model="mock-1"} 1"#),
        "{metrics}"
    );

    let (_, traces) = h.finish().await;
    let (miss, hit) = (common::trace(&traces, "c-1"), common::trace(&traces, "c-2"));
    assert_eq!(miss.cache.as_deref(), Some("miss"));
    assert_eq!(hit.cache.as_deref(), Some("hit"));
    assert_eq!(hit.cost.map(|c| c.0), Some(0));
    assert_eq!(hit.saved_cost, miss.cost);
    assert!(miss.cost.unwrap().0 > 0);
    assert_eq!(hit.input_tokens, miss.input_tokens);
}
