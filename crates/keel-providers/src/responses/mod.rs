//! OpenAI's Responses API, in both of Keel's roles.
//!
//! - **Inbound** (`POST /v1/responses`): [`responses_request_to_chat`] turns a Responses
//!   body (with the stored conversation of its `previous_response_id`) into a canonical
//!   request, routed like any chat call to any provider; [`chat_response_to_response`]
//!   and [`ChunksToResponseEvents`] answer in the Responses format, whole or as its typed
//!   event stream; [`output_to_messages`] turns an answer back into the chat turn the
//!   next request continues from.
//! - **Upstream** (`api = "responses"` on an `openai` provider):
//!   [`chat_request_to_responses`], [`responses_to_chat`] and [`ResponseEventsToChunks`]
//!   call an upstream that speaks Responses for any canonical request.
//!
//! `wire` holds the serde types.

mod inbound;
mod inbound_stream;
mod provider;
mod upstream;
mod upstream_stream;
pub mod wire;

pub use inbound::{
    chat_response_to_response, finish_status, new_id, output_to_messages, response_shell,
    responses_request_to_chat, Translated,
};
pub use inbound_stream::{to_sse, ChunksToResponseEvents};
pub use upstream::{chat_request_to_responses, responses_to_chat};
pub use upstream_stream::ResponseEventsToChunks;
pub use wire::{OutputItem, ResponseObject, ResponseUsage, ResponsesRequest};

#[cfg(test)]
mod inbound_tests;
#[cfg(test)]
mod upstream_tests;
