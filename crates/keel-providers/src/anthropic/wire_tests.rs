//! Tests of the wire types against the JSON of Anthropic's documentation.

use super::*;
use serde_json::json;

#[test]
fn documented_response_parses() {
    let body = r#"{
      "content": [{"text": "Hi! My name is Claude.", "type": "text"}],
      "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
      "model": "claude-sonnet-4-5-20250929",
      "role": "assistant",
      "stop_reason": "end_turn",
      "stop_sequence": null,
      "type": "message",
      "usage": {"input_tokens": 2095, "output_tokens": 503,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                "service_tier": "standard"}
    }"#;
    let r: MessagesResponse = serde_json::from_str(body).unwrap();
    assert_eq!(
        r.content,
        vec![ContentBlock::text("Hi! My name is Claude.")]
    );
    assert_eq!(r.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(r.usage.input_tokens, 2095);
    assert_eq!(r.usage.output_tokens, 503);
    assert_eq!(r.usage.cache_read_input_tokens, Some(0));
    assert_eq!(r.usage.extra["service_tier"], "standard");
}

#[test]
fn unknown_and_malformed_blocks_are_kept_verbatim() {
    let blocks: Vec<ContentBlock> = serde_json::from_value(json!([
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
        {"type": "tool_use", "name": "no_id"},
        {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}
    ]))
    .unwrap();
    assert_eq!(blocks[0].kind(), "server_tool_use");
    assert!(matches!(&blocks[1], ContentBlock::Other(v) if v["name"] == "no_id"));
    match &blocks[2] {
        ContentBlock::Text { text, extra } => {
            assert_eq!(text, "x");
            assert_eq!(extra["cache_control"]["type"], "ephemeral");
            assert!(!extra.contains_key("type"));
        }
        other => panic!("not a text block: {other:?}"),
    }
    // Printing gives back the same JSON.
    let back = serde_json::to_value(&blocks).unwrap();
    assert_eq!(back[0]["type"], "server_tool_use");
    assert_eq!(
        back[2],
        json!({"type":"text","text":"x","cache_control":{"type":"ephemeral"}})
    );
}

#[test]
fn stream_events_parse_including_unknown_ones() {
    let e: StreamEvent = serde_json::from_str(
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}"#,
    )
    .unwrap();
    assert_eq!(
        e,
        StreamEvent::ContentBlockDelta {
            index: 1,
            delta: BlockDelta::InputJsonDelta {
                partial_json: "{\"location\":".into()
            }
        }
    );
    let e: StreamEvent = serde_json::from_str(r#"{"type":"brand_new_event","x":1}"#).unwrap();
    assert_eq!(e, StreamEvent::Unknown);
    let e: StreamEvent = serde_json::from_str(
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
    )
    .unwrap();
    match e {
        StreamEvent::MessageDelta { delta, usage } => {
            assert_eq!(delta.stop_reason.as_deref(), Some("tool_use"));
            assert_eq!(usage.and_then(|u| u.output_tokens), Some(89));
        }
        other => panic!("wrong event {other:?}"),
    }
}

#[test]
fn error_body_round_trips() {
    let body = r#"{"type":"error","error":{"type":"not_found_error","message":"The requested resource could not be found."},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#;
    let e: ErrorBody = serde_json::from_str(body).unwrap();
    assert_eq!(e.error.kind, "not_found_error");
    assert_eq!(
        e.error.message,
        "The requested resource could not be found."
    );
    assert_eq!(e.extra["request_id"], "req_011CSHoEeqs5C35K2UUqR7Fy");
    assert_eq!(status_for_error_type(&e.error.kind), 404);
    assert_eq!(status_for_error_type("overloaded_error"), 529);
    assert_eq!(error_type_for_status(429), "rate_limit_error");
    let v = serde_json::to_value(ErrorBody::new("api_error", "boom")).unwrap();
    assert_eq!(
        v,
        json!({"type":"error","error":{"type":"api_error","message":"boom"}})
    );
}

#[test]
fn request_keeps_unknown_fields() {
    let req: MessagesRequest = serde_json::from_value(json!({
        "model": "claude-sonnet-4-5", "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hello, world"}],
        "thinking": {"type": "enabled", "budget_tokens": 2000}
    }))
    .unwrap();
    assert_eq!(req.max_tokens, Some(1024));
    assert_eq!(req.extra["thinking"]["budget_tokens"], 2000);
    let back = serde_json::to_value(&req).unwrap();
    assert_eq!(back["thinking"]["type"], "enabled");
    assert!(back.get("stream").is_none());
}
