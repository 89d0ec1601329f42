//! Serving Anthropic clients: a `POST /v1/messages` body becomes a canonical
//! [`ChatRequest`] (so it can be routed like any other call), and the canonical
//! [`ChatResponse`] that comes back is answered as a Messages response.
//!
//! Streaming answers are in `inbound_stream`. Anthropic features with no canonical
//! equivalent are refused with a [`TranslateError`] naming the field, never dropped
//! silently; the exceptions are hints that change nothing in the answer
//! (`cache_control`, historical `thinking` blocks), which are dropped.

use keel_core::chat::{
    ChatRequest, ChatResponse, Content, ContentPart, FunctionCall, FunctionDef, Message, Stop,
    StreamOptions, Tool, ToolCall,
};
use serde_json::{json, Map, Value};

use super::mapping::{
    arguments_from_tool_input, data_url, message_id, stop_reason_for, tool_input_from_arguments,
    usage_from_canonical,
};
use super::wire::{
    ContentBlock, MediaSource, MessageContent, MessagesRequest, MessagesResponse, MessagesUsage,
    SystemPrompt, ToolChoice, ToolDefinition, ToolResultContent,
};
use super::TranslateError;

/// Translate an Anthropic Messages request into the canonical request.
///
/// `model` is kept as given; the gateway resolves it. Unknown top-level fields (and
/// `top_k`) are carried in `extra`, so an upstream that knows them still gets them.
pub fn messages_request_to_chat(req: MessagesRequest) -> Result<ChatRequest, TranslateError> {
    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        messages.push(Message::text("system", system_text(system)?));
    }
    for (i, m) in req.messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        match m.role.as_str() {
            "user" => user_turn(&m.content, &path, &mut messages)?,
            "assistant" => messages.push(assistant_turn(&m.content, &path)?),
            other => {
                return Err(TranslateError::new(
                    format!("{path}.role"),
                    format!("expected \"user\" or \"assistant\", got {other:?} (use the top-level `system` parameter for system prompts)"),
                ))
            }
        }
    }

    let mut extra = req.extra;
    if let Some(k) = req.top_k {
        extra.insert("top_k".into(), json!(k));
    }
    let stream = req.stream.unwrap_or(false);
    let tools = match &req.tools {
        Some(tools) => Some(
            tools
                .iter()
                .enumerate()
                .map(|(i, t)| tool_to_chat(t, i))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let tool_choice = match &req.tool_choice {
        Some(choice) => {
            if choice.disable_parallel_tool_use == Some(true) {
                extra.insert("parallel_tool_calls".into(), json!(false));
            }
            tool_choice_to_chat(choice)?
        }
        None => None,
    };

    Ok(ChatRequest {
        model: req.model,
        messages,
        stream,
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            extra: Map::new(),
        }),
        temperature: req.temperature,
        top_p: req.top_p,
        max_tokens: req.max_tokens,
        stop: req.stop_sequences.filter(|s| !s.is_empty()).map(Stop::Many),
        user: req.metadata.and_then(|m| m.user_id),
        tools,
        tool_choice,
        extra,
        ..Default::default()
    })
}

/// The system prompt as one string (text blocks joined by a newline).
fn system_text(system: &SystemPrompt) -> Result<String, TranslateError> {
    match system {
        SystemPrompt::Text(s) => Ok(s.clone()),
        SystemPrompt::Blocks(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (j, b) in blocks.iter().enumerate() {
                match b {
                    ContentBlock::Text { text, .. } => texts.push(text.as_str()),
                    other => {
                        return Err(TranslateError::new(
                            format!("system[{j}]"),
                            format!("system blocks must be text, got `{}`", other.kind()),
                        ))
                    }
                }
            }
            Ok(texts.join("\n"))
        }
    }
}

/// A user turn: its `tool_result` blocks become `tool` messages (first, as OpenAI wants
/// them right after the assistant's tool calls), the rest one `user` message.
fn user_turn(
    content: &MessageContent,
    path: &str,
    out: &mut Vec<Message>,
) -> Result<(), TranslateError> {
    let blocks = match content {
        MessageContent::Text(s) => {
            out.push(Message::text("user", s.clone()));
            return Ok(());
        }
        MessageContent::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let bpath = format!("{path}.content[{j}]");
        match b {
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                ..
            } => {
                let id = tool_use_id.as_ref().ok_or_else(|| {
                    TranslateError::new(&bpath, "tool_result block without tool_use_id")
                })?;
                let text = match content {
                    None => String::new(),
                    Some(c) => tool_result_text(c, &bpath)?,
                };
                out.push(Message {
                    role: "tool".into(),
                    content: Some(Content::Text(text)),
                    tool_call_id: Some(id.clone()),
                    ..Default::default()
                });
            }
            ContentBlock::Text { text, .. } => parts.push(text_part(text)),
            ContentBlock::Image { source, .. } => parts.push(image_part(source, &bpath)?),
            ContentBlock::Document { source, extra } => {
                parts.push(document_part(source, extra, &bpath)?)
            }
            ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => {}
            ContentBlock::ToolUse { .. } => {
                return Err(TranslateError::new(
                    bpath,
                    "tool_use blocks belong in assistant turns",
                ))
            }
            ContentBlock::Other(_) => return Err(unsupported_block(b, bpath)),
        }
    }
    if !parts.is_empty() {
        let content = match parts.as_slice() {
            [only] if only.kind == "text" => Content::Text(only.text.clone().unwrap_or_default()),
            _ => Content::Parts(parts),
        };
        out.push(Message {
            role: "user".into(),
            content: Some(content),
            ..Default::default()
        });
    }
    Ok(())
}

/// An assistant turn: text blocks → `content`, `tool_use` blocks → `tool_calls`.
fn assistant_turn(content: &MessageContent, path: &str) -> Result<Message, TranslateError> {
    let blocks = match content {
        MessageContent::Text(s) => return Ok(Message::text("assistant", s.clone())),
        MessageContent::Blocks(blocks) => blocks,
    };
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let bpath = format!("{path}.content[{j}]");
        match b {
            ContentBlock::Text { text, .. } => texts.push(text.as_str()),
            ContentBlock::ToolUse {
                id, name, input, ..
            } => calls.push(ToolCall {
                id: id.clone(),
                kind: "function".into(),
                function: FunctionCall {
                    name: name.clone(),
                    arguments: arguments_from_tool_input(input),
                },
            }),
            ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => {}
            ContentBlock::ToolResult { .. } => {
                return Err(TranslateError::new(
                    bpath,
                    "tool_result blocks belong in user turns",
                ))
            }
            _ => return Err(unsupported_block(b, bpath)),
        }
    }
    let has_calls = !calls.is_empty();
    Ok(Message {
        role: "assistant".into(),
        content: if texts.is_empty() && has_calls {
            None
        } else {
            // Adjacent text blocks are one text cut up (by citations, say).
            Some(Content::Text(texts.concat()))
        },
        tool_calls: has_calls.then_some(calls),
        ..Default::default()
    })
}

fn tool_result_text(content: &ToolResultContent, path: &str) -> Result<String, TranslateError> {
    match content {
        ToolResultContent::Text(s) => Ok(s.clone()),
        ToolResultContent::Blocks(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (k, b) in blocks.iter().enumerate() {
                match b {
                    ContentBlock::Text { text, .. } => texts.push(text.as_str()),
                    other => {
                        return Err(TranslateError::new(
                            format!("{path}.content[{k}]"),
                            format!(
                                "only text is supported inside tool_result, got `{}`",
                                other.kind()
                            ),
                        ))
                    }
                }
            }
            Ok(texts.join("\n"))
        }
    }
}

fn text_part(text: &str) -> ContentPart {
    ContentPart {
        kind: "text".into(),
        text: Some(text.to_string()),
        extra: Map::new(),
    }
}

fn image_part(source: &MediaSource, path: &str) -> Result<ContentPart, TranslateError> {
    let url = match source {
        MediaSource::Base64 { media_type, data } => data_url(media_type, data),
        MediaSource::Url { url } => url.clone(),
        MediaSource::Other(v) => return Err(unsupported_source(v, path)),
    };
    let mut extra = Map::new();
    extra.insert("image_url".into(), json!({ "url": url }));
    Ok(ContentPart {
        kind: "image_url".into(),
        text: None,
        extra,
    })
}

/// A base64 document (PDF) → an OpenAI `file` part with the data URL.
fn document_part(
    source: &MediaSource,
    block_extra: &Map<String, Value>,
    path: &str,
) -> Result<ContentPart, TranslateError> {
    let (media_type, data) = match source {
        MediaSource::Base64 { media_type, data } => (media_type, data),
        MediaSource::Url { .. } => {
            return Err(TranslateError::new(
                format!("{path}.source"),
                "documents by URL are not supported; send them base64-encoded",
            ))
        }
        MediaSource::Other(v) => return Err(unsupported_source(v, path)),
    };
    let mut file = Map::new();
    file.insert("file_data".into(), json!(data_url(media_type, data)));
    if let Some(title) = block_extra.get("title").and_then(Value::as_str) {
        file.insert("filename".into(), json!(title));
    }
    let mut extra = Map::new();
    extra.insert("file".into(), Value::Object(file));
    Ok(ContentPart {
        kind: "file".into(),
        text: None,
        extra,
    })
}

fn unsupported_source(v: &Value, path: &str) -> TranslateError {
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("?");
    TranslateError::new(
        format!("{path}.source"),
        format!("source type `{kind}` is not supported (use base64 or url)"),
    )
}

fn unsupported_block(b: &ContentBlock, path: String) -> TranslateError {
    let kind = b.kind();
    let known = matches!(
        kind,
        "text" | "image" | "document" | "tool_use" | "tool_result"
    );
    let message = if known {
        format!("malformed `{kind}` block (a required field is missing or has the wrong type)")
    } else {
        format!("content block type `{kind}` is not supported here")
    };
    TranslateError::new(path, message)
}

fn tool_to_chat(t: &ToolDefinition, i: usize) -> Result<Tool, TranslateError> {
    if let Some(kind) = t.kind.as_deref().filter(|k| *k != "custom") {
        return Err(TranslateError::new(
            format!("tools[{i}]"),
            format!("server tool `{kind}` cannot be routed through Keel; define a client tool with input_schema"),
        ));
    }
    let schema = t
        .input_schema
        .clone()
        .ok_or_else(|| TranslateError::new(format!("tools[{i}].input_schema"), "field required"))?;
    Ok(Tool {
        kind: "function".into(),
        function: FunctionDef {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters: Some(schema),
            extra: Map::new(),
        },
        extra: Map::new(),
    })
}

fn tool_choice_to_chat(choice: &ToolChoice) -> Result<Option<Value>, TranslateError> {
    let v = match choice.kind.as_str() {
        "auto" => json!("auto"),
        "any" => json!("required"),
        "none" => json!("none"),
        "tool" => {
            let name = choice.name.as_ref().ok_or_else(|| {
                TranslateError::new("tool_choice.name", "required when type is \"tool\"")
            })?;
            json!({"type": "function", "function": {"name": name}})
        }
        other => {
            return Err(TranslateError::new(
                "tool_choice.type",
                format!("expected auto, any, tool or none, got {other:?}"),
            ))
        }
    };
    Ok(Some(v))
}

/// Answer a canonical response as an Anthropic Messages response.
///
/// The first choice becomes the content (a text block, then the tool_use blocks);
/// `model` is the name the client asked for.
pub fn chat_response_to_messages(resp: &ChatResponse, model: &str) -> MessagesResponse {
    let mut content = Vec::new();
    let mut stop_reason = "end_turn".to_string();
    let mut stop_sequence = None;
    if let Some(choice) = resp.choices.first() {
        let text = choice.message.text_content();
        if !text.is_empty() {
            content.push(ContentBlock::text(text));
        }
        for call in choice.message.tool_calls.iter().flatten() {
            content.push(ContentBlock::ToolUse {
                id: call.id.clone(),
                name: call.function.name.clone(),
                input: tool_input_from_arguments(&call.function.arguments),
                extra: Map::new(),
            });
        }
        stop_sequence = matched_stop_sequence(&choice.extra);
        stop_reason = stop_reason_for(choice.finish_reason.as_deref(), stop_sequence.as_deref());
        if stop_reason != "stop_sequence" {
            stop_sequence = None;
        }
    }
    MessagesResponse {
        id: message_id(&resp.id),
        kind: "message".into(),
        role: "assistant".into(),
        model: model.to_string(),
        content,
        stop_reason: Some(stop_reason),
        stop_sequence,
        usage: resp
            .usage
            .as_ref()
            .map(usage_from_canonical)
            .unwrap_or_else(|| MessagesUsage {
                cache_creation_input_tokens: Some(0),
                cache_read_input_tokens: Some(0),
                ..Default::default()
            }),
        extra: Map::new(),
    }
}

/// The stop string an upstream says it stopped on (vLLM's `stop_reason`, which Keel's
/// Anthropic adapter also sets), if any.
pub(crate) fn matched_stop_sequence(choice_extra: &Map<String, Value>) -> Option<String> {
    choice_extra
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
pub(super) mod tests;
