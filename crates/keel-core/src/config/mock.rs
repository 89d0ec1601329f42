//! Settings of the built-in mock provider, shared by `kind = "mock"` providers in
//! `keel.toml` and by the `keel mock-provider` server (whose flags fill the same struct).

use serde::{Deserialize, Serialize};

/// How the mock provider behaves. Every field has a default that gives a fast,
/// fault-free, deterministic upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MockSettings {
    /// Added latency before the reply (whole reply, or before the first chunk).
    pub latency_ms: u64,
    /// Delay between streamed chunks.
    pub chunk_delay_ms: u64,
    /// When set, every reply is exactly this many completion tokens long.
    pub output_tokens: Option<u32>,
    /// Share of requests (0..=1) answered 429 with `Retry-After`.
    pub rate_429: f64,
    /// `Retry-After` seconds sent with injected 429s.
    pub retry_after_secs: u64,
    /// Share of requests answered 500.
    pub rate_500: f64,
    /// Share of requests that hang (never answer within any sane timeout).
    pub rate_timeout: f64,
    /// Share of streamed requests whose stream is cut half-way.
    pub rate_cut: f64,
    /// Seed of the fault-injection random source (replies themselves never depend on it).
    pub seed: u64,
    /// A TOML or JSON file of input→output rules (see the mock module docs).
    pub rules: Option<String>,
    /// The `system_fingerprint` replies carry (default `fp_mock`): change it to play a
    /// provider that changed the model behind a name.
    pub fingerprint: Option<String>,
}

impl Default for MockSettings {
    fn default() -> Self {
        MockSettings {
            latency_ms: 0,
            chunk_delay_ms: 0,
            output_tokens: None,
            rate_429: 0.0,
            retry_after_secs: 1,
            rate_500: 0.0,
            rate_timeout: 0.0,
            rate_cut: 0.0,
            seed: 42,
            rules: None,
            fingerprint: None,
        }
    }
}
