//! Tests of the inbound translation, built from the examples in Anthropic's Messages
//! API documentation.

use keel_core::chat::{ChatResponse, Choice, Content, Message, PromptTokensDetails, Stop, Usage};
use serde_json::{json, Value};

use super::*;

fn request(v: Value) -> MessagesRequest {
    serde_json::from_value(v).unwrap()
}

fn translate_err(v: Value) -> String {
    messages_request_to_chat(request(v))
        .unwrap_err()
        .to_string()
}

#[test]
fn documented_hello_world() {
    let chat = messages_request_to_chat(request(json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hello, world"}]
    })))
    .unwrap();
    assert_eq!(chat.model, "claude-sonnet-4-5");
    assert_eq!(chat.max_tokens, Some(1024));
    assert_eq!(chat.messages, vec![Message::text("user", "Hello, world")]);
    assert!(!chat.stream);
    assert_eq!(chat.stream_options, None);
}

#[test]
fn parameters_system_and_images_map_to_openai_fields() {
    let chat = messages_request_to_chat(request(json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 300,
        "system": [
            {"type": "text", "text": "You are a helpful assistant."},
            {"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
            {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/a.jpg"}},
            {"type": "text", "text": "Describe this image."}
        ]}],
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["\n\nHuman:", "END"],
        "stream": true,
        "metadata": {"user_id": "user-42"},
        "thinking": {"type": "enabled", "budget_tokens": 1024}
    })))
    .unwrap();
    assert_eq!(
        chat.messages[0],
        Message::text("system", "You are a helpful assistant.\nAnswer in French.")
    );
    let parts = match &chat.messages[1].content {
        Some(Content::Parts(p)) => p,
        other => panic!("expected parts, got {other:?}"),
    };
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0].kind, "image_url");
    assert_eq!(
        parts[0].extra["image_url"]["url"],
        "data:image/jpeg;base64,/9j/4AAQSkZJRg=="
    );
    assert_eq!(
        parts[1].extra["image_url"]["url"],
        "https://upload.wikimedia.org/a.jpg"
    );
    assert_eq!(parts[2].text.as_deref(), Some("Describe this image."));
    assert_eq!(chat.temperature, Some(0.2));
    assert_eq!(chat.top_p, Some(0.9));
    assert_eq!(
        chat.stop,
        Some(Stop::Many(vec!["\n\nHuman:".into(), "END".into()]))
    );
    assert!(chat.stream && chat.wants_stream_usage());
    assert_eq!(chat.user.as_deref(), Some("user-42"));
    assert_eq!(chat.extra["top_k"], 40);
    assert_eq!(chat.extra["thinking"]["budget_tokens"], 1024);
}

/// The get_weather conversation of Anthropic's tool-use guide.
pub(crate) fn weather_conversation() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "tools": [{
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "input_schema": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                },
                "required": ["location"]
            }
        }],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": "What's the weather like in San Francisco?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
                 "input": {"location": "San Francisco, CA", "unit": "celsius"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"},
                {"type": "text", "text": "Thanks. Is that warm?"}
            ]}
        ]
    })
}

#[test]
fn tool_use_conversation_becomes_tool_calls_and_tool_messages() {
    let chat = messages_request_to_chat(request(weather_conversation())).unwrap();
    let tools = chat.tools.as_ref().unwrap();
    assert_eq!(tools[0].kind, "function");
    assert_eq!(tools[0].function.name, "get_weather");
    assert_eq!(
        tools[0].function.parameters.as_ref().unwrap()["required"],
        json!(["location"])
    );
    assert_eq!(chat.tool_choice, Some(json!("auto")));
    assert_eq!(chat.extra["parallel_tool_calls"], false);

    let roles: Vec<&str> = chat.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "user"]);
    let assistant = &chat.messages[1];
    assert_eq!(
        assistant.text_content(),
        "I'll check the current weather in San Francisco for you."
    );
    let call = &assistant.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.id, "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(call.kind, "function");
    assert_eq!(call.function.name, "get_weather");
    let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
    assert_eq!(
        args,
        json!({"location": "San Francisco, CA", "unit": "celsius"})
    );
    let tool = &chat.messages[2];
    assert_eq!(
        tool.tool_call_id.as_deref(),
        Some("toolu_01A09q90qw90lq917835lq9")
    );
    assert_eq!(tool.content, Some(Content::Text("15 degrees".into())));
    assert_eq!(
        chat.messages[3],
        Message::text("user", "Thanks. Is that warm?")
    );
}

#[test]
fn tool_result_blocks_and_tool_choice_variants() {
    let chat = messages_request_to_chat(request(json!({
        "model": "m", "max_tokens": 10,
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "t"},
        "messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "t", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "is_error": true,
              "content": [{"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"}]}]}
        ]
    })))
    .unwrap();
    assert_eq!(
        chat.tool_choice,
        Some(json!({"type": "function", "function": {"name": "t"}}))
    );
    assert_eq!(chat.messages[0].content, None, "tool calls only");
    assert_eq!(chat.messages[1].text_content(), "line 1\nline 2");
    assert_eq!(
        chat.messages.len(),
        2,
        "no empty user message after the tool result"
    );
    for (kind, expected) in [("any", json!("required")), ("none", json!("none"))] {
        let chat = messages_request_to_chat(request(json!({
            "model": "m", "max_tokens": 1, "tool_choice": {"type": kind},
            "messages": [{"role": "user", "content": "x"}]
        })))
        .unwrap();
        assert_eq!(chat.tool_choice, Some(expected));
    }
}

#[test]
fn errors_name_the_offending_field() {
    assert_eq!(
        translate_err(json!({"model": "m", "max_tokens": 1, "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": [{"type": "tool_result", "content": "x"}]}
        ]})),
        "messages[2].content[0]: tool_result block without tool_use_id"
    );
    assert!(
        translate_err(json!({"model": "m", "messages": [{"role": "system", "content": "a"}]}))
            .starts_with("messages[0].role: expected \"user\" or \"assistant\"")
    );
    assert_eq!(
        translate_err(json!({"model": "m", "tool_choice": {"type": "tool"},
            "messages": [{"role": "user", "content": "a"}]})),
        "tool_choice.name: required when type is \"tool\""
    );
    assert!(translate_err(json!({"model": "m",
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        "messages": [{"role": "user", "content": "a"}]}))
    .starts_with("tools[0]: server tool `web_search_20250305`"));
    assert_eq!(
        translate_err(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "a"}, {"type": "search_result", "source": "x"}]}]})
        ),
        "messages[0].content[1]: content block type `search_result` is not supported here"
    );
    assert!(translate_err(
        json!({"model": "m", "messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "name": "no_id", "input": {}}]}]})
    )
    .starts_with("messages[0].content[0]: malformed `tool_use` block"));
    assert_eq!(
        translate_err(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "a", "content": [
                {"type": "image", "source": {"type": "url", "url": "u"}}]}]}]})
        ),
        "messages[0].content[0].content[0]: only text is supported inside tool_result, got `image`"
    );
}

fn response(message: Message, finish: &str, usage: Option<Usage>) -> ChatResponse {
    ChatResponse {
        id: "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG".into(),
        object: "chat.completion".into(),
        created: 1_741_570_283,
        model: "gpt-4o-2024-08-06".into(),
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: Some(finish.into()),
            ..Default::default()
        }],
        usage,
        ..Default::default()
    }
}

#[test]
fn text_reply_answers_in_messages_format() {
    let mut usage = Usage::new(2095, 503);
    usage.prompt_tokens_details = Some(PromptTokensDetails {
        cached_tokens: 2000,
    });
    let resp = response(
        Message::text("assistant", "Hi! My name is Claude."),
        "stop",
        Some(usage),
    );
    let out = serde_json::to_value(chat_response_to_messages(&resp, "claude-sonnet-4-5")).unwrap();
    assert_eq!(
        out,
        json!({
            "id": "msg_B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "Hi! My name is Claude."}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 95, "output_tokens": 503,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2000}
        })
    );
}

#[test]
fn tool_call_reply_becomes_tool_use_blocks() {
    let msg: Message = serde_json::from_value(json!({
        "role": "assistant", "content": null,
        "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
            {"id": "call_2", "type": "function",
             "function": {"name": "broken", "arguments": "{\"location\":"}}
        ]
    }))
    .unwrap();
    let out = chat_response_to_messages(&response(msg, "tool_calls", None), "claude");
    assert_eq!(out.stop_reason.as_deref(), Some("tool_use"));
    let v = serde_json::to_value(&out.content).unwrap();
    assert_eq!(
        v,
        json!([
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "broken", "input": {"_raw": "{\"location\":"}}
        ])
    );
    assert_eq!(out.usage.input_tokens, 0);

    for (finish, stop) in [("length", "max_tokens"), ("content_filter", "refusal")] {
        let out = chat_response_to_messages(
            &response(Message::text("assistant", "x"), finish, None),
            "m",
        );
        assert_eq!(out.stop_reason.as_deref(), Some(stop));
    }
    let mut resp = response(Message::text("assistant", "1, 2, 3"), "stop", None);
    resp.choices[0]
        .extra
        .insert("stop_reason".into(), json!("4"));
    let out = chat_response_to_messages(&resp, "m");
    assert_eq!(out.stop_reason.as_deref(), Some("stop_sequence"));
    assert_eq!(out.stop_sequence.as_deref(), Some("4"));
}
