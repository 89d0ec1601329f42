//! Calling Anthropic for a canonical request: [`chat_request_to_messages`] builds the
//! Messages body, [`messages_response_to_chat`] reads the answer back.
//!
//! The shape differences handled here: system and developer messages move to the
//! top-level `system`; `tool` messages become `tool_result` blocks of a user turn;
//! consecutive turns of one role are merged (Anthropic alternates roles);
//! `max_tokens` is always sent (Anthropic requires it). Canonical features Anthropic
//! cannot honour are refused (`n > 1`, audio) except `response_format`, `seed` and
//! other sampling hints, which are left out so the call still succeeds.

use keel_core::chat::{
    ChatRequest, ChatResponse, Choice, Content, ContentPart, FunctionCall, Message, ToolCall,
};
use serde_json::{json, Map, Value};

use super::mapping::{
    arguments_from_tool_input, finish_reason_for, parse_data_url, tool_input_from_arguments,
    unix_now, usage_to_canonical,
};
use super::wire::{
    ContentBlock, InputMessage, MediaSource, MessageContent, MessagesRequest, MessagesResponse,
    Metadata, SystemPrompt, ToolChoice, ToolDefinition, ToolResultContent,
};
use super::TranslateError;

/// Anthropic's required `max_tokens` when the caller set no ceiling.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Fields of a canonical request's `extra` that are Anthropic parameters and are passed
/// through (everything else in `extra` is OpenAI-specific and Anthropic would reject it).
const PASSTHROUGH: &[&str] = &["thinking", "container", "mcp_servers", "context_management"];

/// Build the Messages request for a canonical request.
pub fn chat_request_to_messages(req: &ChatRequest) -> Result<MessagesRequest, TranslateError> {
    if let Some(n) = req.n.filter(|n| *n > 1) {
        return Err(TranslateError::new(
            "n",
            format!("Anthropic returns a single choice; n must be 1, got {n}"),
        ));
    }

    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<ContentBlock>)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let (role, blocks) = match m.role.as_str() {
            "system" | "developer" => {
                system.push(m.text_content());
                continue;
            }
            "user" => ("user", user_blocks(m, &path)?),
            "assistant" => ("assistant", assistant_blocks(m)),
            "tool" => ("user", vec![tool_result_block(m, &path)?]),
            other => {
                return Err(TranslateError::new(
                    format!("{path}.role"),
                    format!("role {other:?} is not supported; use system, developer, user, assistant or tool"),
                ))
            }
        };
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }

    let mut extra = Map::new();
    for key in PASSTHROUGH {
        if let Some(v) = req.extra.get(*key) {
            extra.insert((*key).to_string(), v.clone());
        }
    }
    let tools = match &req.tools {
        Some(tools) => Some(
            tools
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    if t.kind != "function" {
                        return Err(TranslateError::new(
                            format!("tools[{i}].type"),
                            format!("only function tools are supported, got {:?}", t.kind),
                        ));
                    }
                    Ok(ToolDefinition {
                        name: t.function.name.clone(),
                        kind: None,
                        description: t.function.description.clone(),
                        input_schema: Some(
                            t.function
                                .parameters
                                .clone()
                                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                        ),
                        extra: Map::new(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let parallel = req
        .extra
        .get("parallel_tool_calls")
        .and_then(Value::as_bool);

    Ok(MessagesRequest {
        model: req.model.clone(),
        messages: turns
            .into_iter()
            .map(|(role, blocks)| InputMessage {
                role: role.to_string(),
                content: compact(blocks),
                extra: Map::new(),
            })
            .collect(),
        max_tokens: Some(req.max_output_tokens().unwrap_or(DEFAULT_MAX_TOKENS)),
        system: match system.len() {
            0 => None,
            1 => system.pop().map(SystemPrompt::Text),
            _ => Some(SystemPrompt::Blocks(
                system.into_iter().map(ContentBlock::text).collect(),
            )),
        },
        metadata: req.user.as_ref().map(|u| Metadata {
            user_id: Some(u.clone()),
            extra: Map::new(),
        }),
        stop_sequences: req.stop.as_ref().map(|s| s.to_vec()),
        stream: req.stream.then_some(true),
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req
            .extra
            .get("top_k")
            .and_then(Value::as_u64)
            .and_then(|k| u32::try_from(k).ok()),
        tool_choice: tool_choice_to_messages(req.tool_choice.as_ref(), parallel, tools.is_some())?,
        tools,
        extra,
    })
}

/// A single text block is sent as a plain string; `tool_result` blocks go first, as
/// Anthropic requires them to open a user turn.
fn compact(mut blocks: Vec<ContentBlock>) -> MessageContent {
    if let [ContentBlock::Text { text, extra }] = blocks.as_slice() {
        if extra.is_empty() {
            return MessageContent::Text(text.clone());
        }
    }
    blocks.sort_by_key(|b| !matches!(b, ContentBlock::ToolResult { .. }));
    MessageContent::Blocks(blocks)
}

fn user_blocks(m: &Message, path: &str) -> Result<Vec<ContentBlock>, TranslateError> {
    let parts = match &m.content {
        None => return Ok(Vec::new()),
        Some(Content::Text(s)) => return Ok(vec![ContentBlock::text(s.clone())]),
        Some(Content::Parts(parts)) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let ppath = format!("{path}.content[{j}]");
        match p.kind.as_str() {
            "text" => {
                let text = p.text.clone().unwrap_or_default();
                if !text.is_empty() {
                    blocks.push(ContentBlock::text(text));
                }
            }
            "image_url" => blocks.push(image_block(p, &ppath)?),
            "file" => blocks.push(document_block(p, &ppath)?),
            other => {
                return Err(TranslateError::new(
                    ppath,
                    format!("content part type {other:?} is not supported by Anthropic"),
                ))
            }
        }
    }
    Ok(blocks)
}

fn image_block(p: &ContentPart, path: &str) -> Result<ContentBlock, TranslateError> {
    let url = p
        .extra
        .get("image_url")
        .and_then(|v| v.get("url").or(Some(v)))
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::new(format!("{path}.image_url.url"), "field required"))?;
    let source = match parse_data_url(url) {
        Some((media_type, data)) => MediaSource::Base64 { media_type, data },
        None if url.starts_with("data:") => {
            return Err(TranslateError::new(
                format!("{path}.image_url.url"),
                "data URLs must be base64 (data:<type>;base64,<data>)",
            ))
        }
        None => MediaSource::Url {
            url: url.to_string(),
        },
    };
    Ok(ContentBlock::Image {
        source,
        extra: Map::new(),
    })
}

fn document_block(p: &ContentPart, path: &str) -> Result<ContentBlock, TranslateError> {
    let file = p.extra.get("file");
    let data = file
        .and_then(|f| f.get("file_data"))
        .and_then(Value::as_str);
    let Some((media_type, data)) = data.and_then(parse_data_url) else {
        return Err(TranslateError::new(
            format!("{path}.file.file_data"),
            "Anthropic needs the file inline as a base64 data URL (file_id is not supported)",
        ));
    };
    let mut extra = Map::new();
    if let Some(name) = file.and_then(|f| f.get("filename")).and_then(Value::as_str) {
        extra.insert("title".into(), json!(name));
    }
    Ok(ContentBlock::Document {
        source: MediaSource::Base64 { media_type, data },
        extra,
    })
}

fn assistant_blocks(m: &Message) -> Vec<ContentBlock> {
    let mut blocks = Vec::new();
    let text = m.text_content();
    if !text.is_empty() {
        blocks.push(ContentBlock::text(text));
    }
    for call in m.tool_calls.iter().flatten() {
        let input = match tool_input_from_arguments(&call.function.arguments) {
            v @ Value::Object(_) => v,
            // Anthropic wants an object; keep anything else verbatim rather than fail.
            _ => json!({ "_raw": call.function.arguments }),
        };
        blocks.push(ContentBlock::ToolUse {
            id: call.id.clone(),
            name: call.function.name.clone(),
            input,
            extra: Map::new(),
        });
    }
    blocks
}

fn tool_result_block(m: &Message, path: &str) -> Result<ContentBlock, TranslateError> {
    let id = m.tool_call_id.clone().ok_or_else(|| {
        TranslateError::new(
            format!("{path}.tool_call_id"),
            "required on tool messages (the id of the tool call this answers)",
        )
    })?;
    Ok(ContentBlock::ToolResult {
        tool_use_id: Some(id),
        content: Some(ToolResultContent::Text(m.text_content())),
        is_error: None,
        extra: Map::new(),
    })
}

fn tool_choice_to_messages(
    choice: Option<&Value>,
    parallel: Option<bool>,
    has_tools: bool,
) -> Result<Option<ToolChoice>, TranslateError> {
    let invalid = || {
        TranslateError::new(
            "tool_choice",
            "expected \"auto\", \"required\", \"none\" or {\"type\":\"function\",\"function\":{\"name\":...}}",
        )
    };
    let (kind, name) = match choice {
        None if parallel == Some(false) && has_tools => ("auto", None),
        None => return Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ("auto", None),
            "required" => ("any", None),
            "none" => ("none", None),
            _ => return Err(invalid()),
        },
        Some(v) => {
            let name = v
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(invalid)?;
            ("tool", Some(name.to_string()))
        }
    };
    Ok(Some(ToolChoice {
        kind: kind.to_string(),
        name,
        disable_parallel_tool_use: (parallel == Some(false) && kind != "none").then_some(true),
        extra: Map::new(),
    }))
}

/// Read a Messages response as a canonical response (one choice). `model` is the model
/// Anthropic reports; a matched stop sequence is kept in the choice's `stop_reason`
/// (vLLM's convention), thinking text in the message's `reasoning_content`.
pub fn messages_response_to_chat(resp: MessagesResponse) -> ChatResponse {
    let mut texts = Vec::new();
    let mut thinking = Vec::new();
    let mut calls = Vec::new();
    for block in &resp.content {
        match block {
            ContentBlock::Text { text, .. } => texts.push(text.as_str()),
            ContentBlock::Thinking { thinking: t, .. } => thinking.push(t.as_str()),
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
            _ => {}
        }
    }
    let has_calls = !calls.is_empty();
    let mut message = Message {
        role: "assistant".into(),
        content: if texts.is_empty() && has_calls {
            None
        } else {
            Some(Content::Text(texts.concat()))
        },
        tool_calls: has_calls.then_some(calls),
        ..Default::default()
    };
    if !thinking.is_empty() {
        message
            .extra
            .insert("reasoning_content".into(), json!(thinking.concat()));
    }
    let mut choice_extra = Map::new();
    if resp.stop_reason.as_deref() == Some("stop_sequence") {
        if let Some(seq) = &resp.stop_sequence {
            choice_extra.insert("stop_reason".into(), json!(seq));
        }
    }
    ChatResponse {
        id: resp.id,
        object: "chat.completion".into(),
        created: unix_now(),
        model: resp.model,
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: Some(
                finish_reason_for(resp.stop_reason.as_deref().unwrap_or("end_turn")).to_string(),
            ),
            extra: choice_extra,
        }],
        usage: Some(usage_to_canonical(&resp.usage)),
        system_fingerprint: None,
        extra: Map::new(),
    }
}

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
