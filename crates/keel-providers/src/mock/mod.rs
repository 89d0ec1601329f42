//! The built-in mock upstream: a deterministic fake LLM for tests, the quickstart, evals
//! and the benchmark. It runs in process ([`MockProvider`], `kind = "mock"`) or behind
//! HTTP (`keel mock-provider`, crate `keel-mock`); both answer through
//! [`MockServerState::respond`], so they behave the same.
//!
//! # Replies
//! The reply is a pure function of the request (model, messages, tools, `tool_choice`,
//! `response_format`, `max_tokens`, `stop`, `n`...), the settings and the rules — never
//! of time, order or the fault dice:
//! - text: `"Mock reply to: <last user message, directives removed, first 200 chars>"`;
//!   after a tool result (last message has role `tool`, and the request declares tools):
//!   `"Tool result received: <its content, first 100 chars>"`;
//! - a trailing assistant message is a prefill: the reply is what follows it when the
//!   text above starts with it (a stream resumed after a cut reads like the uncut one);
//! - `response_format` `json_object` → `{"reply": "<that text>"}`; `json_schema` → a
//!   placeholder object for the schema (see below); both stay valid JSON (the
//!   `output_tokens` setting is not applied to them);
//! - a forced `tool_choice` (a named function, or `"required"` → the first tool) makes a
//!   tool call, as the `tool` directive does;
//! - `output_tokens = N` pads (with filler words) or truncates generated replies to
//!   exactly N tokens; then `stop` cuts before the first stop sequence; then
//!   `max_completion_tokens`/`max_tokens` truncates, with finish reason `length`;
//! - `n` > 1 gives n identical choices (usage counts all of them);
//! - `id` = `chatcmpl-mock-<16 hex of SHA-256 of the request>` (streamed or not, the same),
//!   `created` = 1700000000, `system_fingerprint` = `fp_mock`, `model` = the request's.
//!
//! Tokens (see `tokens`): a token is a run of word characters (letters, digits, `_`) or
//! one other non-space character. `prompt_tokens` = tokens of every message's text + 4
//! per message; `completion_tokens` = tokens of the reply (tool name + arguments for a
//! tool call).
//!
//! # Directives
//! Tags in the **last user message**, removed from the echoed text; several may be
//! combined. A malformed or unknown directive is answered 400 with a message naming it.
//!
//! | directive | effect |
//! |---|---|
//! | `[mock:status=429]` | answer that status (400..=599) with an OpenAI error body `{"error":{"message","type","param","code"}}`; a 429 carries `Retry-After` (the `retry_after_secs` setting) |
//! | `[mock:retry_after=N]` | `Retry-After: N` on the status above (any status) |
//! | `[mock:latency=200]` | wait 200 ms before answering (instead of `latency_ms`) |
//! | `[mock:chunk_delay=20]` | wait 20 ms between streamed chunks (instead of `chunk_delay_ms`) |
//! | `[mock:tokens=50]` | reply exactly 50 tokens (also applies to a `reply` text) |
//! | `[mock:timeout]` | hang for 300 s ([`HANG`]), then answer 504: the caller's timeout fires first |
//! | `[mock:cut]` | stream: stop after half of the content chunks, no `[DONE]`, connection closed; whole response: a 200 with the first half of the JSON body |
//! | `[mock:garbage]` | a 200 whose body is not JSON ([`GARBAGE_BODY`]) |
//! | `[mock:reply=some text]` | reply exactly this text (up to the next `]`; not padded by `output_tokens`) |
//! | `[mock:tool=NAME]` | call tool NAME (finish reason `tool_calls`), arguments `{}` or, when the request declares NAME with a JSON schema, one placeholder per required property (`"mock"`, `1`, `true`, `[]`, the first `enum` value, nested objects filled the same way) |
//!
//! When several faults are scripted, `status` wins over `timeout`, which wins over
//! `garbage`. After a tool result, `tool` and `reply` (from directives or rules) are
//! ignored, so an agent loop ends.
//!
//! # Rules file
//! The `rules` setting names a `.toml` or `.json` file of rules checked in order against
//! the last user message (directives removed); the first match wins and directives
//! override what it sets:
//!
//! ```toml
//! [[rules]]
//! match = "refund"              # substring, case-sensitive (optional)
//! regex = "(?i)order #\\d+"     # Rust regex (optional; with `match`, both must hold)
//! reply = "Refunds take 5 days." # reply this text
//! # status = 429                # or: answer this error status
//! # tokens = 40                 # or/and: exactly this many tokens
//! # tool = "lookup_order"       # or: call this tool (not with `reply`)
//! # latency_ms = 300            # and/or: this latency
//! ```
//!
//! In JSON: `{"rules": [{"match": "refund", "reply": "..."}]}` or the bare list. A rule
//! without `match`/`regex` matches everything. Unknown keys, a bad regex, a non-error
//! status or a rule that does nothing fail at load with the file and rule number.
//!
//! # Random faults
//! `rate_429`, `rate_500`, `rate_timeout` and `rate_cut` (shares 0..=1, summing to at
//! most 1) inject faults from one `fastrand` generator seeded with `seed`, drawn once
//! per request; `rate_cut` only hits streamed requests. They never change a reply's
//! content, only whether it is delivered.
//!
//! # Timing
//! [`MockServerState::respond`] sleeps the latency (`latency_ms`, or the directive or
//! rule) before returning, for replies and faults alike; the caller sleeps
//! `chunk_delay` between streamed chunks and [`HANG`] on a timeout fault.

mod directives;
pub mod embed;
mod faults;
mod placeholder;
mod provider;
mod reply;
mod rules;
mod state;
mod stream;
pub mod tokens;

pub use faults::{error_kind, MockFault, GARBAGE_BODY, HANG};
pub use provider::MockProvider;
pub use reply::{CREATED, FINGERPRINT};
pub use rules::{RuleAction, RuleSet};
pub use state::MockServerState;
pub use stream::{MockReply, TOKENS_PER_CHUNK};

/// Why the mock could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The rules file is missing, unreadable or invalid.
    #[error("mock rules file `{path}`: {message}")]
    Rules { path: String, message: String },
    /// A setting is out of range.
    #[error("mock settings: {0}")]
    Settings(String),
}
