//! The OpenAI-compatible adapter: OpenAI itself, Azure OpenAI's v1 API, vLLM, Ollama,
//! Together, and Keel's own mock server all speak this wire format.
//!
//! Canonical types *are* this wire format, so the request goes out as-is (with the
//! pinned upstream model). Streams always ask for usage so that they can be priced.

use async_trait::async_trait;
use futures::StreamExt;
use keel_core::chat::{ChatChunk, ChatRequest, ChatResponse, StreamOptions};
use serde_json::Value;

use crate::sse::{self, without_url};
use crate::{ChatProvider, ChunkStream, ProviderError};

pub struct OpenAiProvider {
    client: reqwest::Client,
    /// Parsed once: parsing (with IDNA) per request showed up in profiles.
    url: Result<reqwest::Url, String>,
    api_key: Option<String>,
}

impl OpenAiProvider {
    /// `base_url` is the API root, e.g. `https://api.openai.com/v1`.
    pub fn new(client: reqwest::Client, base_url: &str, api_key: Option<String>) -> Self {
        OpenAiProvider {
            client,
            url: reqwest::Url::parse(&format!(
                "{}/chat/completions",
                base_url.trim_end_matches('/')
            ))
            .map_err(|e| format!("invalid base_url: {e}")),
            api_key,
        }
    }

    async fn send(&self, req: &ChatRequest) -> Result<reqwest::Response, ProviderError> {
        let url = self.url.clone().map_err(ProviderError::Unsupported)?;
        let mut builder = self.client.post(url).json(req);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        let resp = builder
            .send()
            .await
            .map_err(|e| ProviderError::Connect(without_url(&e)))?;
        if !resp.status().is_success() {
            return Err(sse::status_error(resp, openai_error).await);
        }
        Ok(resp)
    }
}

/// `{"error": {"message": .., "type": .., "code": ..}}` → (message, code or type).
pub fn openai_error(body: &Value) -> Option<(String, Option<String>)> {
    let err = body.get("error")?;
    let message = match err {
        Value::String(s) => s.clone(),
        _ => err.get("message")?.as_str()?.to_string(),
    };
    let code = err
        .get("code")
        .and_then(Value::as_str)
        .or_else(|| err.get("type").and_then(Value::as_str))
        .map(str::to_string);
    Some((message, code))
}

#[async_trait]
impl ChatProvider for OpenAiProvider {
    async fn complete(&self, mut req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        req.stream = false;
        req.stream_options = None;
        let resp = self.send(&req).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ProviderError::StreamCut(without_url(&e)))?;
        serde_json::from_slice::<ChatResponse>(&bytes).map_err(|e| {
            ProviderError::InvalidResponse(format!(
                "not a chat completion ({e}): {}",
                sse::truncate(&String::from_utf8_lossy(&bytes), 200)
            ))
        })
    }

    async fn stream(&self, mut req: ChatRequest) -> Result<ChunkStream, ProviderError> {
        req.stream = true;
        let mut opts = req.stream_options.take().unwrap_or_default();
        opts.include_usage = Some(true);
        req.stream_options = Some(StreamOptions { ..opts });
        let resp = self.send(&req).await?;
        // A 2xx that is not an event stream (an HTML error page from a proxy, a JSON
        // body from a server that ignored `stream`) is an invalid response, not a cut.
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("text/event-stream")
            .to_ascii_lowercase();
        if !content_type.contains("text/event-stream") {
            let text = resp.text().await.unwrap_or_default();
            return Err(ProviderError::InvalidResponse(format!(
                "expected an event stream, got `{content_type}`: {}",
                sse::truncate(&text, 200)
            )));
        }
        let events = Box::pin(sse::events(resp));
        // State: the event source, or None once a terminal item was yielded.
        let stream = futures::stream::unfold(Some(events), |state| async move {
            let mut events = state?;
            loop {
                let Some(ev) = events.next().await else {
                    let cut = ProviderError::StreamCut("stream ended before data: [DONE]".into());
                    return Some((Err(cut), None));
                };
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => return Some((Err(e), None)),
                };
                let data = ev.data.trim();
                if data == "[DONE]" {
                    return None;
                }
                if data.is_empty() {
                    continue;
                }
                return match parse_chunk(data) {
                    Ok(chunk) => Some((Ok(chunk), Some(events))),
                    Err(e) => Some((Err(e), None)),
                };
            }
        });
        Ok(Box::pin(stream))
    }
}

/// One `data:` payload: a chunk, or an in-stream error object. Public so the fuzz
/// targets (`fuzz/`) read a stream the way [`OpenAiProvider`] does.
pub fn parse_chunk(data: &str) -> Result<ChatChunk, ProviderError> {
    match serde_json::from_str::<ChatChunk>(data) {
        Ok(chunk) => Ok(chunk),
        Err(e) => match serde_json::from_str::<Value>(data)
            .ok()
            .as_ref()
            .and_then(openai_error)
        {
            Some((message, code)) => Err(ProviderError::Status {
                status: 500,
                message,
                code,
                body: None,
                retry_after: None,
            }),
            None => Err(ProviderError::InvalidResponse(format!(
                "stream chunk is not a chat.completion.chunk ({e}): {}",
                sse::truncate(data, 200)
            ))),
        },
    }
}
