//! The trace record: one per request, success or failure, streamed or not.
//!
//! The gateway fills it in as the request moves through the pipeline and hands it to
//! the trace writer when the response is complete (or the client went away); the store
//! persists it; `keel traces` and `keel report` read it back.

use serde::{Deserialize, Serialize};

use crate::money::Nanos;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceStatus {
    /// The whole response reached the client.
    Ok,
    /// Keel or the upstream answered with an error.
    Error,
    /// The client disconnected before the response was complete.
    ClientDisconnected,
}

impl TraceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TraceStatus::Ok => "ok",
            TraceStatus::Error => "error",
            TraceStatus::ClientDisconnected => "client_disconnected",
        }
    }

    pub fn parse(s: &str) -> Option<TraceStatus> {
        match s {
            "ok" => Some(TraceStatus::Ok),
            "error" => Some(TraceStatus::Error),
            "client_disconnected" => Some(TraceStatus::ClientDisconnected),
            _ => None,
        }
    }
}

/// Where a call came from. Reports and budgets count live traffic only; eval and
/// replay calls are traced the same way but kept apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    #[default]
    Live,
    Eval,
    Replay,
    /// A function's shadow variant, mirroring a live call (`parent_id`).
    Shadow,
    /// An online eval's judge grading a live call (`parent_id`): budgeted by the online
    /// eval, never counted as production traffic.
    Judge,
    /// A scheduled canary eval (`[[canaries]]`) run by `keel serve`.
    Canary,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Live => "live",
            Origin::Eval => "eval",
            Origin::Replay => "replay",
            Origin::Shadow => "shadow",
            Origin::Judge => "judge",
            Origin::Canary => "canary",
        }
    }

    pub fn parse(s: &str) -> Option<Origin> {
        match s {
            "live" => Some(Origin::Live),
            "eval" => Some(Origin::Eval),
            "replay" => Some(Origin::Replay),
            "shadow" => Some(Origin::Shadow),
            "judge" => Some(Origin::Judge),
            "canary" => Some(Origin::Canary),
            _ => None,
        }
    }
}

/// One try of an upstream call, kept when a call was retried or fell back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The configured model tried.
    pub model: String,
    pub provider: String,
    pub upstream_model: String,
    /// `ok`, or the error class (`upstream_rate_limit`, …).
    pub outcome: String,
    pub latency_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a guardrail check found and did on one request (checks that found nothing are
/// not recorded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardOutcome {
    /// The policy (`[guardrails.policies.NAME]`) and the check's name in it.
    pub policy: String,
    pub check: String,
    /// `input` or `output`.
    pub stage: String,
    /// `redact`, `block`, `log`, `strip` (a tool call removed), `retry` (output schema).
    pub action: String,
    /// Injection and leak checks: the score that was compared with the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// What matched, where: never the matched text itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<GuardEvidence>,
}

/// One match of a guardrail check: what it was and its byte offsets — in the message
/// at `message` (input) or in the output text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardEvidence {
    /// `email`, `card`, `ignore_previous`, `term`, `tool:NAME`…
    pub what: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<usize>,
    pub start: usize,
    pub end: usize,
}

/// Everything Keel knows about one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceRecord {
    /// `x-keel-request-id` (the caller's, or generated).
    pub id: String,
    /// Unix milliseconds when the request arrived.
    pub started_at_ms: i64,
    /// Which API the client spoke: `openai` or `anthropic`.
    pub api: String,
    pub endpoint: String,
    pub key_id: Option<String>,
    pub tenant: Option<String>,
    pub feature: Option<String>,
    pub user: Option<String>,
    pub session: Option<String>,
    pub tags: Vec<String>,
    /// The `model` the client asked for (a configured model name).
    pub model_requested: Option<String>,
    /// The configured provider that served it.
    pub provider: Option<String>,
    /// The pinned id Keel sent upstream.
    pub upstream_model: Option<String>,
    /// The model the provider says answered (often a dated snapshot).
    pub served_model: Option<String>,
    pub system_fingerprint: Option<String>,
    pub stream: bool,
    /// The request as received (JSON), unless capture is off.
    pub input: Option<String>,
    /// The output text (or the tool calls as JSON), unless capture is off.
    pub output: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    /// `None` when the call is unpriced (no known price) or no usage was obtained.
    pub cost: Option<Nanos>,
    /// True when tokens are known but the model has no price: never recorded as $0.
    pub unpriced: bool,
    pub latency_ms: u64,
    /// Time to the first streamed byte of content (streams only).
    pub ttft_ms: Option<u64>,
    pub status: TraceStatus,
    /// HTTP status Keel answered with.
    pub http_status: u16,
    pub error_class: Option<String>,
    pub error_message: Option<String>,
    pub finish_reason: Option<String>,
    /// The function the client called (`model = "support-answer"`), if any.
    pub function: Option<String>,
    /// The function's variant that served it.
    pub variant: Option<String>,
    /// The prompt the variant rendered, and its version.
    pub prompt_name: Option<String>,
    pub prompt_version: Option<i64>,
    /// The release (prompt version × pinned model × parameters × tools) that served it.
    pub release_id: Option<String>,
    /// Live traffic, or a call made by `keel eval` / `keel replay`.
    #[serde(default)]
    pub origin: Origin,
    /// Every attempt, in order, once the first one failed on a model with retries or
    /// fallbacks (the last is the one that answered, if any); empty when the first
    /// attempt answered or the model has no routing configured.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// `hit` or `miss` when the response cache was consulted.
    #[serde(default)]
    pub cache: Option<String>,
    /// On a cache hit: what the call cost when it was made (the spend avoided).
    #[serde(default)]
    pub saved_cost: Option<Nanos>,
    /// For a shadow call: the id of the live call it mirrored.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// What guardrail checks found and did, in order.
    #[serde(default)]
    pub guardrails: Vec<GuardOutcome>,
    /// W3C trace context: the trace this call belongs to (32 lowercase hex) — the
    /// caller's, from its `traceparent` header, or a new one when spans are exported.
    #[serde(default)]
    pub otel_trace_id: Option<String>,
    /// This call's own span id (16 lowercase hex), as exported.
    #[serde(default)]
    pub otel_span_id: Option<String>,
    /// The caller's span (from `traceparent`) that this call's span is a child of.
    #[serde(default)]
    pub otel_parent_span_id: Option<String>,
    /// True when tokens and cost are Keel's tokenizer estimate, not the provider's
    /// report: a stream cut (or ended) before its usage arrived.
    #[serde(default)]
    pub usage_estimated: bool,
}

impl TraceRecord {
    /// A blank record for a request that just arrived.
    pub fn new(id: String, started_at_ms: i64, api: &str, endpoint: &str) -> Self {
        TraceRecord {
            id,
            started_at_ms,
            api: api.to_string(),
            endpoint: endpoint.to_string(),
            key_id: None,
            tenant: None,
            feature: None,
            user: None,
            session: None,
            tags: Vec::new(),
            model_requested: None,
            provider: None,
            upstream_model: None,
            served_model: None,
            system_fingerprint: None,
            stream: false,
            input: None,
            output: None,
            input_tokens: None,
            output_tokens: None,
            cached_tokens: None,
            reasoning_tokens: None,
            cost: None,
            unpriced: false,
            latency_ms: 0,
            ttft_ms: None,
            status: TraceStatus::Ok,
            http_status: 200,
            error_class: None,
            error_message: None,
            finish_reason: None,
            function: None,
            variant: None,
            prompt_name: None,
            prompt_version: None,
            release_id: None,
            origin: Origin::Live,
            attempts: Vec::new(),
            cache: None,
            saved_cost: None,
            parent_id: None,
            guardrails: Vec::new(),
            otel_trace_id: None,
            otel_span_id: None,
            otel_parent_span_id: None,
            usage_estimated: false,
        }
    }
}
