//! Tests of the upstream translation (canonical → Anthropic and back), from the
//! documented examples of both APIs.

use keel_core::chat::{ChatRequest, Content};
use serde_json::{json, Value};

use super::super::inbound::{messages_request_to_chat, tests::weather_conversation};
use super::*;

fn chat(v: Value) -> ChatRequest {
    serde_json::from_value(v).unwrap()
}

#[test]
fn anthropic_request_survives_a_round_trip_through_canonical() {
    let original: MessagesRequest = serde_json::from_value(weather_conversation()).unwrap();
    let canonical = messages_request_to_chat(original.clone()).unwrap();
    let back = chat_request_to_messages(&canonical).unwrap();
    assert_eq!(
        serde_json::to_value(&back).unwrap(),
        serde_json::to_value(&original).unwrap()
    );
}

#[test]
fn openai_tool_conversation_becomes_alternating_turns() {
    let req = chat(json!({
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "developer", "content": "Use celsius."},
            {"role": "user", "content": "Weather in Paris and Oslo?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_p", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                {"id": "call_o", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Oslo\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_p", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_o", "content": [{"type": "text", "text": "4C"}]},
            {"role": "user", "content": "Which is warmer?"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                   "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}],
        "tool_choice": "required",
        "parallel_tool_calls": true,
        "max_completion_tokens": 200,
        "max_tokens": 999,
        "stop": "END",
        "temperature": 0.5,
        "user": "u-1",
        "seed": 7,
        "presence_penalty": 0.3,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
    }));
    let out = serde_json::to_value(chat_request_to_messages(&req).unwrap()).unwrap();
    assert_eq!(
        out,
        json!({
            "model": "claude-sonnet-4-5",
            "system": [{"type": "text", "text": "You are a weather bot."},
                       {"type": "text", "text": "Use celsius."}],
            "messages": [
                {"role": "user", "content": "Weather in Paris and Oslo?"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_p", "name": "get_weather", "input": {"location": "Paris"}},
                    {"type": "tool_use", "id": "call_o", "name": "get_weather", "input": {"location": "Oslo"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_p", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "call_o", "content": "4C"},
                    {"type": "text", "text": "Which is warmer?"}
                ]}
            ],
            "tools": [{"name": "get_weather", "description": "Weather now",
                       "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}],
            "tool_choice": {"type": "any"},
            "max_tokens": 200,
            "stop_sequences": ["END"],
            "temperature": 0.5,
            "metadata": {"user_id": "u-1"}
        })
    );
}

#[test]
fn defaults_refusals_and_passthrough() {
    let base = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}}
    ]}], "stream": true, "top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 2048},
        "parallel_tool_calls": false,
        "tools": [{"type": "function", "function": {"name": "f"}}]});
    let out = serde_json::to_value(chat_request_to_messages(&chat(base.clone())).unwrap()).unwrap();
    assert_eq!(out["max_tokens"], DEFAULT_MAX_TOKENS);
    assert_eq!(out["stream"], true);
    assert_eq!(out["top_k"], 5);
    assert_eq!(out["thinking"]["budget_tokens"], 2048);
    assert!(out.get("parallel_tool_calls").is_none());
    assert_eq!(
        out["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    assert_eq!(
        out["tools"][0]["input_schema"],
        json!({"type": "object", "properties": {}})
    );
    let content = &out["messages"][0]["content"];
    assert_eq!(
        content[1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(
        content[2],
        json!({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}})
    );
    assert_eq!(
        content[3],
        json!({"type": "document", "title": "a.pdf",
               "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}})
    );

    let mut n2 = base.clone();
    n2["n"] = json!(2);
    assert_eq!(
        chat_request_to_messages(&chat(n2)).unwrap_err().to_string(),
        "n: Anthropic returns a single choice; n must be 1, got 2"
    );
    let audio = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]});
    assert_eq!(
        chat_request_to_messages(&chat(audio))
            .unwrap_err()
            .to_string(),
        "messages[0].content[0]: content part type \"input_audio\" is not supported by Anthropic"
    );
    let no_id = json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]});
    assert!(chat_request_to_messages(&chat(no_id))
        .unwrap_err()
        .to_string()
        .starts_with("messages[0].tool_call_id: required"));
}

#[test]
fn documented_tool_use_response_reads_as_tool_calls() {
    let resp: MessagesResponse = serde_json::from_value(json!({
        "id": "msg_01Aq9w938a90dw8q",
        "type": "message",
        "model": "claude-sonnet-4-5-20250929",
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "role": "assistant",
        "content": [
            {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
             "input": {"location": "San Francisco, CA", "unit": "celsius"}}
        ],
        "usage": {"input_tokens": 10, "output_tokens": 77,
                  "cache_creation_input_tokens": 300, "cache_read_input_tokens": 1200}
    }))
    .unwrap();
    let chat = messages_response_to_chat(resp);
    assert_eq!(chat.id, "msg_01Aq9w938a90dw8q");
    assert_eq!(chat.model, "claude-sonnet-4-5-20250929");
    let choice = &chat.choices[0];
    assert_eq!(choice.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        choice.message.text_content(),
        "I'll check the current weather in San Francisco for you."
    );
    let call = &choice.message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.id, "toolu_01A09q90qw90lq917835lq9");
    let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
    assert_eq!(
        args,
        json!({"location": "San Francisco, CA", "unit": "celsius"})
    );
    let usage = chat.usage.unwrap();
    assert_eq!(usage.prompt_tokens, 1510);
    assert_eq!(usage.completion_tokens, 77);
    assert_eq!(usage.total_tokens, 1587);
    assert_eq!(usage.cached_tokens(), 1200);
}

#[test]
fn stop_sequence_and_thinking_are_kept() {
    let resp: MessagesResponse = serde_json::from_value(json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "Count up.", "signature": "sig"},
            {"type": "text", "text": "1, 2, "}, {"type": "text", "text": "3"}
        ],
        "stop_reason": "stop_sequence", "stop_sequence": "4",
        "usage": {"input_tokens": 5, "output_tokens": 6}
    }))
    .unwrap();
    let chat = messages_response_to_chat(resp);
    let choice = &chat.choices[0];
    assert_eq!(choice.finish_reason.as_deref(), Some("stop"));
    assert_eq!(choice.extra["stop_reason"], "4");
    assert_eq!(
        choice.message.content,
        Some(Content::Text("1, 2, 3".into()))
    );
    assert_eq!(choice.message.extra["reasoning_content"], "Count up.");
    assert_eq!(chat.usage.unwrap().prompt_tokens, 5);
    // And the inbound side turns it back into stop_sequence.
    let back = super::super::chat_response_to_messages(&chat, "claude-x");
    assert_eq!(back.stop_reason.as_deref(), Some("stop_sequence"));
    assert_eq!(back.stop_sequence.as_deref(), Some("4"));
}
