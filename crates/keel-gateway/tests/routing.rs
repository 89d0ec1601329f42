#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Retries and fallbacks, in-process: a failing model is retried with back-off, then the
//! chain is walked; every attempt is on the trace; the response names the model that
//! answered; the answer is priced at that model's price; failures the chain does not
//! cover are returned at once.

mod common;

use std::time::{Duration, Instant};

use common::{chat_body, stream_body, Harness, Options};
use serde_json::Value;

const EXTRA: &str = r#"
[providers.down]
kind = "mock"
[providers.down.mock]
rate_500 = 1.0

[providers.limited]
kind = "mock"
[providers.limited.mock]
rate_429 = 1.0
retry_after_secs = 30

[models.down]
provider = "down"
upstream_model = "mock-down"
input_price_per_mtok = 5.0
output_price_per_mtok = 5.0
retries = 2
retry_backoff = "1ms"
fallbacks = ["local"]

[models.down-no-fallback]
provider = "down"
upstream_model = "mock-down"
retries = 1
retry_backoff = "1ms"
fallbacks = ["local"]
fallback_on = ["rate_limit"]

[models.flaky-stream]
provider = "inproc"
upstream_model = "mock-local"
retries = 2
retry_backoff = "1ms"
fallbacks = ["local"]

[models.limited]
provider = "limited"
upstream_model = "mock-limited"
retries = 3
max_retry_wait = "1s"
fallbacks = ["down", "local"]
"#;

async fn start() -> Harness {
    Harness::with(Options {
        extra: EXTRA.into(),
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
async fn a_failing_model_is_retried_then_falls_back_and_is_priced_as_the_fallback() {
    let h = start().await;
    let resp = h
        .post_json(
            "/v1/chat/completions",
            &chat_body("down", "hello"),
            &[("x-keel-request-id", "fb-1")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-keel-model").as_deref(), Some("local"));
    assert_eq!(header(&resp, "x-keel-attempts").as_deref(), Some("4"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Mock reply to: hello"
    );
    let (_, traces) = h.finish().await;
    let t = common::trace(&traces, "fb-1");
    let outcomes: Vec<(&str, &str)> = t
        .attempts
        .iter()
        .map(|a| (a.model.as_str(), a.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("down", "upstream_server_error"),
            ("down", "upstream_server_error"),
            ("down", "upstream_server_error"),
            ("local", "ok"),
        ]
    );
    assert_eq!(t.model_requested.as_deref(), Some("down"));
    assert_eq!(t.upstream_model.as_deref(), Some("mock-local"));
    // Priced at local's $0.15/$0.60, not down's $5.
    let (i, o) = (
        t.input_tokens.unwrap() as i64,
        t.output_tokens.unwrap() as i64,
    );
    assert_eq!(
        t.cost.unwrap().0,
        i * common::INPUT_NANOS_PER_TOKEN + o * common::OUTPUT_NANOS_PER_TOKEN
    );
}

#[tokio::test]
async fn a_retry_after_longer_than_allowed_skips_to_the_next_model() {
    let h = start().await;
    let started = Instant::now();
    let resp = h
        .post_json(
            "/v1/chat/completions",
            &chat_body("limited", "hi"),
            &[("x-keel-request-id", "rl-1")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it waited out Retry-After: 30"
    );
    assert_eq!(header(&resp, "x-keel-model").as_deref(), Some("local"));
    let (_, traces) = h.finish().await;
    let t = common::trace(&traces, "rl-1");
    let models: Vec<&str> = t.attempts.iter().map(|a| a.model.as_str()).collect();
    // One 429 (no retry: 30 s > max_retry_wait), then `down` with its own 2 retries, then local.
    assert_eq!(models, ["limited", "down", "down", "down", "local"]);
    assert_eq!(t.attempts[0].outcome, "upstream_rate_limit");
}

#[tokio::test]
async fn failures_the_chain_does_not_cover_are_returned_after_the_retries() {
    let h = start().await;
    let resp = h
        .post_json(
            "/v1/chat/completions",
            &chat_body("down-no-fallback", "hi"),
            &[("x-keel-request-id", "nf-1")],
        )
        .await;
    // fallback_on = ["rate_limit"]: a 500 is retried, then returned as 502.
    assert_eq!(resp.status(), 502);
    // A client error is neither retried nor a reason to fall back.
    let resp = h
        .post_json(
            "/v1/chat/completions",
            &chat_body("down", "[mock:status=400] bad"),
            &[("x-keel-request-id", "nf-2")],
        )
        .await;
    assert_eq!(resp.status(), 400);
    let (_, traces) = h.finish().await;
    assert_eq!(common::trace(&traces, "nf-1").attempts.len(), 2);
    let t = common::trace(&traces, "nf-2");
    assert_eq!(t.attempts.len(), 1, "{:?}", t.attempts);
}

#[tokio::test]
async fn a_stream_falls_back_before_its_first_byte() {
    let h = start().await;
    let resp = h
        .post_json(
            "/v1/chat/completions",
            &stream_body("down", "streamed", true),
            &[("x-keel-request-id", "st-1")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-keel-model").as_deref(), Some("local"));
    let text = resp.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let (_, traces) = h.finish().await;
    let t = common::trace(&traces, "st-1");
    assert_eq!(t.attempts.last().unwrap().model, "local");
    assert!(
        t.cost.is_some(),
        "the stream is priced at the fallback's price"
    );
}

#[test]
fn failures_are_classified_for_routing() {
    use keel_core::config::routing::FailureClass;
    use keel_gateway::error::GatewayError;
    use keel_gateway::pipeline::route::classify;
    use keel_providers::ProviderError;
    let status = |status: u16, code: Option<&str>, message: &str| {
        GatewayError::Upstream(ProviderError::Status {
            status,
            message: message.into(),
            code: code.map(str::to_string),
            body: None,
            retry_after: None,
        })
    };
    assert_eq!(
        classify(&status(429, None, "slow")),
        Some(FailureClass::RateLimit)
    );
    assert_eq!(
        classify(&status(503, None, "down")),
        Some(FailureClass::ServerError)
    );
    assert_eq!(
        classify(&status(400, Some("context_length_exceeded"), "too long")),
        Some(FailureClass::ContextLength)
    );
    assert_eq!(
        classify(&status(
            400,
            None,
            "prompt is too long: 210000 tokens > 200000 maximum"
        )),
        Some(FailureClass::ContextLength)
    );
    assert_eq!(
        classify(&status(400, Some("content_policy_violation"), "no")),
        Some(FailureClass::ContentPolicy)
    );
    assert_eq!(classify(&status(401, None, "bad key")), None);
    assert_eq!(
        classify(&GatewayError::Upstream(ProviderError::Timeout(
            Duration::from_secs(1)
        ))),
        Some(FailureClass::Timeout)
    );
    assert_eq!(classify(&GatewayError::InvalidRequest("x".into())), None);
}

#[tokio::test]
async fn a_stream_cut_after_its_first_chunk_is_never_retried() {
    let h = start().await;
    // `flaky-stream` would retry and fall back, but once the response has started the cut
    // goes to the client as an error event.
    let resp = h
        .post_json(
            "/v1/chat/completions",
            &stream_body("flaky-stream", "[mock:cut] a long answer please", true),
            &[("x-keel-request-id", "cut-1")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("\"error\""), "{text}");
    assert!(!text.contains("data: [DONE]"), "{text}");
    let (_, traces) = h.finish().await;
    let t = common::trace(&traces, "cut-1");
    assert!(
        t.attempts.is_empty(),
        "one attempt, not retried: {:?}",
        t.attempts
    );
    assert_eq!(t.error_class.as_deref(), Some("upstream_stream_cut"));
}
