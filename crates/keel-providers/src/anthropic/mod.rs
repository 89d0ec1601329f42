//! Anthropic's Messages API, in both of Keel's roles.
//!
//! - **Inbound**: a client calls Keel's `POST /v1/messages` in Anthropic format.
//!   [`messages_request_to_chat`] turns the body into a canonical request, and
//!   [`chat_response_to_messages`] / [`ChunksToEvents`] answer in Anthropic format.
//! - **Upstream**: Keel calls a real Anthropic API for a canonical request.
//!   [`chat_request_to_messages`], [`messages_response_to_chat`] and [`EventsToChunks`]
//!   do the translation; [`AnthropicProvider`] does the HTTP.
//!
//! `wire` holds the serde types; `mapping` the correspondences both directions share.

mod inbound;
mod inbound_stream;
mod mapping;
mod provider;
mod upstream;
mod upstream_stream;
pub mod wire;

pub use inbound::{chat_response_to_messages, messages_request_to_chat};
pub use inbound_stream::{AnthropicSseEvent, ChunksToEvents};
pub use provider::AnthropicProvider;
pub use upstream::{chat_request_to_messages, messages_response_to_chat};
pub use upstream_stream::EventsToChunks;
pub use wire::{ErrorBody, MessagesRequest, MessagesResponse, StreamEvent};

/// A request that cannot be expressed in the other wire format. The message names the
/// offending field, e.g. `messages[2].content[0]: tool_result block without tool_use_id`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TranslateError {
    /// Where in the request, as a JSON path (`messages[2].content[0]`).
    pub path: String,
    /// What is wrong, and what to do when that is not obvious.
    pub message: String,
}

impl TranslateError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        TranslateError {
            path: path.into(),
            message: message.into(),
        }
    }
}
