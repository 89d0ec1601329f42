//! Assertions: how one output of one case is scored.
//!
//! A suite or a case lists [`AssertionSpec`]s; [`AssertionSpec::validate`] turns each into
//! an [`Assertion`] once, at load; [`evaluate`] scores one output with it and
//! [`case_score`] folds a case's results into its pass and weighted score.
//!
//! Every result has a `pass`, a `score` in 0..=1, the assertion's `weight`, an optional
//! `metric` (results aggregate per metric; the metric also names the result) and a short,
//! specific `reason`. The rules shared by all types:
//!
//! - **Negation**: a `not-` prefix (`not-contains`) flips `pass` and reports `1 - score`.
//! - **Cannot evaluate**: a failed call (`output.error`), a missing `expected` or `context`,
//!   an unpriced cost, a judge that errs or replies without a score, a command that fails:
//!   the result fails with score 0 *whether or not it is negated*, with the cause as reason.
//!   Latency, cost and tokens still measure a failed call.
//! - **The output's JSON** (equals with a JSON value, is-json, json-schema, json-path): the
//!   trimmed text parsed as JSON, or, when the whole text is one fenced code block
//!   (```` ```json … ``` ````), that block's content.
//!
//! The types (each file owns a family):
//!
//! | type | passes when | file |
//! |---|---|---|
//! | `equals` | trimmed text equals `value` (a string); or the output's JSON equals `value` (any other JSON; numbers compare by value); no `value`: the case's `expected`, same rules | [`text`] |
//! | `contains`, `icontains` | the text contains any (`mode = "any"`, default) or all (`mode = "all"`) of `value` (a string or a list); `icontains` ignores case. Aliases: `contains-any`, `contains-all`, `icontains-any`, `icontains-all`. In `all` mode the score is the share found | [`text`] |
//! | `starts-with` | the text, leading whitespace ignored, starts with `value` | [`text`] |
//! | `regex` | the pattern `value` matches somewhere (anchor with `^…$`) | [`text`] |
//! | `is-refusal` | the text contains one of [`text::REFUSAL_PHRASES`] (case-insensitive, curly apostrophes read as straight) | [`text`] |
//! | `word-count`, `char-count` | the count (words split on whitespace; characters of the trimmed text) is within `min..=max` | [`text`] |
//! | `is-json` | the output's JSON parses | [`json`] |
//! | `json-schema` | the output's JSON is valid against the schema `value` | [`json`] |
//! | `json-path` | the RFC 9535 query `path` matches; with `value`, the single match (or the list of matches, when several) equals `value` | [`json`] |
//! | `levenshtein` | `1 - distance / max(len)` (in characters, trimmed) against `expected` (or `value`) is ≥ `threshold` (0.8) | [`similarity`] |
//! | `rouge-l` | the ROUGE-L F1 (longest common subsequence of lowercase word tokens) against `expected` (or `value`) is ≥ `threshold` (0.5) | [`similarity`] |
//! | `latency` | `latency_ms` ≤ `value` ms | [`metrics`] |
//! | `cost` | the call's cost ≤ `value` USD; unpriced cannot be evaluated (never read as $0) | [`metrics`] |
//! | `tokens` | output tokens ≤ `value`; an unknown count cannot be evaluated | [`metrics`] |
//! | `tool-call` | some tool call is named `name` and its arguments (parsed JSON) contain `arguments` (objects: recursive subset; arrays and scalars: equal) | [`metrics`] |
//! | `llm-rubric` | the judge's score against `rubric` is ≥ `threshold` (0.7) | [`judge`] |
//! | `factuality` | the judge's score of agreement with `expected` (or `value`) is ≥ `threshold` (0.7) | [`judge`] |
//! | `groundedness` | `min(judge score, lexical support / 0.5 capped at 1)` against the case's `context` is ≥ `threshold` (0.7); see [`judge`] | [`judge`] |
//! | `command` | the command's score (stdin: `{"case", "output"}` JSON; stdout: a number 0..1, `true`/`false`, or `{"score", "pass", "reason"}`) is ≥ `threshold` (0.5) | [`command`] |

pub mod command;
pub mod json;
pub mod judge;
pub mod metrics;
pub mod similarity;
mod spec;
pub mod text;
mod validate;

#[cfg(test)]
mod tests;

use keel_core::money::Nanos;
use serde::{Deserialize, Serialize};

use crate::case::Case;
use crate::output::CaseOutput;

pub use judge::{Judge, JudgeReply};
pub use spec::{
    Assertion, AssertionKind, AssertionSpec, ContainsMode, ASSERTION_TYPES,
    DEFAULT_COMMAND_THRESHOLD, DEFAULT_COMMAND_TIMEOUT_MS, DEFAULT_JUDGE_THRESHOLD,
    DEFAULT_LEVENSHTEIN_THRESHOLD, DEFAULT_ROUGE_L_THRESHOLD,
};

/// The result of one assertion on one output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssertionResult {
    /// The metric name when set, else the type (`not-contains`).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    pub pass: bool,
    /// 0..=1 (negated assertions report `1 - score`).
    pub score: f64,
    pub weight: f64,
    pub reason: String,
    /// What the judge said, for judge-backed types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_reasoning: Option<String>,
    /// What the judge call cost, when priced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_cost: Option<Nanos>,
}

/// What a check found, before negation, naming and weighting.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    pass: bool,
    score: f64,
    /// What was observed ("found `refund`", "143 words").
    observed: String,
    /// What passing means, as a verb phrase ("contain any of [refund]"); empty for an
    /// outcome that could not be evaluated.
    requirement: String,
    judge_reasoning: Option<String>,
    judge_cost: Option<Nanos>,
}

impl Outcome {
    /// A graded check.
    pub(crate) fn scored(
        pass: bool,
        score: f64,
        observed: impl Into<String>,
        requirement: impl Into<String>,
    ) -> Outcome {
        Outcome {
            pass,
            score: if score.is_finite() {
                score.clamp(0.0, 1.0)
            } else {
                0.0
            },
            observed: observed.into(),
            requirement: requirement.into(),
            judge_reasoning: None,
            judge_cost: None,
        }
    }

    /// A yes/no check (score 1 or 0).
    pub(crate) fn check(
        pass: bool,
        observed: impl Into<String>,
        requirement: impl Into<String>,
    ) -> Outcome {
        Outcome::scored(pass, if pass { 1.0 } else { 0.0 }, observed, requirement)
    }

    /// The assertion could not be evaluated: fails, negated or not.
    pub(crate) fn cannot_evaluate(reason: impl Into<String>) -> Outcome {
        Outcome::scored(false, 0.0, reason, String::new())
    }

    pub(crate) fn with_judge(mut self, reasoning: Option<String>, cost: Option<Nanos>) -> Self {
        self.judge_reasoning = reasoning;
        self.judge_cost = cost;
        self
    }

    fn evaluated(&self) -> bool {
        !self.requirement.is_empty()
    }
}

/// Score one output with one assertion. Never fails: anything that prevents scoring is a
/// failing result whose reason says why.
pub async fn evaluate(
    a: &Assertion,
    case: &Case,
    out: &CaseOutput,
    judge: &dyn Judge,
) -> AssertionResult {
    let outcome = match &out.error {
        Some(err) if a.kind.reads_output() => {
            Outcome::cannot_evaluate(format!("call failed: {}", text::preview(err, 200)))
        }
        _ => check(a, case, out, judge).await,
    };
    finish(a, outcome)
}

async fn check(a: &Assertion, case: &Case, out: &CaseOutput, judge: &dyn Judge) -> Outcome {
    use AssertionKind as K;
    let t = out.text.as_str();
    match &a.kind {
        K::Equals(value) => text::equals(value.as_ref().or(case.expected.as_ref()), t),
        K::Contains {
            values,
            mode,
            case_insensitive,
        } => text::contains(t, values, *mode, *case_insensitive),
        K::StartsWith(prefix) => text::starts_with(t, prefix),
        K::Regex(re) => text::regex(t, re),
        K::IsRefusal => text::is_refusal(t),
        K::WordCount { min, max } => text::word_count(t, *min, *max),
        K::CharCount { min, max } => text::char_count(t, *min, *max),
        K::IsJson => json::is_json(t),
        K::JsonSchema(validator) => json::json_schema(t, validator),
        K::JsonPath { path, expected } => json::json_path(t, path, expected.as_ref()),
        K::Levenshtein {
            threshold,
            expected,
        } => similarity::levenshtein(t, expected_text(expected, case).as_deref(), *threshold),
        K::RougeL {
            threshold,
            expected,
        } => similarity::rouge_l(t, expected_text(expected, case).as_deref(), *threshold),
        K::LatencyMs(max) => metrics::latency(out.latency_ms, *max),
        K::CostUsd(max) => metrics::cost(out.cost, *max),
        K::Tokens(max) => metrics::tokens(out.output_tokens, *max),
        K::ToolCall { name, arguments } => {
            metrics::tool_call(&out.tool_calls, name, arguments.as_ref())
        }
        K::LlmRubric {
            rubric,
            threshold,
            judge: model,
        } => judge::llm_rubric(judge, model.as_deref(), case, t, rubric, *threshold).await,
        K::Factuality {
            threshold,
            judge: model,
            expected,
        } => {
            let expected = expected_text(expected, case);
            judge::factuality(
                judge,
                model.as_deref(),
                case,
                t,
                expected.as_deref(),
                *threshold,
            )
            .await
        }
        K::Groundedness {
            threshold,
            judge: model,
        } => judge::groundedness(judge, model.as_deref(), case, t, *threshold).await,
        K::Command {
            argv,
            timeout,
            threshold,
        } => command::run(argv, *timeout, *threshold, case, out).await,
    }
}

/// The assertion's own `value`, else the case's `expected` as text.
fn expected_text(own: &Option<String>, case: &Case) -> Option<String> {
    own.clone().or_else(|| case.expected_text())
}

fn finish(a: &Assertion, o: Outcome) -> AssertionResult {
    let (pass, score, reason) = if !o.evaluated() {
        (false, 0.0, o.observed)
    } else {
        let pass = o.pass != a.negate;
        let score = if a.negate { 1.0 - o.score } else { o.score };
        let reason = match (pass, a.negate) {
            (true, _) => o.observed,
            (false, false) => format!("expected to {}; {}", o.requirement, o.observed),
            (false, true) => format!("expected not to {}; {}", o.requirement, o.observed),
        };
        (pass, score, reason)
    };
    AssertionResult {
        name: a.display_name(),
        metric: a.metric.clone(),
        pass,
        score,
        weight: a.weight,
        reason,
        judge_reasoning: o.judge_reasoning,
        judge_cost: o.judge_cost,
    }
}

/// A case's pass (every assertion passed) and score: the weighted mean of the scores
/// (the plain mean when every weight is 0). A case without assertions passes with 1.0.
pub fn case_score(results: &[AssertionResult]) -> (bool, f64) {
    if results.is_empty() {
        return (true, 1.0);
    }
    let pass = results.iter().all(|r| r.pass);
    let total: f64 = results.iter().map(|r| r.weight).sum();
    let score = if total > 0.0 {
        results.iter().map(|r| r.weight * r.score).sum::<f64>() / total
    } else {
        results.iter().map(|r| r.score).sum::<f64>() / results.len() as f64
    };
    (pass, score.clamp(0.0, 1.0))
}
