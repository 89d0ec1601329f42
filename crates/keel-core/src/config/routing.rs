//! Resilience per model: retries with back-off and the fallback chain, validated from
//! the keys of `[models.NAME]` (and a variant's own `fallbacks`).
//!
//! ```toml
//! [models.gpt-4o]
//! retries = 2                 # further attempts on a retryable failure (default 0)
//! retry_backoff = "250ms"     # first wait; doubles each time, ±50 % jitter, at most max_retry_wait
//! max_retry_wait = "10s"      # a longer Retry-After skips to the next model instead
//! fallbacks = ["claude", "local"]                  # tried in order after this one fails
//! fallback_on = ["rate_limit", "server_error", "timeout", "unreachable",
//!                "invalid_response", "context_length", "content_policy"]   # the default: all
//! resume_streams = false      # continue a stream cut mid-way on the chain (below)
//! ```
//!
//! A stream that fails *after* its first chunk reached the client cannot be retried: the
//! client already has part of the answer. With `resume_streams = true` it is continued
//! instead: the same request plus the text already sent, as a final assistant message,
//! goes to the next model of the chain (the same model when the chain is used up), and
//! only the continuation is forwarded — the client sees one uninterrupted stream, no byte
//! twice. It needs upstreams that continue a trailing assistant message (Anthropic's
//! prefill, the mock; vLLM only with `continue_final_message`), so it is off by default; it is
//! never done once a tool call has started streaming, and at most
//! [`MAX_STREAM_RESUMES`] times per stream.
//!
//! The chain is flat: a fallback's own `fallbacks` are not followed (no cycles, no
//! surprises), but its own `retries` are.

use std::collections::BTreeMap;
use std::time::Duration;

use super::error::ConfigIssue;
use super::raw::RawModel;

/// Why an upstream call failed, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// 429.
    RateLimit,
    /// 5xx.
    ServerError,
    /// No answer (or no first token) in time.
    Timeout,
    /// Could not connect.
    Unreachable,
    /// A 2xx that is not the wire format, or a stream cut before its first chunk.
    InvalidResponse,
    /// The prompt is longer than the model's context window (fall back to a longer one).
    ContextLength,
    /// The provider refused on content policy.
    ContentPolicy,
}

impl FailureClass {
    pub const ALL: [FailureClass; 7] = [
        FailureClass::RateLimit,
        FailureClass::ServerError,
        FailureClass::Timeout,
        FailureClass::Unreachable,
        FailureClass::InvalidResponse,
        FailureClass::ContextLength,
        FailureClass::ContentPolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::RateLimit => "rate_limit",
            FailureClass::ServerError => "server_error",
            FailureClass::Timeout => "timeout",
            FailureClass::Unreachable => "unreachable",
            FailureClass::InvalidResponse => "invalid_response",
            FailureClass::ContextLength => "context_length",
            FailureClass::ContentPolicy => "content_policy",
        }
    }

    pub fn parse(s: &str) -> Option<FailureClass> {
        FailureClass::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Worth trying the same model again (the others need another model).
    pub fn retryable(self) -> bool {
        matches!(
            self,
            FailureClass::RateLimit
                | FailureClass::ServerError
                | FailureClass::Timeout
                | FailureClass::Unreachable
        )
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of failure classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureSet(u8);

impl FailureSet {
    pub fn all() -> FailureSet {
        FailureSet(FailureClass::ALL.iter().fold(0, |acc, c| acc | c.bit()))
    }

    pub fn contains(self, c: FailureClass) -> bool {
        self.0 & c.bit() != 0
    }
}

/// A model's resilience settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub retries: u32,
    pub retry_backoff: Duration,
    pub max_retry_wait: Duration,
    /// Configured model names, in order.
    pub fallbacks: Vec<String>,
    pub fallback_on: FailureSet,
    /// Continue a stream cut after its first chunk on the chain (see the module docs).
    pub resume_streams: bool,
    /// `None`: no breaker (the default for a model without retries or fallbacks).
    pub breaker: Option<BreakerSettings>,
}

/// When a model's circuit breaker opens and for how long (see the gateway's
/// `breaker` module for the states).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// Open after this many upstream failures in a row.
    pub consecutive_failures: u32,
    /// ... or when this share of the calls in `window` failed,
    pub failure_rate: f64,
    /// ... once the window holds at least this many calls.
    pub min_requests: u32,
    pub window: Duration,
    /// How long it stays open before one probe call is let through.
    pub cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_requests: 20,
            window: Duration::from_secs(30),
            cooldown: Duration::from_secs(30),
        }
    }
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            retries: 0,
            retry_backoff: Duration::from_millis(250),
            max_retry_wait: Duration::from_secs(10),
            fallbacks: Vec::new(),
            fallback_on: FailureSet::all(),
            resume_streams: false,
            breaker: None,
        }
    }
}

/// Most retries per model: beyond this a retry loop is a hammer, not resilience.
pub const MAX_RETRIES: u32 = 10;

/// Most times one stream is continued after a mid-stream failure.
pub const MAX_STREAM_RESUMES: u32 = 2;

fn push(issues: &mut Vec<ConfigIssue>, path: String, message: String, hint: &str) {
    issues.push(ConfigIssue {
        path,
        message,
        hint: Some(hint.to_string()),
    });
}

/// Check a fallback chain (of model `owner`, or of a variant) against the models.
pub(crate) fn check_chain(
    path: &str,
    owner: Option<&str>,
    chain: &[String],
    models: &BTreeMap<String, RawModel>,
    issues: &mut Vec<ConfigIssue>,
) {
    for (i, f) in chain.iter().enumerate() {
        if !models.contains_key(f) {
            push(
                issues,
                format!("{path}[{i}]"),
                format!("fallback model `{f}` is not configured"),
                &format!(
                    "configured models: {}",
                    models.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        } else if Some(f.as_str()) == owner {
            push(
                issues,
                format!("{path}[{i}]"),
                format!("`{f}` cannot fall back to itself"),
                "use `retries` to try the same model again",
            );
        } else if chain[..i].contains(f) {
            push(
                issues,
                format!("{path}[{i}]"),
                format!("`{f}` is listed twice"),
                "list each fallback once",
            );
        }
    }
}

/// Validate the routing keys of `[models.NAME]`.
pub(crate) fn validate_routing(
    name: &str,
    m: &RawModel,
    models: &BTreeMap<String, RawModel>,
    duration: &mut dyn FnMut(&str, Option<&str>, Duration) -> Duration,
    issues: &mut Vec<ConfigIssue>,
) -> Routing {
    let path = format!("models.{name}");
    let d = Routing::default();
    let retries = m.retries.unwrap_or(0);
    if retries > MAX_RETRIES {
        push(
            issues,
            format!("{path}.retries"),
            format!("{retries} is more than {MAX_RETRIES}"),
            "use fallbacks to reach another model instead",
        );
    }
    let retry_backoff = duration(
        &format!("{path}.retry_backoff"),
        m.retry_backoff.as_deref(),
        d.retry_backoff,
    );
    let max_retry_wait = duration(
        &format!("{path}.max_retry_wait"),
        m.max_retry_wait.as_deref(),
        d.max_retry_wait,
    );
    let fallbacks = m.fallbacks.clone().unwrap_or_default();
    check_chain(
        &format!("{path}.fallbacks"),
        Some(name),
        &fallbacks,
        models,
        issues,
    );
    let fallback_on = match &m.fallback_on {
        None => FailureSet::all(),
        Some(list) => {
            let mut set = 0u8;
            for (i, s) in list.iter().enumerate() {
                match FailureClass::parse(s) {
                    Some(c) => set |= c.bit(),
                    None => push(
                        issues,
                        format!("{path}.fallback_on[{i}]"),
                        format!("unknown failure class `{s}`"),
                        &format!(
                            "use any of: {}",
                            FailureClass::ALL.map(FailureClass::as_str).join(", ")
                        ),
                    ),
                }
            }
            FailureSet(set)
        }
    };
    let breaker = validate_breaker(
        &path,
        m.circuit_breaker.as_ref(),
        retries > 0 || !fallbacks.is_empty() || m.deployments.as_ref().is_some_and(|d| d.len() > 1),
        duration,
        issues,
    );
    Routing {
        retries: retries.min(MAX_RETRIES),
        retry_backoff,
        max_retry_wait,
        fallbacks,
        fallback_on,
        resume_streams: m.resume_streams.unwrap_or(false),
        breaker,
    }
}

fn validate_breaker(
    path: &str,
    raw: Option<&super::raw::RawBreaker>,
    routed: bool,
    duration: &mut dyn FnMut(&str, Option<&str>, Duration) -> Duration,
    issues: &mut Vec<ConfigIssue>,
) -> Option<BreakerSettings> {
    let d = BreakerSettings::default();
    let raw = raw.cloned().unwrap_or_default();
    if !raw.enabled.unwrap_or(routed) {
        return None;
    }
    let path = format!("{path}.circuit_breaker");
    let failure_rate = raw.failure_rate.unwrap_or(d.failure_rate);
    if !(failure_rate > 0.0 && failure_rate <= 1.0) {
        push(
            issues,
            format!("{path}.failure_rate"),
            format!("{failure_rate} is not a share of calls"),
            "use a number in (0, 1], e.g. 0.5",
        );
    }
    let consecutive_failures = raw.consecutive_failures.unwrap_or(d.consecutive_failures);
    if consecutive_failures == 0 {
        push(
            issues,
            format!("{path}.consecutive_failures"),
            "must be at least 1".into(),
            "e.g. 5",
        );
    }
    Some(BreakerSettings {
        consecutive_failures,
        failure_rate,
        min_requests: raw.min_requests.unwrap_or(d.min_requests).max(1),
        window: duration(&format!("{path}.window"), raw.window.as_deref(), d.window),
        cooldown: duration(
            &format!("{path}.cooldown"),
            raw.cooldown.as_deref(),
            d.cooldown,
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn load(models: &str) -> Result<Config, String> {
        let text = format!("[providers.p]\nkind = \"mock\"\n{models}");
        Config::from_toml(&text, Path::new("keel.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn routing_keys_are_validated_with_a_path_and_a_fix() {
        let ok = load(
            "[models.a]\nprovider = \"p\"\nretries = 2\nretry_backoff = \"10ms\"\nfallbacks = [\"b\"]\nfallback_on = [\"rate_limit\", \"context_length\"]\n[models.b]\nprovider = \"p\"\n",
        )
        .unwrap();
        let r = &ok.models["a"].routing;
        assert_eq!(
            (r.retries, r.fallbacks.as_slice()),
            (2, &["b".to_string()][..])
        );
        assert!(r.fallback_on.contains(super::FailureClass::ContextLength));
        assert!(!r.fallback_on.contains(super::FailureClass::ServerError));
        assert_eq!(ok.models["b"].routing, super::Routing::default());

        for (models, needle) in [
            ("[models.a]\nprovider = \"p\"\nfallbacks = [\"nope\"]\n", "models.a.fallbacks[0]: fallback model `nope` is not configured"),
            ("[models.a]\nprovider = \"p\"\nfallbacks = [\"a\"]\n", "cannot fall back to itself"),
            ("[models.a]\nprovider = \"p\"\nfallbacks = [\"b\", \"b\"]\n[models.b]\nprovider = \"p\"\n", "listed twice"),
            ("[models.a]\nprovider = \"p\"\nfallback_on = [\"ratelimit\"]\n", "unknown failure class `ratelimit`"),
            ("[models.a]\nprovider = \"p\"\nretries = 50\n", "models.a.retries"),
            ("[models.a]\nprovider = \"p\"\nretry_backoff = \"soon\"\n", "models.a.retry_backoff"),
        ] {
            let err = load(models).unwrap_err();
            assert!(err.contains(needle), "{err}\nshould contain: {needle}");
        }
    }
}
