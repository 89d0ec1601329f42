//! Serving Responses clients: a `POST /v1/responses` body becomes a canonical
//! [`ChatRequest`] (routed like any other call, to any provider), and the canonical
//! [`ChatResponse`] that comes back becomes a response object.
//!
//! What maps: `input` (a string, or message / `function_call` / `function_call_output`
//! items), `instructions` (a system message, not carried to the next turn, as OpenAI
//! does), function `tools`, `tool_choice`, `text.format`, `max_output_tokens`,
//! `temperature`, `top_p`, `parallel_tool_calls`, `user`; `service_tier`,
//! `prompt_cache_key`, `safety_identifier` and Keel's `variables` (a function's prompt
//! variables) go on as they are, `reasoning.effort` as
//! `reasoning_effort`. Features with no chat equivalent (hosted tools, `background`,
//! `conversation`, stored `prompt`s, item references) are refused with a
//! [`TranslateError`] naming the field; hints that change nothing in the answer
//! (`include`, `truncation`, `stream_options`, `top_logprobs`, ...) are dropped.

use keel_core::chat::{
    ChatRequest, ChatResponse, Content, ContentPart, FunctionCall, FunctionDef, Message,
    StreamOptions, Tool, ToolCall,
};
use serde_json::{json, Map, Value};

use super::wire::{OutputContent, OutputItem, ResponseObject, ResponseUsage, ResponsesRequest};
use crate::anthropic::TranslateError;

/// Fields that mean the same in Chat Completions, passed on as they are; `variables` is
/// Keel's own, the values of a function's prompt variables (as on chat calls).
const PASSED: [&str; 4] = [
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "variables",
];

/// Features Keel does not serve, and what to do instead.
const REFUSED: [(&str, &str); 4] = [
    ("background", "background responses are not served by Keel; send the request without `background` (stream it for long answers)"),
    ("conversation", "the Conversations API is not served by Keel; chain turns with `previous_response_id`"),
    ("prompt", "stored OpenAI prompts are not served by Keel; define a Keel function (prompts as code) and call it by name as `model`"),
    ("max_tool_calls", "`max_tool_calls` applies to hosted tools, which Keel does not serve; remove it"),
];

/// A translated request: the chat request to route, and the conversation it carries
/// (earlier turns and this turn's input, without `instructions`) to store with the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub chat: ChatRequest,
    pub conversation: Vec<Message>,
}

/// Translate a Responses request. `history` is the stored conversation of
/// `previous_response_id` (earlier inputs and outputs), empty for a first turn.
pub fn responses_request_to_chat(
    req: &ResponsesRequest,
    history: Vec<Message>,
) -> Result<Translated, TranslateError> {
    let mut extra = extra_fields(&req.extra)?;
    let mut conversation = history;
    match &req.input {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => conversation.push(Message::text("user", s.clone())),
        Some(Value::Array(items)) => input_items(items, &mut conversation)?,
        Some(other) => {
            return Err(TranslateError::new(
                "input",
                format!(
                    "expected a string or a list of input items, got {}",
                    kind(other)
                ),
            ))
        }
    }
    let mut messages = Vec::with_capacity(conversation.len() + 1);
    if let Some(i) = req.instructions.as_deref().filter(|i| !i.is_empty()) {
        messages.push(Message::text("system", i));
    }
    messages.extend(conversation.iter().cloned());

    let tools = match &req.tools {
        Some(t) if !t.is_empty() => Some(
            t.iter()
                .enumerate()
                .map(|(i, t)| tool(t, i))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        _ => None,
    };
    let tool_choice = req.tool_choice.as_ref().map(tool_choice).transpose()?;
    if tools.is_some() {
        if let Some(p) = req.parallel_tool_calls {
            extra.insert("parallel_tool_calls".into(), json!(p));
        }
    }
    let response_format = req.text.as_ref().map(text_format).transpose()?.flatten();
    let stream = req.wants_stream();
    Ok(Translated {
        chat: ChatRequest {
            model: req.model.clone(),
            messages,
            stream,
            stream_options: stream.then(|| StreamOptions {
                include_usage: Some(true),
                extra: Map::new(),
            }),
            temperature: req.temperature,
            top_p: req.top_p,
            max_completion_tokens: req.max_output_tokens,
            user: req.user.clone(),
            tools,
            tool_choice,
            response_format,
            extra,
            ..Default::default()
        },
        conversation,
    })
}

/// The fields beyond the mapped ones: passed on to the chat request, refused, or dropped.
fn extra_fields(extra: &Map<String, Value>) -> Result<Map<String, Value>, TranslateError> {
    let mut out = Map::new();
    for (name, value) in extra {
        if value.is_null() || value == &Value::Bool(false) {
            continue;
        }
        if let Some((_, why)) = REFUSED.iter().find(|(f, _)| f == name) {
            return Err(TranslateError::new(name.clone(), *why));
        }
        if PASSED.contains(&name.as_str()) {
            out.insert(name.clone(), value.clone());
        } else if name == "reasoning" {
            if let Some(effort) = value.get("effort").filter(|e| !e.is_null()) {
                out.insert("reasoning_effort".into(), effort.clone());
            }
        }
    }
    Ok(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn str_field<'a>(item: &'a Value, field: &str, path: &str) -> Result<&'a str, TranslateError> {
    item.get(field).and_then(Value::as_str).ok_or_else(|| {
        TranslateError::new(
            format!("{path}.{field}"),
            "required string field is missing",
        )
    })
}

/// Input items, appended to `out` as chat messages. Consecutive `function_call` items
/// (and one right after an assistant message) form one assistant turn, as a chat
/// upstream expects its tool calls.
fn input_items(items: &[Value], out: &mut Vec<Message>) -> Result<(), TranslateError> {
    let mut assistant_open = false;
    for (i, item) in items.iter().enumerate() {
        let path = format!("input[{i}]");
        if !item.is_object() {
            return Err(TranslateError::new(
                path,
                format!("expected an input item object, got {}", kind(item)),
            ));
        }
        let ty = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        match ty {
            "message" => {
                let m = message_item(item, &path)?;
                assistant_open = m.role == "assistant";
                out.push(m);
            }
            "function_call" => {
                let call = ToolCall {
                    id: str_field(item, "call_id", &path)?.to_string(),
                    kind: "function".into(),
                    function: FunctionCall {
                        name: str_field(item, "name", &path)?.to_string(),
                        arguments: str_field(item, "arguments", &path)?.to_string(),
                    },
                };
                match out.last_mut() {
                    Some(last) if assistant_open && last.role == "assistant" => {
                        last.tool_calls.get_or_insert_with(Vec::new).push(call);
                    }
                    _ => out.push(Message {
                        role: "assistant".into(),
                        tool_calls: Some(vec![call]),
                        ..Default::default()
                    }),
                }
                assistant_open = true;
            }
            "function_call_output" => {
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    _ => {
                        return Err(TranslateError::new(
                            format!("{path}.output"),
                            "required: the function's result as a string",
                        ))
                    }
                };
                out.push(Message {
                    role: "tool".into(),
                    content: Some(Content::Text(output)),
                    tool_call_id: Some(str_field(item, "call_id", &path)?.to_string()),
                    ..Default::default()
                });
                assistant_open = false;
            }
            // Reasoning carried over from an earlier turn: chat upstreams take none.
            "reasoning" => {}
            "item_reference" => {
                return Err(TranslateError::new(
                    path,
                    "item references are not served by Keel; send the item itself, or chain turns with `previous_response_id`",
                ))
            }
            other => {
                return Err(TranslateError::new(
                    format!("{path}.type"),
                    format!("{other:?} items are not served by Keel; use message, function_call or function_call_output"),
                ))
            }
        }
    }
    Ok(())
}

fn message_item(item: &Value, path: &str) -> Result<Message, TranslateError> {
    let role = str_field(item, "role", path)?;
    if !matches!(role, "user" | "assistant" | "system" | "developer") {
        return Err(TranslateError::new(
            format!("{path}.role"),
            format!("expected user, assistant, system or developer, got {role:?}"),
        ));
    }
    let content = match item.get("content") {
        Some(Value::String(s)) => Content::Text(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                out.push(content_part(p, &format!("{path}.content[{j}]"))?);
            }
            // A message of text parts only is sent as plain text: every upstream takes it.
            if out.iter().all(|p| p.kind == "text") {
                Content::Text(
                    out.iter()
                        .filter_map(|p| p.text.as_deref())
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            } else {
                Content::Parts(out)
            }
        }
        _ => {
            return Err(TranslateError::new(
                format!("{path}.content"),
                "required: a string or a list of content parts",
            ))
        }
    };
    Ok(Message {
        role: role.to_string(),
        content: Some(content),
        ..Default::default()
    })
}

fn content_part(p: &Value, path: &str) -> Result<ContentPart, TranslateError> {
    let ty = p.get("type").and_then(Value::as_str).unwrap_or("");
    match ty {
        "input_text" | "output_text" | "text" => Ok(ContentPart {
            kind: "text".into(),
            text: Some(str_field(p, "text", path)?.to_string()),
            extra: Map::new(),
        }),
        "refusal" => Ok(ContentPart {
            kind: "text".into(),
            text: Some(str_field(p, "refusal", path)?.to_string()),
            extra: Map::new(),
        }),
        "input_image" => {
            let url = p.get("image_url").and_then(Value::as_str).ok_or_else(|| {
                TranslateError::new(
                    format!("{path}.image_url"),
                    "required: an image URL or a data: URL (file_id images are not served by Keel)",
                )
            })?;
            let mut image = Map::new();
            image.insert("url".into(), json!(url));
            if let Some(d) = p.get("detail").filter(|d| !d.is_null()) {
                image.insert("detail".into(), d.clone());
            }
            let mut extra = Map::new();
            extra.insert("image_url".into(), Value::Object(image));
            Ok(ContentPart {
                kind: "image_url".into(),
                text: None,
                extra,
            })
        }
        other => Err(TranslateError::new(
            format!("{path}.type"),
            format!("{other:?} content is not served by Keel; use input_text or input_image"),
        )),
    }
}

fn tool(t: &Value, i: usize) -> Result<Tool, TranslateError> {
    let path = format!("tools[{i}]");
    let ty = t.get("type").and_then(Value::as_str).unwrap_or("");
    if ty != "function" {
        return Err(TranslateError::new(
            format!("{path}.type"),
            format!("{ty:?} tools are hosted by OpenAI and not served by Keel; use function tools"),
        ));
    }
    let mut extra = Map::new();
    if let Some(s) = t.get("strict").filter(|s| !s.is_null()) {
        extra.insert("strict".into(), s.clone());
    }
    Ok(Tool {
        kind: "function".into(),
        function: FunctionDef {
            name: str_field(t, "name", &path)?.to_string(),
            description: t
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            parameters: t.get("parameters").filter(|p| !p.is_null()).cloned(),
            extra,
        },
        extra: Map::new(),
    })
}

fn tool_choice(c: &Value) -> Result<Value, TranslateError> {
    match c {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(c.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = str_field(c, "name", "tool_choice")?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(TranslateError::new(
            "tool_choice",
            "expected \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"name\": ...}",
        )),
    }
}

/// `text.format` as a chat `response_format` (`None` for plain text).
fn text_format(text: &Value) -> Result<Option<Value>, TranslateError> {
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for f in ["name", "schema", "strict", "description"] {
                if let Some(v) = format.get(f).filter(|v| !v.is_null()) {
                    schema.insert(f.into(), v.clone());
                }
            }
            if !schema.contains_key("schema") {
                return Err(TranslateError::new(
                    "text.format.schema",
                    "required for a json_schema format: the JSON schema of the answer",
                ));
            }
            Ok(Some(
                json!({"type": "json_schema", "json_schema": Value::Object(schema)}),
            ))
        }
        _ => Err(TranslateError::new(
            "text.format.type",
            "expected \"text\", \"json_object\" or \"json_schema\"",
        )),
    }
}

/// A fresh id with OpenAI's prefix for its kind (`resp`, `msg`, `fc`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// The response object before any output: what the request asked for, echoed.
pub fn response_shell(req: &ResponsesRequest, id: String, created_at: i64) -> ResponseObject {
    ResponseObject {
        id,
        object: "response".into(),
        created_at,
        status: "in_progress".into(),
        error: None,
        incomplete_details: None,
        instructions: req.instructions.clone(),
        max_output_tokens: req.max_output_tokens,
        model: req.model.clone(),
        output: Vec::new(),
        parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
        previous_response_id: req.previous_response_id.clone(),
        temperature: req.temperature,
        top_p: req.top_p,
        tool_choice: req.tool_choice.clone().unwrap_or_else(|| json!("auto")),
        tools: req.tools.clone().unwrap_or_default(),
        text: req
            .text
            .clone()
            .unwrap_or_else(|| json!({"format": {"type": "text"}})),
        metadata: req.metadata.clone().unwrap_or_default(),
        store: req.wants_store(),
        truncation: "disabled".into(),
        user: req.user.clone(),
        usage: None,
    }
}

/// The status a chat finish reason means, with OpenAI's `incomplete_details`.
pub fn finish_status(finish_reason: Option<&str>) -> (&'static str, Option<Value>) {
    match finish_reason {
        Some("length") => ("incomplete", Some(json!({"reason": "max_output_tokens"}))),
        Some("content_filter") => ("incomplete", Some(json!({"reason": "content_filter"}))),
        _ => ("completed", None),
    }
}

/// Complete `shell` with a whole chat answer (its first choice).
pub fn chat_response_to_response(mut shell: ResponseObject, resp: &ChatResponse) -> ResponseObject {
    if !resp.model.is_empty() {
        shell.model = resp.model.clone();
    }
    let choice = resp.choices.first();
    if let Some(c) = choice {
        let text = c.message.text_content();
        if !text.is_empty() {
            shell.output.push(OutputItem::Message {
                id: new_id("msg"),
                status: "completed".into(),
                role: "assistant".into(),
                content: vec![OutputContent::output_text(text)],
            });
        }
        for call in c.message.tool_calls.iter().flatten() {
            shell.output.push(OutputItem::FunctionCall {
                id: new_id("fc"),
                call_id: call.id.clone(),
                name: call.function.name.clone(),
                arguments: call.function.arguments.clone(),
                status: "completed".into(),
            });
        }
    }
    let (status, details) = finish_status(choice.and_then(|c| c.finish_reason.as_deref()));
    shell.status = status.into();
    shell.incomplete_details = details;
    shell.usage = resp.usage.as_ref().map(ResponseUsage::from);
    shell
}

/// The output of a response as the chat turn that continues the conversation: one
/// assistant message with its text and tool calls (none for an empty output).
pub fn output_to_messages(output: &[OutputItem]) -> Vec<Message> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for item in output {
        match item {
            OutputItem::Message { content, .. } => {
                for c in content {
                    let t = match c {
                        OutputContent::OutputText { text, .. } => text,
                        OutputContent::Refusal { refusal } => refusal,
                    };
                    text.push_str(t);
                }
            }
            OutputItem::FunctionCall {
                call_id,
                name,
                arguments,
                ..
            } => calls.push(ToolCall {
                id: call_id.clone(),
                kind: "function".into(),
                function: FunctionCall {
                    name: name.clone(),
                    arguments: arguments.clone(),
                },
            }),
        }
    }
    if text.is_empty() && calls.is_empty() {
        return Vec::new();
    }
    vec![Message {
        role: "assistant".into(),
        content: (!text.is_empty()).then_some(Content::Text(text)),
        tool_calls: (!calls.is_empty()).then_some(calls),
        ..Default::default()
    }]
}
