//! Continuing a stream that failed after its first chunk reached the client.
//!
//! Why it exists: once bytes are on the wire a stream cannot be retried (the client
//! would read the start twice), so without this a mid-stream cut is an error the caller
//! sees. With `resume_streams = true` on the model first called, the relay asks the next
//! model of the chain for the *continuation*: the same request plus the text already
//! forwarded as a trailing assistant message (a prefill), and forwards only what follows.
//! The client reads one uninterrupted stream; the trace lists the cut attempt and the one
//! that finished it.
//!
//! What it owns: [`Resume`], the request and chain kept for that (only for streams of a
//! model that opted in, so other calls never clone their request), and the choice of
//! the next model.

use keel_core::chat::{ChatRequest, Message};
use keel_core::config::routing::MAX_STREAM_RESUMES;

use super::function::Limits;

/// What a relay needs to continue its stream elsewhere.
pub struct Resume {
    /// The request as routed (rendered, guarded), before any prefill.
    req: ChatRequest,
    /// The model first called, then its fallback chain, in order.
    chain: Vec<String>,
    pub limits: Limits,
    /// Continuations left for this stream.
    left: u32,
}

impl Resume {
    pub fn new(req: ChatRequest, first: &str, fallbacks: &[String], limits: Limits) -> Self {
        let mut chain = Vec::with_capacity(fallbacks.len() + 1);
        chain.push(first.to_string());
        chain.extend(fallbacks.iter().cloned());
        Resume {
            req,
            chain,
            limits,
            left: MAX_STREAM_RESUMES,
        }
    }

    /// Take one continuation: the model to ask after `serving` failed, and the chain
    /// left after it. The next model of the chain; the same model once the chain is used
    /// up (its own retries and deployments still apply). `None` when none is left.
    pub fn take(&mut self, serving: &str) -> Option<(String, Vec<String>)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let pos = self.chain.iter().position(|m| m == serving).unwrap_or(0);
        let rest = self.chain.get(pos + 1..).unwrap_or(&[]);
        Some(match rest.split_first() {
            Some((next, after)) => (next.clone(), after.to_vec()),
            None => (serving.to_string(), Vec::new()),
        })
    }

    /// The request that asks for the continuation of `sent` (the text the client has).
    pub fn request(&self, sent: &str) -> ChatRequest {
        let mut req = self.req.clone();
        if !sent.is_empty() {
            req.messages.push(Message::text("assistant", sent));
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_down_the_chain_then_on_the_last_model_a_bounded_number_of_times() {
        let chain = vec!["b".to_string(), "c".to_string()];
        let mut r = Resume::new(ChatRequest::default(), "a", &chain, Limits::default());
        assert_eq!(r.take("a"), Some(("b".into(), vec!["c".into()])));
        assert_eq!(r.take("c"), Some(("c".into(), vec![])));
        assert_eq!(r.take("c"), None, "at most MAX_STREAM_RESUMES");
        assert_eq!(MAX_STREAM_RESUMES, 2);
        // A serving model outside the chain (a function's variant) starts at its head.
        let mut r = Resume::new(ChatRequest::default(), "a", &chain, Limits::default());
        assert_eq!(r.take("zzz"), Some(("b".into(), vec!["c".into()])));
    }

    #[test]
    fn the_sent_text_becomes_a_trailing_assistant_message() {
        let req = ChatRequest {
            messages: vec![Message::text("user", "hi")],
            ..ChatRequest::default()
        };
        let r = Resume::new(req, "a", &[], Limits::default());
        let again = r.request("Hello, wor");
        assert_eq!(again.messages.len(), 2);
        assert_eq!(again.messages[1].role, "assistant");
        assert_eq!(again.messages[1].text_content(), "Hello, wor");
        assert_eq!(
            r.request("").messages.len(),
            1,
            "nothing sent: the same request"
        );
    }
}
