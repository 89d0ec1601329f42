//! The worst case of a call, before it is made: input tokens counted from the request,
//! output tokens at the most the request allows, priced at the model's price. A hard
//! budget reserves this much at admission, so concurrent calls cannot overspend it.
//!
//! Input tokens are exact for OpenAI-family models (tiktoken, via `keel-registry`); for
//! every other model they are a `cl100k_base` count raised by `[limits] input_margin`
//! (25% by default). Tools and `response_format` count as their JSON. Image parts are not
//! counted. Output tokens are `max_completion_tokens`, else `max_tokens`, else
//! `[limits] output_reserve_tokens`, times `n`.

use keel_core::chat::{ChatRequest, Usage};
use keel_core::money::Nanos;
use keel_core::prices::ModelPrice;
use keel_registry::Encoding;

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
    let enc = Encoding::for_model(upstream_model);
    let mut input = enc.count_messages(&req.messages);
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
    let asked = req.max_completion_tokens.or(req.max_tokens);
    let per_choice = u64::from(asked.unwrap_or(output_reserve));
    let n = u64::from(req.n.unwrap_or(1).max(1));
    Estimate {
        input_tokens: input,
        output_tokens: per_choice.saturating_mul(n),
        exact: enc.is_exact(),
        output_defaulted: asked.is_none(),
    }
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
