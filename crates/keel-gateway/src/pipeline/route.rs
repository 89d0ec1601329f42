//! Retries and fallbacks: call the model, try it again on a retryable failure (after a
//! back-off that honours `Retry-After`), and move down the fallback chain when it keeps
//! failing in a way the chain covers. Every try is recorded on the trace when there was
//! more than one.
//!
//! A stream is retried or falls back only before its first chunk: `call::open_stream`
//! waits for that chunk before the client is answered, so nothing has reached the client
//! yet; once the response has started, a failure ends the stream with an error event.
//!
//! A model with a circuit breaker is skipped while its breaker is open (the attempt is
//! recorded as `circuit_open`); when every model is skipped the caller gets 503
//! `circuit_open`. Upstream failures (not a caller's bad request) feed the breaker.
//!
//! The common case — no retries, no fallbacks, no breaker — takes one call and does not
//! clone the request.

use std::time::{Duration, Instant};

use keel_core::chat::{ChatRequest, ChatResponse};
use keel_core::config::routing::{FailureClass, Routing};
use keel_core::trace::{Attempt, TraceRecord};
use keel_providers::ProviderError;

use super::call::{self, OpenedStream};
use super::function::Limits;
use crate::balance::{self, Deployment, NoDeployment};
use crate::error::GatewayError;
use crate::state::{AppState, ModelRoute};

/// What the serving model returned.
pub enum Reply {
    Whole(ChatResponse),
    Stream(OpenedStream),
}

/// How routing sees a failure; `None` for failures no other attempt can fix (a bad
/// request, an auth error).
pub fn classify(e: &GatewayError) -> Option<FailureClass> {
    let GatewayError::Upstream(p) = e else {
        return None;
    };
    Some(match p {
        ProviderError::Status { status: 429, .. } => FailureClass::RateLimit,
        ProviderError::Status { status, .. } if *status >= 500 => FailureClass::ServerError,
        ProviderError::Status { code, message, .. } => {
            let text = format!("{} {}", code.as_deref().unwrap_or(""), message).to_lowercase();
            if text.contains("context_length")
                || text.contains("context length")
                || text.contains("context window")
                || text.contains("prompt is too long")
                || text.contains("too many tokens")
            {
                FailureClass::ContextLength
            } else if text.contains("content_policy")
                || text.contains("content policy")
                || text.contains("content_filter")
                || text.contains("safety")
            {
                FailureClass::ContentPolicy
            } else {
                return None;
            }
        }
        ProviderError::Timeout(_) => FailureClass::Timeout,
        ProviderError::Connect(_) => FailureClass::Unreachable,
        ProviderError::InvalidResponse(_) | ProviderError::StreamCut(_) => {
            FailureClass::InvalidResponse
        }
        ProviderError::Unsupported(_) => return None,
    })
}

/// Whether a failure says nothing about the upstream's health (the request was the
/// problem: a bad request, a prompt too long, a refusal), so a breaker ignores it.
fn upstream_healthy(e: &GatewayError) -> bool {
    !matches!(
        classify(e),
        Some(
            FailureClass::RateLimit
                | FailureClass::ServerError
                | FailureClass::Timeout
                | FailureClass::Unreachable
                | FailureClass::InvalidResponse
        )
    )
}

async fn once(
    route: &ModelRoute,
    dep: &Deployment,
    req: ChatRequest,
    limits: Limits,
) -> Result<Reply, GatewayError> {
    let req = call::upstream_request(dep, req);
    if req.stream {
        call::open_stream(route, dep, req, limits.first_token)
            .await
            .map(Reply::Stream)
    } else {
        call::complete(route, dep, req).await.map(Reply::Whole)
    }
}

/// The wait before retry `attempt` (0-based): `Retry-After` when the provider sent one,
/// else `retry_backoff · 2^attempt` with ±50 % jitter.
fn backoff(policy: &Routing, attempt: u32, e: &GatewayError) -> Duration {
    if let GatewayError::Upstream(ProviderError::Status {
        retry_after: Some(d),
        ..
    }) = e
    {
        return *d;
    }
    let base = policy.retry_backoff.saturating_mul(1 << attempt.min(10));
    let ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(ms / 2 + fastrand::u64(0..=ms))
}

fn attempt(
    route: &ModelRoute,
    dep: &Deployment,
    started: Instant,
    outcome: Result<(), &GatewayError>,
) -> Attempt {
    Attempt {
        model: route.config.name.clone(),
        provider: dep.provider_name.clone(),
        upstream_model: dep.upstream_model.clone(),
        outcome: match outcome {
            Ok(()) => "ok".into(),
            Err(e) => e.class().into(),
        },
        latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        error: outcome.err().map(|e| e.view().message),
    }
}

/// Call `first`, retrying and falling back per its routing (or the variant's `chain`),
/// each attempt on a deployment picked by the model's strategy. Returns the route and
/// the deployment that answered.
pub async fn call_routed<'a>(
    app: &'a AppState,
    first: &'a ModelRoute,
    chain: Option<&'a [String]>,
    limits: Limits,
    req: ChatRequest,
    trace: &mut TraceRecord,
) -> Result<(&'a ModelRoute, &'a Deployment, Reply), GatewayError> {
    let policy = &first.config.routing;
    let chain = chain.unwrap_or(&policy.fallbacks);
    let primary = first.primary();
    if chain.is_empty()
        && policy.retries == 0
        && first.deployments.len() == 1
        && primary.breaker.is_none()
        && primary.rpm.is_none()
    {
        return once(first, primary, req, limits)
            .await
            .map(|r| (first, primary, r));
    }
    let routes = std::iter::once(first).chain(chain.iter().filter_map(|m| app.models.get(m)));
    let mut last: Option<GatewayError> = None;
    for route in routes {
        let retries = route.config.routing.retries;
        let mut tried: Vec<usize> = Vec::new();
        for n in 0..=retries {
            let idx = match balance::pick(&route.deployments, route.config.strategy, &tried) {
                Ok(i) => i,
                Err(why) => {
                    let name = format!("`{}`", route.config.name);
                    let e = match why {
                        NoDeployment::CircuitOpen => GatewayError::CircuitOpen(name),
                        NoDeployment::RateLimited => GatewayError::DeploymentsBusy(name),
                    };
                    trace
                        .attempts
                        .push(attempt(route, route.primary(), Instant::now(), Err(&e)));
                    if last.is_none() {
                        last = Some(e);
                    }
                    break;
                }
            };
            tried.push(idx);
            let dep = &route.deployments[idx];
            let started = Instant::now();
            let result = once(route, dep, req.clone(), limits).await;
            if let Some(b) = &dep.breaker {
                b.record(match &result {
                    Ok(_) => true,
                    Err(e) => upstream_healthy(e),
                });
            }
            match result {
                Ok(reply) => {
                    dep.observe(started.elapsed());
                    if !trace.attempts.is_empty() {
                        trace.attempts.push(attempt(route, dep, started, Ok(())));
                    }
                    return Ok((route, dep, reply));
                }
                Err(e) => {
                    trace.attempts.push(attempt(route, dep, started, Err(&e)));
                    let class = classify(&e);
                    let wait = backoff(&route.config.routing, n, &e);
                    let retry = class.is_some_and(FailureClass::retryable)
                        && n < retries
                        && wait <= route.config.routing.max_retry_wait;
                    if retry {
                        tokio::time::sleep(wait).await;
                        last = Some(e);
                        continue;
                    }
                    if class.is_some_and(|c| policy.fallback_on.contains(c)) {
                        // An upstream failure outranks an earlier "circuit open".
                        last = Some(e);
                        break;
                    }
                    return Err(e);
                }
            }
        }
    }
    Err(last.unwrap_or_else(|| GatewayError::Internal("no model to call".into())))
}
