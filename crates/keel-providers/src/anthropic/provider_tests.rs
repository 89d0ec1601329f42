//! Tests of [`AnthropicProvider`] against a local axum server playing Anthropic: the
//! request it sends, a JSON reply, an SSE stream, error bodies and cut streams.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use keel_core::chat::{ChatChunk, ChatRequest};
use serde_json::{json, Value};

use super::super::upstream_stream::tests::{TEXT_STREAM, TOOL_STREAM};
use super::*;

const KEY: &str = "sk-ant-test-secret";

/// What the fake upstream received: (headers, JSON body) per request.
type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

fn sse(body: String) -> Response {
    ([("content-type", "text/event-stream")], body).into_response()
}

/// Answers according to the requested model name.
async fn fake_messages(State(seen): State<Seen>, headers: HeaderMap, body: String) -> Response {
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    seen.lock().unwrap().push((headers, json.clone()));
    match json["model"].as_str().unwrap_or("") {
        "json" => axum::Json(json!({
            "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "Hi! My name is Claude."}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 2095, "output_tokens": 503}
        }))
        .into_response(),
        "sse" => sse(TOOL_STREAM.to_string()),
        "cut" => {
            let cut = TEXT_STREAM.find("event: message_stop").unwrap_or(0);
            sse(TEXT_STREAM[..cut].to_string())
        }
        "limited" => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "7"), ("content-type", "application/json")],
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"},"request_id":"req_1"}"#,
        )
            .into_response(),
        "html" => (
            StatusCode::BAD_GATEWAY,
            format!("<html>{}</html>", "x".repeat(2000)),
        )
            .into_response(),
        "garbage" => axum::Json(json!({"hello": "world"})).into_response(),
        "early_error" => sse(
            "event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n"
                .to_string(),
        ),
        "bad_event" => {
            let start = TEXT_STREAM.find("event: content_block_start").unwrap_or(0);
            sse(format!("{}event: content_block_delta\ndata: {{not json\n\n", &TEXT_STREAM[..start]))
        }
        _ => (StatusCode::NOT_FOUND, "no such model").into_response(),
    }
}

async fn serve() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/v1/messages", post(fake_messages))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    // A trailing slash must not produce `//messages`.
    (format!("http://{addr}/v1/"), seen)
}

fn provider(base: String) -> AnthropicProvider {
    AnthropicProvider::new(
        crate::client::HttpClient::with_proxies(None).unwrap(),
        base,
        Some(KEY.to_string()),
    )
}

fn request(model: &str) -> ChatRequest {
    serde_json::from_value(json!({
        "model": model,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    }))
    .unwrap()
}

async fn collect(stream: crate::ChunkStream) -> Vec<Result<ChatChunk, ProviderError>> {
    stream.collect().await
}

#[tokio::test]
async fn json_reply_and_the_request_that_was_sent() {
    let (base, seen) = serve().await;
    let resp = provider(base).complete(request("json")).await.unwrap();
    assert_eq!(resp.model, "claude-sonnet-4-5-20250929");
    assert_eq!(
        resp.choices[0].message.text_content(),
        "Hi! My name is Claude."
    );
    assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("stop"));
    let usage = resp.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (2095, 503));

    let seen = seen.lock().unwrap();
    let (headers, body) = &seen[0];
    assert_eq!(headers["x-api-key"], KEY);
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        body,
        &json!({"model": "json", "max_tokens": 4096, "system": "Be brief.",
                "messages": [{"role": "user", "content": "Hello"}]})
    );
}

#[tokio::test]
async fn sse_stream_yields_chunks_and_usage_last() {
    let (base, seen) = serve().await;
    let mut req = request("sse");
    req.stream = true;
    let items = collect(provider(base).stream(req).await.unwrap()).await;
    let chunks: Vec<ChatChunk> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        chunks[0].choices[0].delta.role.as_deref(),
        Some("assistant")
    );
    let text: String = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect();
    assert_eq!(text, "Okay, let's check the weather for San Francisco, CA:");
    let args: String = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .flat_map(|c| c.delta.tool_calls.iter().flatten())
        .filter_map(|t| t.function.as_ref()?.arguments.clone())
        .collect();
    let args: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(args["unit"], "fahrenheit");
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty());
    assert_eq!(last.usage.unwrap().completion_tokens, 89);
    assert_eq!(last.usage.unwrap().prompt_tokens, 472);
    assert_eq!(seen.lock().unwrap()[0].1["stream"], true);
}

#[tokio::test]
async fn rate_limit_keeps_message_code_body_and_retry_after() {
    let (base, _) = serve().await;
    let err = provider(base)
        .complete(request("limited"))
        .await
        .unwrap_err();
    match &err {
        ProviderError::Status {
            status,
            message,
            code,
            body,
            retry_after,
        } => {
            assert_eq!(*status, 429);
            assert_eq!(
                message,
                "Number of request tokens has exceeded your per-minute rate limit"
            );
            assert_eq!(code.as_deref(), Some("rate_limit_error"));
            assert_eq!(body.as_ref().unwrap()["request_id"], "req_1");
            assert_eq!(*retry_after, Some(Duration::from_secs(7)));
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    assert_eq!(err.class(), "upstream_rate_limit");
    // The same for a stream: the error comes before any chunk.
    let (base, _) = serve().await;
    let mut req = request("limited");
    req.stream = true;
    assert!(matches!(
        provider(base).stream(req).await,
        Err(ProviderError::Status { status: 429, .. })
    ));
}

#[tokio::test]
async fn non_json_error_body_is_truncated_into_the_message() {
    let (base, _) = serve().await;
    match provider(base).complete(request("html")).await {
        Err(ProviderError::Status {
            status,
            message,
            code,
            body,
            ..
        }) => {
            assert_eq!(status, 502);
            assert_eq!(message.chars().count(), 500);
            assert!(message.starts_with("<html>xxx"));
            assert_eq!(code, None);
            assert_eq!(body, None);
        }
        other => panic!("expected a status error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_2xx_that_is_not_a_message_is_invalid() {
    let (base, _) = serve().await;
    assert!(matches!(
        provider(base).complete(request("garbage")).await,
        Err(ProviderError::InvalidResponse(_))
    ));
}

#[tokio::test]
async fn stream_cut_before_message_stop_is_reported() {
    let (base, _) = serve().await;
    let mut req = request("cut");
    req.stream = true;
    let items = collect(provider(base).stream(req).await.unwrap()).await;
    let (last, before) = items.split_last().unwrap();
    assert!(matches!(last, Err(ProviderError::StreamCut(_))), "{last:?}");
    // Everything up to the cut was delivered, including the finish reason.
    let before: Vec<&ChatChunk> = before.iter().map(|r| r.as_ref().unwrap()).collect();
    assert_eq!(before.len(), 4);
    assert_eq!(before[3].choices[0].finish_reason.as_deref(), Some("stop"));
    assert!(before.iter().all(|c| c.usage.is_none()));
}

#[tokio::test]
async fn stream_errors_before_and_after_the_first_chunk() {
    let (base, _) = serve().await;
    let mut req = request("early_error");
    req.stream = true;
    match provider(base.clone()).stream(req).await {
        Err(ProviderError::Status { status, code, .. }) => {
            assert_eq!(status, 529);
            assert_eq!(code.as_deref(), Some("overloaded_error"));
        }
        Err(other) => panic!("expected a 529, got {other:?}"),
        Ok(_) => panic!("expected an error before the first chunk"),
    }
    let mut req = request("bad_event");
    req.stream = true;
    let items = collect(provider(base).stream(req).await.unwrap()).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items[0].is_ok());
    assert!(
        matches!(&items[1], Err(ProviderError::InvalidResponse(m)) if m.contains("content_block_delta"))
    );
}

#[tokio::test]
async fn connection_refused_is_a_connect_error_without_the_key() {
    let refusing = crate::test_ports::refusing_port();
    let err = provider(format!("http://{}/v1", refusing.addr))
        .complete(request("json"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Connect(_)), "{err:?}");
    assert!(!err.to_string().contains(KEY));
    assert!(!format!("{err:?}").contains(KEY));
    let p = provider("http://127.0.0.1:1/v1".into());
    assert!(!format!("{p:?}").contains(KEY));
}

#[tokio::test]
async fn untranslatable_request_is_unsupported() {
    let (base, seen) = serve().await;
    let mut req = request("json");
    req.n = Some(3);
    assert!(matches!(
        provider(base).complete(req).await,
        Err(ProviderError::Unsupported(m)) if m.starts_with("n: ")
    ));
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");
}
