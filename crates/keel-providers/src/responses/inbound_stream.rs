//! A canonical chunk stream answered as the Responses API's typed event stream.
//!
//! The sequence OpenAI documents, each event with a rising `sequence_number`:
//! `response.created`, `response.in_progress`; per output item `response.output_item.added`,
//! then for a message `response.content_part.added`, `response.output_text.delta`…,
//! `response.output_text.done`, `response.content_part.done`, and for a function call
//! `response.function_call_arguments.delta`…, `response.function_call_arguments.done`;
//! `response.output_item.done`; last `response.completed` (or `response.incomplete` when
//! the output hit `max_output_tokens`) carrying the whole response with usage. No
//! `[DONE]` sentinel. An error mid-stream is an `error` event then `response.failed`.

use keel_core::chat::{ChatChunk, Usage};
use serde_json::{json, Value};

use super::inbound::{finish_status, new_id};
use super::wire::{OutputContent, OutputItem, ResponseObject, ResponseUsage};

/// The item being streamed.
enum Open {
    Text {
        id: String,
        text: String,
    },
    Call {
        /// The chat stream's tool-call index, which ties its fragments together.
        chat_index: u32,
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// The translation state machine: feed chunks with [`push`](Self::push), end with
/// [`finish`](Self::finish) or [`fail`](Self::fail); each returns the events to send.
pub struct ChunksToResponseEvents {
    response: ResponseObject,
    seq: u64,
    started: bool,
    open: Option<Open>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl ChunksToResponseEvents {
    /// Start from the response shell (`inbound::response_shell`).
    pub fn new(shell: ResponseObject) -> Self {
        ChunksToResponseEvents {
            response: shell,
            seq: 0,
            started: false,
            open: None,
            finish_reason: None,
            usage: None,
        }
    }

    /// The response as far as it has been streamed (whole after `finish`).
    pub fn response(&self) -> &ResponseObject {
        &self.response
    }

    fn event(&mut self, kind: &str, mut body: Value) -> Value {
        if let Value::Object(m) = &mut body {
            m.insert("type".into(), json!(kind));
            m.insert("sequence_number".into(), json!(self.seq));
        }
        self.seq += 1;
        body
    }

    fn snapshot(&self) -> Value {
        serde_json::to_value(&self.response).unwrap_or(Value::Null)
    }

    fn start(&mut self, out: &mut Vec<Value>) {
        if self.started {
            return;
        }
        self.started = true;
        for kind in ["response.created", "response.in_progress"] {
            let body = json!({"response": self.snapshot()});
            let e = self.event(kind, body);
            out.push(e);
        }
    }

    fn output_index(&self) -> usize {
        self.response.output.len()
    }

    fn open_text(&mut self, out: &mut Vec<Value>) {
        if matches!(self.open, Some(Open::Text { .. })) {
            return;
        }
        self.close(out);
        let id = new_id("msg");
        let index = self.output_index();
        let item = json!({"type": "message", "id": id, "status": "in_progress",
            "role": "assistant", "content": []});
        let e = self.event(
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        );
        out.push(e);
        let e = self.event(
            "response.content_part.added",
            json!({"item_id": id, "output_index": index, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}),
        );
        out.push(e);
        self.open = Some(Open::Text {
            id,
            text: String::new(),
        });
    }

    /// Close the open item: its `.done` events, and the item joins the output.
    fn close(&mut self, out: &mut Vec<Value>) {
        let index = self.output_index();
        match self.open.take() {
            None => {}
            Some(Open::Text { id, text }) => {
                let e = self.event(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text}),
                );
                out.push(e);
                let part = OutputContent::output_text(text);
                let e = self.event(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
                );
                out.push(e);
                let item = OutputItem::Message {
                    id,
                    status: "completed".into(),
                    role: "assistant".into(),
                    content: vec![part],
                };
                let e = self.event(
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                );
                out.push(e);
                self.response.output.push(item);
            }
            Some(Open::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            }) => {
                let e = self.event(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "name": name, "arguments": arguments}),
                );
                out.push(e);
                let item = OutputItem::FunctionCall {
                    id,
                    call_id,
                    name,
                    arguments,
                    status: "completed".into(),
                };
                let e = self.event(
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                );
                out.push(e);
                self.response.output.push(item);
            }
        }
    }

    /// The events one canonical chunk makes (only the first choice is answered).
    pub fn push(&mut self, chunk: &ChatChunk) -> Vec<Value> {
        let mut out = Vec::new();
        if !chunk.model.is_empty() && !self.started {
            self.response.model = chunk.model.clone();
        }
        self.start(&mut out);
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        let Some(choice) = chunk.choices.iter().find(|c| c.index == 0) else {
            return out;
        };
        if let Some(delta) = choice.delta.content.as_deref().filter(|d| !d.is_empty()) {
            self.open_text(&mut out);
            let index = self.output_index();
            if let Some(Open::Text { id, text }) = &mut self.open {
                text.push_str(delta);
                let id = id.clone();
                let e = self.event(
                    "response.output_text.delta",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                        "delta": delta, "logprobs": []}),
                );
                out.push(e);
            }
        }
        for tc in choice.delta.tool_calls.iter().flatten() {
            let same = matches!(&self.open, Some(Open::Call { chat_index, .. }) if *chat_index == tc.index);
            if !same {
                self.close(&mut out);
                let id = new_id("fc");
                let call_id = tc.id.clone().unwrap_or_else(|| new_id("call"));
                let name = tc
                    .function
                    .as_ref()
                    .and_then(|f| f.name.clone())
                    .unwrap_or_default();
                let index = self.output_index();
                let item = json!({"type": "function_call", "id": id, "call_id": call_id,
                    "name": name, "arguments": "", "status": "in_progress"});
                let e = self.event(
                    "response.output_item.added",
                    json!({"output_index": index, "item": item}),
                );
                out.push(e);
                self.open = Some(Open::Call {
                    chat_index: tc.index,
                    id,
                    call_id,
                    name,
                    arguments: String::new(),
                });
            }
            let fragment = tc
                .function
                .as_ref()
                .and_then(|f| f.arguments.as_deref())
                .unwrap_or("");
            let index = self.output_index();
            if let (false, Some(Open::Call { id, arguments, .. })) =
                (fragment.is_empty(), &mut self.open)
            {
                arguments.push_str(fragment);
                let id = id.clone();
                let e = self.event(
                    "response.function_call_arguments.delta",
                    json!({"item_id": id, "output_index": index, "delta": fragment}),
                );
                out.push(e);
            }
        }
        if let Some(r) = &choice.finish_reason {
            self.finish_reason = Some(r.clone());
        }
        out
    }

    /// The stream ended: close the open item and send the whole response.
    pub fn finish(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        self.start(&mut out);
        self.close(&mut out);
        let (status, details) = finish_status(self.finish_reason.as_deref());
        self.response.status = status.into();
        self.response.incomplete_details = details;
        self.response.usage = self.usage.as_ref().map(ResponseUsage::from);
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        let body = json!({"response": self.snapshot()});
        let e = self.event(kind, body);
        out.push(e);
        out
    }

    /// The stream failed: an `error` event, then `response.failed` with what was streamed.
    pub fn fail(&mut self, code: &str, message: &str) -> Vec<Value> {
        let mut out = Vec::new();
        self.start(&mut out);
        self.close(&mut out);
        self.response.status = "failed".into();
        self.response.error = Some(json!({"code": code, "message": message}));
        self.response.usage = self.usage.as_ref().map(ResponseUsage::from);
        let e = self.event(
            "error",
            json!({"code": code, "message": message, "param": null}),
        );
        out.push(e);
        let body = json!({"response": self.snapshot()});
        let e = self.event("response.failed", body);
        out.push(e);
        out
    }
}

/// Events in SSE framing: `event: <type>` and `data: <json>` per event.
pub fn to_sse(events: &[Value]) -> String {
    let mut s = String::new();
    for e in events {
        let kind = e.get("type").and_then(Value::as_str).unwrap_or("message");
        s.push_str("event: ");
        s.push_str(kind);
        s.push_str("\ndata: ");
        s.push_str(&e.to_string());
        s.push_str("\n\n");
    }
    s
}
