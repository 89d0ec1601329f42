//! The deterministic reply: what the mock answers to a request, as a pure function of the
//! request, the settings and the rules (never of time, order or randomness — the dice in
//! `faults` are applied on top by `state`).
//!
//! The order of decisions is the one documented in the `mock` module: validation, then
//! directives and the first matching rule, then a scripted fault, then the reply body
//! (tool call, explicit reply, or the generated echo), then `stop` and `max_tokens`.

use std::time::Duration;

use keel_core::chat::{
    ChatRequest, ChatResponse, Choice, FunctionCall, Message, Stop, Tool, ToolCall, Usage,
};
use keel_core::config::mock::MockSettings;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::directives::{self, Parsed};
use super::faults::{injected_message, MockFault};
use super::placeholder;
use super::rules::{RuleAction, RuleSet};
use super::tokens;

/// The `created` of every mock completion: fixed, so replies are byte-for-byte repeatable.
pub const CREATED: i64 = 1_700_000_000;
/// The `system_fingerprint` of every mock completion.
pub const FINGERPRINT: &str = "fp_mock";
/// The largest `n` accepted (OpenAI's limit).
const MAX_N: u32 = 128;

/// Everything decided about one request before the dice are rolled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub outcome: Result<ChatResponse, MockFault>,
    pub latency: Duration,
    pub chunk_delay: Duration,
    pub cut: bool,
}

/// Decide the answer to `req`, answered with the configured `fingerprint` (default
/// [`FINGERPRINT`]): switching it is how a demo or a test plays a provider that changed
/// the model behind a name.
pub(crate) fn plan(req: &ChatRequest, settings: &MockSettings, rules: &RuleSet) -> Plan {
    let mut plan = decide(req, settings, rules);
    if let (Ok(resp), Some(fp)) = (&mut plan.outcome, &settings.fingerprint) {
        resp.system_fingerprint = Some(fp.clone());
    }
    plan
}

fn decide(req: &ChatRequest, settings: &MockSettings, rules: &RuleSet) -> Plan {
    let mut plan = Plan {
        outcome: Err(MockFault::Garbage),
        latency: Duration::from_millis(settings.latency_ms),
        chunk_delay: Duration::from_millis(settings.chunk_delay_ms),
        cut: false,
    };
    if let Err(message) = validate(req) {
        plan.outcome = Err(MockFault::status(400, message));
        return plan;
    }
    let user_text = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(Message::text_content)
        .unwrap_or_default();
    let parsed = match directives::parse(&user_text) {
        Ok(p) => p,
        Err(message) => {
            plan.outcome = Err(MockFault::status(400, message));
            return plan;
        }
    };
    let d = &parsed.directives;
    let rule = rules.first_match(&parsed.text);
    if let Some(ms) = d.latency_ms.or(rule.and_then(|r| r.latency_ms)) {
        plan.latency = Duration::from_millis(ms);
    }
    if let Some(ms) = d.chunk_delay_ms {
        plan.chunk_delay = Duration::from_millis(ms);
    }
    plan.cut = d.cut;
    plan.outcome = match scripted_fault(req, settings, &parsed, rule) {
        Some(fault) => Err(fault),
        None => Ok(response(req, body(req, settings, &parsed, rule))),
    };
    plan
}

fn validate(req: &ChatRequest) -> Result<(), String> {
    if req.messages.is_empty() {
        return Err("`messages` must contain at least one message.".to_string());
    }
    match req.n {
        Some(n) if n == 0 || n > MAX_N => {
            Err(format!("`n` must be between 1 and {MAX_N}, got {n}."))
        }
        _ => Ok(()),
    }
}

fn scripted_fault(
    req: &ChatRequest,
    settings: &MockSettings,
    parsed: &Parsed,
    rule: Option<&RuleAction>,
) -> Option<MockFault> {
    let d = &parsed.directives;
    if let Some(status) = d.status.or(rule.and_then(|r| r.status)) {
        let retry_after = d
            .retry_after
            .or((status == 429).then_some(settings.retry_after_secs));
        return Some(MockFault::Status {
            status,
            message: injected_message(status, &req.model, retry_after),
            retry_after,
        });
    }
    if d.timeout {
        return Some(MockFault::Timeout);
    }
    d.garbage.then_some(MockFault::Garbage)
}

/// The content of every choice.
#[derive(Debug, Clone, PartialEq)]
enum Body {
    Text { text: String, finish: &'static str },
    Call { name: String, arguments: String },
}

fn body(
    req: &ChatRequest,
    settings: &MockSettings,
    parsed: &Parsed,
    rule: Option<&RuleAction>,
) -> Body {
    let d = &parsed.directives;
    let last = req.messages.last();
    let after_tool = last.is_some_and(|m| m.role == "tool");
    let explicit_tokens = d.tokens.or(rule.and_then(|r| r.tokens));
    // After a tool result the turn is over: a `tool` or `reply` that scripted the
    // earlier user turn must not fire again, or an agent loop would never end.
    if !after_tool {
        let tool = d
            .tool
            .clone()
            .or_else(|| rule.and_then(|r| r.tool.clone()))
            .or_else(|| forced_tool(req));
        if let Some(name) = tool {
            let arguments = tool_arguments(req, &name);
            return Body::Call { name, arguments };
        }
        if let Some(reply) = d.reply.as_deref().or(rule.and_then(|r| r.reply.as_deref())) {
            let text = match explicit_tokens {
                Some(n) => tokens::fit(reply, u64::from(n)),
                None => reply.to_string(),
            };
            return finish_text(req, text);
        }
    }
    let has_tools = req.tools.as_ref().is_some_and(|t| !t.is_empty());
    let generated = match last {
        Some(m) if after_tool && has_tools => format!(
            "Tool result received: {}",
            tokens::first_chars(&m.text_content(), 100)
        ),
        _ => format!("Mock reply to: {}", tokens::first_chars(&parsed.text, 200)),
    };
    let text = match (json_mode(req), explicit_tokens) {
        (_, Some(n)) => tokens::fit(&generated, u64::from(n)),
        (Some(JsonMode::Object), None) => json!({ "reply": generated }).to_string(),
        (Some(JsonMode::Schema(schema)), None) => placeholder::for_schema(schema).to_string(),
        (None, None) => match settings.output_tokens {
            Some(n) => tokens::fit(&generated, u64::from(n)),
            None => generated,
        },
    };
    finish_text(req, text)
}

/// The tool `tool_choice` forces: a named function, or the first tool for `"required"`.
fn forced_tool(req: &ChatRequest) -> Option<String> {
    match req.tool_choice.as_ref()? {
        Value::String(s) if s == "required" => req
            .tools
            .as_ref()
            .and_then(|t| t.first())
            .map(|t| t.function.name.clone()),
        Value::Object(o) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

/// `{}`, or a placeholder object built from the declared tool's parameter schema.
fn tool_arguments(req: &ChatRequest, name: &str) -> String {
    req.tools
        .iter()
        .flatten()
        .find(|t: &&Tool| t.function.name == name)
        .and_then(|t| t.function.parameters.as_ref())
        .filter(|p| p.is_object())
        .map(|p| placeholder::for_schema(p).to_string())
        .unwrap_or_else(|| "{}".to_string())
}

enum JsonMode<'a> {
    Object,
    Schema(&'a Value),
}

fn json_mode(req: &ChatRequest) -> Option<JsonMode<'_>> {
    let format = req.response_format.as_ref()?;
    match format.get("type").and_then(Value::as_str)? {
        "json_object" => Some(JsonMode::Object),
        "json_schema" => {
            let schema = format.get("json_schema").and_then(|s| s.get("schema"));
            Some(schema.map_or(JsonMode::Object, JsonMode::Schema))
        }
        _ => None,
    }
}

/// Apply `stop` (cut before the first stop sequence) and the output-token ceiling
/// (cut at that many tokens, finish reason `length`).
fn finish_text(req: &ChatRequest, text: String) -> Body {
    let mut text = continuation(req, text);
    let mut finish = "stop";
    let stops = req.stop.as_ref().map(Stop::to_vec).unwrap_or_default();
    let first_stop = stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min();
    if let Some(at) = first_stop {
        text.truncate(at);
    }
    if let Some(max) = req.max_output_tokens() {
        let (kept, cut) = tokens::truncate(&text, u64::from(max));
        if cut {
            text = kept.to_string();
            finish = "length";
        }
    }
    Body::Text { text, finish }
}

/// A trailing assistant message is a prefill: the reply continues it, as Anthropic's
/// prefill and vLLM's `continue_final_message` do. When the reply the conversation
/// would get starts with the prefill, only the rest is answered (so a stream resumed
/// after a cut reads exactly like the uncut one); otherwise the whole reply.
fn continuation(req: &ChatRequest, text: String) -> String {
    let prefill = match req.messages.last() {
        Some(m) if m.role == "assistant" && m.tool_calls.is_none() => m.text_content(),
        _ => return text,
    };
    match text.strip_prefix(prefill.as_str()) {
        Some(rest) if !prefill.is_empty() => rest.to_string(),
        _ => text,
    }
}

/// The parts of a request its reply depends on (not `stream`: streamed or not, the
/// same question gets the same completion).
#[derive(Serialize)]
struct HashInput<'a> {
    model: &'a str,
    messages: &'a [Message],
    tools: &'a Option<Vec<Tool>>,
    tool_choice: &'a Option<Value>,
    response_format: &'a Option<Value>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    n: Option<u32>,
    stop: &'a Option<Stop>,
    seed: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
}

/// 16 hex digits of the SHA-256 of the request's reply-relevant parts.
fn request_hash(req: &ChatRequest) -> String {
    let input = HashInput {
        model: &req.model,
        messages: &req.messages,
        tools: &req.tools,
        tool_choice: &req.tool_choice,
        response_format: &req.response_format,
        max_tokens: req.max_tokens,
        max_completion_tokens: req.max_completion_tokens,
        n: req.n,
        stop: &req.stop,
        seed: req.seed,
        temperature: req.temperature,
        top_p: req.top_p,
    };
    let bytes = serde_json::to_vec(&input).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}

/// Prompt tokens: the tokens of every message's text plus 4 per message.
pub(crate) fn prompt_tokens(req: &ChatRequest) -> u64 {
    req.messages
        .iter()
        .map(|m| tokens::count(&m.text_content()) + 4)
        .sum()
}

fn response(req: &ChatRequest, body: Body) -> ChatResponse {
    let hash = request_hash(req);
    let n = req.n.unwrap_or(1);
    let per_choice = match &body {
        Body::Text { text, .. } => tokens::count(text),
        Body::Call { name, arguments } => tokens::count(name) + tokens::count(arguments),
    };
    let choices = (0..n)
        .map(|index| {
            let (message, finish) = match &body {
                Body::Text { text, finish } => (Message::text("assistant", text.clone()), *finish),
                Body::Call { name, arguments } => (
                    Message {
                        role: "assistant".to_string(),
                        tool_calls: Some(vec![ToolCall {
                            id: format!("call_mock_{hash}_{index}"),
                            kind: "function".to_string(),
                            function: FunctionCall {
                                name: name.clone(),
                                arguments: arguments.clone(),
                            },
                        }]),
                        ..Default::default()
                    },
                    "tool_calls",
                ),
            };
            Choice {
                index,
                message,
                finish_reason: Some(finish.to_string()),
                extra: Default::default(),
            }
        })
        .collect();
    ChatResponse {
        id: format!("chatcmpl-mock-{hash}"),
        object: "chat.completion".to_string(),
        created: CREATED,
        model: req.model.clone(),
        choices,
        usage: Some(Usage::new(prompt_tokens(req), per_choice * u64::from(n))),
        system_fingerprint: Some(FINGERPRINT.to_string()),
        extra: Default::default(),
    }
}

/// The text of choice 0 (`None` for a tool call), for tests.
#[cfg(test)]
pub(crate) fn first_text(r: &ChatResponse) -> Option<String> {
    match r.choices.first()?.message.content.as_ref()? {
        keel_core::chat::Content::Text(t) => Some(t.clone()),
        keel_core::chat::Content::Parts(_) => None,
    }
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
