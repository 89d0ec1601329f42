//! Why governance refused a call. The gateway maps each variant to one HTTP status and
//! error code (in its `error.rs`); messages name the key, budget or limit and say what
//! to do, and never contain a key's secret.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GovError {
    #[error("this gateway requires an API key: send `Authorization: Bearer keel_...` (or `x-api-key`); create one with `keel keys create --tenant T`")]
    MissingKey,
    #[error(
        "the API key is not valid: check that you copied the whole key (it starts with `keel_`)"
    )]
    InvalidKey,
    #[error("the API key {0} was revoked; ask an operator for a new one")]
    RevokedKey(String),
    #[error("the API key {0} has expired; ask an operator to rotate it or create a new one")]
    ExpiredKey(String),
    #[error("the API key {key} may not call `{model}`; it may call: {allowed}")]
    ModelNotAllowed {
        key: String,
        model: String,
        allowed: String,
    },
    /// Boxed: the details are large and a refusal is the rare path.
    #[error("{0}")]
    BudgetExceeded(Box<BudgetExhausted>),
    #[error("rate limit {limit} exceeded for {scope}; retry in {retry_after:?}")]
    RateLimited {
        /// e.g. `600 requests per minute`.
        limit: String,
        scope: String,
        retry_after: Duration,
    },
    #[error("rate limit {limit} for {scope} can never admit this call: it needs {needed} tokens at once; lower max_tokens or shorten the prompt")]
    TooLargeForLimit {
        limit: String,
        scope: String,
        needed: u64,
    },
    #[error("spending on {scope} is spiking ({detail}); calls are paused until {until}. An operator can raise [spikes] z or change action")]
    SpikeBlocked {
        scope: String,
        detail: String,
        until: String,
    },
    #[error("this endpoint needs the admin key: send `Authorization: Bearer <admin key>` (the value of the env var named by [auth] admin_key_env)")]
    AdminKeyRequired,
    #[error("admin endpoints are disabled: set the env var named by [auth] admin_key_env (default KEEL_ADMIN_KEY) before starting keel serve")]
    AdminDisabled,
    /// The detail (the backend's own error: addresses, driver messages) is for the log,
    /// never for the caller: the message shown does not include it.
    #[error("the shared limits backend is unreachable; calls are refused while it is down ([limits] on_backend_error = \"fail_closed\"); the gateway's log has the cause")]
    BackendUnavailable(String),
}

/// Which hard budget refused a call, and by how much.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetExhausted {
    pub budget: String,
    pub scope: String,
    pub window: String,
    pub spent: String,
    pub limit: String,
    pub needed: String,
}

impl std::fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "budget `{}` ({}, {}) is exhausted: ${} of ${} spent or reserved; this call could cost up to ${}. It resets with the next {}, or an operator can raise the limit",
            self.budget, self.scope, self.window, self.spent, self.limit, self.needed, self.window
        )
    }
}

/// Every [`GovError::class`]: the error classes a blocked call is traced with (what
/// `keel audit` lists as blocks).
pub const BLOCK_CLASSES: &[&str] = &[
    "missing_api_key",
    "invalid_api_key",
    "revoked_api_key",
    "expired_api_key",
    "model_not_allowed",
    "budget_exceeded",
    "rate_limited",
    "request_too_large_for_limit",
    "spend_spike",
    "limits_unavailable",
    "admin_key_required",
    "admin_disabled",
];

impl GovError {
    /// A stable class for traces, metrics and reports.
    pub fn class(&self) -> &'static str {
        match self {
            GovError::MissingKey => "missing_api_key",
            GovError::InvalidKey => "invalid_api_key",
            GovError::RevokedKey(_) => "revoked_api_key",
            GovError::ExpiredKey(_) => "expired_api_key",
            GovError::ModelNotAllowed { .. } => "model_not_allowed",
            GovError::BudgetExceeded(_) => "budget_exceeded",
            GovError::RateLimited { .. } => "rate_limited",
            GovError::TooLargeForLimit { .. } => "request_too_large_for_limit",
            GovError::SpikeBlocked { .. } => "spend_spike",
            GovError::BackendUnavailable(_) => "limits_unavailable",
            GovError::AdminKeyRequired => "admin_key_required",
            GovError::AdminDisabled => "admin_disabled",
        }
    }

    /// `Retry-After` for the client, when waiting helps.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GovError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_is_listed_as_a_block() {
        let all = [
            GovError::MissingKey,
            GovError::InvalidKey,
            GovError::RevokedKey(String::new()),
            GovError::ExpiredKey(String::new()),
            GovError::ModelNotAllowed {
                key: String::new(),
                model: String::new(),
                allowed: String::new(),
            },
            GovError::BudgetExceeded(Box::new(BudgetExhausted {
                budget: String::new(),
                scope: String::new(),
                window: String::new(),
                spent: String::new(),
                limit: String::new(),
                needed: String::new(),
            })),
            GovError::RateLimited {
                limit: String::new(),
                scope: String::new(),
                retry_after: Duration::ZERO,
            },
            GovError::TooLargeForLimit {
                limit: String::new(),
                scope: String::new(),
                needed: 0,
            },
            GovError::SpikeBlocked {
                scope: String::new(),
                detail: String::new(),
                until: String::new(),
            },
            GovError::AdminKeyRequired,
            GovError::AdminDisabled,
            GovError::BackendUnavailable(String::new()),
        ];
        let classes: Vec<_> = all.iter().map(GovError::class).collect();
        let mut want = BLOCK_CLASSES.to_vec();
        let mut got = classes.clone();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
    }
}
