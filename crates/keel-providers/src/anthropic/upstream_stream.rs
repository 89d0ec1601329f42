//! Reading an Anthropic stream: [`EventsToChunks`] turns Messages stream events into
//! canonical chunks, in the order an OpenAI client expects.
//!
//! Output: a role chunk (on `message_start`), content and tool-call fragments, one
//! finish-reason chunk (on `message_delta`), and a final usage-only chunk with empty
//! `choices` (on `message_stop`), whose usage combines `message_start`'s input counts
//! with `message_delta`'s output count. An `error` event becomes a
//! [`ProviderError::Status`]. Unknown events and deltas are ignored, as Anthropic asks.

use std::collections::HashMap;

use keel_core::chat::{ChatChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta};
use serde_json::{json, Map, Value};

use super::mapping::{finish_reason_for, unix_now, usage_to_canonical};
use super::wire::{
    status_for_error_type, BlockDelta, ContentBlock, ErrorBody, MessagesUsage, StreamEvent,
};
use crate::ProviderError;

/// Anthropic stream events in, canonical chunks out.
#[derive(Debug, Default)]
pub struct EventsToChunks {
    id: String,
    model: String,
    created: i64,
    usage: MessagesUsage,
    /// Content block index → tool call index (tool calls are numbered from 0).
    tool_calls: HashMap<u32, u32>,
    done: bool,
}

impl EventsToChunks {
    pub fn new() -> Self {
        EventsToChunks {
            created: unix_now(),
            ..Default::default()
        }
    }

    /// Has `message_stop` arrived (and the usage chunk been produced)?
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The chunks for one event. An `error` event is returned as the error.
    pub fn push(&mut self, event: StreamEvent) -> Result<Vec<ChatChunk>, ProviderError> {
        let chunks = match event {
            StreamEvent::MessageStart { message } => {
                self.id = message.id;
                self.model = message.model;
                self.usage = message.usage;
                vec![self.chunk(
                    Delta {
                        role: Some("assistant".into()),
                        content: Some(String::new()),
                        ..Default::default()
                    },
                    None,
                )]
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => self.block_start(index, content_block),
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } if !text.is_empty() => vec![self.text(text)],
                BlockDelta::InputJsonDelta { partial_json } if !partial_json.is_empty() => {
                    match self.tool_calls.get(&index) {
                        Some(&call) => vec![self.tool_fragment(call, None, None, partial_json)],
                        None => Vec::new(),
                    }
                }
                BlockDelta::ThinkingDelta { thinking } if !thinking.is_empty() => {
                    vec![self.reasoning(thinking)]
                }
                _ => Vec::new(),
            },
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    let mine = &mut self.usage;
                    mine.output_tokens = u.output_tokens.unwrap_or(mine.output_tokens);
                    mine.input_tokens = u.input_tokens.unwrap_or(mine.input_tokens);
                    if u.cache_read_input_tokens.is_some() {
                        mine.cache_read_input_tokens = u.cache_read_input_tokens;
                    }
                    if u.cache_creation_input_tokens.is_some() {
                        mine.cache_creation_input_tokens = u.cache_creation_input_tokens;
                    }
                }
                match delta.stop_reason {
                    Some(reason) => {
                        let mut chunk =
                            self.chunk(Delta::default(), Some(finish_reason_for(&reason)));
                        if let (Some(seq), Some(choice)) =
                            (delta.stop_sequence, chunk.choices.first_mut())
                        {
                            choice.extra.insert("stop_reason".into(), json!(seq));
                        }
                        vec![chunk]
                    }
                    None => Vec::new(),
                }
            }
            StreamEvent::MessageStop => {
                self.done = true;
                vec![ChatChunk {
                    id: self.id.clone(),
                    object: "chat.completion.chunk".into(),
                    created: self.created,
                    model: self.model.clone(),
                    choices: Vec::new(),
                    usage: Some(usage_to_canonical(&self.usage)),
                    ..Default::default()
                }]
            }
            StreamEvent::Error { error } => {
                let body = serde_json::to_value(ErrorBody::new(&error.kind, &error.message)).ok();
                return Err(ProviderError::Status {
                    status: status_for_error_type(&error.kind),
                    message: error.message,
                    code: Some(error.kind),
                    body,
                    retry_after: None,
                });
            }
            StreamEvent::ContentBlockStop { .. } | StreamEvent::Ping | StreamEvent::Unknown => {
                Vec::new()
            }
        };
        Ok(chunks)
    }

    fn block_start(&mut self, index: u32, block: ContentBlock) -> Vec<ChatChunk> {
        match block {
            ContentBlock::Text { text, .. } if !text.is_empty() => vec![self.text(text)],
            ContentBlock::Thinking { thinking, .. } if !thinking.is_empty() => {
                vec![self.reasoning(thinking)]
            }
            ContentBlock::ToolUse {
                id, name, input, ..
            } => {
                let call = self.tool_calls.len() as u32;
                self.tool_calls.insert(index, call);
                // Input normally streams as input_json_delta after an empty `{}`.
                let arguments = match &input {
                    Value::Object(m) if !m.is_empty() => input.to_string(),
                    _ => String::new(),
                };
                vec![self.tool_fragment(call, Some(id), Some(name), arguments)]
            }
            _ => Vec::new(),
        }
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<&str>) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish_reason.map(str::to_string),
                extra: Map::new(),
            }],
            ..Default::default()
        }
    }

    fn text(&self, text: String) -> ChatChunk {
        self.chunk(
            Delta {
                content: Some(text),
                ..Default::default()
            },
            None,
        )
    }

    fn reasoning(&self, thinking: String) -> ChatChunk {
        let mut delta = Delta::default();
        delta
            .extra
            .insert("reasoning_content".into(), json!(thinking));
        self.chunk(delta, None)
    }

    fn tool_fragment(
        &self,
        call: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    ) -> ChatChunk {
        let kind = id.as_ref().map(|_| "function".to_string());
        self.chunk(
            Delta {
                tool_calls: Some(vec![ToolCallDelta {
                    index: call,
                    id,
                    kind,
                    function: Some(FunctionCallDelta {
                        name,
                        arguments: Some(arguments),
                    }),
                }]),
                ..Default::default()
            },
            None,
        )
    }
}

#[cfg(test)]
#[path = "upstream_stream_tests.rs"]
pub(super) mod tests;
