//! A Responses API event stream from an upstream, read as canonical chunks: text deltas
//! (and refusal deltas) become content deltas, each `function_call` output item a tool
//! call (its `call_id` and name first, then its argument deltas, tied by index), and
//! `response.completed` / `response.incomplete` a finish chunk then a usage chunk.
//! `response.failed` and `error` events are the provider's error; other events (reasoning
//! summaries, `.done` events that repeat what the deltas said) carry nothing new.

use std::collections::HashMap;

use keel_core::chat::{ChatChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta};
use serde_json::Value;

use super::upstream::{finish_reason, usage};
use crate::ProviderError;

/// The translation state.
#[derive(Default)]
pub struct ResponseEventsToChunks {
    id: String,
    model: String,
    created: i64,
    /// Function-call item id → its tool-call index.
    calls: HashMap<String, u32>,
    finished: bool,
}

impl ResponseEventsToChunks {
    /// Whether the terminal event (`response.completed` or `.incomplete`) was read.
    pub fn finished(&self) -> bool {
        self.finished
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<String>) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                extra: Default::default(),
            }],
            ..Default::default()
        }
    }

    /// The chunks one event's `data` makes.
    pub fn push(&mut self, data: &Value) -> Result<Vec<ChatChunk>, ProviderError> {
        let kind = data.get("type").and_then(Value::as_str).unwrap_or("");
        let text = |field: &str| data.get(field).and_then(Value::as_str).unwrap_or("");
        match kind {
            "response.created" => {
                let r = &data["response"];
                self.id = r.get("id").and_then(Value::as_str).unwrap_or("").into();
                self.model = r.get("model").and_then(Value::as_str).unwrap_or("").into();
                self.created = r.get("created_at").and_then(Value::as_i64).unwrap_or(0);
                let role = Delta {
                    role: Some("assistant".into()),
                    ..Default::default()
                };
                Ok(vec![self.chunk(role, None)])
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                let delta = Delta {
                    content: Some(text("delta").to_string()),
                    ..Default::default()
                };
                Ok(vec![self.chunk(delta, None)])
            }
            "response.output_item.added" if data["item"]["type"] == "function_call" => {
                let item = &data["item"];
                let index = u32::try_from(self.calls.len()).unwrap_or(u32::MAX);
                let item_id = item.get("id").and_then(Value::as_str).unwrap_or("");
                self.calls.insert(item_id.to_string(), index);
                let call = ToolCallDelta {
                    index,
                    id: item
                        .get("call_id")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    kind: Some("function".into()),
                    function: Some(FunctionCallDelta {
                        name: item.get("name").and_then(Value::as_str).map(str::to_string),
                        arguments: Some(String::new()),
                    }),
                };
                Ok(vec![self.chunk(tool_delta(call), None)])
            }
            "response.function_call_arguments.delta" => {
                let Some(&index) = self.calls.get(text("item_id")) else {
                    return Err(ProviderError::InvalidResponse(format!(
                        "function_call_arguments.delta for an unknown item `{}`",
                        text("item_id")
                    )));
                };
                let call = ToolCallDelta {
                    index,
                    function: Some(FunctionCallDelta {
                        name: None,
                        arguments: Some(text("delta").to_string()),
                    }),
                    ..Default::default()
                };
                Ok(vec![self.chunk(tool_delta(call), None)])
            }
            "response.completed" | "response.incomplete" => {
                self.finished = true;
                let r = &data["response"];
                let called = !self.calls.is_empty();
                let reason = finish_reason(r, called).to_string();
                let mut last = self.chunk(Delta::default(), None);
                last.choices.clear();
                last.usage = r.get("usage").filter(|u| !u.is_null()).map(usage);
                Ok(vec![self.chunk(Delta::default(), Some(reason)), last])
            }
            "response.failed" => Err(failure(&data["response"]["error"])),
            "error" => Err(failure(data)),
            _ => Ok(Vec::new()),
        }
    }
}

fn tool_delta(call: ToolCallDelta) -> Delta {
    Delta {
        tool_calls: Some(vec![call]),
        ..Default::default()
    }
}

/// An error object (`{"code", "message"}`) as the provider's error.
fn failure(e: &Value) -> ProviderError {
    ProviderError::Status {
        status: 500,
        message: e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the response failed")
            .to_string(),
        code: e.get("code").and_then(Value::as_str).map(str::to_string),
        body: None,
        retry_after: None,
    }
}
