//! Provider adapters: one trait, one enum of kinds, one module per wire format.
//!
//! Every adapter takes and returns Keel's canonical (OpenAI-shaped) types from
//! `keel_core::chat`. The request an adapter receives already carries the pinned
//! upstream model id in `model`. Streaming adapters must always obtain usage from the
//! upstream (so streamed calls can be priced) and yield it on a final chunk.

pub mod anthropic;
pub mod error;
pub mod mock;
pub mod openai;
pub mod sse;

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;
use keel_core::chat::{ChatChunk, ChatRequest, ChatResponse};

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
}

/// The provider kinds Keel knows, dispatching to the trait.
pub enum Provider {
    OpenAi(openai::OpenAiProvider),
    Anthropic(anthropic::AnthropicProvider),
    Mock(mock::MockProvider),
}

impl Provider {
    fn inner(&self) -> &dyn ChatProvider {
        match self {
            Provider::OpenAi(p) => p,
            Provider::Anthropic(p) => p,
            Provider::Mock(p) => p,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Provider::OpenAi(_) => "openai",
            Provider::Anthropic(_) => "anthropic",
            Provider::Mock(_) => "mock",
        }
    }

    pub async fn complete(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        self.inner().complete(req).await
    }

    pub async fn stream(&self, req: ChatRequest) -> Result<ChunkStream, ProviderError> {
        self.inner().stream(req).await
    }
}
