//! The worst case of a call, before it is made: input tokens counted from the request,
//! output tokens at the most the request allows, priced at the model's price. A hard
//! budget reserves this much at admission, so concurrent calls cannot overspend it.
//!
//! Input tokens count every part a provider bills — text, tool calls and their
//! arguments, tool results, images by the provider's published formula at the worst case
//! of their detail level, other parts as their JSON (`keel_registry`'s `billed`) — and
//! the request's `tools` and `response_format` as their JSON. They are exact for the text
//! of OpenAI-family models (tiktoken, via `keel-registry`); for every other model they
//! are a `cl100k_base` count raised by `[limits] input_margin` (25% by default). Output
//! tokens are `max_completion_tokens`, else `max_tokens`, else
//! `[limits] output_reserve_tokens`, times `n`.
//!
//! The same input count prices a stream that ended without the provider's usage
//! ([`input_tokens`]; the relay marks such a trace `usage_estimated`).

use keel_core::chat::{ChatRequest, Usage};
use keel_core::money::Nanos;
use keel_core::prices::ModelPrice;
use keel_registry::{Encoding, ImageRule};

/// A call's worst case in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// True when the input count is the model's own tokenizer's.
    pub exact: bool,
    /// True when the request set no output limit (`output_tokens` is the reserve).
    pub output_defaulted: bool,
}

impl Estimate {
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// The worst-case cost at `price`.
    pub fn cost(&self, price: &ModelPrice) -> Nanos {
        price.cost(&Usage::new(self.input_tokens, self.output_tokens))
    }
}

/// Count `req` (already rendered, if it was a function call) for `upstream_model`.
pub fn estimate(
    req: &ChatRequest,
    upstream_model: &str,
    output_reserve: u32,
    input_margin: f64,
) -> Estimate {
    let (input, exact) = input_tokens(req, upstream_model, input_margin);
    let asked = req.max_completion_tokens.or(req.max_tokens);
    let per_choice = u64::from(asked.unwrap_or(output_reserve));
    let n = u64::from(req.n.unwrap_or(1).max(1));
    Estimate {
        input_tokens: input,
        output_tokens: per_choice.saturating_mul(n),
        exact,
        output_defaulted: asked.is_none(),
    }
}

/// The input tokens `req` is billed for on `upstream_model` (raised by `input_margin`
/// when the count is not the model's own tokenizer's), and whether the count is exact.
pub fn input_tokens(req: &ChatRequest, upstream_model: &str, input_margin: f64) -> (u64, bool) {
    let enc = Encoding::for_model(upstream_model);
    let mut input = enc.count_messages_with(&req.messages, ImageRule::for_model(upstream_model));
    if let Some(tools) = &req.tools {
        for t in tools {
            if let Ok(v) = serde_json::to_value(t) {
                input += enc.count_json(&v);
            }
        }
    }
    if let Some(rf) = &req.response_format {
        input += enc.count_json(rf);
    }
    if !enc.is_exact() {
        input = (input as f64 * (1.0 + input_margin)).ceil() as u64;
    }
    (input, enc.is_exact())
}

/// An embeddings request's reservation: the input tokens of every input (raised by
/// `input_margin` when not the model's own tokenizer), no output.
pub fn embedding_estimate(inputs: &[String], upstream_model: &str, input_margin: f64) -> Estimate {
    let enc = Encoding::for_model(upstream_model);
    let mut input: u64 = inputs.iter().map(|t| enc.count_text(t)).sum();
    if !enc.is_exact() {
        input = (input as f64 * (1.0 + input_margin)).ceil() as u64;
    }
    Estimate {
        input_tokens: input,
        output_tokens: 0,
        exact: enc.is_exact(),
        output_defaulted: false,
    }
}

/// The output tokens of text a model produced (a stream cut before its usage arrived).
pub fn output_tokens(text: &str, upstream_model: &str) -> u64 {
    Encoding::for_model(upstream_model).count_text(text)
}

/// Give a request with no output limit the reserve as its limit, so the reservation is
/// a true worst case. Reasoning models take `max_completion_tokens`; others `max_tokens`,
/// which every OpenAI-compatible server and Anthropic understand.
pub fn cap_output(req: &mut ChatRequest, upstream_model: &str, tokens: u32) {
    if req.max_completion_tokens.is_some() || req.max_tokens.is_some() {
        return;
    }
    let m = upstream_model.to_ascii_lowercase();
    let m = m.rsplit('/').next().unwrap_or(&m);
    let reasoning = ["o1", "o3", "o4", "gpt-5"].iter().any(|p| m.starts_with(p));
    if reasoning {
        req.max_completion_tokens = Some(tokens);
    } else {
        req.max_tokens = Some(tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> ChatRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn exact_for_openai_models_with_a_margin_elsewhere() {
        let r = req(serde_json::json!({"model": "m", "max_tokens": 100, "n": 2,
            "messages": [{"role": "user", "content": "Hello, world!"}]}));
        let gpt = estimate(&r, "gpt-4o-mini", 4096, 0.25);
        assert!(gpt.exact);
        // 3 framing + "user" 1 + "Hello, world!" 4 + 3 primer.
        assert_eq!(gpt.input_tokens, 11);
        assert_eq!(gpt.output_tokens, 200);
        let other = estimate(&r, "claude-sonnet-4-5", 4096, 0.25);
        assert!(!other.exact);
        assert_eq!(other.input_tokens, 14); // ceil(11 * 1.25)
        let price = ModelPrice {
            input_per_mtok: Nanos(1_000_000_000),
            output_per_mtok: Nanos(2_000_000_000),
            cached_input_per_mtok: None,
        };
        // 11 × $1/M + 200 × $2/M
        assert_eq!(gpt.cost(&price), Nanos(11_000 + 400_000));
    }

    #[test]
    fn tool_call_arguments_and_images_are_reserved_like_the_text_they_are_billed_as() {
        let words = "wire the refund to account ".repeat(8_000); // 40k words
        let price = ModelPrice {
            input_per_mtok: Nanos(2_500_000_000), // gpt-4o: $2.50 / M input
            output_per_mtok: Nanos(10_000_000_000),
            cached_input_per_mtok: None,
        };
        let as_text = req(serde_json::json!({"model": "m", "max_tokens": 1,
            "messages": [{"role": "user", "content": words}]}));
        let as_call = req(
            serde_json::json!({"model": "m", "max_tokens": 1, "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "pay", "arguments": words}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"}]}),
        );
        let text = estimate(&as_text, "gpt-4o", 4096, 0.25);
        let call = estimate(&as_call, "gpt-4o", 4096, 0.25);
        assert!(
            call.input_tokens >= text.input_tokens,
            "{call:?} < {text:?}"
        );
        // Both are refused by a $0.01 budget: 40k words are ~$0.10 of input.
        let budget = Nanos(10_000_000);
        assert!(text.cost(&price).0 > budget.0 && call.cost(&price).0 > budget.0);

        let image = req(
            serde_json::json!({"model": "m", "max_tokens": 1, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"},
             {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", "A".repeat(200_000))}}]}]}),
        );
        let plain = req(serde_json::json!({"model": "m", "max_tokens": 1,
            "messages": [{"role": "user", "content": "hi"}]}));
        let delta = |m: &str| {
            estimate(&image, m, 0, 0.0).input_tokens - estimate(&plain, m, 0, 0.0).input_tokens
        };
        assert_eq!(delta("gpt-4o"), 85 + 170 * 8);
        assert_eq!(delta("gpt-4o-mini"), 2_833 + 5_667 * 8);
        assert_eq!(delta("claude-sonnet-4-5"), 1_600);
    }

    #[test]
    fn an_unlimited_request_reserves_the_default_and_gets_it_as_its_cap() {
        let mut r = req(serde_json::json!({"model": "m",
            "messages": [{"role": "user", "content": "hi"}]}));
        let e = estimate(&r, "mock-1", 512, 0.0);
        assert!(e.output_defaulted);
        assert_eq!(e.output_tokens, 512);
        cap_output(&mut r, "mock-1", 512);
        assert_eq!(r.max_tokens, Some(512));
        let mut o = req(serde_json::json!({"model": "m",
            "messages": [{"role": "user", "content": "hi"}]}));
        cap_output(&mut o, "o3-mini", 512);
        assert_eq!((o.max_tokens, o.max_completion_tokens), (None, Some(512)));
    }
}
