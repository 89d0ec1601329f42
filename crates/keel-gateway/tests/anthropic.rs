#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Anthropic on both sides: clients calling Keel's `POST /v1/messages`, and Keel calling
//! an upstream of `kind = "anthropic"` (the mock server's `/v1/messages`) for an
//! OpenAI-format request.

mod common;

use common::*;
use keel_core::money::Nanos;
use keel_core::trace::TraceStatus;
use serde_json::{json, Value};

/// The events of an Anthropic stream, without `ping`s.
fn event_names(events: &[(String, Value)]) -> Vec<String> {
    events
        .iter()
        .map(|(e, _)| e.clone())
        .filter(|e| e != "ping")
        .collect()
}

fn assert_event_order(names: &[String]) {
    assert!(names.len() >= 6, "{names:?}");
    assert_eq!(names[0], "message_start", "{names:?}");
    assert_eq!(names[1], "content_block_start", "{names:?}");
    let n = names.len();
    assert_eq!(
        &names[n - 3..],
        ["content_block_stop", "message_delta", "message_stop"],
        "{names:?}"
    );
    assert!(
        names[2..n - 3].iter().all(|e| e == "content_block_delta"),
        "{names:?}"
    );
    assert!(n - 5 >= 1, "at least one content_block_delta: {names:?}");
}

async fn whole_message(h: &Harness, model: &str) {
    let resp = h
        .messages(&messages_body(model, "Hello, Claude", false))
        .await;
    assert_eq!(resp.status(), 200, "model {model}");
    assert!(resp.headers().get("x-keel-request-id").is_some());
    let cost = resp
        .headers()
        .get("x-keel-cost-usd")
        .map(|v| v.to_str().unwrap().to_string());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], model, "the model the client asked for");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"), "{v}");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["content"][0]["text"], "Mock reply to: Hello, Claude");
    assert_eq!(v["stop_reason"], "end_turn");
    let (input, output) = (
        v["usage"]["input_tokens"].as_i64().unwrap(),
        v["usage"]["output_tokens"].as_i64().unwrap(),
    );
    assert!(input > 0 && output > 0, "{v}");
    let expected = input * INPUT_NANOS_PER_TOKEN + output * OUTPUT_NANOS_PER_TOKEN;
    assert_eq!(
        cost.map(|c| dollars_to_nanos(&c)),
        Some(expected),
        "model {model}"
    );
}

#[tokio::test]
async fn messages_whole_reply_to_openai_and_in_process_models() {
    let h = Harness::start().await;
    whole_message(&h, "mock-1").await;
    whole_message(&h, "local").await;
    let (_, traces) = h.finish().await;
    assert_eq!(traces.len(), 2);
    for t in &traces {
        assert_eq!(t.api, "anthropic");
        assert_eq!(t.endpoint, "/v1/messages");
        assert_eq!(t.status, TraceStatus::Ok);
        assert!(t.cost.is_some() && t.input_tokens.is_some());
        assert_eq!(t.output.as_deref(), Some("Mock reply to: Hello, Claude"));
    }
}

async fn streamed_message(h: &Harness, model: &str) -> String {
    let resp = h
        .messages(&messages_body(model, "Stream to me, Claude", true))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let id = request_id(&resp);
    let text = resp.text().await.unwrap();
    let events = sse_events(&text);
    for (name, data) in &events {
        assert_eq!(
            &data["type"],
            name.as_str(),
            "event name and data.type agree: {text}"
        );
    }
    assert_event_order(&event_names(&events));

    let start = &events.iter().find(|(e, _)| e == "message_start").unwrap().1;
    assert_eq!(start["message"]["role"], "assistant");
    assert_eq!(start["message"]["model"], model);
    let block = &events
        .iter()
        .find(|(e, _)| e == "content_block_start")
        .unwrap()
        .1;
    assert_eq!(block["content_block"]["type"], "text");
    let text_out: String = events
        .iter()
        .filter(|(e, _)| e == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(text_out, "Mock reply to: Stream to me, Claude");
    let delta = &events.iter().find(|(e, _)| e == "message_delta").unwrap().1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(
        delta["usage"]["output_tokens"].as_u64().unwrap() > 0,
        "{delta}"
    );
    id
}

#[tokio::test]
async fn messages_streamed_event_order() {
    let h = Harness::start().await;
    let a = streamed_message(&h, "mock-1").await;
    let b = streamed_message(&h, "local").await;
    let (_, traces) = h.finish().await;
    for id in [a, b] {
        let t = trace(&traces, &id);
        assert_eq!(t.status, TraceStatus::Ok);
        assert!(t.stream);
        assert!(t.ttft_ms.is_some());
        assert!(t.output_tokens.unwrap() > 0);
        assert!(t.cost.unwrap().0 > 0);
    }
}

#[tokio::test]
async fn messages_errors_use_anthropic_shape() {
    let h = Harness::start().await;
    let resp = h.messages(&messages_body("nope-model", "hi", false)).await;
    assert_eq!(resp.status(), 404);
    let missing_id = request_id(&resp);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "not_found_error", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("nope-model") && msg.contains("mock-1"),
        "{msg}"
    );

    let resp = h.post_raw("/v1/messages", "{not json").await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let resp = h
        .messages(&messages_body("mock-1", "[mock:status=429] hi", false))
        .await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");

    let resp = h
        .messages(&messages_body("mock-1", "[mock:status=500] hi", true))
        .await;
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "api_error");

    // Still serving.
    assert_eq!(
        h.messages(&messages_body("mock-1", "ok?", false))
            .await
            .status(),
        200
    );
    let (_, traces) = h.finish().await;
    let t = trace(&traces, &missing_id);
    assert_eq!(t.status, TraceStatus::Error);
    assert_eq!(t.http_status, 404);
    assert_eq!(t.error_class.as_deref(), Some("model_not_found"));
    assert_eq!(t.api, "anthropic");
}

#[tokio::test]
async fn anthropic_upstream_answers_openai_clients_whole() {
    let h = Harness::start().await;
    let resp = h
        .chat(&chat_body("claude-mock", "Hello through Anthropic"))
        .await;
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let cost = resp
        .headers()
        .get("x-keel-cost-usd")
        .map(|v| v.to_str().unwrap().to_string());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Mock reply to: Hello through Anthropic"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let usage = &v["usage"];
    assert!(
        usage["prompt_tokens"].as_u64().unwrap() > 0
            && usage["completion_tokens"].as_u64().unwrap() > 0,
        "{v}"
    );
    let expected = expected_cost_nanos(usage);
    assert_eq!(cost.map(|c| dollars_to_nanos(&c)), Some(expected));

    let (_, traces) = h.finish().await;
    let t = trace(&traces, &id);
    assert_eq!(t.status, TraceStatus::Ok);
    assert_eq!(t.provider.as_deref(), Some("anth"));
    assert_eq!(t.upstream_model.as_deref(), Some("mock-claude"));
    assert_eq!(t.cost, Some(Nanos(expected)));
}

#[tokio::test]
async fn anthropic_upstream_answers_openai_clients_streamed() {
    let h = Harness::start().await;
    let resp = h
        .chat(&stream_body(
            "claude-mock",
            "Stream through Anthropic",
            true,
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let text = resp.text().await.unwrap();
    assert_eq!(last_line(&text), "data: [DONE]", "{text}");
    let chunks = sse_chunks(&text);
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
    }
    assert_eq!(
        streamed_text(&chunks),
        "Mock reply to: Stream through Anthropic"
    );
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, vec!["stop"]);
    let last = chunks.last().unwrap();
    assert!(last["usage"].is_object(), "usage chunk last: {text}");
    assert_eq!(last["choices"], json!([]));
    let usage = last["usage"].clone();

    // Without include_usage the client sees none, yet the call is priced.
    let resp = h
        .chat(&stream_body(
            "claude-mock",
            "Stream through Anthropic",
            false,
        ))
        .await;
    let quiet_id = request_id(&resp);
    let text = resp.text().await.unwrap();
    assert_eq!(last_line(&text), "data: [DONE]");
    assert!(
        sse_chunks(&text)
            .iter()
            .all(|c| c.get("usage").is_none_or(Value::is_null)),
        "{text}"
    );

    let (_, traces) = h.finish().await;
    for id in [&id, &quiet_id] {
        let t = trace(&traces, id);
        assert_eq!(t.status, TraceStatus::Ok);
        assert_eq!(t.input_tokens, usage["prompt_tokens"].as_u64());
        assert_eq!(t.output_tokens, usage["completion_tokens"].as_u64());
        assert_eq!(t.cost, Some(Nanos(expected_cost_nanos(&usage))));
    }
}

#[tokio::test]
async fn anthropic_upstream_errors_map_to_openai_errors() {
    let h = Harness::start().await;
    let resp = h
        .chat(&chat_body("claude-mock", "[mock:status=429] hi"))
        .await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    let resp = h
        .chat(&chat_body("claude-mock", "[mock:status=500] hi"))
        .await;
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].is_string(), "{v}");
    h.finish().await;
}

#[tokio::test]
async fn messages_tool_use_whole_and_streamed() {
    let h = Harness::start().await;
    let mut body = messages_body("mock-1", "Weather in Oslo? [mock:tool=get_weather]", false);
    body["tools"] = json!([{
        "name": "get_weather",
        "description": "Current weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    }]);
    let resp = h.messages(&body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let block = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap_or_else(|| panic!("a tool_use block: {v}"))
        .clone();
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({"city": "mock"}));
    let tool_id = block["id"].as_str().unwrap().to_string();

    body["stream"] = json!(true);
    let text = h.messages(&body).await.text().await.unwrap();
    let events = sse_events(&text);
    let start = events
        .iter()
        .find(|(e, d)| e == "content_block_start" && d["content_block"]["type"] == "tool_use")
        .unwrap_or_else(|| panic!("a tool_use block starts: {text}"));
    assert_eq!(start.1["content_block"]["name"], "get_weather");
    let args: String = events
        .iter()
        .filter(|(e, d)| e == "content_block_delta" && d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "mock"})
    );
    let delta = &events.iter().find(|(e, _)| e == "message_delta").unwrap().1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");

    // The tool result goes back in Anthropic's shape.
    let follow = json!({
        "model": "mock-1",
        "max_tokens": 100,
        "tools": body["tools"],
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": tool_id, "name": "get_weather", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "-3C, snow"}]}
        ]
    });
    let resp = h.messages(&follow).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["content"][0]["text"], "Tool result received: -3C, snow",
        "{v}"
    );
    assert_eq!(v["stop_reason"], "end_turn");
    h.finish().await;
}

#[tokio::test]
async fn messages_cut_stream_ends_with_an_error_event() {
    let h = Harness::start().await;
    let resp = h
        .messages(&messages_body(
            "mock-1",
            "[mock:cut] [mock:tokens=40] breaking",
            true,
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let text = resp.text().await.unwrap();
    let events = sse_events(&text);
    let names = event_names(&events);
    assert!(!names.contains(&"message_stop".to_string()), "{names:?}");
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "error", "{text}");
    assert_eq!(data["type"], "error");
    assert!(
        data["error"]["type"].is_string() && data["error"]["message"].is_string(),
        "{data}"
    );
    let (_, traces) = h.finish().await;
    assert_eq!(
        trace(&traces, &id).error_class.as_deref(),
        Some("upstream_stream_cut")
    );
}
