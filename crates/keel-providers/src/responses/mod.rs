//! OpenAI's Responses API, served to clients (`POST /v1/responses`).
//!
//! [`responses_request_to_chat`] turns a Responses body (with the stored conversation of
//! its `previous_response_id`) into a canonical request, routed like any chat call to any
//! provider; [`chat_response_to_response`] and [`ChunksToResponseEvents`] answer in the
//! Responses format, whole or as its typed event stream; [`output_to_messages`] turns an
//! answer back into the chat turn the next request continues from.
//!
//! `wire` holds the serde types.

mod inbound;
mod inbound_stream;
pub mod wire;

pub use inbound::{
    chat_response_to_response, finish_status, new_id, output_to_messages, response_shell,
    responses_request_to_chat, Translated,
};
pub use inbound_stream::{to_sse, ChunksToResponseEvents};
pub use wire::{OutputItem, ResponseObject, ResponseUsage, ResponsesRequest};

#[cfg(test)]
mod inbound_tests;
