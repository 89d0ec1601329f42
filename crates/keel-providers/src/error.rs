//! What can go wrong talking to an upstream, classified so the gateway can map it once
//! to an HTTP status and the trace can record an error class.

use std::time::Duration;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The upstream answered with a non-success status. `message` is the provider's own
    /// error message (never our request or key); `body` is its parsed error body, if JSON.
    #[error("upstream returned {status}: {message}")]
    Status {
        status: u16,
        message: String,
        /// The provider's error `type`/`code`, when it sent one.
        code: Option<String>,
        body: Option<Value>,
        retry_after: Option<Duration>,
    },
    /// No answer (or no first token) within the deadline.
    #[error("upstream timed out after {0:?}")]
    Timeout(Duration),
    /// Could not connect, or the connection broke before a response arrived.
    #[error("could not reach upstream: {0}")]
    Connect(String),
    /// The upstream answered 2xx with something that is not the wire format.
    #[error("upstream sent an invalid response: {0}")]
    InvalidResponse(String),
    /// A stream ended (or broke) before its terminal event.
    #[error("upstream stream was cut: {0}")]
    StreamCut(String),
    /// The request cannot be expressed in this provider's wire format.
    #[error("request cannot be sent to this provider: {0}")]
    Unsupported(String),
}

impl ProviderError {
    /// A short, stable name for traces, metrics and reports.
    pub fn class(&self) -> &'static str {
        match self {
            ProviderError::Status { status, code, .. } => match *status {
                429 => "upstream_rate_limit",
                // Azure's content filter (`content_filter`), OpenAI's moderation refusal.
                400..=499
                    if matches!(
                        code.as_deref(),
                        Some("content_filter" | "content_policy_violation")
                    ) =>
                {
                    "upstream_content_policy"
                }
                400..=499 => "upstream_client_error",
                _ => "upstream_server_error",
            },
            ProviderError::Timeout(_) => "upstream_timeout",
            ProviderError::Connect(_) => "upstream_unreachable",
            ProviderError::InvalidResponse(_) => "upstream_invalid_response",
            ProviderError::StreamCut(_) => "upstream_stream_cut",
            ProviderError::Unsupported(_) => "unsupported_request",
        }
    }
}

/// Parse a `retry-after-ms` header value (Azure OpenAI): milliseconds.
pub fn parse_retry_after_ms(value: Option<&str>) -> Option<Duration> {
    value?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
}

/// Parse a `Retry-After` header value given in seconds (the HTTP-date form is rare
/// from LLM providers and is ignored).
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    let v = value?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}
