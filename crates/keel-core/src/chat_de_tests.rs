use serde_json::json;

use crate::chat::{ChatChunk, ChatRequest, ChatResponse, Content, Message, Stop};

fn request(body: &str) -> Result<ChatRequest, serde_json::Error> {
    serde_json::from_str(body)
}

#[test]
fn known_fields_are_read_and_unknown_ones_kept_at_every_level() {
    let req = request(
        r#"{"model":"m","x_top":{"a":[1,2]},"stream":true,"stream_options":{"include_usage":true,"x_so":1},
           "messages":[{"role":"user","content":[{"type":"text","text":"hi","x_part":true},
                                                 {"type":"image_url","image_url":{"url":"u"}}],"x_msg":"v"}],
           "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"},"strict":true},"x_tool":2}],
           "stop":["a","b"],"max_tokens":7,"seed":-3,"tool_choice":"auto","presence_penalty":0.5}"#,
    )
    .unwrap();
    assert_eq!(req.model, "m");
    assert!(req.stream && req.wants_stream_usage());
    assert_eq!(req.max_tokens, Some(7));
    assert_eq!(req.seed, Some(-3));
    assert_eq!(req.stop, Some(Stop::Many(vec!["a".into(), "b".into()])));
    assert_eq!(req.tool_choice, Some(json!("auto")));
    assert_eq!(req.extra["x_top"], json!({"a": [1, 2]}));
    assert_eq!(req.extra["presence_penalty"], json!(0.5));
    assert_eq!(req.stream_options.as_ref().unwrap().extra["x_so"], json!(1));
    let m = &req.messages[0];
    assert_eq!(m.extra["x_msg"], json!("v"));
    let Some(Content::Parts(parts)) = &m.content else {
        panic!("parts expected: {:?}", m.content)
    };
    assert_eq!(parts[0].text.as_deref(), Some("hi"));
    assert_eq!(parts[0].extra["x_part"], json!(true));
    assert_eq!(parts[1].extra["image_url"], json!({"url": "u"}));
    let tool = &req.tools.as_ref().unwrap()[0];
    assert_eq!(tool.extra["x_tool"], json!(2));
    assert_eq!(tool.function.extra["strict"], json!(true));
    // And back out as it came in.
    let back = serde_json::to_value(&req).unwrap();
    assert_eq!(back["messages"][0]["content"][1]["image_url"]["url"], "u");
    assert_eq!(back["x_top"]["a"][1], 2);
    assert_eq!(back["stop"], json!(["a", "b"]));
}

#[test]
fn defaults_nulls_and_strings_read_as_the_derive_did() {
    let req = request(
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stop":"x","temperature":null}"#,
    )
    .unwrap();
    assert!(!req.stream);
    assert_eq!(req.temperature, None);
    assert_eq!(req.stop, Some(Stop::One("x".into())));
    assert_eq!(req.messages[0].content, Some(Content::Text("hi".into())));
    assert!(req.extra.is_empty());
    // No messages at all (a function call): an empty list, not an error.
    assert!(request(r#"{"model":"f"}"#).unwrap().messages.is_empty());
    // `content: null` (an assistant turn with only tool calls).
    let m: Message = serde_json::from_str(r#"{"role":"assistant","content":null}"#).unwrap();
    assert_eq!(m.content, None);
    // A key written with an escape is the same key.
    assert_eq!(request(r#"{"mo\u0064el":"m"}"#).unwrap().model, "m");
    // A text with escapes is unescaped.
    let m: Message = serde_json::from_str(r#"{"role":"user","content":"a\nb\u00e9"}"#).unwrap();
    assert_eq!(m.text_content(), "a\nbé");
}

#[test]
fn bad_input_is_refused_with_the_derives_errors() {
    let missing = request(r#"{"messages":[]}"#).unwrap_err().to_string();
    assert!(missing.contains("missing field `model`"), "{missing}");
    let twice = request(r#"{"model":"a","model":"b"}"#)
        .unwrap_err()
        .to_string();
    assert!(twice.contains("duplicate field `model`"), "{twice}");
    let wrong = request(r#"{"model":5}"#).unwrap_err().to_string();
    assert!(
        wrong.contains("invalid type: integer `5`, expected a string"),
        "{wrong}"
    );
    let array = request(r#"["m"]"#).unwrap_err().to_string();
    assert!(array.contains("expected struct ChatRequest"), "{array}");
    let content = serde_json::from_str::<Message>(r#"{"role":"user","content":5}"#)
        .unwrap_err()
        .to_string();
    assert!(
        content.contains("expected a string or a list of content parts"),
        "{content}"
    );
    // A repeated unknown field keeps its last value, as `Map` did.
    let req = request(r#"{"model":"m","x":1,"x":2}"#).unwrap();
    assert_eq!(req.extra["x"], json!(2));
}

#[test]
fn a_bad_field_is_named_by_its_path() {
    let body = br#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":7}]}"#;
    let de = &mut serde_json::Deserializer::from_slice(body);
    let err = serde_path_to_error::deserialize::<_, ChatRequest>(de).unwrap_err();
    assert_eq!(err.path().to_string(), "messages[1].role");
}

#[test]
fn values_read_as_json_text_does() {
    let v = json!({"model":"m","messages":[{"role":"user","content":"hi","x":1}],"n":2});
    let from_value: ChatRequest = serde_json::from_value(v.clone()).unwrap();
    let from_text: ChatRequest = serde_json::from_str(&v.to_string()).unwrap();
    assert_eq!(from_value, from_text);
    assert_eq!(from_value.n, Some(2));
}

#[test]
fn responses_and_chunks_read_with_their_defaults() {
    let r: ChatResponse = serde_json::from_str(
        r#"{"id":"c1","model":"gpt","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},
            "finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4},
            "service_tier":"default"}"#,
    )
    .unwrap();
    assert_eq!(r.object, "chat.completion");
    assert_eq!(r.created, 0);
    assert_eq!(r.output_text(), "ok");
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!(r.choices[0].extra["logprobs"], json!(null));
    assert_eq!(r.extra["service_tier"], json!("default"));
    assert_eq!(r.usage.map(|u| u.total_tokens), Some(4));
    let missing = serde_json::from_str::<ChatResponse>(r#"{"id":"c","model":"m"}"#)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("missing field `choices`"), "{missing}");

    let c: ChatChunk = serde_json::from_str(
        r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"a","x_d":1}}],"obfuscation":"zz"}"#,
    )
    .unwrap();
    assert_eq!(c.object, "chat.completion.chunk");
    assert_eq!(c.model, "");
    assert_eq!(c.choices[0].delta.content.as_deref(), Some("a"));
    assert_eq!(c.choices[0].delta.extra["x_d"], json!(1));
    assert_eq!(c.extra["obfuscation"], json!("zz"));
    let last: ChatChunk = serde_json::from_str(
        r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
    )
    .unwrap();
    assert!(last.choices.is_empty());
    assert_eq!(last.usage.map(|u| u.completion_tokens), Some(2));
    // A chunk choice without a delta gets an empty one.
    let bare: ChatChunk =
        serde_json::from_str(r#"{"id":"c","choices":[{"index":0,"finish_reason":"stop"}]}"#)
            .unwrap();
    assert_eq!(bare.choices[0].delta, Default::default());
}
