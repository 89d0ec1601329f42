//! Gemini translation tests, from the shapes in the Gemini API reference.

use keel_core::chat::ChatRequest;
use serde_json::{json, Value};

use super::*;

fn chat(v: Value) -> ChatRequest {
    serde_json::from_value(v).unwrap()
}

#[test]
fn parallel_tool_results_are_one_user_turn_and_images_are_inline_data() {
    let body = chat_request_to_gemini(&chat(json!({"model": "g", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]},
        {"role": "assistant", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
            {"id": "b", "type": "function", "function": {"name": "g", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "a", "content": "{\"ok\":true}"},
        {"role": "tool", "tool_call_id": "b", "content": "plain"}]})))
    .unwrap();
    let contents = body["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3);
    assert_eq!(
        contents[0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": "iVBO"}})
    );
    assert_eq!(contents[1]["parts"][1]["functionCall"]["args"], json!({}));
    let results = contents[2]["parts"].as_array().unwrap();
    assert_eq!(results.len(), 2, "both results in one user turn");
    assert_eq!(
        results[0]["functionResponse"]["response"],
        json!({"ok": true})
    );
    assert_eq!(
        results[1]["functionResponse"],
        json!({"id": "b", "name": "g", "response": {"content": "plain"}})
    );
}

#[test]
fn what_gemini_cannot_take_is_refused_by_name() {
    for (req, needle) in [
        (
            json!({"model": "g", "logprobs": true, "messages": [{"role": "user", "content": "x"}]}),
            "`logprobs`",
        ),
        (
            json!({"model": "g", "messages": [{"role": "tool", "tool_call_id": "zz", "content": "x"}]}),
            "`zz`",
        ),
        (
            json!({"model": "g", "messages": [{"role": "assistant", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}),
            "not JSON",
        ),
    ] {
        let e = chat_request_to_gemini(&chat(req)).unwrap_err();
        assert!(e.to_string().contains(needle), "{e}");
        assert_eq!(e.class(), "unsupported_request");
    }
}

#[test]
fn a_safety_stop_before_any_output_is_a_content_policy_error_whole_or_streamed() {
    let stopped = json!({"candidates": [{"finishReason": "SAFETY", "index": 0}]});
    assert_eq!(
        gemini_to_chat(&stopped).unwrap_err().class(),
        "upstream_content_policy"
    );
    let mut m = GeminiChunks::default();
    assert_eq!(
        m.push(&stopped).unwrap_err().class(),
        "upstream_content_policy"
    );
    // After some output, a safety stop is the finish reason content_filter.
    let mut m = GeminiChunks::default();
    m.push(&json!({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}))
        .unwrap();
    let last = m
        .push(&json!({"candidates": [{"finishReason": "SAFETY"}]}))
        .unwrap();
    assert_eq!(
        last[0].choices[0].finish_reason.as_deref(),
        Some("content_filter")
    );
    assert!(m.finished());
    // Thought summaries are not the answer.
    let r = gemini_to_chat(&json!({"candidates": [{"content": {"parts": [
        {"text": "thinking...", "thought": true}, {"text": "42"}]}, "finishReason": "MAX_TOKENS"}]}))
    .unwrap();
    assert_eq!(r.output_text(), "42");
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("length"));
}

#[test]
fn a_thought_signature_rides_in_the_call_id_and_goes_back_with_the_call() {
    let answer = gemini_to_chat(
        &json!({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "f", "args": {"x": 1}}, "thoughtSignature": "c2lnbmF0dXJl"},
        {"functionCall": {"name": "g", "args": {}}}]}, "finishReason": "STOP"}]}),
    )
    .unwrap();
    let calls = answer.choices[0].message.tool_calls.clone().unwrap();
    assert!(calls[0].id.ends_with("~ts~c2lnbmF0dXJl"), "{}", calls[0].id);
    assert!(calls[0].id.starts_with("call_") && calls[1].id.starts_with("call_"));
    assert_ne!(calls[0].id, calls[1].id);
    // The next turn: the call and its result, as a chat client sends them back.
    let body = chat_request_to_gemini(&chat(json!({"model": "g", "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [
            {"id": calls[0].id, "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "done"}]})))
    .unwrap();
    let call = &body["contents"][1]["parts"][0];
    assert_eq!(call["thoughtSignature"], "c2lnbmF0dXJl");
    let id = call["functionCall"]["id"].as_str().unwrap();
    assert!(!id.contains("~ts~"), "{id}");
    assert_eq!(
        body["contents"][2]["parts"][0]["functionResponse"]["id"],
        id
    );
}
