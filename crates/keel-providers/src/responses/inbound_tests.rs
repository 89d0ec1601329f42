//! Translation tests, from the request and event shapes in OpenAI's Responses API
//! reference.

use keel_core::chat::{
    ChatChunk, ChatResponse, Choice, ChunkChoice, Content, Delta, FunctionCallDelta, Message,
    ToolCallDelta, Usage,
};
use serde_json::{json, Value};

use super::*;

fn req(v: Value) -> ResponsesRequest {
    serde_json::from_value(v).unwrap()
}

#[test]
fn a_string_input_with_instructions_is_a_system_and_a_user_message() {
    let t = responses_request_to_chat(
        &req(
            json!({"model": "m", "input": "hi", "instructions": "Be brief.",
            "max_output_tokens": 50, "temperature": 0.2, "metadata": {"a": "b"}}),
        ),
        Vec::new(),
    )
    .unwrap();
    assert_eq!(t.chat.messages[0], Message::text("system", "Be brief."));
    assert_eq!(t.chat.messages[1], Message::text("user", "hi"));
    assert_eq!(t.chat.max_output_tokens(), Some(50));
    assert_eq!(t.chat.temperature, Some(0.2));
    // Instructions are not part of the conversation the next turn continues.
    assert_eq!(t.conversation, vec![Message::text("user", "hi")]);
    // metadata is echoed in the response, never sent to a chat upstream.
    assert!(!t.chat.extra.contains_key("metadata"));
}

#[test]
fn a_function_call_round_trip_becomes_an_assistant_tool_call_and_a_tool_message() {
    let t = responses_request_to_chat(
        &req(json!({"model": "m", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_2", "output": "noon"}
        ]})),
        vec![Message::text("user", "earlier"), Message::text("assistant", "ok")],
    )
    .unwrap();
    let m = &t.chat.messages;
    assert_eq!(m.len(), 6, "{m:?}");
    assert_eq!(m[2], Message::text("user", "weather?"));
    let calls = m[3].tool_calls.as_ref().unwrap();
    assert_eq!(m[3].role, "assistant");
    assert_eq!(calls.len(), 2, "consecutive calls are one assistant turn");
    assert_eq!(calls[0].id, "call_1");
    assert_eq!(calls[0].function.arguments, "{\"city\":\"Paris\"}");
    assert_eq!(m[4].role, "tool");
    assert_eq!(m[4].tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(m[4].content, Some(Content::Text("sunny".into())));
}

#[test]
fn tools_tool_choice_and_json_schema_map_to_chat() {
    let t = responses_request_to_chat(
        &req(json!({"model": "m", "input": "x",
            "tools": [{"type": "function", "name": "f", "description": "d",
                "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "f"},
            "parallel_tool_calls": false,
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}},
            "reasoning": {"effort": "low"}, "include": ["reasoning.encrypted_content"],
            "truncation": "auto", "background": false})),
        Vec::new(),
    )
    .unwrap();
    let tools = t.chat.tools.unwrap();
    assert_eq!(tools[0].function.name, "f");
    assert_eq!(tools[0].function.extra["strict"], true);
    assert_eq!(
        t.chat.tool_choice.unwrap(),
        json!({"type": "function", "function": {"name": "f"}})
    );
    assert_eq!(
        t.chat.response_format.unwrap(),
        json!({"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": true}})
    );
    assert_eq!(t.chat.extra["parallel_tool_calls"], false);
    assert_eq!(t.chat.extra["reasoning_effort"], "low");
    assert!(!t.chat.extra.contains_key("include") && !t.chat.extra.contains_key("truncation"));
}

#[test]
fn what_keel_does_not_serve_is_refused_naming_the_field() {
    for (body, path) in [
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "m", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}),
            "input[0]",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
            "input[0].call_id",
        ),
        (
            json!({"model": "m", "input": [{"role": "robot", "content": "x"}]}),
            "input[0].role",
        ),
        (json!({"model": "m", "input": 5}), "input"),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}),
            "text.format.schema",
        ),
    ] {
        let e = responses_request_to_chat(&req(body.clone()), Vec::new()).unwrap_err();
        assert_eq!(e.path, path, "{body}: {e}");
        assert!(!e.message.is_empty());
    }
}

#[test]
fn an_image_part_becomes_an_image_url_part() {
    let t = responses_request_to_chat(
        &req(json!({"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "what is it?"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}]}]})),
        Vec::new(),
    )
    .unwrap();
    let v = serde_json::to_value(&t.chat.messages[0]).unwrap();
    assert_eq!(v["content"][1]["type"], "image_url");
    assert_eq!(v["content"][1]["image_url"]["detail"], "low");
}

fn shell() -> ResponseObject {
    response_shell(
        &req(json!({"model": "m", "input": "x", "metadata": {"k": "v"}})),
        "resp_1".into(),
        1,
    )
}

#[test]
fn a_whole_chat_answer_becomes_a_response_object() {
    let resp = ChatResponse {
        id: "c".into(),
        model: "m-2024".into(),
        choices: vec![Choice {
            index: 0,
            message: serde_json::from_value(json!({"role": "assistant", "content": "Hello",
                "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}))
            .unwrap(),
            finish_reason: Some("tool_calls".into()),
            extra: Default::default(),
        }],
        usage: Some(Usage::new(10, 4)),
        ..Default::default()
    };
    let r = chat_response_to_response(shell(), &resp);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "m-2024");
    assert_eq!(v["metadata"]["k"], "v");
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(v["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(v["output"][1]["type"], "function_call");
    assert_eq!(v["output"][1]["call_id"], "call_9");
    assert_eq!(v["usage"]["input_tokens"], 10);
    assert_eq!(v["usage"]["output_tokens"], 4);
    assert_eq!(v["usage"]["total_tokens"], 14);
    // The answer continues the conversation as one assistant turn.
    let turn = output_to_messages(&r.output);
    assert_eq!(turn.len(), 1);
    assert_eq!(turn[0].text_content(), "Hello");
    assert_eq!(turn[0].tool_calls.as_ref().unwrap()[0].id, "call_9");
}

#[test]
fn a_length_stop_is_an_incomplete_response() {
    let resp = ChatResponse {
        choices: vec![Choice {
            message: Message::text("assistant", "cut"),
            finish_reason: Some("length".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let v = serde_json::to_value(chat_response_to_response(shell(), &resp)).unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
}

fn text_chunk(t: &str) -> ChatChunk {
    ChatChunk {
        model: "m-2024".into(),
        choices: vec![ChunkChoice {
            delta: Delta {
                content: Some(t.into()),
                ..Default::default()
            },
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn call_chunk(index: u32, id: Option<&str>, name: Option<&str>, args: &str) -> ChatChunk {
    ChatChunk {
        choices: vec![ChunkChoice {
            delta: Delta {
                tool_calls: Some(vec![ToolCallDelta {
                    index,
                    id: id.map(str::to_string),
                    kind: id.map(|_| "function".into()),
                    function: Some(FunctionCallDelta {
                        name: name.map(str::to_string),
                        arguments: Some(args.into()),
                    }),
                }]),
                ..Default::default()
            },
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_stream_is_the_documented_event_sequence_with_rising_sequence_numbers() {
    let mut m = ChunksToResponseEvents::new(shell());
    let mut events = Vec::new();
    events.extend(m.push(&text_chunk("Hel")));
    events.extend(m.push(&text_chunk("lo")));
    events.extend(m.push(&call_chunk(0, Some("call_1"), Some("f"), "{\"a\":")));
    events.extend(m.push(&call_chunk(0, None, None, "1}")));
    let mut fin = ChatChunk::default();
    fin.choices.push(ChunkChoice {
        finish_reason: Some("tool_calls".into()),
        ..Default::default()
    });
    events.extend(m.push(&fin));
    events.extend(m.push(&ChatChunk {
        usage: Some(Usage::new(7, 3)),
        ..Default::default()
    }));
    events.extend(m.finish());
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i as u64);
    }
    assert_eq!(events[0]["response"]["status"], "in_progress");
    assert_eq!(events[0]["response"]["model"], "m-2024");
    assert_eq!(events[6]["text"], "Hello");
    assert_eq!(events[9]["output_index"], 1);
    assert_eq!(events[9]["item"]["call_id"], "call_1");
    assert_eq!(events[12]["arguments"], "{\"a\":1}");
    let done = &events[14]["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["output"][1]["arguments"], "{\"a\":1}");
    assert_eq!(done["usage"]["total_tokens"], 10);
    let sse = to_sse(&events[..1]);
    assert!(sse.starts_with("event: response.created\ndata: {"), "{sse}");
    assert!(sse.ends_with("}\n\n"));
}

#[test]
fn a_failed_stream_ends_with_an_error_and_response_failed() {
    let mut m = ChunksToResponseEvents::new(shell());
    let mut events = m.push(&text_chunk("par"));
    events.extend(m.fail("upstream_error", "the upstream cut the stream"));
    let t = types(&events);
    assert_eq!(&t[t.len() - 2..], ["error", "response.failed"]);
    let failed = &events[events.len() - 1]["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "upstream_error");
    assert_eq!(failed["output"][0]["content"][0]["text"], "par");
}
