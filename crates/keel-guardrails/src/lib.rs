//! Keel guardrails: the pure detection library behind Keel's guardrail policies.
//!
//! No HTTP, no config parsing, no store: functions over `&str` that the gateway calls on the
//! request path, so everything compiles its regexes once and scans each text in one pass per
//! detector family, without allocating when nothing matches.
//!
//! - [`scan`] finds PII and secrets ([`Kind`]) and [`Redaction`] replaces them with typed,
//!   numbered placeholders that [`Redaction::restore`] / [`StreamRestorer`] put back;
//! - [`TermMatcher`] finds banned terms and regexes through obfuscation;
//! - [`injection`] scores prompt-injection attempts; [`leak`] measures system-prompt leakage;
//! - [`check_json_schema`] / [`OutputContract`] enforce JSON output contracts.

mod detect;
mod error;
mod injection;
mod kind;
mod leak;
mod normalize;
mod redact;
pub mod redteam;
mod schema;
mod stream;
mod terms;

pub use detect::{scan, Finding};
pub use error::GuardError;
pub use injection::{injection, Evidence, InjectionReport, DEFAULT_INJECTION_THRESHOLD};
pub use kind::Kind;
pub use leak::{leak, LeakReport, DEFAULT_LEAK_THRESHOLD, SHINGLE_WORDS};
pub use redact::Redaction;
pub use schema::{check_json_schema, OutputContract};
pub use stream::StreamRestorer;
pub use terms::{TermMatch, TermMatcher};
