//! Calling an upstream that speaks the Responses API (`api = "responses"` on an `openai`
//! provider): a canonical chat request becomes a Responses body, and the response object
//! that comes back becomes a chat completion. Streams are in `upstream_stream`.
//!
//! The upstream is called statelessly (`store: false`): Keel sends the whole
//! conversation each time and keeps conversations itself. Chat parameters the Responses
//! API has no equivalent for (`stop`, `n` > 1, `logprobs`, `logit_bias`, penalties,
//! `seed`) are refused naming the parameter, never dropped: they would change the answer.

use keel_core::chat::{
    ChatRequest, ChatResponse, Choice, CompletionTokensDetails, Content, FunctionCall, Message,
    PromptTokensDetails, ToolCall, Usage,
};
use serde_json::{json, Map, Value};

use crate::ProviderError;

/// Chat parameters with no Responses equivalent.
const REFUSED: [&str; 8] = [
    "stop",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "audio",
];

/// The smallest `max_output_tokens` the Responses API accepts.
pub const MIN_OUTPUT_TOKENS: u32 = 16;

/// Parameters that mean the same in both APIs, passed on as they are.
const PASSED: [&str; 4] = [
    "parallel_tool_calls",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
];

fn unsupported(what: impl std::fmt::Display) -> ProviderError {
    ProviderError::Unsupported(format!(
        "{what}: this provider is called with the Responses API (api = \"responses\"), which has no equivalent; remove it or route the call to a chat provider"
    ))
}

/// The Responses body for a canonical request (its `model` already the upstream id).
pub fn chat_request_to_responses(req: &ChatRequest, stream: bool) -> Result<Value, ProviderError> {
    if req.stop.is_some() {
        return Err(unsupported("`stop`"));
    }
    if req.seed.is_some() {
        return Err(unsupported("`seed`"));
    }
    if req.n.is_some_and(|n| n > 1) {
        return Err(unsupported("`n` > 1"));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("input".into(), Value::Array(input_items(&req.messages)?));
    body.insert("store".into(), json!(false));
    body.insert("stream".into(), json!(stream));
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(m) = req.max_output_tokens() {
        if m < MIN_OUTPUT_TOKENS {
            return Err(ProviderError::Unsupported(format!(
                "`max_tokens` {m}: the Responses API (api = \"responses\") takes at least {MIN_OUTPUT_TOKENS} output tokens; ask for {MIN_OUTPUT_TOKENS} or more, or route the call to a chat provider"
            )));
        }
        body.insert("max_output_tokens".into(), json!(m));
    }
    if let Some(u) = &req.user {
        body.insert("user".into(), json!(u));
    }
    if let Some(tools) = &req.tools {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let f = &t.function;
                json!({"type": "function", "name": f.name, "description": f.description,
                    "parameters": f.parameters.clone().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                    // Chat's default; the Responses API's would be true.
                    "strict": f.extra.get("strict").cloned().unwrap_or(json!(false))})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &req.tool_choice {
        let mapped = match choice.pointer("/function/name") {
            Some(name) => json!({"type": "function", "name": name}),
            None => choice.clone(),
        };
        body.insert("tool_choice".into(), mapped);
    }
    if let Some(format) = &req.response_format {
        match format.get("type").and_then(Value::as_str) {
            Some("json_schema") => {
                let mut f = format
                    .get("json_schema")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                f.insert("type".into(), json!("json_schema"));
                body.insert("text".into(), json!({"format": f}));
            }
            Some("json_object") => {
                body.insert("text".into(), json!({"format": {"type": "json_object"}}));
            }
            _ => {}
        }
    }
    for (name, value) in &req.extra {
        if value.is_null() {
            continue;
        }
        // `logprobs: false` asks for nothing; any other value of a refused one does.
        if REFUSED.contains(&name.as_str()) && value != &Value::Bool(false) {
            return Err(unsupported(format!("`{name}`")));
        }
        if REFUSED.contains(&name.as_str()) {
            continue;
        }
        if PASSED.contains(&name.as_str()) {
            body.insert(name.clone(), value.clone());
        } else if name == "reasoning_effort" {
            body.insert("reasoning".into(), json!({"effort": value}));
        }
    }
    Ok(Value::Object(body))
}

fn input_items(messages: &[Message]) -> Result<Vec<Value>, ProviderError> {
    let mut items = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        match m.role.as_str() {
            "system" | "developer" | "user" => {
                items.push(json!({"role": m.role, "content": content(m, i)?}));
            }
            "assistant" => {
                let text = m.text_content();
                if !text.is_empty() {
                    items.push(json!({"role": "assistant", "content": text}));
                }
                for c in m.tool_calls.iter().flatten() {
                    items.push(json!({"type": "function_call", "call_id": c.id,
                        "name": c.function.name, "arguments": c.function.arguments}));
                }
            }
            "tool" => items.push(json!({"type": "function_call_output",
                "call_id": m.tool_call_id.clone().unwrap_or_default(),
                "output": m.text_content()})),
            other => {
                return Err(ProviderError::Unsupported(format!(
                    "messages[{i}].role {other:?} cannot be sent to the Responses API"
                )))
            }
        }
    }
    Ok(items)
}

/// A message's content as Responses input: text, or `input_text` / `input_image` parts.
fn content(m: &Message, i: usize) -> Result<Value, ProviderError> {
    match &m.content {
        None => Ok(json!("")),
        Some(Content::Text(t)) => Ok(json!(t)),
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| match p.kind.as_str() {
                "text" => Ok(json!({"type": "input_text", "text": p.text.clone().unwrap_or_default()})),
                "image_url" => {
                    let image = p.extra.get("image_url");
                    let url = image
                        .and_then(|u| u.get("url").or(Some(u)))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let mut part = json!({"type": "input_image", "image_url": url});
                    if let Some(d) = image.and_then(|u| u.get("detail")) {
                        part["detail"] = d.clone();
                    }
                    Ok(part)
                }
                other => Err(ProviderError::Unsupported(format!(
                    "messages[{i}].content[{j}]: {other:?} parts cannot be sent to the Responses API"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
    }
}

/// A Responses API response object as a chat completion.
pub fn responses_to_chat(v: &Value) -> Result<ChatResponse, ProviderError> {
    let output = v.get("output").and_then(Value::as_array).ok_or_else(|| {
        ProviderError::InvalidResponse(format!(
            "not a Responses API response (no `output`): {}",
            crate::sse::truncate(&v.to_string(), 200)
        ))
    })?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for item in output {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for c in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = c.get("text").or(c.get("refusal")).and_then(Value::as_str) {
                        text.push_str(t);
                    }
                }
            }
            Some("function_call") => calls.push(ToolCall {
                id: str_of(item, "call_id"),
                kind: "function".into(),
                function: FunctionCall {
                    name: str_of(item, "name"),
                    arguments: str_of(item, "arguments"),
                },
            }),
            _ => {}
        }
    }
    let finish = finish_reason(v, !calls.is_empty());
    Ok(ChatResponse {
        id: str_of(v, "id"),
        object: "chat.completion".into(),
        created: v.get("created_at").and_then(Value::as_i64).unwrap_or(0),
        model: str_of(v, "model"),
        choices: vec![Choice {
            index: 0,
            message: Message {
                role: "assistant".into(),
                content: (!text.is_empty() || calls.is_empty()).then_some(Content::Text(text)),
                tool_calls: (!calls.is_empty()).then_some(calls),
                ..Default::default()
            },
            finish_reason: Some(finish.into()),
            extra: Map::new(),
        }],
        usage: v.get("usage").map(usage),
        ..Default::default()
    })
}

fn str_of(v: &Value, field: &str) -> String {
    v.get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The chat finish reason a response's status means.
pub(crate) fn finish_reason(v: &Value, called: bool) -> &'static str {
    let reason = v
        .pointer("/incomplete_details/reason")
        .and_then(Value::as_str);
    match (v.get("status").and_then(Value::as_str), reason) {
        (Some("incomplete"), Some("content_filter")) => "content_filter",
        (Some("incomplete"), _) => "length",
        _ if called => "tool_calls",
        _ => "stop",
    }
}

/// Responses usage as canonical usage.
pub(crate) fn usage(u: &Value) -> Usage {
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let mut usage = Usage::new(n("/input_tokens"), n("/output_tokens"));
    if let Some(total) = u.get("total_tokens").and_then(Value::as_u64) {
        usage.total_tokens = total;
    }
    let cached = n("/input_tokens_details/cached_tokens");
    if cached > 0 {
        usage.prompt_tokens_details = Some(PromptTokensDetails {
            cached_tokens: cached,
        });
    }
    let reasoning = n("/output_tokens_details/reasoning_tokens");
    if reasoning > 0 {
        usage.completion_tokens_details = Some(CompletionTokensDetails {
            reasoning_tokens: reasoning,
        });
    }
    usage
}
