//! The HTTP side of calling Anthropic: [`AnthropicProvider`] posts to `/messages`,
//! classifies failures into [`ProviderError`]s, and reads the SSE stream through
//! [`EventsToChunks`].
//!
//! The API key travels only in the `x-api-key` header; errors are built from the
//! provider's own message and transport errors that never carry the URL, so the key (or
//! credentials in a base URL) never reaches an error, a log or a trace.

use std::collections::VecDeque;
use std::pin::Pin;

use async_trait::async_trait;
use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use http::header::{HeaderName, HeaderValue};
use http::Uri;
use keel_core::chat::{ChatChunk, ChatRequest, ChatResponse};
use serde_json::Value;

use super::upstream::{chat_request_to_messages, messages_response_to_chat};
use super::upstream_stream::EventsToChunks;
use super::wire::{ErrorBody, MessagesRequest, MessagesResponse, StreamEvent, ANTHROPIC_VERSION};
use crate::client::{json_headers, parse_uri, HttpClient, HttpError, Response};
use crate::error::parse_retry_after;
use crate::{ChatProvider, ChunkStream, ProviderError};

/// How much of a non-JSON error body becomes the error message.
const ERROR_TEXT_LIMIT: usize = 500;

/// An Anthropic Messages API upstream.
#[derive(Clone)]
pub struct AnthropicProvider {
    client: HttpClient,
    /// Parsed once, not per request.
    messages_url: Result<Uri, String>,
    /// `anthropic-version`, `content-type` and `x-api-key`, built once.
    headers: Result<Vec<(HeaderName, HeaderValue)>, String>,
    api_key: Option<String>,
}

impl std::fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("messages_url", &self.messages_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AnthropicProvider {
    /// `base_url` is the API root including the version, e.g. `https://api.anthropic.com/v1`.
    pub fn new(client: HttpClient, base_url: String, api_key: Option<String>) -> Self {
        let base = base_url.trim_end_matches('/');
        let key = api_key
            .as_deref()
            .map(|k| (HeaderName::from_static("x-api-key"), k));
        let headers = json_headers(key).map(|mut headers| {
            headers.push((
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(ANTHROPIC_VERSION),
            ));
            headers
        });
        AnthropicProvider {
            client,
            messages_url: parse_uri(&format!("{base}/messages")),
            headers,
            api_key,
        }
    }

    /// POST the body; a non-2xx answer becomes `ProviderError::Status`.
    async fn post(&self, body: &MessagesRequest) -> Result<Response, ProviderError> {
        let json = serde_json::to_vec(body).map_err(|e| {
            ProviderError::Unsupported(format!("could not encode the request: {e}"))
        })?;
        let url = self
            .messages_url
            .clone()
            .map_err(ProviderError::Unsupported)?;
        let headers = self
            .headers
            .as_ref()
            .map_err(|e| ProviderError::Unsupported(e.clone()))?;
        let resp = self
            .client
            .post(url, headers, json)
            .await
            .map_err(connect_error)?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(status_error(resp).await)
        }
    }
}

fn translate(req: &ChatRequest) -> Result<MessagesRequest, ProviderError> {
    chat_request_to_messages(req).map_err(|e| ProviderError::Unsupported(e.to_string()))
}

fn connect_error(e: HttpError) -> ProviderError {
    ProviderError::Connect(e.to_string())
}

/// Read a non-2xx answer: Anthropic's `{"type":"error","error":{...}}` when it is one,
/// otherwise the start of the body as the message.
async fn status_error(resp: Response) -> ProviderError {
    let status = resp.status();
    let retry_after = parse_retry_after(
        resp.headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
    );
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str::<Value>(&text).ok();
    let parsed = body
        .as_ref()
        .and_then(|b| serde_json::from_value::<ErrorBody>(b.clone()).ok());
    let (message, code) = match parsed {
        Some(e) => (e.error.message, Some(e.error.kind)),
        None if text.trim().is_empty() => (
            status.canonical_reason().unwrap_or("no body").to_string(),
            None,
        ),
        None => (text.chars().take(ERROR_TEXT_LIMIT).collect(), None),
    };
    ProviderError::Status {
        status: status.as_u16(),
        message,
        code,
        body,
        retry_after,
    }
}

#[async_trait]
impl ChatProvider for AnthropicProvider {
    async fn complete(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let mut body = translate(&req)?;
        body.stream = None;
        let resp = self.post(&body).await?;
        let bytes = resp.bytes().await.map_err(connect_error)?;
        let parsed: MessagesResponse = serde_json::from_slice(&bytes).map_err(|e| {
            ProviderError::InvalidResponse(format!("not a Messages API response: {e}"))
        })?;
        Ok(messages_response_to_chat(parsed))
    }

    async fn stream(&self, req: ChatRequest) -> Result<ChunkStream, ProviderError> {
        let mut body = translate(&req)?;
        body.stream = Some(true);
        let resp = self.post(&body).await?;
        let mut reader = EventReader {
            events: Box::pin(resp.bytes_stream().eventsource()),
            translator: EventsToChunks::new(),
            pending: VecDeque::new(),
            ended: false,
        };
        // Read up to the first chunk, so that a failure before any output (an `error`
        // event in place of `message_start`, an empty body) is returned as `Err` and
        // can still be retried or fallen back from.
        match reader.next_chunk().await {
            Some(Err(e)) => return Err(e),
            Some(Ok(first)) => reader.pending.push_front(first),
            None => {}
        }
        let stream = futures::stream::unfold(reader, |mut reader| async move {
            reader.next_chunk().await.map(|item| (item, reader))
        });
        Ok(Box::pin(stream))
    }
}

type SseEvents = Pin<
    Box<dyn Stream<Item = Result<eventsource_stream::Event, EventStreamError<HttpError>>> + Send>,
>;

/// The state of one upstream stream being read.
struct EventReader {
    events: SseEvents,
    translator: EventsToChunks,
    pending: VecDeque<ChatChunk>,
    /// Nothing more will be read (terminal event, error or end of input).
    ended: bool,
}

impl EventReader {
    async fn next_chunk(&mut self) -> Option<Result<ChatChunk, ProviderError>> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some(Ok(chunk));
            }
            if self.ended {
                return None;
            }
            let event = match self.events.next().await {
                Some(Ok(event)) => event,
                Some(Err(e)) => {
                    self.ended = true;
                    return Some(Err(stream_error(e)));
                }
                None => {
                    self.ended = true;
                    return Some(Err(ProviderError::StreamCut(
                        "the event stream ended before message_stop".into(),
                    )));
                }
            };
            if event.data.trim().is_empty() {
                continue;
            }
            let parsed: StreamEvent = match serde_json::from_str(&event.data) {
                Ok(parsed) => parsed,
                Err(e) => {
                    self.ended = true;
                    return Some(Err(ProviderError::InvalidResponse(format!(
                        "undecodable `{}` event: {e}",
                        event.event
                    ))));
                }
            };
            match self.translator.push(parsed) {
                Ok(chunks) => {
                    self.pending.extend(chunks);
                    self.ended = self.translator.is_done();
                }
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// A broken connection cuts the stream; bytes that are not SSE are an invalid response.
fn stream_error(e: EventStreamError<HttpError>) -> ProviderError {
    match e {
        EventStreamError::Transport(e) => ProviderError::StreamCut(e.to_string()),
        EventStreamError::Utf8(e) => {
            ProviderError::InvalidResponse(format!("the event stream is not UTF-8: {e}"))
        }
        EventStreamError::Parser(e) => {
            ProviderError::InvalidResponse(format!("the event stream is not valid SSE: {e}"))
        }
    }
}

#[cfg(test)]
#[path = "provider_tests.rs"]
mod tests;
