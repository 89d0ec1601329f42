//! An `openai` provider with `api = "responses"`: canonical requests go to
//! `{base_url}/responses` (translated by `upstream`), answers and event streams come back
//! as canonical ones. Auth, URLs and error bodies are the OpenAI provider's.

use futures::StreamExt;
use keel_core::chat::{ChatRequest, ChatResponse};
use serde_json::Value;

use super::upstream::{chat_request_to_responses, responses_to_chat};
use super::upstream_stream::ResponseEventsToChunks;
use crate::openai::{expect_event_stream, Op, OpenAiProvider};
use crate::sse::{self, without_url};
use crate::{ChunkStream, ProviderError};

impl OpenAiProvider {
    pub(crate) async fn complete_responses(
        &self,
        req: &ChatRequest,
    ) -> Result<ChatResponse, ProviderError> {
        let body = chat_request_to_responses(req, false)?;
        let resp = self
            .post(self.url_of(Op::Responses, &req.model)?, &body)
            .await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ProviderError::StreamCut(without_url(&e)))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ProviderError::InvalidResponse(format!(
                "not a Responses API response ({e}): {}",
                sse::truncate(&String::from_utf8_lossy(&bytes), 200)
            ))
        })?;
        responses_to_chat(&v)
    }

    pub(crate) async fn stream_responses(
        &self,
        req: &ChatRequest,
    ) -> Result<ChunkStream, ProviderError> {
        let body = chat_request_to_responses(req, true)?;
        let resp = self
            .post(self.url_of(Op::Responses, &req.model)?, &body)
            .await?;
        let resp = expect_event_stream(resp).await?;
        let events = Box::pin(sse::events(resp));
        let state = (events, ResponseEventsToChunks::default(), Vec::new());
        // State: the events, the translation, chunks made but not yet yielded (in
        // reverse); None once a terminal item was yielded.
        let stream = futures::stream::unfold(Some(state), |state| async move {
            let (mut events, mut machine, mut ready) = state?;
            loop {
                if let Some(chunk) = ready.pop() {
                    return Some((Ok(chunk), Some((events, machine, ready))));
                }
                if machine.finished() {
                    return None;
                }
                let ev = match events.next().await {
                    None => {
                        let cut = ProviderError::StreamCut(
                            "stream ended before response.completed".into(),
                        );
                        return Some((Err(cut), None));
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
                        "Responses event is not JSON ({e}): {}",
                        sse::truncate(data, 200)
                    ))
                });
                match parsed.and_then(|v| machine.push(&v)) {
                    Ok(mut chunks) => {
                        chunks.reverse();
                        ready = chunks;
                    }
                    Err(e) => return Some((Err(e), None)),
                }
            }
        });
        Ok(Box::pin(stream))
    }
}
