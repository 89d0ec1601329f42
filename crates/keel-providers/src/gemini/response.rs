//! Gemini answers as canonical ones: a `GenerateContentResponse` as a chat completion,
//! and the same objects streamed (`alt=sse`, one per event) as chunks.
//!
//! Text parts are the content, `functionCall` parts tool calls (their `args` object
//! re-encoded as the arguments string; an id made up when Gemini sends none; a part's
//! `thoughtSignature` carried in the id, after [`SIGNATURE_SEP`], so the next turn can
//! send it back as Gemini 3 requires). Usage:
//! `promptTokenCount` is the input (`cachedContentTokenCount` of it read from cache),
//! `candidatesTokenCount + thoughtsTokenCount` the output (thinking is billed as output;
//! `thoughtsTokenCount` is also the reasoning tokens). A prompt Gemini blocks
//! (`promptFeedback.blockReason`) or an answer stopped for safety with nothing in it is
//! a content-policy error (400, code `content_filter`); a safety stop after some output
//! is finish reason `content_filter`.

use keel_core::chat::{
    ChatChunk, ChatResponse, Choice, ChunkChoice, CompletionTokensDetails, Content, Delta,
    FunctionCall, FunctionCallDelta, Message, PromptTokensDetails, ToolCall, ToolCallDelta, Usage,
};
use serde_json::{Map, Value};

use crate::ProviderError;

/// Between a tool call's id and its Gemini thought signature, inside the id a chat
/// client sees and sends back (`request` splits them again).
pub const SIGNATURE_SEP: &str = "~ts~";

/// Finish reasons that mean a safety or policy stop.
const POLICY_STOPS: [&str; 6] = [
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
];

/// Gemini's error body `{"error": {"code", "message", "status"}}` → (message, status).
pub fn gemini_error(body: &Value) -> Option<(String, Option<String>)> {
    let e = body.get("error")?;
    let message = e.get("message")?.as_str()?.to_string();
    let status = e.get("status").and_then(Value::as_str).map(str::to_string);
    Some((message, status))
}

fn policy_error(message: String) -> ProviderError {
    ProviderError::Status {
        status: 400,
        message,
        code: Some("content_filter".into()),
        body: None,
        retry_after: None,
    }
}

/// The prompt was blocked: no candidates, a `blockReason`.
fn blocked(v: &Value) -> Option<ProviderError> {
    let reason = v.pointer("/promptFeedback/blockReason")?.as_str()?;
    Some(policy_error(format!(
        "Gemini blocked the prompt ({reason}); rephrase it or adjust the safety settings"
    )))
}

/// Canonical usage from `usageMetadata`.
pub fn usage(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let thoughts = n("thoughtsTokenCount");
    let mut usage = Usage::new(
        n("promptTokenCount") + n("toolUsePromptTokenCount"),
        n("candidatesTokenCount") + thoughts,
    );
    let cached = n("cachedContentTokenCount");
    if cached > 0 {
        usage.prompt_tokens_details = Some(PromptTokensDetails {
            cached_tokens: cached,
        });
    }
    if thoughts > 0 {
        usage.completion_tokens_details = Some(CompletionTokensDetails {
            reasoning_tokens: thoughts,
        });
    }
    usage
}

/// The chat finish reason of a Gemini one.
fn finish_reason(reason: &str, called: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        r if POLICY_STOPS.contains(&r) => "content_filter",
        _ if called => "tool_calls",
        _ => "stop",
    }
}

/// The text and function calls of a candidate's parts (thought summaries left out).
fn parts(candidate: &Value, next_call: &mut usize) -> (String, Vec<ToolCall>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    let parts = candidate
        .pointer("/content/parts")
        .and_then(Value::as_array);
    for p in parts.into_iter().flatten() {
        if p.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(t) = p.get("text").and_then(Value::as_str) {
            text.push_str(t);
        }
        if let Some(f) = p.get("functionCall") {
            let id = f
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| crate::responses::new_id("call"), str::to_string);
            // Gemini 3 wants a call's thought signature back with it on the next turn; a
            // chat client echoes the call id, so the signature travels inside it.
            let id = match p.get("thoughtSignature").and_then(Value::as_str) {
                Some(sig) => format!("{id}{SIGNATURE_SEP}{sig}"),
                None => id,
            };
            *next_call += 1;
            calls.push(ToolCall {
                id,
                kind: "function".into(),
                function: FunctionCall {
                    name: f
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    arguments: f
                        .get("args")
                        .unwrap_or(&Value::Object(Map::new()))
                        .to_string(),
                },
            });
        }
    }
    (text, calls)
}

fn str_of(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A whole `generateContent` answer as a chat completion.
pub fn gemini_to_chat(v: &Value) -> Result<ChatResponse, ProviderError> {
    let candidates = v.get("candidates").and_then(Value::as_array);
    let Some(candidates) = candidates.filter(|c| !c.is_empty()) else {
        return Err(blocked(v).unwrap_or_else(|| {
            ProviderError::InvalidResponse(format!(
                "a Gemini answer without candidates: {}",
                crate::sse::truncate(&v.to_string(), 200)
            ))
        }));
    };
    let mut choices = Vec::with_capacity(candidates.len());
    let mut next_call = 0;
    for (i, c) in candidates.iter().enumerate() {
        let (text, calls) = parts(c, &mut next_call);
        let reason = c
            .get("finishReason")
            .and_then(Value::as_str)
            .unwrap_or("STOP");
        if text.is_empty() && calls.is_empty() && POLICY_STOPS.contains(&reason) {
            return Err(policy_error(format!(
                "Gemini stopped the answer ({reason}) before any output; rephrase the request or adjust the safety settings"
            )));
        }
        choices.push(Choice {
            index: u32::try_from(c.get("index").and_then(Value::as_u64).unwrap_or(i as u64))
                .unwrap_or(0),
            finish_reason: Some(finish_reason(reason, !calls.is_empty()).into()),
            message: Message {
                role: "assistant".into(),
                content: (!text.is_empty() || calls.is_empty()).then_some(Content::Text(text)),
                tool_calls: (!calls.is_empty()).then_some(calls),
                ..Default::default()
            },
            extra: Map::new(),
        });
    }
    Ok(ChatResponse {
        id: str_of(v, "responseId"),
        object: "chat.completion".into(),
        created: 0,
        model: str_of(v, "modelVersion"),
        choices,
        usage: v.get("usageMetadata").map(usage),
        ..Default::default()
    })
}

/// Streamed answers as chunks. Gemini sends no terminal event: the stream is complete
/// when a chunk carried a `finishReason` and the body ended; its last `usageMetadata`
/// (they are running totals) becomes the usage chunk.
#[derive(Default)]
pub struct GeminiChunks {
    next_call: usize,
    /// Some text or a call was streamed.
    said: bool,
    called: bool,
    usage: Option<Usage>,
    finished: bool,
    id: String,
    model: String,
}

impl GeminiChunks {
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The chunks of one streamed object.
    pub fn push(&mut self, v: &Value) -> Result<Vec<ChatChunk>, ProviderError> {
        if let Some(u) = v.get("usageMetadata") {
            self.usage = Some(usage(u));
        }
        if self.id.is_empty() {
            self.id = str_of(v, "responseId");
            self.model = str_of(v, "modelVersion");
        }
        let Some(c) = v.pointer("/candidates/0") else {
            if let Some(e) = blocked(v) {
                return Err(e);
            }
            return Ok(Vec::new());
        };
        let (text, calls) = parts(c, &mut self.next_call);
        let reason = c.get("finishReason").and_then(Value::as_str);
        if let Some(r) = reason {
            if !self.said && calls.is_empty() && text.is_empty() && POLICY_STOPS.contains(&r) {
                return Err(policy_error(format!(
                    "Gemini stopped the answer ({r}) before any output; rephrase the request or adjust the safety settings"
                )));
            }
        }
        self.said |= !text.is_empty() || !calls.is_empty();
        let base = self.next_call - calls.len();
        self.called |= !calls.is_empty();
        let mut delta = Delta::default();
        if !text.is_empty() {
            delta.content = Some(text);
        }
        if !calls.is_empty() {
            delta.tool_calls = Some(
                calls
                    .into_iter()
                    .enumerate()
                    .map(|(k, call)| ToolCallDelta {
                        index: u32::try_from(base + k).unwrap_or(u32::MAX),
                        id: Some(call.id),
                        kind: Some("function".into()),
                        function: Some(FunctionCallDelta {
                            name: Some(call.function.name),
                            arguments: Some(call.function.arguments),
                        }),
                    })
                    .collect(),
            );
        }
        let finish = reason.map(|r| {
            self.finished = true;
            finish_reason(r, self.called).to_string()
        });
        if delta == Delta::default() && finish.is_none() {
            return Ok(Vec::new());
        }
        Ok(vec![ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish,
                extra: Map::new(),
            }],
            ..Default::default()
        }])
    }

    /// The usage chunk that closes the stream.
    pub fn usage_chunk(&self) -> Option<ChatChunk> {
        self.usage.map(|u| ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            model: self.model.clone(),
            usage: Some(u),
            ..Default::default()
        })
    }
}
