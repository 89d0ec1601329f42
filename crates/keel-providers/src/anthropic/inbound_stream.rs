//! Streaming answers to Anthropic clients: [`ChunksToEvents`] turns the canonical
//! chunks of a routed call into Anthropic's SSE event sequence.
//!
//! The order it guarantees, whatever the chunks look like:
//! `message_start`, `ping`, then for each content block `content_block_start`,
//! `content_block_delta`*, `content_block_stop` (one block open at a time), then one
//! `message_delta` (stop reason and usage) and `message_stop`. The usage chunk of an
//! OpenAI stream comes after the finish-reason chunk, so `message_delta` is held until
//! [`ChunksToEvents::finish`].

use std::collections::HashSet;

use keel_core::chat::{ChatChunk, Usage};
use serde_json::{json, Value};

use super::inbound::matched_stop_sequence;
use super::mapping::{stop_reason_for, usage_from_canonical};
use super::wire::ErrorBody;

/// One SSE event for an Anthropic client.
#[derive(Debug, Clone, PartialEq)]
pub struct AnthropicSseEvent {
    /// The SSE `event:` name, equal to `data.type`.
    pub event: &'static str,
    pub data: Value,
}

impl AnthropicSseEvent {
    /// The event as SSE text: `event: X\ndata: {json}\n\n`.
    pub fn to_sse(&self) -> String {
        format!("event: {}\ndata: {}\n\n", self.event, self.data)
    }

    /// An `error` event, for a failure after the stream has started.
    pub fn error(error_type: &str, message: impl Into<String>) -> Self {
        AnthropicSseEvent {
            event: "error",
            data: json!(ErrorBody::new(error_type, message)),
        }
    }

    fn new(event: &'static str, data: Value) -> Self {
        AnthropicSseEvent { event, data }
    }
}

/// The content block currently open.
#[derive(Debug, Clone, Copy, PartialEq)]
enum OpenBlock {
    Text { index: u32 },
    Tool { index: u32, call_index: u32 },
}

impl OpenBlock {
    fn index(self) -> u32 {
        match self {
            OpenBlock::Text { index } | OpenBlock::Tool { index, .. } => index,
        }
    }
}

/// Canonical chunks in, Anthropic SSE events out. Only choice 0 is translated
/// (Anthropic has no `n`).
#[derive(Debug)]
pub struct ChunksToEvents {
    id: String,
    model: String,
    started: bool,
    finished: bool,
    next_index: u32,
    open: Option<OpenBlock>,
    seen_calls: HashSet<u32>,
    finish_reason: Option<String>,
    stop_sequence: Option<String>,
    usage: Option<Usage>,
}

impl ChunksToEvents {
    /// `model` is the name the client asked for; `id` the message id (`msg_...`).
    pub fn new(model: &str, id: &str) -> Self {
        ChunksToEvents {
            id: id.to_string(),
            model: model.to_string(),
            started: false,
            finished: false,
            next_index: 0,
            open: None,
            seen_calls: HashSet::new(),
            finish_reason: None,
            stop_sequence: None,
            usage: None,
        }
    }

    /// The events for one chunk (the first call also emits `message_start` and `ping`).
    pub fn push(&mut self, chunk: &ChatChunk) -> Vec<AnthropicSseEvent> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.start(&mut out);
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            if let Some(text) = choice.delta.content.as_deref().filter(|t| !t.is_empty()) {
                if !matches!(self.open, Some(OpenBlock::Text { .. })) {
                    let index = self.open_block(&mut out, json!({"type": "text", "text": ""}));
                    self.open = Some(OpenBlock::Text { index });
                }
                self.delta(&mut out, json!({"type": "text_delta", "text": text}));
            }
            for call in choice.delta.tool_calls.iter().flatten() {
                let current = matches!(
                    self.open,
                    Some(OpenBlock::Tool { call_index, .. }) if call_index == call.index
                );
                if !current {
                    if self.seen_calls.contains(&call.index) {
                        // Anthropic blocks are sequential; a fragment for a tool call
                        // already closed cannot be sent. OpenAI-compatible servers do not
                        // interleave calls, so this is an upstream anomaly.
                        tracing::warn!(
                            call_index = call.index,
                            "dropping a fragment of an already closed tool call"
                        );
                        continue;
                    }
                    self.seen_calls.insert(call.index);
                    let id = call
                        .id
                        .clone()
                        .unwrap_or_else(|| format!("toolu_{}", uuid::Uuid::new_v4().simple()));
                    let name = call
                        .function
                        .as_ref()
                        .and_then(|f| f.name.clone())
                        .unwrap_or_default();
                    let index = self.open_block(
                        &mut out,
                        json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    );
                    self.open = Some(OpenBlock::Tool {
                        index,
                        call_index: call.index,
                    });
                }
                let args = call.function.as_ref().and_then(|f| f.arguments.as_deref());
                if let Some(args) = args.filter(|a| !a.is_empty()) {
                    self.delta(
                        &mut out,
                        json!({"type": "input_json_delta", "partial_json": args}),
                    );
                }
            }
            if let Some(reason) = &choice.finish_reason {
                self.finish_reason = Some(reason.clone());
                self.stop_sequence = matched_stop_sequence(&choice.extra);
            }
        }
        out
    }

    /// The closing events: the last `content_block_stop`, `message_delta` with the stop
    /// reason and the usage, `message_stop`. Later calls return nothing.
    pub fn finish(&mut self) -> Vec<AnthropicSseEvent> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.start(&mut out);
        self.close_block(&mut out);
        self.finished = true;

        let stop_reason =
            stop_reason_for(self.finish_reason.as_deref(), self.stop_sequence.as_deref());
        let stop_sequence = (stop_reason == "stop_sequence")
            .then(|| self.stop_sequence.clone())
            .flatten();
        let usage = match &self.usage {
            Some(u) => {
                let u = usage_from_canonical(u);
                json!({
                    "input_tokens": u.input_tokens,
                    "cache_creation_input_tokens": u.cache_creation_input_tokens,
                    "cache_read_input_tokens": u.cache_read_input_tokens,
                    "output_tokens": u.output_tokens,
                })
            }
            None => json!({"output_tokens": 0}),
        };
        out.push(AnthropicSseEvent::new(
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": usage,
            }),
        ));
        out.push(AnthropicSseEvent::new(
            "message_stop",
            json!({"type": "message_stop"}),
        ));
        out
    }

    fn start(&mut self, out: &mut Vec<AnthropicSseEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(AnthropicSseEvent::new(
            "message_start",
            json!({
                "type": "message_start",
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    // The real input count is only known at the end; it is repeated in
                    // message_delta's usage.
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                },
            }),
        ));
        out.push(AnthropicSseEvent::new("ping", json!({"type": "ping"})));
    }

    /// Close the open block (if any) and open a new one; returns its index.
    fn open_block(&mut self, out: &mut Vec<AnthropicSseEvent>, content_block: Value) -> u32 {
        self.close_block(out);
        let index = self.next_index;
        self.next_index += 1;
        out.push(AnthropicSseEvent::new(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": content_block}),
        ));
        index
    }

    fn close_block(&mut self, out: &mut Vec<AnthropicSseEvent>) {
        if let Some(block) = self.open.take() {
            out.push(AnthropicSseEvent::new(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": block.index()}),
            ));
        }
    }

    fn delta(&mut self, out: &mut Vec<AnthropicSseEvent>, delta: Value) {
        if let Some(block) = self.open {
            out.push(AnthropicSseEvent::new(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": block.index(), "delta": delta}),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::StreamEvent;
    use super::*;
    use keel_core::chat::{
        ChunkChoice, Delta, FunctionCallDelta, PromptTokensDetails, ToolCallDelta,
    };

    fn chunk(delta: Delta, finish: Option<&str>) -> ChatChunk {
        ChatChunk {
            id: "chatcmpl-1".into(),
            model: "gpt-4o-mini".into(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish.map(str::to_string),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// Split `event: X\ndata: {json}\n\n` into its name and its JSON.
    fn sse_parts(sse: &str) -> (String, Value) {
        let body = sse.strip_suffix("\n\n").expect("ends with a blank line");
        let (event, data) = body.split_once('\n').expect("two lines");
        let event = event.strip_prefix("event: ").expect("event line");
        let data = data.strip_prefix("data: ").expect("data line");
        (
            event.to_string(),
            serde_json::from_str(data).expect("json data"),
        )
    }

    fn text(t: &str) -> ChatChunk {
        chunk(
            Delta {
                content: Some(t.into()),
                ..Default::default()
            },
            None,
        )
    }

    fn call(index: u32, id: Option<&str>, name: Option<&str>, args: &str) -> ChatChunk {
        chunk(
            Delta {
                tool_calls: Some(vec![ToolCallDelta {
                    index,
                    id: id.map(str::to_string),
                    kind: id.map(|_| "function".to_string()),
                    function: Some(FunctionCallDelta {
                        name: name.map(str::to_string),
                        arguments: Some(args.into()),
                    }),
                }]),
                ..Default::default()
            },
            None,
        )
    }

    #[test]
    fn text_and_two_tool_calls_give_anthropics_event_order() {
        let mut t = ChunksToEvents::new("claude-sonnet-4-5", "msg_01");
        let mut events = Vec::new();
        let role = chunk(
            Delta {
                role: Some("assistant".into()),
                content: Some(String::new()),
                ..Default::default()
            },
            None,
        );
        let mut usage = Usage::new(472, 89);
        usage.prompt_tokens_details = Some(PromptTokensDetails { cached_tokens: 400 });
        for c in [
            role,
            text("Okay"),
            text(", let me check."),
            call(0, Some("call_a"), Some("get_weather"), ""),
            call(0, None, None, "{\"location\":"),
            call(0, None, None, " \"San Francisco, CA\"}"),
            call(1, Some("call_b"), Some("get_time"), "{}"),
            chunk(Delta::default(), Some("tool_calls")),
            ChatChunk {
                usage: Some(usage),
                ..Default::default()
            },
        ] {
            events.extend(t.push(&c));
        }
        events.extend(t.finish());
        assert!(t.finish().is_empty(), "finish is idempotent");

        let names: Vec<&str> = events.iter().map(|e| e.event).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        // Every event parses as an Anthropic stream event and names its own type.
        for e in &events {
            let parsed: Result<StreamEvent, _> = serde_json::from_value(e.data.clone());
            assert!(parsed.is_ok(), "{e:?}");
            assert_eq!(e.data["type"], e.event);
        }
        assert_eq!(events[0].data["message"]["id"], "msg_01");
        assert_eq!(events[0].data["message"]["model"], "claude-sonnet-4-5");
        assert_eq!(
            events[3].data["delta"],
            json!({"type":"text_delta","text":"Okay"})
        );
        assert_eq!(
            events[6].data["content_block"],
            json!({"type":"tool_use","id":"call_a","name":"get_weather","input":{}})
        );
        assert_eq!(events[6].data["index"], 1);
        assert_eq!(
            events[8].data["delta"]["partial_json"],
            " \"San Francisco, CA\"}"
        );
        assert_eq!(events[10].data["index"], 2);
        assert_eq!(events[10].data["content_block"]["name"], "get_time");
        let delta = &events[13].data;
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
        assert_eq!(delta["usage"]["output_tokens"], 89);
        assert_eq!(delta["usage"]["input_tokens"], 72);
        assert_eq!(delta["usage"]["cache_read_input_tokens"], 400);
        assert_eq!(
            sse_parts(&events[2].to_sse()),
            (
                "content_block_start".to_string(),
                json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})
            )
        );
    }

    #[test]
    fn an_empty_stream_still_opens_and_closes_the_message() {
        let mut t = ChunksToEvents::new("m", "msg_x");
        let names: Vec<&str> = t.finish().iter().map(|e| e.event).collect();
        assert_eq!(
            names,
            ["message_start", "ping", "message_delta", "message_stop"]
        );
        assert!(t.push(&text("late")).is_empty());
    }

    #[test]
    fn length_and_stop_sequence_are_reported() {
        let mut t = ChunksToEvents::new("m", "msg_x");
        t.push(&text("a"));
        t.push(&chunk(Delta::default(), Some("length")));
        let end = t.finish();
        assert_eq!(end[1].data["delta"]["stop_reason"], "max_tokens");

        let mut t = ChunksToEvents::new("m", "msg_y");
        let mut stop = chunk(Delta::default(), Some("stop"));
        stop.choices[0]
            .extra
            .insert("stop_reason".into(), json!("END"));
        t.push(&stop);
        let end = t.finish();
        assert_eq!(end[0].data["delta"]["stop_reason"], "stop_sequence");
        assert_eq!(end[0].data["delta"]["stop_sequence"], "END");
    }

    #[test]
    fn error_event_has_anthropics_shape() {
        let e = AnthropicSseEvent::error("overloaded_error", "Overloaded");
        assert_eq!(
            sse_parts(&e.to_sse()),
            (
                "error".to_string(),
                json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})
            )
        );
    }
}
