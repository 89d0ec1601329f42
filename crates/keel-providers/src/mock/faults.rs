//! The failures the mock can produce, and the seeded dice that inject them at random.
//!
//! A fault is decided either by the request (a directive or a rule) or by the dice
//! (`rate_429`, `rate_500`, `rate_timeout`, `rate_cut`). The dice are one seeded
//! `fastrand` generator behind a mutex held only for one draw (never across an await),
//! and rolled once per request whatever it asks, so a run's fault sequence depends only
//! on the seed and the order of requests — and never on, or changes, a reply's content.
//! This module also owns the OpenAI-style error body every fault is answered with.

use std::sync::Mutex;
use std::time::Duration;

use keel_core::config::mock::MockSettings;
use serde_json::{json, Value};

use super::MockError;
use crate::ProviderError;

/// How long a `timeout` fault hangs before answering 504: longer than any sane deadline,
/// so the caller's own timeout fires first.
pub const HANG: Duration = Duration::from_secs(300);

/// The body of a `garbage` fault: a 200 that is not JSON.
pub const GARBAGE_BODY: &str = "<html><body>mock garbage: this is not JSON</body></html>\n";

/// A request the mock answers with something other than a completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MockFault {
    /// An error status with an OpenAI-style body; 429s carry `Retry-After` seconds.
    Status {
        status: u16,
        message: String,
        retry_after: Option<u64>,
    },
    /// Hang for [`HANG`], then answer 504 (see [`MockFault::hung`]).
    Timeout,
    /// Answer 200 with [`GARBAGE_BODY`] (`text/html`, not JSON).
    Garbage,
}

/// OpenAI's error `type` and `code` for an HTTP status.
pub fn error_kind(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("invalid_request_error", "invalid_request"),
        401 => ("invalid_request_error", "invalid_api_key"),
        403 => ("invalid_request_error", "permission_denied"),
        404 => ("invalid_request_error", "model_not_found"),
        408 => ("timeout_error", "request_timeout"),
        413 => ("invalid_request_error", "request_too_large"),
        429 => ("requests", "rate_limit_exceeded"),
        500 => ("server_error", "internal_error"),
        502 => ("server_error", "bad_gateway"),
        503 => ("server_error", "service_unavailable"),
        504 => ("server_error", "gateway_timeout"),
        s if s < 500 => ("invalid_request_error", "client_error"),
        _ => ("server_error", "server_error"),
    }
}

/// The message an injected error status carries.
pub(crate) fn injected_message(status: u16, model: &str, retry_after: Option<u64>) -> String {
    match status {
        401 => "Mock: incorrect API key provided (injected 401).".to_string(),
        403 => "Mock: you are not allowed to use this model (injected 403).".to_string(),
        404 => format!("Mock: the model `{model}` does not exist (injected 404)."),
        429 => format!(
            "Mock: rate limit reached for {model} (injected 429). Please try again in {}s.",
            retry_after.unwrap_or(0)
        ),
        500 => "Mock: the server had an error while processing your request (injected 500)."
            .to_string(),
        503 => "Mock: the engine is currently overloaded (injected 503).".to_string(),
        s => format!("Mock: injected error status {s}."),
    }
}

impl MockFault {
    /// A `Status` fault without `Retry-After`.
    pub fn status(status: u16, message: impl Into<String>) -> Self {
        MockFault::Status {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// What a `Timeout` fault answers once [`HANG`] has passed.
    pub fn hung() -> Self {
        MockFault::status(
            504,
            format!(
                "Mock: no answer within {} s (injected timeout).",
                HANG.as_secs()
            ),
        )
    }

    /// The HTTP status this fault is answered with (after the hang, for `Timeout`).
    pub fn http_status(&self) -> u16 {
        match self {
            MockFault::Status { status, .. } => *status,
            MockFault::Timeout => 504,
            MockFault::Garbage => 200,
        }
    }

    /// `{"error":{"message","type","param","code"}}`, as OpenAI sends it. `Garbage` has
    /// no JSON body; this gives the body of the 504 a hung request ends with for it too.
    pub fn openai_error_body(&self) -> Value {
        let (status, message) = match self {
            MockFault::Status {
                status, message, ..
            } => (*status, message.clone()),
            MockFault::Timeout | MockFault::Garbage => match MockFault::hung() {
                MockFault::Status {
                    status, message, ..
                } => (status, message),
                _ => (504, String::new()),
            },
        };
        let (kind, code) = error_kind(status);
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
    }

    /// The error a real OpenAI-compatible upstream would produce for this fault, as an
    /// adapter reading its response sees it. `Timeout` maps to the 504 it ends with;
    /// the caller hangs first.
    pub fn to_provider_error(&self) -> ProviderError {
        match self {
            MockFault::Status {
                status,
                message,
                retry_after,
            } => ProviderError::Status {
                status: *status,
                message: message.clone(),
                code: Some(error_kind(*status).1.to_string()),
                body: Some(self.openai_error_body()),
                retry_after: retry_after.map(Duration::from_secs),
            },
            MockFault::Timeout => MockFault::hung().to_provider_error(),
            MockFault::Garbage => ProviderError::InvalidResponse(format!(
                "expected a JSON chat completion, got `text/html`: {}",
                GARBAGE_BODY.trim_end()
            )),
        }
    }
}

/// The outcome of one roll of the dice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Roll {
    Clean,
    Status429,
    Status500,
    Timeout,
    Cut,
}

/// The seeded source of random faults.
#[derive(Debug)]
pub(crate) struct FaultDice {
    /// Cumulative thresholds: 429 below `t429`, 500 below `t500`, and so on.
    t429: f64,
    t500: f64,
    t_timeout: f64,
    t_cut: f64,
    rng: Mutex<fastrand::Rng>,
}

impl FaultDice {
    pub(crate) fn new(s: &MockSettings) -> Result<Self, MockError> {
        let rates = [
            ("rate_429", s.rate_429),
            ("rate_500", s.rate_500),
            ("rate_timeout", s.rate_timeout),
            ("rate_cut", s.rate_cut),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(MockError::Settings(format!(
                    "`{name}` is {rate}; a rate is a share between 0 and 1"
                )));
            }
        }
        let total: f64 = rates.iter().map(|r| r.1).sum();
        if total > 1.0 + 1e-9 {
            return Err(MockError::Settings(format!(
                "the fault rates add up to {total}; rate_429 + rate_500 + rate_timeout + rate_cut must be at most 1"
            )));
        }
        let t429 = s.rate_429;
        let t500 = t429 + s.rate_500;
        let t_timeout = t500 + s.rate_timeout;
        Ok(FaultDice {
            t429,
            t500,
            t_timeout,
            t_cut: t_timeout + s.rate_cut,
            rng: Mutex::new(fastrand::Rng::with_seed(s.seed)),
        })
    }

    /// One roll. A `Cut` on a non-streamed request counts as `Clean` (`rate_cut` is a
    /// share of streamed requests). With every rate zero, no lock is taken.
    pub(crate) fn roll(&self, streamed: bool) -> Roll {
        if self.t_cut <= 0.0 {
            return Roll::Clean;
        }
        let x = {
            let mut rng = self
                .rng
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            rng.f64()
        };
        if x < self.t429 {
            Roll::Status429
        } else if x < self.t500 {
            Roll::Status500
        } else if x < self.t_timeout {
            Roll::Timeout
        } else if x < self.t_cut && streamed {
            Roll::Cut
        } else {
            Roll::Clean
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dice(s: MockSettings) -> FaultDice {
        FaultDice::new(&s).unwrap()
    }

    #[test]
    fn zero_rates_never_fault() {
        let d = dice(MockSettings::default());
        assert!((0..1000).all(|_| d.roll(true) == Roll::Clean));
    }

    #[test]
    fn rates_are_respected_and_seeded() {
        let s = MockSettings {
            rate_429: 0.2,
            rate_500: 0.1,
            rate_timeout: 0.05,
            rate_cut: 0.25,
            seed: 7,
            ..Default::default()
        };
        let rolls = |streamed| {
            let d = dice(s.clone());
            (0..4000).map(|_| d.roll(streamed)).collect::<Vec<_>>()
        };
        let a = rolls(true);
        assert_eq!(a, rolls(true), "same seed, same sequence");
        let share = |r: Roll| a.iter().filter(|x| **x == r).count() as f64 / a.len() as f64;
        assert!(
            (share(Roll::Status429) - 0.2).abs() < 0.03,
            "{}",
            share(Roll::Status429)
        );
        assert!((share(Roll::Status500) - 0.1).abs() < 0.03);
        assert!((share(Roll::Timeout) - 0.05).abs() < 0.02);
        assert!((share(Roll::Cut) - 0.25).abs() < 0.03);
        assert!(!rolls(false).contains(&Roll::Cut), "cuts only hit streams");
        let other = FaultDice::new(&MockSettings { seed: 8, ..s }).unwrap();
        assert_ne!(a, (0..4000).map(|_| other.roll(true)).collect::<Vec<_>>());
    }

    #[test]
    fn bad_rates_are_rejected() {
        let e = FaultDice::new(&MockSettings {
            rate_500: 1.5,
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("`rate_500` is 1.5"), "{e}");
        let e = FaultDice::new(&MockSettings {
            rate_429: 0.6,
            rate_500: 0.6,
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("at most 1"), "{e}");
    }

    #[test]
    fn faults_become_upstream_errors() {
        let f = MockFault::Status {
            status: 429,
            message: "slow down".into(),
            retry_after: Some(3),
        };
        assert_eq!(
            f.openai_error_body(),
            json!({"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}})
        );
        match f.to_provider_error() {
            ProviderError::Status {
                status,
                retry_after,
                code,
                ..
            } => {
                assert_eq!(status, 429);
                assert_eq!(retry_after, Some(Duration::from_secs(3)));
                assert_eq!(code.as_deref(), Some("rate_limit_exceeded"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            MockFault::Timeout.to_provider_error().class(),
            "upstream_server_error"
        );
        assert_eq!(
            MockFault::Garbage.to_provider_error().class(),
            "upstream_invalid_response"
        );
    }
}
