#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Streamed chat completions: SSE framing, the usage chunk, time to first token, cost of
//! streams, and a client that hangs up half-way.

mod common;

use std::time::{Duration, Instant};

use common::*;
use keel_core::config::mock::MockSettings;
use keel_core::money::Nanos;
use keel_core::trace::TraceStatus;
use serde_json::Value;

#[tokio::test]
async fn stream_with_include_usage_ends_with_usage_chunk_then_done() {
    let h = Harness::start().await;
    let resp = h
        .chat(&stream_body(
            "mock-1",
            "Tell me a short story about a boat",
            true,
        ))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let id = request_id(&resp);
    let text = resp.text().await.unwrap();

    assert_eq!(last_line(&text), "data: [DONE]", "{text}");
    assert_eq!(sse_data(&text).iter().filter(|d| *d == "[DONE]").count(), 1);
    let chunks = sse_chunks(&text);
    assert!(chunks.len() >= 4, "role, content..., finish, usage: {text}");
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "mock-1");
        assert!(c["id"].as_str().unwrap().starts_with("chatcmpl-"));
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        streamed_text(&chunks),
        "Mock reply to: Tell me a short story about a boat"
    );

    // Exactly one usage chunk, the last one, with empty choices.
    let with_usage: Vec<&Value> = chunks.iter().filter(|c| c["usage"].is_object()).collect();
    assert_eq!(with_usage.len(), 1, "{text}");
    let last = chunks.last().unwrap();
    assert!(
        last["usage"].is_object(),
        "the usage chunk comes last: {last}"
    );
    assert_eq!(last["choices"], serde_json::json!([]));
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, vec!["stop"]);
    let usage = last["usage"].clone();

    let (_, traces) = h.finish().await;
    let t = trace(&traces, &id);
    assert_eq!(t.status, TraceStatus::Ok);
    assert!(t.stream);
    assert!(
        t.ttft_ms.is_some(),
        "a stream records its time to first token"
    );
    assert!(t.ttft_ms.unwrap() <= t.latency_ms);
    assert_eq!(t.input_tokens, usage["prompt_tokens"].as_u64());
    assert_eq!(t.output_tokens, usage["completion_tokens"].as_u64());
    assert_eq!(t.cost, Some(Nanos(expected_cost_nanos(&usage))));
    assert_eq!(t.served_model.as_deref(), Some("mock-1"));
    assert_eq!(t.system_fingerprint.as_deref(), Some("fp_mock"));
    assert_eq!(t.finish_reason.as_deref(), Some("stop"));
    assert_eq!(
        t.output.as_deref(),
        Some("Mock reply to: Tell me a short story about a boat")
    );
}

#[tokio::test]
async fn stream_without_include_usage_hides_usage_but_still_prices_the_call() {
    let h = Harness::start().await;
    let prompt = "Count the waves";
    // The same request with usage, to know what the tokens are.
    let text = h
        .chat(&stream_body("mock-1", prompt, true))
        .await
        .text()
        .await
        .unwrap();
    let usage = sse_chunks(&text).last().unwrap()["usage"].clone();
    assert!(usage.is_object());

    let resp = h.chat(&stream_body("mock-1", prompt, false)).await;
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let text = resp.text().await.unwrap();
    assert_eq!(last_line(&text), "data: [DONE]");
    let chunks = sse_chunks(&text);
    assert_eq!(streamed_text(&chunks), "Mock reply to: Count the waves");
    for c in &chunks {
        assert!(
            c.get("usage").is_none() || c["usage"].is_null(),
            "usage reached a client that did not ask: {c}"
        );
        assert!(
            !c["choices"].as_array().unwrap().is_empty(),
            "no empty-choices chunk without include_usage: {c}"
        );
    }

    let (_, traces) = h.finish().await;
    let t = trace(&traces, &id);
    assert_eq!(t.status, TraceStatus::Ok);
    assert_eq!(t.input_tokens, usage["prompt_tokens"].as_u64());
    assert_eq!(t.output_tokens, usage["completion_tokens"].as_u64());
    assert_eq!(t.cost, Some(Nanos(expected_cost_nanos(&usage))));
    assert!(t.ttft_ms.is_some());
}

#[tokio::test]
async fn in_process_mock_model_streams_and_answers_whole() {
    let h = Harness::start().await;
    let resp = h.chat(&chat_body("local", "hello in process")).await;
    assert_eq!(resp.status(), 200);
    let cost_header = resp.headers()["x-keel-cost-usd"]
        .to_str()
        .unwrap()
        .to_string();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], "mock-local");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Mock reply to: hello in process"
    );
    assert_eq!(
        dollars_to_nanos(&cost_header),
        expected_cost_nanos(&v["usage"])
    );

    let resp = h
        .chat(&stream_body("local", "hello in process", true))
        .await;
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let text = resp.text().await.unwrap();
    assert_eq!(last_line(&text), "data: [DONE]");
    let chunks = sse_chunks(&text);
    assert_eq!(streamed_text(&chunks), "Mock reply to: hello in process");
    assert_eq!(
        chunks.last().unwrap()["usage"],
        v["usage"],
        "streamed and whole usage agree"
    );

    let (_, traces) = h.finish().await;
    let t = trace(&traces, &id);
    assert_eq!(t.provider.as_deref(), Some("inproc"));
    assert_eq!(t.cost, Some(Nanos(expected_cost_nanos(&v["usage"]))));
}

#[tokio::test]
async fn client_disconnect_mid_stream_is_traced_and_billed_at_the_providers_usage() {
    let h = Harness::with(Options {
        mock: MockSettings {
            chunk_delay_ms: 20,
            ..MockSettings::default()
        },
        ..Options::default()
    })
    .await;
    let mut resp = h
        .chat(&stream_body(
            "mock-1",
            "[mock:tokens=200] a long story",
            true,
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let first = resp.chunk().await.unwrap().expect("a first chunk");
    assert!(
        String::from_utf8_lossy(&first).starts_with("data: "),
        "{first:?}"
    );
    drop(resp);

    // The gateway stops relaying, but reads the upstream to its end (~1 s: 50 chunks,
    // 20 ms apart) for the usage the provider bills; shutdown waits for that.
    let (report, traces) = tokio::time::timeout(Duration::from_secs(8), h.finish())
        .await
        .expect("shutdown waits for an abandoned stream only until its end");
    assert_eq!(report.traces_dropped, 0);
    let t = trace(&traces, &id);
    assert_eq!(t.status, TraceStatus::ClientDisconnected);
    assert_eq!(t.error_class.as_deref(), Some("client_disconnected"));
    assert!(t.stream);
    assert!(t.ttft_ms.is_some());
    assert_eq!(t.output_tokens, Some(200));
    assert!(!t.usage_estimated);
    assert!(t.cost.is_some());
}

#[tokio::test]
async fn shutdown_stops_reading_an_abandoned_stream_at_its_deadline() {
    let h = Harness::with(Options {
        mock: MockSettings {
            chunk_delay_ms: 200,
            ..MockSettings::default()
        },
        gateway: "shutdown_timeout = \"500ms\"".into(),
        ..Options::default()
    })
    .await;
    let mut resp = h
        .chat(&stream_body(
            "mock-1",
            "[mock:tokens=200] a long story",
            true,
        ))
        .await;
    let id = request_id(&resp);
    resp.chunk().await.unwrap().expect("a first chunk");
    drop(resp);
    // The full stream would take ~10 s; shutdown gives it 500 ms, then prices what
    // was produced.
    let started = Instant::now();
    let (report, traces) = h.finish().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.traces_dropped, 0);
    let t = trace(&traces, &id);
    assert_eq!(t.status, TraceStatus::ClientDisconnected);
    assert!(t.usage_estimated);
    assert!(t.cost.is_some_and(|c| c.0 > 0));
}

#[tokio::test]
async fn stream_past_the_model_deadline_ends_with_a_timeout_error() {
    // `slow` has timeout = 300ms; 200 tokens at 100 ms per 4-token chunk take ~5 s.
    let h = Harness::start().await;
    let started = Instant::now();
    let resp = h
        .chat(&stream_body(
            "slow",
            "[mock:tokens=200] [mock:chunk_delay=100] a long one",
            true,
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let text = tokio::time::timeout(Duration::from_secs(5), resp.text())
        .await
        .expect("the stream is ended at the model's deadline")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let data = sse_data(&text);
    assert!(!data.iter().any(|d| d == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout", "{text}");

    let (_, traces) = h.finish().await;
    let t = trace(&traces, &id);
    assert_eq!(t.status, TraceStatus::Error);
    assert_eq!(t.error_class.as_deref(), Some("upstream_timeout"));
}

#[tokio::test]
async fn client_that_gives_up_before_the_reply_is_traced_and_not_left_in_flight() {
    let h = Harness::start().await;
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = impatient
        .post(h.url("/v1/chat/completions"))
        .header("x-keel-request-id", "gave-up-1")
        .json(&chat_body("mock-1", "[mock:latency=1000] slow answer"))
        .send()
        .await
        .expect_err("the client times out first");
    assert!(err.is_timeout(), "{err}");

    // Whatever the gateway does with the abandoned request, it must end: the in-flight
    // gauge comes back to 0.
    let mut in_flight = None;
    for _ in 0..20 {
        in_flight = metric(&h.metrics().await, "keel_requests_in_flight", &[]);
        if in_flight == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, traces) = h.finish().await;
    let found: Vec<_> = traces.iter().filter(|t| t.id == "gave-up-1").collect();
    assert!(
        in_flight == Some(0.0) && found.len() == 1,
        "an abandoned request must end: keel_requests_in_flight = {in_flight:?} (want 0), traces with its id = {} (want 1)",
        found.len()
    );
    assert_eq!(
        found[0].status,
        TraceStatus::ClientDisconnected,
        "the client never got the reply: {:#?}",
        found[0]
    );
}
