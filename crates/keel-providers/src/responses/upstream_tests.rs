//! Upstream translation tests, from the request, response and event shapes in OpenAI's
//! Responses API reference.

use keel_core::chat::{ChatRequest, Content};
use serde_json::{json, Value};

use super::*;

fn chat(v: Value) -> ChatRequest {
    serde_json::from_value(v).unwrap()
}

#[test]
fn a_chat_request_becomes_a_stateless_responses_body() {
    let body = chat_request_to_responses(
        &chat(json!({"model": "gpt-4.1", "max_tokens": 64, "temperature": 0.1,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "look", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"}],
            "tools": [{"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "look"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "object"}}},
            "reasoning_effort": "low", "parallel_tool_calls": false})),
        true,
    )
    .unwrap();
    assert_eq!(body["store"], false);
    assert_eq!(body["stream"], true);
    assert_eq!(body["max_output_tokens"], 64);
    let input = body["input"].as_array().unwrap();
    assert_eq!(input[0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(
        input[1]["content"][0],
        json!({"type": "input_text", "text": "what is this?"})
    );
    assert_eq!(
        input[1]["content"][1],
        json!({"type": "input_image", "image_url": "https://x/y.png", "detail": "low"})
    );
    assert_eq!(
        input[2],
        json!({"type": "function_call", "call_id": "call_1", "name": "look", "arguments": "{}"})
    );
    assert_eq!(
        input[3],
        json!({"type": "function_call_output", "call_id": "call_1", "output": "a cat"})
    );
    assert_eq!(body["tools"][0]["name"], "look");
    assert_eq!(
        body["tools"][0]["strict"], false,
        "chat's default, not Responses'"
    );
    assert_eq!(
        body["tool_choice"],
        json!({"type": "function", "name": "look"})
    );
    assert_eq!(body["text"]["format"]["type"], "json_schema");
    assert_eq!(body["text"]["format"]["name"], "o");
    assert_eq!(body["reasoning"], json!({"effort": "low"}));
    assert_eq!(body["parallel_tool_calls"], false);
}

#[test]
fn chat_parameters_without_a_responses_equivalent_are_refused() {
    for extra in [
        json!({"max_tokens": 5}),
        json!({"stop": ["x"]}),
        json!({"seed": 1}),
        json!({"n": 2}),
        json!({"logprobs": true}),
        json!({"presence_penalty": 0.5}),
    ] {
        let mut req = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        req.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let e = chat_request_to_responses(&chat(req), false).unwrap_err();
        assert!(e.to_string().contains("Responses API"), "{extra}: {e}");
    }
}

#[test]
fn a_response_object_becomes_a_chat_completion() {
    let r = responses_to_chat(&json!({
        "id": "resp_1", "object": "response", "created_at": 7, "status": "completed",
        "model": "gpt-4.1-2025-04-14",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_9", "name": "look",
             "arguments": "{\"q\":1}", "status": "completed"}],
        "usage": {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 40},
                  "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 8}, "total_tokens": 120}
    }))
    .unwrap();
    assert_eq!(r.model, "gpt-4.1-2025-04-14");
    let c = &r.choices[0];
    assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(c.message.content, Some(Content::Text("Checking.".into())));
    assert_eq!(c.message.tool_calls.as_ref().unwrap()[0].id, "call_9");
    let u = r.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (100, 20, 120)
    );
    assert_eq!((u.cached_tokens(), u.reasoning_tokens()), (40, 8));

    let cut = responses_to_chat(&json!({"status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"}, "output": []}))
    .unwrap();
    assert_eq!(cut.choices[0].finish_reason.as_deref(), Some("length"));
    assert!(responses_to_chat(&json!({"error": "nope"})).is_err());
}

#[test]
fn an_event_stream_becomes_chunks_with_usage_last() {
    let mut m = ResponseEventsToChunks::default();
    let events = [
        json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1", "model": "gpt-4.1", "created_at": 3, "output": []}}),
        json!({"type": "response.in_progress", "sequence_number": 1, "response": {}}),
        json!({"type": "response.output_item.added", "sequence_number": 2, "output_index": 0,
               "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": []}}),
        json!({"type": "response.output_text.delta", "sequence_number": 3, "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hi"}),
        json!({"type": "response.output_text.done", "sequence_number": 4, "item_id": "msg_1", "text": "Hi"}),
        json!({"type": "response.output_item.added", "sequence_number": 5, "output_index": 1,
               "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "look", "arguments": ""}}),
        json!({"type": "response.function_call_arguments.delta", "sequence_number": 6, "item_id": "fc_1", "output_index": 1, "delta": "{\"a\":"}),
        json!({"type": "response.function_call_arguments.delta", "sequence_number": 7, "item_id": "fc_1", "output_index": 1, "delta": "1}"}),
        json!({"type": "response.completed", "sequence_number": 8, "response": {"status": "completed",
               "usage": {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8}}}),
    ];
    let mut chunks = Vec::new();
    for e in &events {
        chunks.extend(m.push(e).unwrap());
    }
    assert!(m.finished());
    assert_eq!(
        chunks[0].choices[0].delta.role.as_deref(),
        Some("assistant")
    );
    assert_eq!(chunks[0].model, "gpt-4.1");
    assert_eq!(chunks[1].choices[0].delta.content.as_deref(), Some("Hi"));
    let call = &chunks[2].choices[0].delta.tool_calls.as_ref().unwrap()[0];
    assert_eq!((call.index, call.id.as_deref()), (0, Some("call_1")));
    let args: String = chunks[3..5]
        .iter()
        .map(|c| {
            c.choices[0].delta.tool_calls.as_ref().unwrap()[0]
                .function
                .as_ref()
                .unwrap()
                .arguments
                .clone()
                .unwrap()
        })
        .collect();
    assert_eq!(args, "{\"a\":1}");
    assert_eq!(
        chunks[5].choices[0].finish_reason.as_deref(),
        Some("tool_calls")
    );
    assert!(chunks[6].choices.is_empty());
    assert_eq!(chunks[6].usage.unwrap().total_tokens, 8);

    let mut failed = ResponseEventsToChunks::default();
    let e = failed
        .push(&json!({"type": "response.failed", "response": {"error": {"code": "server_error", "message": "boom"}}}))
        .unwrap_err();
    assert!(e.to_string().contains("boom"), "{e}");
}
