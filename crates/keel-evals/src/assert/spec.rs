//! An assertion as written in a suite or a case ([`AssertionSpec`]) and as checked
//! ([`Assertion`]).
//!
//! Serde parses the raw shape (unknown keys rejected); [`AssertionSpec::validate`] turns it
//! into a typed [`Assertion`]: the type resolved (with a "did you mean" hint), every field
//! the type does not use rejected, ranges checked, regexes, JSON schemas and JSONPath
//! queries compiled. Evaluation never re-checks the spec.

use std::time::Duration;

use keel_core::money::Nanos;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json_path::JsonPath;

/// An assertion as written in TOML or JSON: `{"type": "contains", "value": "refund"}`.
/// Prefix the type with `not-` to negate it (`"not-contains"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionSpec {
    #[serde(rename = "type")]
    pub kind: String,
    /// A string, a list of strings, a number, a JSON schema or an expected JSON value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Pass mark for similarity, judge and command scores (0..1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Weight in the case score (default 1, must be >= 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// A metric name: results are reported and aggregated under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// `any` (default) or `all`, for a list of `contains` / `icontains` values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The JSONPath (RFC 9535) query of `json-path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Bounds of `word-count` / `char-count` (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    /// The grading rubric of `llm-rubric`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rubric: Option<String>,
    /// `tool-call`: the tool's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `tool-call`: arguments the call must contain (recursive object subset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    /// `command`: the argv of a custom scorer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Judge model override (default: the suite's judge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
    /// `command`: time limit in milliseconds (default 30000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Every assertion type, as written (each also accepts a `not-` prefix).
pub const ASSERTION_TYPES: &[&str] = &[
    "equals",
    "contains",
    "icontains",
    "contains-any",
    "contains-all",
    "icontains-any",
    "icontains-all",
    "starts-with",
    "regex",
    "is-json",
    "json-schema",
    "json-path",
    "is-refusal",
    "word-count",
    "char-count",
    "levenshtein",
    "rouge-l",
    "latency",
    "cost",
    "tokens",
    "tool-call",
    "llm-rubric",
    "factuality",
    "groundedness",
    "command",
];

pub const DEFAULT_LEVENSHTEIN_THRESHOLD: f64 = 0.8;
pub const DEFAULT_ROUGE_L_THRESHOLD: f64 = 0.5;
pub const DEFAULT_JUDGE_THRESHOLD: f64 = 0.7;
pub const DEFAULT_COMMAND_THRESHOLD: f64 = 0.5;
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 30_000;

/// A validated assertion, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Assertion {
    pub kind: AssertionKind,
    pub negate: bool,
    pub weight: f64,
    pub metric: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainsMode {
    Any,
    All,
}

#[derive(Debug, Clone)]
pub enum AssertionKind {
    /// `None`: compare with the case's `expected`.
    Equals(Option<Value>),
    Contains {
        values: Vec<String>,
        mode: ContainsMode,
        case_insensitive: bool,
    },
    StartsWith(String),
    Regex(Regex),
    IsJson,
    JsonSchema(Box<jsonschema::Validator>),
    /// `expected: None`: the query must match at least one node.
    JsonPath {
        path: JsonPath,
        expected: Option<Value>,
    },
    IsRefusal,
    WordCount {
        min: Option<u64>,
        max: Option<u64>,
    },
    CharCount {
        min: Option<u64>,
        max: Option<u64>,
    },
    /// `expected: None`: compare with the case's `expected`.
    Levenshtein {
        threshold: f64,
        expected: Option<String>,
    },
    RougeL {
        threshold: f64,
        expected: Option<String>,
    },
    LatencyMs(u64),
    CostUsd(Nanos),
    /// A maximum of output tokens.
    Tokens(u64),
    ToolCall {
        name: String,
        arguments: Option<Value>,
    },
    LlmRubric {
        rubric: String,
        threshold: f64,
        judge: Option<String>,
    },
    Factuality {
        threshold: f64,
        judge: Option<String>,
        expected: Option<String>,
    },
    Groundedness {
        threshold: f64,
        judge: Option<String>,
    },
    Command {
        argv: Vec<String>,
        timeout: Duration,
        threshold: f64,
    },
}

impl AssertionKind {
    /// The canonical type name (aliases such as `contains-all` map to `contains`).
    pub fn type_name(&self) -> &'static str {
        match self {
            AssertionKind::Equals(_) => "equals",
            AssertionKind::Contains {
                case_insensitive: true,
                ..
            } => "icontains",
            AssertionKind::Contains { .. } => "contains",
            AssertionKind::StartsWith(_) => "starts-with",
            AssertionKind::Regex(_) => "regex",
            AssertionKind::IsJson => "is-json",
            AssertionKind::JsonSchema(_) => "json-schema",
            AssertionKind::JsonPath { .. } => "json-path",
            AssertionKind::IsRefusal => "is-refusal",
            AssertionKind::WordCount { .. } => "word-count",
            AssertionKind::CharCount { .. } => "char-count",
            AssertionKind::Levenshtein { .. } => "levenshtein",
            AssertionKind::RougeL { .. } => "rouge-l",
            AssertionKind::LatencyMs(_) => "latency",
            AssertionKind::CostUsd(_) => "cost",
            AssertionKind::Tokens(_) => "tokens",
            AssertionKind::ToolCall { .. } => "tool-call",
            AssertionKind::LlmRubric { .. } => "llm-rubric",
            AssertionKind::Factuality { .. } => "factuality",
            AssertionKind::Groundedness { .. } => "groundedness",
            AssertionKind::Command { .. } => "command",
        }
    }

    /// Whether this assertion reads what the call produced (and so fails when it failed);
    /// latency, cost and tokens are measured on failed calls too.
    pub fn reads_output(&self) -> bool {
        !matches!(
            self,
            AssertionKind::LatencyMs(_) | AssertionKind::CostUsd(_) | AssertionKind::Tokens(_)
        )
    }
}

impl Assertion {
    /// The name results are reported under: the metric name when set, else the type
    /// (`not-contains` when negated).
    pub fn display_name(&self) -> String {
        match &self.metric {
            Some(m) => m.clone(),
            None if self.negate => format!("not-{}", self.kind.type_name()),
            None => self.kind.type_name().to_string(),
        }
    }

    /// Whether evaluating this assertion calls the judge model.
    pub fn needs_judge(&self) -> bool {
        matches!(
            self.kind,
            AssertionKind::LlmRubric { .. }
                | AssertionKind::Factuality { .. }
                | AssertionKind::Groundedness { .. }
        )
    }
}
