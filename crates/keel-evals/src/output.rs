//! What the target produced for one case: the thing assertions score.

use keel_core::chat::ToolCall;
use keel_core::money::Nanos;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaseOutput {
    /// The reply text (empty when the call failed or only called tools).
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub latency_ms: u64,
    /// `None` when unpriced or failed; never 0 for "unknown".
    pub cost: Option<Nanos>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// The error, when the call failed (assertions on a failed call fail).
    pub error: Option<String>,
}
