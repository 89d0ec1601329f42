//! Google's Gemini API (`kind = "gemini"`), as an upstream.
//!
//! [`chat_request_to_gemini`] turns a canonical request into a `generateContent` body;
//! [`gemini_to_chat`] and [`GeminiChunks`] read whole and streamed (`alt=sse`) answers
//! back, usage (cached and thinking tokens included) and safety blocks too;
//! [`GeminiProvider`] does the HTTP. Gemini's inbound shape is not served: clients call
//! Gemini models through the OpenAI or Anthropic surfaces.

mod provider;
mod request;
mod response;

pub use provider::GeminiProvider;
pub use request::chat_request_to_gemini;
pub use response::{gemini_error, gemini_to_chat, usage, GeminiChunks};

#[cfg(test)]
mod tests;
