//! A traced call as the assertion engine sees it: a case whose input is what the call
//! sent (a function's prompt rendered again, `keel_gateway::rendered`), and an output
//! with the call's text, tool calls, latency, cost and tokens.
//!
//! A live call has no expected answer and no context; the engine's checks that need them
//! were refused at load (`assertions`).

use keel_core::chat::{ChatRequest, ToolCall};
use keel_core::trace::TraceRecord;
use keel_evals::case::{Case, CaseInput};
use keel_evals::output::CaseOutput;

/// The case for `trace`: its id, and the messages it sent when they can be rebuilt
/// (`conn` reads the prompt version of a function call), else the messages of the
/// request as received.
pub fn case_of(conn: Option<keel_store::sql::Db<'_>>, trace: &TraceRecord) -> Case {
    let sent = conn.and_then(|c| keel_gateway::rendered::sent_messages(c, trace).ok());
    let messages = sent.or_else(|| {
        trace
            .input
            .as_deref()
            .and_then(|i| serde_json::from_str::<ChatRequest>(i).ok())
            .map(|r| r.messages)
    });
    Case {
        id: trace.id.clone(),
        variables: serde_json::Map::new(),
        input: messages.map(CaseInput::Messages),
        expected: None,
        context: None,
        metadata: serde_json::Map::new(),
        assertions: Vec::new(),
    }
}

/// The output of `trace`: a tool-calling answer is stored as its tool calls' JSON.
pub fn output_of(trace: &TraceRecord) -> CaseOutput {
    let stored = trace.output.clone().unwrap_or_default();
    let tool_calls = if stored.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<ToolCall>>(&stored).ok()
    } else {
        None
    };
    let (text, tool_calls) = match tool_calls {
        Some(calls) => (String::new(), calls),
        None => (stored, Vec::new()),
    };
    CaseOutput {
        text,
        tool_calls,
        latency_ms: trace.latency_ms,
        cost: trace.cost,
        input_tokens: trace.input_tokens,
        output_tokens: trace.output_tokens,
        error: None,
    }
}
