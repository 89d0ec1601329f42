//! A dataset case: one JSON object per line of the suite's JSONL file.
//!
//! ```json
//! {"id": "refund-1", "variables": {"question": "..."}, "expected": "...",
//!  "context": "...", "metadata": {"topic": "billing"},
//!  "assert": [{"type": "icontains", "value": "refund"}]}
//! ```
//!
//! `variables` feed a function's or prompt's template; `input` (a string, or a list of
//! chat messages) is sent as the user turn instead, for targets without a prompt.

use keel_core::chat::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::assert::AssertionSpec;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Stable id (defaults to the 1-based line number as `line-N`).
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub variables: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<CaseInput>,
    /// The expected answer: text, or any JSON for structured outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    /// Reference material the answer must be grounded in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// Assertions for this case only, added to the suite's defaults.
    #[serde(default, rename = "assert", skip_serializing_if = "Vec::is_empty")]
    pub assertions: Vec<AssertionSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CaseInput {
    Text(String),
    Messages(Vec<Message>),
}

impl Case {
    /// The expected answer as text (a JSON string's content, else its JSON).
    pub fn expected_text(&self) -> Option<String> {
        self.expected.as_ref().map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}
