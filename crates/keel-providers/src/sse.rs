//! Reading upstream HTTP responses: error bodies and SSE event streams.
//!
//! Both wire formats stream as Server-Sent Events; `eventsource-stream` does the
//! framing (multi-line data, comments, CRLF) and this module turns an upstream response
//! (`client/`) into events or a classified `ProviderError`.

use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::client::Response;
use crate::error::{parse_retry_after, ProviderError};

/// One SSE event: its `event:` name (empty when absent) and its `data:` payload.
pub use eventsource_stream::Event as SseEvent;

/// How far into an error body we read for a message when it is not JSON.
const MAX_ERROR_TEXT: usize = 500;

/// Pulls `(message, code)` out of a provider's JSON error body.
pub type ErrorExtractor = fn(&Value) -> Option<(String, Option<String>)>;

/// Turn a non-success upstream response into `ProviderError::Status`, keeping the
/// provider's own message. `extract` pulls `(message, code)` out of a JSON error body.
pub async fn status_error(resp: Response, extract: ErrorExtractor) -> ProviderError {
    let status = resp.status().as_u16();
    // Azure sends `retry-after-ms` beside `Retry-After`: the finer one wins.
    let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok());
    let retry_after = crate::error::parse_retry_after_ms(header("retry-after-ms"))
        .or_else(|| parse_retry_after(header(http::header::RETRY_AFTER.as_str())));
    let text = match resp.text().await {
        Ok(t) => t,
        Err(e) => return ProviderError::Connect(e.to_string()),
    };
    let body: Option<Value> = serde_json::from_str(&text).ok();
    let (message, code) = body
        .as_ref()
        .and_then(extract)
        .unwrap_or_else(|| (truncate(&text, MAX_ERROR_TEXT), None));
    ProviderError::Status {
        status,
        message,
        code,
        body,
        retry_after,
    }
}

/// The SSE events of a streamed response body; transport errors become `StreamCut`.
pub fn events(
    resp: Response,
) -> impl Stream<Item = Result<SseEvent, ProviderError>> + Send + 'static {
    use eventsource_stream::Eventsource;
    resp.bytes_stream()
        .eventsource()
        .map(|item| item.map_err(|e| ProviderError::StreamCut(e.to_string())))
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
