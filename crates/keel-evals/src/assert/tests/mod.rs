//! Tests of the assertion library, through its public surface: specs parsed from JSON,
//! validated, evaluated against outputs. Every type passes and fails; negation, weights,
//! metrics, validation errors and failed calls are covered; judge-backed types run against
//! a scripted [`FakeJudge`]; the command type runs small `sh -c` scripts.

mod command;
mod json;
mod judge;
mod metrics;
mod scoring;
mod similarity;
mod spec;
mod text;

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use keel_core::chat::{FunctionCall, Message, ToolCall};
use keel_core::money::Nanos;
use serde_json::{json, Value};

use super::judge::NoJudge;
use super::{evaluate, Assertion, AssertionResult, AssertionSpec, Judge, JudgeReply};
use crate::case::Case;
use crate::output::CaseOutput;

pub(super) fn spec(v: Value) -> AssertionSpec {
    serde_json::from_value(v).expect("spec parses")
}

pub(super) fn assertion(v: Value) -> Assertion {
    let s = spec(v);
    s.validate()
        .unwrap_or_else(|e| panic!("{s:?} should be valid: {e}"))
}

pub(super) fn invalid(v: Value) -> String {
    spec(v).validate().expect_err("should be invalid")
}

pub(super) fn case() -> Case {
    case_with(json!({"id": "c1"}))
}

pub(super) fn case_with(v: Value) -> Case {
    serde_json::from_value(v).expect("case parses")
}

/// A successful, priced output.
pub(super) fn out(text: &str) -> CaseOutput {
    CaseOutput {
        text: text.to_string(),
        latency_ms: 120,
        cost: Some(Nanos(1_500)),
        input_tokens: Some(10),
        output_tokens: Some(20),
        ..Default::default()
    }
}

pub(super) fn tool_call(name: &str, arguments: &str) -> ToolCall {
    ToolCall {
        id: format!("call_{name}"),
        kind: "function".into(),
        function: FunctionCall {
            name: name.into(),
            arguments: arguments.into(),
        },
    }
}

/// Evaluate an assertion (written as JSON) with no judge.
pub(super) async fn run(a: Value, case: &Case, out: &CaseOutput) -> AssertionResult {
    evaluate(&assertion(a), case, out, &NoJudge).await
}

/// Evaluate on a plain text output of the default case.
pub(super) async fn run_text(a: Value, text: &str) -> AssertionResult {
    run(a, &case(), &out(text)).await
}

/// A judge that replies from a script and records what it was asked.
pub(super) struct FakeJudge {
    replies: Mutex<VecDeque<Result<JudgeReply, String>>>,
    pub(super) asked: Mutex<Vec<(Option<String>, Vec<Message>)>>,
}

impl FakeJudge {
    pub(super) fn new(replies: Vec<Result<&str, &str>>) -> FakeJudge {
        FakeJudge {
            replies: Mutex::new(
                replies
                    .into_iter()
                    .map(|r| {
                        r.map(|text| JudgeReply {
                            text: text.to_string(),
                            cost: Some(Nanos(42)),
                        })
                        .map_err(str::to_string)
                    })
                    .collect(),
            ),
            asked: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn replying(text: &str) -> FakeJudge {
        FakeJudge::new(vec![Ok(text)])
    }

    /// The user prompt of the last request.
    pub(super) fn last_prompt(&self) -> String {
        let asked = self.asked.lock().expect("lock");
        let (_, msgs) = asked.last().expect("the judge was asked");
        msgs.last().expect("a user message").text_content()
    }
}

#[async_trait]
impl Judge for FakeJudge {
    async fn judge(
        &self,
        model: Option<&str>,
        messages: Vec<Message>,
    ) -> Result<JudgeReply, String> {
        self.asked
            .lock()
            .expect("lock")
            .push((model.map(str::to_string), messages));
        self.replies
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or_else(|| Err("no scripted reply left".into()))
    }
}

/// Evaluate with a scripted judge.
pub(super) async fn run_judged(
    a: Value,
    case: &Case,
    text: &str,
    judge: &FakeJudge,
) -> AssertionResult {
    evaluate(&assertion(a), case, &out(text), judge).await
}
