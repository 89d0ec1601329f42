//! Provider adapters: one trait, one enum of kinds, one module per wire format.
//!
//! Every adapter takes and returns Keel's canonical (OpenAI-shaped) types from
//! `keel_core::chat`. The request an adapter receives already carries the pinned
//! upstream model id in `model`. Streaming adapters must always obtain usage from the
//! upstream (so streamed calls can be priced) and yield it on a final chunk.

pub mod anthropic;
pub mod client;
pub mod error;
pub mod gemini;
pub mod json_stream;
pub mod mock;
pub mod openai;
pub mod responses;
pub mod sse;
#[cfg(test)]
mod test_ports;

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;
use keel_core::chat::{ChatChunk, ChatRequest, ChatResponse};
use keel_core::embeddings::{EmbeddingRequest, EmbeddingResponse};

pub use error::ProviderError;

/// A stream of canonical chunks. The adapter yields a final chunk with `usage` set
/// (and empty `choices`) whenever the upstream reported usage; the stream ends after it.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<ChatChunk, ProviderError>> + Send>>;

/// One upstream API.
#[async_trait]
pub trait ChatProvider: Send + Sync {
    /// A whole (non-streamed) completion.
    async fn complete(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError>;
    /// A streamed completion. Errors before the first chunk come back as `Err`;
    /// errors after it come through the stream.
    async fn stream(&self, req: ChatRequest) -> Result<ChunkStream, ProviderError>;
    /// Embeddings (`POST /v1/embeddings`), for providers that offer them.
    async fn embed(&self, _req: EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        Err(ProviderError::Unsupported(
            "this provider has no embeddings API in Keel (use an openai, azure, gemini or mock provider)"
                .into(),
        ))
    }
    /// Whether embeddings answers carry token counts (the gateway estimates them when not).
    fn reports_embedding_usage(&self) -> bool {
        true
    }
}

/// A whole answer, with the body it was decoded from when that body is an OpenAI chat
/// completion. A client of Keel's OpenAI endpoint is sent those bytes as they came
/// when nothing on the way rewrote the answer, instead of the answer serialized again
/// (~5k instructions a call, `bench/instructions.sh`).
pub struct Completed {
    pub resp: ChatResponse,
    /// The upstream's body, byte for byte; `None` from providers of other wire formats.
    pub wire: Option<bytes::Bytes>,
}

/// The provider kinds Keel knows, dispatching to the trait.
pub enum Provider {
    OpenAi(openai::OpenAiProvider),
    /// Azure OpenAI (deployment URLs, `api-version`, `api-key`): the OpenAI wire format.
    Azure(openai::OpenAiProvider),
    Anthropic(anthropic::AnthropicProvider),
    /// Google's Gemini API (`generateContent`).
    Gemini(gemini::GeminiProvider),
    Mock(mock::MockProvider),
}

impl Provider {
    fn inner(&self) -> &dyn ChatProvider {
        match self {
            Provider::OpenAi(p) | Provider::Azure(p) => p,
            Provider::Anthropic(p) => p,
            Provider::Gemini(p) => p,
            Provider::Mock(p) => p,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Provider::OpenAi(_) => "openai",
            Provider::Azure(_) => "azure",
            Provider::Anthropic(_) => "anthropic",
            Provider::Gemini(_) => "gemini",
            Provider::Mock(_) => "mock",
        }
    }

    pub async fn complete(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        self.inner().complete(req).await
    }

    /// [`Provider::complete`], keeping the upstream's body when it is already in
    /// OpenAI's chat format ([`Completed::wire`]).
    pub async fn complete_wire(&self, req: ChatRequest) -> Result<Completed, ProviderError> {
        match self {
            Provider::OpenAi(p) | Provider::Azure(p) => p.complete_wire(req).await,
            _ => Ok(Completed {
                resp: self.inner().complete(req).await?,
                wire: None,
            }),
        }
    }

    pub async fn stream(&self, req: ChatRequest) -> Result<ChunkStream, ProviderError> {
        self.inner().stream(req).await
    }

    pub async fn embed(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        self.inner().embed(req).await
    }

    pub fn reports_embedding_usage(&self) -> bool {
        self.inner().reports_embedding_usage()
    }
}
