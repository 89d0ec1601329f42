//! `POST /v1/messages`: the mock answering in Anthropic's Messages wire format.
//!
//! The request is translated to the canonical shape with
//! `keel_providers::anthropic::messages_request_to_chat`, so the reply is exactly the
//! one the OpenAI route would give for the same conversation (same directives, rules
//! and faults), then answered as Anthropic would: a Messages JSON body, an SSE event
//! stream (`message_start` ... `message_stop`), or a fault with Anthropic's error body
//! `{"type":"error","error":{"type","message"}}` (429 `rate_limit_error` with
//! `retry-after`, 500 `api_error`, 529 `overloaded_error`...).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use keel_providers::anthropic::wire::{error_type_for_status, ErrorBody};
use keel_providers::anthropic::{
    chat_response_to_messages, messages_request_to_chat, ChunksToEvents, MessagesRequest,
};
use keel_providers::mock::{MockFault, MockReply, MockServerState, GARBAGE_BODY, HANG};

/// Answer one Messages request. Headers are accepted as sent: the mock does not check
/// `x-api-key` or `anthropic-version`.
pub async fn messages(
    State(mock): State<Arc<MockServerState>>,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    let _ = headers;
    let req: MessagesRequest = match serde_json::from_slice(&body) {
        Ok(req) => req,
        Err(e) => return error_response(400, &format!("invalid request body: {e}"), None),
    };
    let model = req.model.clone();
    let chat = match messages_request_to_chat(req) {
        Ok(chat) => chat,
        Err(e) => return error_response(400, &e.to_string(), None),
    };
    match mock.respond(&chat).await {
        Ok(reply) if chat.stream => sse_response(&reply, &model),
        Ok(reply) => json_response(&reply, &model),
        Err(MockFault::Timeout) => {
            tokio::time::sleep(HANG).await;
            fault_response(&MockFault::hung())
        }
        Err(fault) => fault_response(&fault),
    }
}

/// An Anthropic error body with its status (and `retry-after` when given).
fn error_response(status: u16, message: &str, retry_after: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorBody::new(error_type_for_status(status), message);
    let mut response = (code, axum::Json(body)).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn fault_response(fault: &MockFault) -> Response {
    match fault {
        MockFault::Status {
            status,
            message,
            retry_after,
        } => error_response(*status, message, *retry_after),
        MockFault::Garbage => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            GARBAGE_BODY,
        )
            .into_response(),
        MockFault::Timeout => fault_response(&MockFault::hung()),
    }
}

fn json_response(reply: &MockReply, model: &str) -> Response {
    let message = chat_response_to_messages(&reply.response, model);
    let mut body = match serde_json::to_vec(&message) {
        Ok(b) => b,
        Err(e) => {
            return error_response(500, &format!("mock could not encode its reply: {e}"), None)
        }
    };
    if reply.cut {
        body.truncate(body.len() / 2);
    }
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The message id Anthropic clients expect (`msg_...`) for the mock's completion id.
fn message_id(completion_id: &str) -> String {
    format!(
        "msg_{}",
        completion_id
            .strip_prefix("chatcmpl-")
            .unwrap_or(completion_id)
    )
}

/// One SSE frame per canonical chunk (the events it produced), the closing events last
/// unless the reply is cut, in which case the connection breaks before `message_stop`.
fn sse_response(reply: &MockReply, model: &str) -> Response {
    let mut events = ChunksToEvents::new(model, &message_id(&reply.response.id));
    let mut frames: Vec<Bytes> = Vec::new();
    for chunk in reply.chunks(true) {
        let text: String = events.push(&chunk).iter().map(|e| e.to_sse()).collect();
        if !text.is_empty() {
            frames.push(Bytes::from(text));
        }
    }
    if !reply.cut {
        let text: String = events.finish().iter().map(|e| e.to_sse()).collect();
        frames.push(Bytes::from(text));
    }
    crate::openai_routes::paced_sse(frames, reply.chunk_delay, reply.cut)
}

#[cfg(test)]
mod tests {
    //! The mock's Anthropic route, driven by Keel's own Anthropic adapter (and by raw
    //! HTTP where the adapter would hide the wire).

    use std::sync::Arc;
    use std::time::Duration;

    use futures::StreamExt;
    use keel_core::chat::{ChatChunk, ChatRequest, Message};
    use keel_core::config::mock::MockSettings;
    use keel_providers::anthropic::AnthropicProvider;
    use keel_providers::mock::MockServerState;
    use keel_providers::{ChatProvider, ProviderError};
    use serde_json::{json, Value};

    async fn start() -> String {
        let state = Arc::new(MockServerState::new(MockSettings::default()).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, crate::router(state)).await;
        });
        format!("http://{addr}/v1")
    }

    fn provider(base: &str) -> AnthropicProvider {
        AnthropicProvider::new(
            keel_providers::client::HttpClient::with_proxies(None).unwrap(),
            base.to_string(),
            Some("k".into()),
        )
    }

    fn request(text: &str, stream: bool) -> ChatRequest {
        ChatRequest {
            model: "mock-1".into(),
            messages: vec![
                Message::text("system", "Be brief."),
                Message::text("user", text),
            ],
            stream,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn json_and_stream_answers_agree() {
        let base = start().await;
        let whole = provider(&base)
            .complete(request("Hello there", false))
            .await
            .unwrap();
        assert_eq!(
            whole.choices[0].message.text_content(),
            "Mock reply to: Hello there"
        );
        assert_eq!(whole.choices[0].finish_reason.as_deref(), Some("stop"));
        assert!(whole.id.starts_with("msg_mock-"), "{}", whole.id);
        assert_eq!(whole.model, "mock-1");

        let chunks: Vec<ChatChunk> = provider(&base)
            .stream(request("Hello there", true))
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        let text: String = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.content.as_deref())
            .collect();
        assert_eq!(text, "Mock reply to: Hello there");
        let last = chunks.last().unwrap();
        assert!(last.choices.is_empty());
        assert_eq!(last.usage, whole.usage);
        assert!(whole.usage.unwrap().prompt_tokens > 0);
    }

    #[tokio::test]
    async fn tool_call_comes_back_as_tool_use() {
        let base = start().await;
        let mut req = request("Weather? [mock:tool=get_weather]", false);
        req.tools = Some(vec![serde_json::from_value(json!({"type": "function", "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }}))
        .unwrap()]);
        let resp = provider(&base).complete(req.clone()).await.unwrap();
        assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        let call = &resp.choices[0].message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.function.name, "get_weather");
        let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
        assert_eq!(args, json!({"city": "mock"}));

        req.stream = true;
        let chunks: Vec<ChatChunk> = provider(&base)
            .stream(req)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        let args: String = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .flat_map(|c| c.delta.tool_calls.iter().flatten())
            .filter_map(|t| t.function.as_ref()?.arguments.clone())
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            json!({"city": "mock"})
        );
    }

    #[tokio::test]
    async fn faults_use_anthropic_error_bodies() {
        let base = start().await;
        match provider(&base)
            .complete(request("hi [mock:status=429]", false))
            .await
        {
            Err(ProviderError::Status {
                status,
                code,
                retry_after,
                body,
                ..
            }) => {
                assert_eq!(status, 429);
                assert_eq!(code.as_deref(), Some("rate_limit_error"));
                assert_eq!(retry_after, Some(Duration::from_secs(1)));
                assert_eq!(body.unwrap()["type"], "error");
            }
            other => panic!("expected a 429, got {other:?}"),
        }
        for (status, kind) in [(500, "api_error"), (529, "overloaded_error")] {
            let text = format!("hi [mock:status={status}]");
            match provider(&base).complete(request(&text, true)).await {
                Err(ProviderError::Status {
                    status: s, code, ..
                }) => {
                    assert_eq!(s, status);
                    assert_eq!(code.as_deref(), Some(kind));
                }
                other => panic!("expected a {status}, got {other:?}"),
            }
        }
        let items: Vec<_> = provider(&base)
            .stream(request("a long enough reply to cut [mock:cut]", true))
            .await
            .unwrap()
            .collect()
            .await;
        assert!(
            matches!(items.last(), Some(Err(ProviderError::StreamCut(_)))),
            "{items:?}"
        );
    }

    #[tokio::test]
    async fn raw_wire_bad_json_and_event_names() {
        let base = start().await;
        let client = reqwest::Client::new();
        let resp = client
            .post(format!("{base}/messages"))
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "invalid_request_error");

        let resp = client
            .post(format!("{base}/messages"))
            .json(&json!({"model": "mock-1", "max_tokens": 50, "stream": true,
                          "messages": [{"role": "user", "content": "Hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let text = resp.text().await.unwrap();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(names[..3], ["message_start", "ping", "content_block_start"]);
        assert_eq!(
            names[names.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"]
        );
    }
}
