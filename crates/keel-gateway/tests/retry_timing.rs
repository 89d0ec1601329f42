#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Retry timing, in-process: a short `Retry-After` from the upstream (a real header from
//! the keel-mock HTTP server) is waited out before the retry — not less, not much more —
//! while one longer than `max_retry_wait` moves straight to the fallback; a function
//! variant's own `fallbacks` replace its model's chain; and a stream answered by a
//! fallback gets that model's whole `timeout`, not what the failed attempts left of it.

mod common;

use std::time::{Duration, Instant};

use common::{chat_body, stream_body, Harness, Options};
use keel_core::config::mock::MockSettings;
use keel_registry::parse_prompt;
use keel_store::Store;
use serde_json::json;

/// Every call to the HTTP mock (provider `up`) is a 429 with `Retry-After: 1`.
fn always_429() -> MockSettings {
    MockSettings {
        rate_429: 1.0,
        retry_after_secs: 1,
        ..MockSettings::default()
    }
}

const MODELS: &str = r#"
[models.patient]
provider = "up"
upstream_model = "mock-1"
retries = 1
max_retry_wait = "5s"
fallbacks = ["local"]

[models.impatient]
provider = "up"
upstream_model = "mock-1"
retries = 3
max_retry_wait = "500ms"
fallbacks = ["local"]

# A model whose own chain could not help (it is on the same failing upstream).
[models.limited]
provider = "up"
upstream_model = "mock-1"
fallbacks = ["unpriced"]

[providers.hang]
kind = "mock"
[providers.hang.mock]
rate_timeout = 1.0

[providers.trickle]
kind = "mock"
[providers.trickle.mock]
chunk_delay_ms = 40
output_tokens = 36

[models.hanging]
provider = "hang"
upstream_model = "mock-hang"
timeout = "300ms"
first_token_timeout = "300ms"
fallbacks = ["trickling"]

[models.trickling]
provider = "trickle"
upstream_model = "mock-trickle"
timeout = "600ms"

[registry]
refresh = "100ms"

[functions.support]
[[functions.support.variants]]
name = "control"
prompt = "support/answer"
model = "limited"
weight = 1
fallbacks = ["local"]
"#;

async fn start() -> Harness {
    Harness::with(Options {
        mock: always_429(),
        extra: MODELS.into(),
        ..Options::default()
    })
    .await
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn a_short_retry_after_is_waited_out_before_the_retry() {
    let h = start().await;
    let started = Instant::now();
    let resp = h
        .post_json(
            "/v1/chat/completions",
            &chat_body("patient", "hello"),
            &[("x-keel-request-id", "ra-1")],
        )
        .await;
    let took = started.elapsed();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    assert_eq!(header(&resp, "x-keel-model").as_deref(), Some("local"));
    assert_eq!(header(&resp, "x-keel-attempts").as_deref(), Some("3"));
    // One wait of Retry-After: 1 between the two tries of `patient`, then the fallback.
    assert!(
        took >= Duration::from_secs(1),
        "retried after only {took:?}"
    );
    assert!(took < Duration::from_millis(2_500), "took {took:?}");

    // Retry-After (1 s) beyond max_retry_wait (500 ms): no wait, no retry, the fallback.
    let started = Instant::now();
    let resp = h
        .post_json(
            "/v1/chat/completions",
            &chat_body("impatient", "hello"),
            &[("x-keel-request-id", "ra-2")],
        )
        .await;
    let took = started.elapsed();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-keel-model").as_deref(), Some("local"));
    assert!(took < Duration::from_millis(500), "waited {took:?}");

    let (_, traces) = h.finish().await;
    let outcomes = |id: &str| -> Vec<(String, String)> {
        common::trace(&traces, id)
            .attempts
            .iter()
            .map(|a| (a.model.clone(), a.outcome.clone()))
            .collect()
    };
    let s = |m: &str, o: &str| (m.to_string(), o.to_string());
    assert_eq!(
        outcomes("ra-1"),
        [
            s("patient", "upstream_rate_limit"),
            s("patient", "upstream_rate_limit"),
            s("local", "ok")
        ]
    );
    assert_eq!(
        outcomes("ra-2"),
        [s("impatient", "upstream_rate_limit"), s("local", "ok")]
    );
}

#[tokio::test]
async fn a_variants_own_fallbacks_replace_its_models_chain() {
    let h = start().await;
    let store = Store::open(&h.store_path).unwrap();
    let conn = store.writer_conn().unwrap();
    let text = "[[messages]]\nrole = \"user\"\ncontent = \"hi\"\n";
    let p = parse_prompt("support/answer", std::path::Path::new("a.toml"), text).unwrap();
    keel_store::push_version(
        &conn,
        "support/answer",
        &p.content_hash(),
        &p.to_json().to_string(),
        "t",
        "v1",
        None,
    )
    .unwrap();
    keel_store::set_label(&conn, "support/answer", 1, "production", "t", "v1").unwrap();
    let started = Instant::now();
    while h.chat(&json!({"model": "support"})).await.status() == 503 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "prompt never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = h
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "support"}),
            &[("x-keel-request-id", "vf-1")],
        )
        .await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    assert_eq!(header(&resp, "x-keel-model").as_deref(), Some("local"));
    assert_eq!(header(&resp, "x-keel-variant").as_deref(), Some("control"));
    let (_, traces) = h.finish().await;
    let models: Vec<&str> = common::trace(&traces, "vf-1")
        .attempts
        .iter()
        .map(|a| a.model.as_str())
        .collect();
    // `limited`'s own chain (`unpriced`) is never tried.
    assert_eq!(models, ["limited", "local"]);
}

#[tokio::test]
async fn a_stream_answered_by_a_fallback_gets_that_models_whole_timeout() {
    let h = start().await;
    // `hanging` times out after 300 ms; `trickling` then streams for about 440 ms of its
    // 600 ms timeout — which would be cut if that timeout counted from the request's start.
    let started = Instant::now();
    let resp = h
        .post_json(
            "/v1/chat/completions",
            &stream_body("hanging", "tell me a story", true),
            &[("x-keel-request-id", "st-1")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-keel-model").as_deref(), Some("trickling"));
    let body = resp.text().await.unwrap();
    let took = started.elapsed();
    assert_eq!(common::last_line(&body), "data: [DONE]", "{body}");
    assert!(
        took > Duration::from_millis(650),
        "the test needs a long stream: {took:?}"
    );
    let (_, traces) = h.finish().await;
    let t = common::trace(&traces, "st-1");
    assert_eq!(t.error_class, None);
    assert_eq!(t.output_tokens, Some(36));
}
