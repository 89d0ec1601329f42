//! An `openai` provider with `api = "responses"`: canonical requests go to
//! `{base_url}/responses` (translated by `upstream`), answers and event streams come back
//! as canonical ones. Auth, URLs and error bodies are the OpenAI provider's.

use keel_core::chat::{ChatChunk, ChatRequest, ChatResponse};
use serde_json::Value;

use super::upstream::{chat_request_to_responses, responses_to_chat};
use super::upstream_stream::ResponseEventsToChunks;
use crate::json_stream::{json_body, json_event_stream, EventTranslator};
use crate::openai::{expect_event_stream, Op, OpenAiProvider};
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
        responses_to_chat(&json_body(resp, "a Responses API response").await?)
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
        Ok(json_event_stream(resp, ResponseEventsToChunks::default()))
    }
}

impl EventTranslator for ResponseEventsToChunks {
    fn push(&mut self, event: &Value) -> Result<Vec<ChatChunk>, ProviderError> {
        ResponseEventsToChunks::push(self, event)
    }

    fn done(&self) -> bool {
        self.finished()
    }

    fn end(&mut self) -> Result<Option<ChatChunk>, ProviderError> {
        Err(ProviderError::StreamCut(
            "stream ended before response.completed".into(),
        ))
    }
}
