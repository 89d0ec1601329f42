//! Tests of stream reading, fed with the event sequences of Anthropic's streaming
//! documentation (SSE framing included, cut into small pieces).

use eventsource_stream::Eventsource;
use futures::StreamExt;
use keel_core::chat::ChatChunk;
use serde_json::{json, Value};

use super::*;

/// The "basic streaming request" example.
pub(crate) const TEXT_STREAM: &str = r#"event: message_start
data: {"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": "claude-opus-4-6", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence":null}, "usage": {"output_tokens": 15}}

event: message_stop
data: {"type": "message_stop"}

"#;

/// The "streaming request with tool use" example.
pub(crate) const TOOL_STREAM: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-opus-4-6","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":","}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" let's check the weather for San Francisco, CA:"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"San Fra"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ncisc"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"o,"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" CA\""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":", "}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"unit\": \"fah"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"renheit\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"#;

/// Parse SSE text (delivered 7 bytes at a time) into stream events.
pub(crate) async fn events(sse: &str) -> Vec<StreamEvent> {
    let pieces: Vec<Result<Vec<u8>, std::convert::Infallible>> =
        sse.as_bytes().chunks(7).map(|c| Ok(c.to_vec())).collect();
    futures::stream::iter(pieces)
        .eventsource()
        .map(|e| serde_json::from_str::<StreamEvent>(&e.unwrap().data).unwrap())
        .collect()
        .await
}

fn translate(events: Vec<StreamEvent>) -> Vec<ChatChunk> {
    let mut t = EventsToChunks::new();
    let mut out = Vec::new();
    for e in events {
        out.extend(t.push(e).unwrap());
    }
    assert!(t.is_done());
    out
}

/// The text, the finish reason and the (id, name, arguments) of each tool call.
fn assemble(chunks: &[ChatChunk]) -> (String, Option<String>, Vec<(String, String, String)>) {
    let mut text = String::new();
    let mut finish = None;
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for c in chunks {
        for ch in &c.choices {
            text.push_str(ch.delta.content.as_deref().unwrap_or(""));
            if ch.finish_reason.is_some() {
                finish = ch.finish_reason.clone();
            }
            for tc in ch.delta.tool_calls.iter().flatten() {
                let i = tc.index as usize;
                if calls.len() <= i {
                    calls.resize(i + 1, Default::default());
                }
                if let Some(id) = &tc.id {
                    calls[i].0 = id.clone();
                }
                if let Some(f) = &tc.function {
                    if let Some(n) = &f.name {
                        calls[i].1 = n.clone();
                    }
                    calls[i].2.push_str(f.arguments.as_deref().unwrap_or(""));
                }
            }
        }
    }
    (text, finish, calls)
}

#[tokio::test]
async fn documented_text_stream() {
    let chunks = translate(events(TEXT_STREAM).await);
    assert_eq!(
        chunks.len(),
        5,
        "role, two deltas, finish, usage: {chunks:#?}"
    );
    assert_eq!(
        chunks[0].choices[0].delta.role.as_deref(),
        Some("assistant")
    );
    assert!(chunks
        .iter()
        .all(|c| c.id == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"
            && c.model == "claude-opus-4-6"
            && c.object == "chat.completion.chunk"));
    let (text, finish, calls) = assemble(&chunks);
    assert_eq!(text, "Hello!");
    assert_eq!(finish.as_deref(), Some("stop"));
    assert!(calls.is_empty());
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty());
    let usage = last.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (25, 15, 40)
    );
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c.usage.is_none()));
}

#[tokio::test]
async fn documented_tool_use_stream() {
    let chunks = translate(events(TOOL_STREAM).await);
    let (text, finish, calls) = assemble(&chunks);
    assert_eq!(text, "Okay, let's check the weather for San Francisco, CA:");
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(calls[0].1, "get_weather");
    let args: Value = serde_json::from_str(&calls[0].2).unwrap();
    assert_eq!(
        args,
        json!({"location": "San Francisco, CA", "unit": "fahrenheit"})
    );
    // The first tool fragment carries id, type and name; later ones only arguments.
    let first = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .find_map(|ch| ch.delta.tool_calls.as_ref())
        .unwrap();
    assert_eq!(first[0].kind.as_deref(), Some("function"));
    assert_eq!(first[0].index, 0);
    let usage = chunks.last().unwrap().usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (472, 89));
}

#[test]
fn message_delta_usage_with_cache_fields_wins() {
    let mut t = EventsToChunks::new();
    let start: StreamEvent = serde_json::from_value(json!({"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
        "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 0, "output_tokens": 1, "cache_read_input_tokens": 0}}}))
    .unwrap();
    t.push(start).unwrap();
    let delta: StreamEvent = serde_json::from_value(json!({"type": "message_delta",
        "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
        "usage": {"input_tokens": 12, "output_tokens": 30, "cache_read_input_tokens": 1000,
                  "cache_creation_input_tokens": 8}}))
    .unwrap();
    let finish = t.push(delta).unwrap();
    assert_eq!(finish[0].choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!(finish[0].choices[0].extra["stop_reason"], "END");
    let last = t.push(StreamEvent::MessageStop).unwrap();
    let usage = last[0].usage.unwrap();
    assert_eq!(usage.prompt_tokens, 1020);
    assert_eq!(usage.cached_tokens(), 1000);
    assert_eq!(usage.completion_tokens, 30);
}

#[test]
fn error_event_becomes_a_status_error() {
    let mut t = EventsToChunks::new();
    let e: StreamEvent = serde_json::from_str(
        r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#,
    )
    .unwrap();
    match t.push(e) {
        Err(ProviderError::Status {
            status,
            message,
            code,
            body,
            retry_after,
        }) => {
            assert_eq!(status, 529);
            assert_eq!(message, "Overloaded");
            assert_eq!(code.as_deref(), Some("overloaded_error"));
            assert_eq!(body.unwrap()["error"]["type"], "overloaded_error");
            assert_eq!(retry_after, None);
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    for (kind, status) in [
        ("api_error", 500),
        ("rate_limit_error", 429),
        ("mystery", 500),
    ] {
        let e = StreamEvent::Error {
            error: super::super::wire::ErrorDetail {
                kind: kind.into(),
                message: String::new(),
            },
        };
        assert!(matches!(t.push(e), Err(ProviderError::Status { status: s, .. }) if s == status));
    }
}

/// Found while writing the `anthropic_sse` fuzz target, which crashes on this input
/// (kept as fuzz/seeds/anthropic_sse/usage_overflow): token counts near `u64::MAX` from upstream overflowed the sum into `prompt_tokens`
/// (a panic with overflow checks, a wrapped, too-small count without). They saturate.
#[tokio::test]
async fn fuzz_usage_overflow_saturates() {
    let sse = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"usage\":{\"input_tokens\":18446744073709551615,\"output_tokens\":1,\"cache_read_input_tokens\":1}}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let chunks = translate(events(sse).await);
    let usage = chunks.last().unwrap().usage.unwrap();
    assert_eq!(usage.prompt_tokens, u64::MAX);
    assert_eq!(usage.total_tokens, u64::MAX);
    assert_eq!(usage.cached_tokens(), 1);
}
