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

    /// The request that asks for the continuation of `sent` (the text the client has),
    /// and the trailing whitespace of `sent` the prefill leaves out (Anthropic refuses a
    /// final assistant message that ends in whitespace; the relay drops it from the
    /// continuation). The output limit shrinks by an estimate of the tokens already
    /// produced (4 characters a token), so a continued answer stays near the limit the
    /// caller asked for.
    pub fn request(&self, sent: &str) -> (ChatRequest, String) {
        let mut req = self.req.clone();
        let prefill = sent.trim_end();
        if !prefill.is_empty() {
            req.messages.push(Message::text("assistant", prefill));
        }
        let produced = u32::try_from(sent.chars().count().div_ceil(4)).unwrap_or(u32::MAX);
        for limit in [&mut req.max_tokens, &mut req.max_completion_tokens] {
            if let Some(n) = limit.as_mut() {
                *n = n.saturating_sub(produced).max(1);
            }
        }
        (req, sent[prefill.len()..].to_string())
    }
}

/// Drop from the start of `text` what it repeats of `skip` (the whitespace the client
/// already has), consuming `skip` as it goes; once `text` has anything else, nothing more
/// is dropped (`skip` is cleared) — a continuation that does not repeat it is kept whole.
pub fn drop_repeated(text: &mut String, skip: &mut String) {
    let same: usize = text
        .chars()
        .zip(skip.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum();
    text.drain(..same);
    skip.drain(..same);
    if !text.is_empty() {
        skip.clear();
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
        let (again, ws) = r.request("Hello, wor");
        assert_eq!(again.messages.len(), 2);
        assert_eq!(again.messages[1].role, "assistant");
        assert_eq!(again.messages[1].text_content(), "Hello, wor");
        assert_eq!(ws, "");
        assert_eq!(
            r.request("").0.messages.len(),
            1,
            "nothing sent: the same request"
        );
        // A prefill never ends in whitespace; what it leaves out is handed back.
        let (again, ws) = r.request("Hello,\n ");
        assert_eq!(again.messages[1].text_content(), "Hello,");
        assert_eq!(ws, "\n ");
        assert_eq!(r.request(" \n").0.messages.len(), 1);
    }

    #[test]
    fn repeated_whitespace_is_dropped_across_chunks_and_only_once() {
        let mut skip = "\n\n".to_string();
        let mut a = "\n".to_string();
        drop_repeated(&mut a, &mut skip);
        assert_eq!((a.as_str(), skip.as_str()), ("", "\n"));
        let mut b = "\nNext".to_string();
        drop_repeated(&mut b, &mut skip);
        assert_eq!((b.as_str(), skip.as_str()), ("Next", ""));
        // Not repeated: kept whole, and nothing is dropped later.
        let mut skip = " ".to_string();
        let mut c = "word".to_string();
        drop_repeated(&mut c, &mut skip);
        assert_eq!((c.as_str(), skip.as_str()), ("word", ""));
        let mut skip = "\u{3000}".to_string();
        let mut d = "\u{3000}é".to_string();
        drop_repeated(&mut d, &mut skip);
        assert_eq!(d, "é");
    }

    #[test]
    fn the_output_limit_shrinks_by_what_was_already_produced() {
        let req = ChatRequest {
            messages: vec![Message::text("user", "hi")],
            max_tokens: Some(100),
            max_completion_tokens: Some(3),
            ..ChatRequest::default()
        };
        let r = Resume::new(req, "a", &[], Limits::default());
        let (again, _) = r.request(&"x".repeat(40));
        assert_eq!(again.max_tokens, Some(90));
        assert_eq!(
            again.max_completion_tokens,
            Some(1),
            "never below one token"
        );
    }
}
