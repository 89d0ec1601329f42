//! The gateway's one error type, and the one place it becomes an HTTP response.
//!
//! Every failure on the request path ends up here, so the status code, the OpenAI error
//! shape (`{"error":{"message","type","code"}}`) and the Anthropic error shape for
//! `/v1/messages` are decided once. Upstream messages pass through; upstream keys and
//! auth headers never appear (the adapters never put them in errors).

use axum::http::StatusCode;
use keel_providers::ProviderError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    InvalidRequest(String),
    /// One field of a request body is missing or wrong; `param` names it (OpenAI's
    /// `param`), and the message says what it must be.
    #[error("{message}")]
    InvalidField { param: String, message: String },
    /// `POST /v1/feedback` named a call that is not in the store — or one the caller may
    /// not see: the same answer, so another tenant's request ids cannot be probed.
    #[error("no call with request id `{0}`: send the x-keel-request-id that the call's response carried, with a key of the tenant that made the call")]
    UnknownRequestId(String),
    /// `GET`/`DELETE /v1/responses/{id}` or `previous_response_id` named a response that
    /// is not stored — or one the caller's tenant may not see (the same answer).
    #[error("no stored response `{0}`: it was created with `store: false`, deleted, or by another tenant's key")]
    UnknownResponse(String),
    #[error("request body is larger than the limit of {limit} bytes; send a smaller request or raise [gateway] max_body_bytes")]
    BodyTooLarge { limit: usize },
    #[error("the client did not send the request body within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// `known`: "models: a, b; functions: f" — what the caller may send as `model`.
    #[error("The model `{model}` does not exist. Configured {known}")]
    ModelNotFound { model: String, known: String },
    /// The request's `variables` do not fit the prompt's declarations.
    #[error("{0}")]
    InvalidVariables(String),
    /// `x-keel-variant` named a variant the function does not have.
    #[error("{0}")]
    UnknownVariant(String),
    /// The chosen variant's prompt version is not in the store (not pushed, no such
    /// label): an operator must push or label it.
    #[error("{0}")]
    PromptUnavailable(String),
    /// Every model that could answer has an open circuit breaker.
    #[error("no upstream can take this call now: the circuit breaker of {0} is open (it failed repeatedly); retry later")]
    CircuitOpen(String),
    /// Every deployment of the model is at its own `rpm` limit.
    #[error("every deployment of {0} is at its requests-per-minute limit; retry shortly")]
    DeploymentsBusy(String),
    /// Keys, budgets, rate limits, spikes (see `keel-governance`).
    #[error("{0}")]
    Governance(#[from] keel_governance::GovError),
    #[error("{0}")]
    Upstream(#[from] ProviderError),
    /// A guardrail check blocked the request or the answer. The message names the
    /// policy, the check and what kind of thing was found — never the text itself.
    #[error("blocked by guardrail policy `{policy}`, check `{check}` on the {stage}: {detail}")]
    GuardrailBlocked {
        policy: String,
        check: String,
        /// `input` or `output`.
        stage: &'static str,
        detail: String,
    },
    /// The answer broke the JSON schema it was asked for (after any retry or fallback).
    #[error("the model's answer does not match the required JSON schema (guardrail policy `{policy}`, check `{check}`): {detail}")]
    OutputContract {
        policy: String,
        check: String,
        detail: String,
    },
    /// A gateway-wide limit is reached (request bodies in flight); retry shortly.
    #[error("{0}")]
    Overloaded(String),
    /// An operator's kill switch or budget freeze covers the call (`keel switch off`).
    #[error("{what} by an operator: {reason} (undo: `{undo}`)")]
    Disabled {
        what: String,
        reason: String,
        undo: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

/// How an error is shown to a client.
pub struct ErrorView {
    pub status: StatusCode,
    /// OpenAI `type`.
    pub kind: &'static str,
    /// OpenAI `code`.
    pub code: String,
    pub message: String,
}

impl GatewayError {
    /// A short, stable class for traces, metrics and reports.
    pub fn class(&self) -> &'static str {
        match self {
            GatewayError::InvalidRequest(_) | GatewayError::InvalidField { .. } => {
                "invalid_request"
            }
            GatewayError::UnknownRequestId(_) => "request_not_found",
            GatewayError::UnknownResponse(_) => "response_not_found",
            GatewayError::BodyTooLarge { .. } => "body_too_large",
            GatewayError::BodyTimeout(_) => "client_timeout",
            GatewayError::ModelNotFound { .. } => "model_not_found",
            GatewayError::InvalidVariables(_) => "invalid_variables",
            GatewayError::UnknownVariant(_) => "unknown_variant",
            GatewayError::PromptUnavailable(_) => "prompt_unavailable",
            GatewayError::CircuitOpen(_) => "circuit_open",
            GatewayError::DeploymentsBusy(_) => "deployments_busy",
            GatewayError::Upstream(e) => e.class(),
            GatewayError::Governance(e) => e.class(),
            GatewayError::GuardrailBlocked { stage: "input", .. } => "guardrail_input_blocked",
            GatewayError::GuardrailBlocked { .. } => "guardrail_output_blocked",
            GatewayError::OutputContract { .. } => "output_schema_violation",
            GatewayError::Overloaded(_) => "overloaded",
            GatewayError::Disabled { .. } => "disabled",
            GatewayError::Internal(_) => "internal",
        }
    }

    pub fn view(&self) -> ErrorView {
        let (status, kind, code) = match self {
            GatewayError::InvalidRequest(_) | GatewayError::InvalidField { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request".to_string(),
            ),
            GatewayError::UnknownRequestId(_) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "request_not_found".to_string(),
            ),
            GatewayError::UnknownResponse(_) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "response_not_found".to_string(),
            ),
            GatewayError::BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "body_too_large".to_string(),
            ),
            GatewayError::BodyTimeout(_) => (
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                "client_timeout".to_string(),
            ),
            GatewayError::ModelNotFound { .. } => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found".to_string(),
            ),
            GatewayError::InvalidVariables(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_variables".to_string(),
            ),
            GatewayError::UnknownVariant(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "unknown_variant".to_string(),
            ),
            GatewayError::PromptUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "prompt_unavailable".to_string(),
            ),
            GatewayError::CircuitOpen(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "circuit_open".to_string(),
            ),
            GatewayError::DeploymentsBusy(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "deployments_busy".to_string(),
            ),
            // 400: the caller's input is refused, and resending it will not help.
            GatewayError::GuardrailBlocked { stage: "input", .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "guardrail_blocked".to_string(),
            ),
            // 422: the request was fine, the model's answer is not allowed out.
            GatewayError::GuardrailBlocked { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request_error",
                "guardrail_blocked".to_string(),
            ),
            GatewayError::OutputContract { .. } => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "output_schema_violation".to_string(),
            ),
            GatewayError::Overloaded(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "overloaded".to_string(),
            ),
            GatewayError::Disabled { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "disabled".to_string(),
            ),
            GatewayError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal".to_string(),
            ),
            GatewayError::Governance(g) => {
                use keel_governance::GovError as G;
                let (status, kind) = match g {
                    G::MissingKey | G::InvalidKey | G::RevokedKey(_) | G::ExpiredKey(_) => {
                        (StatusCode::UNAUTHORIZED, "invalid_request_error")
                    }
                    G::AdminKeyRequired => (StatusCode::UNAUTHORIZED, "invalid_request_error"),
                    G::ModelNotAllowed { .. } | G::AdminDisabled => {
                        (StatusCode::FORBIDDEN, "permission_error")
                    }
                    // 402, not 429: SDKs retry a 429, and waiting does not refill a budget.
                    G::BudgetExceeded(_) => (StatusCode::PAYMENT_REQUIRED, "insufficient_quota"),
                    G::RateLimited { .. } | G::SpikeBlocked { .. } => {
                        (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error")
                    }
                    G::TooLargeForLimit { .. } => {
                        (StatusCode::BAD_REQUEST, "invalid_request_error")
                    }
                    G::BackendUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "server_error"),
                };
                (status, kind, g.class().to_string())
            }
            GatewayError::Upstream(e) => match e {
                // Upstream 4xx pass through with the provider's own status and message.
                ProviderError::Status { status, code, .. } if (400..500).contains(status) => (
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
                    if *status == 429 {
                        "rate_limit_error"
                    } else {
                        "invalid_request_error"
                    },
                    code.clone().unwrap_or_else(|| e.class().to_string()),
                ),
                ProviderError::Status { code, .. } => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    code.clone().unwrap_or_else(|| e.class().to_string()),
                ),
                ProviderError::Timeout(_) => (
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_error",
                    e.class().to_string(),
                ),
                ProviderError::Unsupported(_) => (
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    e.class().to_string(),
                ),
                _ => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    e.class().to_string(),
                ),
            },
        };
        let message = match self {
            GatewayError::Upstream(ProviderError::Status {
                status, message, ..
            }) => {
                if (400..500).contains(status) {
                    message.clone()
                } else {
                    format!("upstream returned {status}: {message}")
                }
            }
            other => other.to_string(),
        };
        ErrorView {
            status,
            kind,
            code,
            message,
        }
    }

    /// `Retry-After` to pass on to the client, if the upstream sent one.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            GatewayError::Governance(g) => g
                .retry_after()
                .map(|d| (d.as_secs_f64().ceil() as u64).max(1)),
            GatewayError::Upstream(ProviderError::Status {
                retry_after: Some(d),
                ..
            }) => Some(d.as_secs_f64().ceil() as u64),
            GatewayError::Overloaded(_) => Some(1),
            _ => None,
        }
    }

    /// The request field the error is about (OpenAI's `param`), when there is one.
    pub fn param(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidField { param, .. } => Some(param),
            GatewayError::UnknownRequestId(_) => Some("request_id"),
            _ => None,
        }
    }

    /// The OpenAI error body.
    pub fn openai_body(&self) -> serde_json::Value {
        let v = self.view();
        json!({"error": {"message": v.message, "type": v.kind, "code": v.code, "param": self.param()}})
    }

    /// The Anthropic error body, for `/v1/messages`.
    pub fn anthropic_body(&self) -> serde_json::Value {
        let v = self.view();
        let kind = match v.status.as_u16() {
            400 | 408 => "invalid_request_error",
            413 => "request_too_large",
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        json!({"type": "error", "error": {"type": kind, "message": v.message}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn statuses_follow_the_contract() {
        let cases: Vec<(GatewayError, u16)> = vec![
            (GatewayError::InvalidRequest("x".into()), 400),
            (
                GatewayError::InvalidField {
                    param: "value".into(),
                    message: "x".into(),
                },
                400,
            ),
            (GatewayError::UnknownRequestId("r".into()), 404),
            (GatewayError::UnknownResponse("resp_1".into()), 404),
            (GatewayError::BodyTooLarge { limit: 1 }, 413),
            (GatewayError::Overloaded("x".into()), 503),
            (
                GatewayError::Disabled {
                    what: "function `f` is switched off".into(),
                    reason: "r".into(),
                    undo: "keel switch on --function f".into(),
                },
                503,
            ),
            (
                GatewayError::ModelNotFound {
                    model: "m".into(),
                    known: "a".into(),
                },
                404,
            ),
            (
                ProviderError::Status {
                    status: 429,
                    message: "slow down".into(),
                    code: None,
                    body: None,
                    retry_after: Some(Duration::from_millis(1500)),
                }
                .into(),
                429,
            ),
            (
                ProviderError::Status {
                    status: 401,
                    message: "bad key".into(),
                    code: None,
                    body: None,
                    retry_after: None,
                }
                .into(),
                401,
            ),
            (
                ProviderError::Status {
                    status: 503,
                    message: "down".into(),
                    code: None,
                    body: None,
                    retry_after: None,
                }
                .into(),
                502,
            ),
            (ProviderError::Timeout(Duration::from_secs(1)).into(), 504),
            (ProviderError::InvalidResponse("garbage".into()).into(), 502),
            (ProviderError::StreamCut("cut".into()).into(), 502),
        ];
        for (e, status) in cases {
            assert_eq!(e.view().status.as_u16(), status, "{e:?}");
        }
    }

    #[test]
    fn upstream_messages_pass_through_and_retry_after_rounds_up() {
        let e: GatewayError = ProviderError::Status {
            status: 429,
            message: "Rate limit reached".into(),
            code: Some("rate_limit_exceeded".into()),
            body: None,
            retry_after: Some(Duration::from_millis(1500)),
        }
        .into();
        let body = e.openai_body();
        assert_eq!(body["error"]["message"], "Rate limit reached");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert_eq!(e.retry_after_secs(), Some(2));
        assert_eq!(e.anthropic_body()["error"]["type"], "rate_limit_error");
    }
}
