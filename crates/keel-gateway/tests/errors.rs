#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Failures, each as a client sees it (status, OpenAI error shape, headers) and as the
//! trace records it (status `error`, error class), with the gateway still serving after.

mod common;

use std::time::{Duration, Instant};

use common::*;
use keel_core::trace::{TraceRecord, TraceStatus};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Check the OpenAI error shape and return the message.
fn openai_error(v: &Value, code: &str) -> String {
    let e = &v["error"];
    assert!(e.is_object(), "not an OpenAI error body: {v}");
    assert!(e["type"].is_string(), "{v}");
    assert_eq!(e["code"], code, "{v}");
    e["message"].as_str().expect("error.message").to_string()
}

/// Read the response as an OpenAI error: (status, request id, message).
async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> (String, String) {
    assert_eq!(resp.status(), status);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let id = request_id(&resp);
    let v: Value = resp.json().await.unwrap();
    (id, openai_error(&v, code))
}

fn assert_error_trace(t: &TraceRecord, http_status: u16, class: &str) {
    assert_eq!(t.status, TraceStatus::Error, "{t:#?}");
    assert_eq!(t.http_status, http_status, "{t:#?}");
    assert_eq!(t.error_class.as_deref(), Some(class), "{t:#?}");
    assert!(
        t.error_message.as_deref().is_some_and(|m| !m.is_empty()),
        "{t:#?}"
    );
}

/// The gateway still answers a normal request.
async fn still_serving(h: &Harness) {
    let resp = h.chat(&chat_body("mock-1", "still there?")).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Mock reply to: still there?"
    );
}

#[tokio::test]
async fn bad_request_bodies_are_400_naming_the_problem() {
    let h = Harness::start().await;

    let resp = h
        .post_raw(
            "/v1/chat/completions",
            r#"{"model": "mock-1", "messages": ["#,
        )
        .await;
    let (malformed, msg) = expect_error(resp, 400, "invalid_request").await;
    assert!(msg.contains("not valid JSON"), "{msg}");

    let resp = h.chat(&json!({"model": "mock-1", "messages": "hi"})).await;
    let (wrong_type, msg) = expect_error(resp, 400, "invalid_request").await;
    assert!(msg.contains("`messages`"), "{msg}");

    let resp = h.chat(&json!({"model": "mock-1", "messages": []})).await;
    let (empty, msg) = expect_error(resp, 400, "invalid_request").await;
    assert!(
        msg.contains("messages") && msg.contains("at least one"),
        "{msg}"
    );

    let bytes =
        b"{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}"
            .to_vec();
    let resp = h.post_raw("/v1/chat/completions", bytes).await;
    let (utf8, msg) = expect_error(resp, 400, "invalid_request").await;
    assert!(msg.contains("UTF-8"), "{msg}");

    let resp = h
        .chat(&json!({"model": "mock-1", "messages": [{"role": "robot", "content": "x"}]}))
        .await;
    let (role, msg) = expect_error(resp, 400, "invalid_request").await;
    assert!(msg.contains("messages[0].role"), "{msg}");

    still_serving(&h).await;
    let (_, traces) = h.finish().await;
    assert_eq!(traces.len(), 6);
    for id in [&malformed, &wrong_type, &empty, &utf8, &role] {
        assert_error_trace(trace(&traces, id), 400, "invalid_request");
    }
}

#[tokio::test]
async fn ten_megabyte_body_is_413() {
    let h = Harness::start().await;
    // Valid JSON, ~10 MB, above the default 4 MiB limit.
    let big = format!(
        r#"{{"model":"mock-1","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(10 * 1024 * 1024)
    );
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(h.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let (id, msg) = expect_error(resp, 413, "body_too_large").await;
    assert!(
        msg.contains("max_body_bytes"),
        "the message says what to change: {msg}"
    );

    still_serving(&h).await;
    let (_, traces) = h.finish().await;
    let t = trace(&traces, &id);
    assert_error_trace(t, 413, "body_too_large");
    assert!(
        t.input.as_deref().is_none_or(|i| i.len() < 1024 * 1024),
        "a refused 10 MB body is not stored whole"
    );
}

#[tokio::test]
async fn unknown_model_is_404_naming_the_configured_models_and_functions() {
    let h = Harness::with(Options {
        extra: "[functions.support-answer]\n[[functions.support-answer.variants]]\n\
                name = \"control\"\nprompt = \"support/answer\"\nmodel = \"local\"\nweight = 1\n"
            .into(),
        ..Options::default()
    })
    .await;
    let resp = h.chat(&chat_body("gpt-17", "hi")).await;
    let (id, msg) = expect_error(resp, 404, "model_not_found").await;
    assert!(msg.contains("gpt-17"), "{msg}");
    for m in MODELS {
        assert!(msg.contains(m), "the message lists `{m}`: {msg}");
    }
    assert!(
        msg.contains("functions: support-answer"),
        "the message lists the functions a caller may have meant: {msg}"
    );
    still_serving(&h).await;
    let (_, traces) = h.finish().await;
    let t = trace(&traces, &id);
    assert_error_trace(t, 404, "model_not_found");
    assert_eq!(t.model_requested.as_deref(), Some("gpt-17"));
}

#[tokio::test]
async fn upstream_429_passes_through_with_retry_after_and_message() {
    let h = Harness::start().await;
    let resp = h
        .chat(&chat_body(
            "mock-1",
            "hi [mock:status=429] [mock:retry_after=7]",
        ))
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string())
            .as_deref(),
        Some("7")
    );
    let id = request_id(&resp);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let msg = openai_error(&v, "rate_limit_exceeded");
    assert!(
        msg.contains("Mock: rate limit reached for mock-1"),
        "the provider's message passes through: {msg}"
    );

    // Streamed: the failure comes before any byte, so it is still a proper 429.
    let resp = h
        .chat(&stream_body("mock-1", "hi [mock:status=429]", true))
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers().get("retry-after").unwrap(), "1");
    let stream_id = request_id(&resp);
    let v: Value = resp.json().await.unwrap();
    openai_error(&v, "rate_limit_exceeded");

    still_serving(&h).await;
    let (_, traces) = h.finish().await;
    assert_error_trace(trace(&traces, &id), 429, "upstream_rate_limit");
    let t = trace(&traces, &stream_id);
    assert_error_trace(t, 429, "upstream_rate_limit");
    assert!(t.stream);
}

#[tokio::test]
async fn upstream_500_is_502() {
    let h = Harness::start().await;
    let resp = h.chat(&chat_body("mock-1", "[mock:status=500] hi")).await;
    let (id, msg) = expect_error(resp, 502, "internal_error").await;
    assert!(
        msg.contains("500") && msg.contains("Mock: the server had an error"),
        "{msg}"
    );
    still_serving(&h).await;
    let (_, traces) = h.finish().await;
    assert_error_trace(trace(&traces, &id), 502, "upstream_server_error");
}

#[tokio::test]
async fn upstream_garbage_is_502() {
    let h = Harness::start().await;
    let resp = h.chat(&chat_body("mock-1", "[mock:garbage] hi")).await;
    let (id, msg) = expect_error(resp, 502, "upstream_invalid_response").await;
    assert!(msg.contains("invalid response"), "{msg}");
    still_serving(&h).await;
    let (_, traces) = h.finish().await;
    assert_error_trace(trace(&traces, &id), 502, "upstream_invalid_response");
}

#[tokio::test]
async fn streamed_upstream_garbage_is_502_invalid_response() {
    // A 200 `text/html` body where an SSE stream was expected is an invalid response,
    // not a stream that was cut.
    let h = Harness::start().await;
    let resp = h
        .chat(&stream_body("mock-1", "[mock:garbage] hi", true))
        .await;
    assert_eq!(
        resp.status(),
        502,
        "a non-SSE 200 before the first chunk is a 502"
    );
    let stream_id = request_id(&resp);
    let v: Value = resp.json().await.unwrap();
    openai_error(&v, "upstream_invalid_response");
    still_serving(&h).await;
    let (_, traces) = h.finish().await;
    assert_error_trace(trace(&traces, &stream_id), 502, "upstream_invalid_response");
}

#[tokio::test]
async fn upstream_timeout_is_504_at_the_model_deadline() {
    let h = Harness::start().await;
    let started = Instant::now();
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        h.chat(&chat_body("slow", "[mock:timeout] hi")),
    )
    .await
    .expect("the 300ms model timeout must fire");
    let elapsed = started.elapsed();
    let (id, msg) = expect_error(resp, 504, "upstream_timeout").await;
    assert!(msg.contains("timed out"), "{msg}");
    assert!(
        elapsed < Duration::from_secs(2),
        "504 after {elapsed:?} for a 300ms timeout"
    );
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    still_serving(&h).await;
    let (_, traces) = h.finish().await;
    assert_error_trace(trace(&traces, &id), 504, "upstream_timeout");
}

#[tokio::test]
async fn streamed_upstream_timeout_is_504_at_the_model_deadline() {
    // The model's `timeout` is the total time for one call: a stream whose first chunk
    // never comes must not wait the (longer) default first-token timeout.
    let h = Harness::start().await;
    let started = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(5), h.chat(&stream_body("slow", "[mock:timeout] hi", true)))
        .await
        .expect("a streamed call to a model with timeout = 300ms must fail within its timeout, not the 60 s first-token default");
    let (id, _) = expect_error(resp, 504, "upstream_timeout").await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let (_, traces) = h.finish().await;
    assert_error_trace(trace(&traces, &id), 504, "upstream_timeout");
}

#[tokio::test]
async fn cut_stream_reports_an_error_event_and_no_done() {
    let h = Harness::start().await;
    let resp = h
        .chat(&stream_body(
            "mock-1",
            "[mock:cut] [mock:tokens=40] a story that breaks",
            true,
        ))
        .await;
    assert_eq!(resp.status(), 200, "the stream had started before it broke");
    let id = request_id(&resp);
    let text = resp.text().await.unwrap();
    let data = sse_data(&text);
    assert!(
        !data.iter().any(|d| d == "[DONE]"),
        "a cut stream must not end with [DONE]: {text}"
    );
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(
        last["error"].is_object(),
        "the client is told the stream broke: {text}"
    );
    assert!(
        !streamed_text(&sse_chunks(&text)).is_empty(),
        "some content came before the cut"
    );

    // A whole response cut in half is a 502.
    let resp = h.chat(&chat_body("mock-1", "[mock:cut] whole")).await;
    let whole_id = request_id(&resp);
    assert_eq!(resp.status(), 502);

    still_serving(&h).await;
    let (_, traces) = h.finish().await;
    let t = trace(&traces, &id);
    assert_eq!(t.status, TraceStatus::Error);
    assert_eq!(t.error_class.as_deref(), Some("upstream_stream_cut"));
    assert!(t.ttft_ms.is_some());
    let t = trace(&traces, &whole_id);
    assert_eq!(t.status, TraceStatus::Error);
    assert_eq!(t.http_status, 502);
}

#[tokio::test]
async fn slow_client_body_is_408() {
    let h = Harness::with(Options {
        gateway: "body_read_timeout = \"300ms\"".into(),
        ..Options::default()
    })
    .await;
    let mut sock = tokio::net::TcpStream::connect(h.gateway.addr)
        .await
        .unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nx-keel-request-id: slow-client-1\r\n\r\n",
        h.gateway.addr
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(br#"{"model":"mock-1","messages":[{"role":"user","content":"#)
        .await
        .unwrap();
    sock.flush().await.unwrap();

    let started = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read until the head and the JSON body have arrived (or the socket closes).
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = sock.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let s = String::from_utf8_lossy(&buf);
            if s.contains("\r\n\r\n") && s.trim_end().ends_with('}') {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a stalled body within 5 s");
    let text = String::from_utf8_lossy(&buf).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let v: Value = serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"));
    openai_error(&v, "client_timeout");
    drop(sock);

    still_serving(&h).await;
    let (_, traces) = h.finish().await;
    assert_error_trace(trace(&traces, "slow-client-1"), 408, "client_timeout");
}

#[tokio::test]
async fn configured_body_limit_is_exact() {
    let h = Harness::with(Options {
        gateway: "max_body_bytes = 2048".into(),
        ..Options::default()
    })
    .await;
    // A valid request padded with spaces to exactly the limit is accepted...
    let body = serde_json::to_string(&chat_body("mock-1", "limit")).unwrap();
    let exact = format!("{body}{}", " ".repeat(2048 - body.len()));
    assert_eq!(exact.len(), 2048);
    let resp = h.post_raw("/v1/chat/completions", exact.clone()).await;
    assert_eq!(resp.status(), 200);
    // ...one byte more is refused.
    let resp = h
        .post_raw("/v1/chat/completions", format!("{exact} "))
        .await;
    let (id, msg) = expect_error(resp, 413, "body_too_large").await;
    assert!(msg.contains("2048"), "{msg}");
    // The same limit applies to the Anthropic entry point.
    let resp = h.post_raw("/v1/messages", format!("{exact} ")).await;
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    // Anthropic's documented type for a 413.
    assert_eq!(v["error"]["type"], "request_too_large");

    let (_, traces) = h.finish().await;
    assert_error_trace(trace(&traces, &id), 413, "body_too_large");
}

#[tokio::test]
async fn unknown_routes_answer_in_the_openai_error_shape() {
    // An SDK calling an endpoint Keel does not serve (images, a typo) gets an error
    // it can parse, as from OpenAI: a JSON body naming the route.
    let h = Harness::start().await;
    let resp = h
        .post_json(
            "/v1/images/generations",
            &json!({"model": "mock-1", "prompt": "x"}),
            &[],
        )
        .await;
    assert_eq!(resp.status(), 404);
    let body = resp.text().await.unwrap();
    let v: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("404 body is not JSON ({e}): {body:?}"));
    let msg = v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.message: {v}"));
    assert!(msg.contains("/v1/images/generations"), "{msg}");

    let resp = h.get("/v1/chat/completions").await;
    assert_eq!(resp.status(), 405);
    let body = resp.text().await.unwrap();
    let v: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("405 body is not JSON ({e}): {body:?}"));
    assert!(v["error"]["message"].is_string(), "{v}");
    h.finish().await;
}
