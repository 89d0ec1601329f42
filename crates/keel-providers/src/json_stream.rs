//! Upstreams whose answers are JSON objects — whole, or one per SSE event (the Responses
//! API, Gemini) — read into canonical answers and chunk streams. Each wire format
//! supplies its translation as an [`EventTranslator`]; the reading, the framing errors
//! and the stream's state machine are written once here.

use futures::StreamExt;
use keel_core::chat::ChatChunk;
use serde_json::Value;

use crate::client::Response;
use crate::sse;
use crate::{ChunkStream, ProviderError};

/// A wire format's streamed events → canonical chunks.
pub trait EventTranslator: Send + 'static {
    /// The chunks one event's JSON makes, or the provider's error it reports.
    fn push(&mut self, event: &Value) -> Result<Vec<ChatChunk>, ProviderError>;
    /// Stop reading: the terminal event was read.
    fn done(&self) -> bool;
    /// The body ended before `done`: one last chunk to yield (a usage chunk), nothing,
    /// or the error (a stream cut).
    fn end(&mut self) -> Result<Option<ChatChunk>, ProviderError>;
}

/// A whole answer's JSON body; `what` names the format in the error.
pub async fn json_body(resp: Response, what: &str) -> Result<Value, ProviderError> {
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ProviderError::StreamCut(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ProviderError::InvalidResponse(format!(
            "not {what} ({e}): {}",
            sse::truncate(&String::from_utf8_lossy(&bytes), 200)
        ))
    })
}

/// The chunks of an event stream of JSON objects, translated by `t`.
pub fn json_event_stream<T: EventTranslator>(resp: Response, t: T) -> ChunkStream {
    let events = Box::pin(sse::events(resp));
    // State: the events, the translator, chunks made but not yet yielded (in reverse);
    // None once a terminal item was yielded.
    let state = (events, t, Vec::new());
    let stream = futures::stream::unfold(Some(state), |state| async move {
        let (mut events, mut t, mut ready) = state?;
        loop {
            if let Some(chunk) = ready.pop() {
                return Some((Ok(chunk), Some((events, t, ready))));
            }
            if t.done() {
                return None;
            }
            let ev = match events.next().await {
                None => {
                    return match t.end() {
                        Ok(Some(last)) => Some((Ok(last), None)),
                        Ok(None) => None,
                        Err(e) => Some((Err(e), None)),
                    }
                }
                Some(Err(e)) => return Some((Err(e), None)),
                Some(Ok(ev)) => ev,
            };
            let data = ev.data.trim();
            if data.is_empty() || data == "[DONE]" {
                continue;
            }
            let parsed = serde_json::from_str::<Value>(data).map_err(|e| {
                ProviderError::InvalidResponse(format!(
                    "stream event is not JSON ({e}): {}",
                    sse::truncate(data, 200)
                ))
            });
            match parsed.and_then(|v| t.push(&v)) {
                Ok(mut chunks) => {
                    chunks.reverse();
                    ready = chunks;
                }
                Err(e) => return Some((Err(e), None)),
            }
        }
    });
    Box::pin(stream)
}
