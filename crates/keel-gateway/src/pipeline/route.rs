//! Retries and fallbacks: call the model, try it again on a retryable failure (after a
//! back-off that honours `Retry-After`), and move down the fallback chain when it keeps
//! failing in a way the chain covers. Every try is recorded on the trace when there was
//! more than one.
//!
//! A stream is retried or falls back only before its first chunk: `call::open_stream`
//! waits for that chunk before the client is answered, so nothing has reached the client
//! yet; once the response has started, a failure ends the stream with an error event —
//! or, for a model with `resume_streams`, the relay continues it on the chain (see
//! `pipeline::resume`).
//!
//! A model with a circuit breaker is skipped while its breaker is open (the attempt is
//! recorded as `circuit_open`); when every model is skipped the caller gets 503
//! `circuit_open`. Upstream failures (not a caller's bad request) feed the breaker.
//!
//! The common case — no retries, no fallbacks, no breaker — takes one call and does not
//! clone the request.

use std::time::{Duration, Instant};

use keel_core::chat::ChatRequest;
use keel_core::config::routing::{FailureClass, Routing};
use keel_core::trace::{Attempt, TraceRecord};
use keel_providers::{Completed, ProviderError};

use super::call::{self, OpenedStream};
use super::function::Limits;
use crate::balance::{self, Deployment, NoDeployment};
use crate::error::GatewayError;
use crate::state::{AppState, ModelRoute};

/// What the serving model returned.
pub enum Reply {
    Whole(Completed),
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
/// else `retry_backoff · 2^attempt` with ±50 % jitter, at most `max_retry_wait`.
fn backoff(policy: &Routing, attempt: u32, e: &GatewayError) -> Duration {
    backoff_from(policy, attempt, retry_after(e), fastrand::f64())
}

/// The provider's `Retry-After`, if the failure carried one.
fn retry_after(e: &GatewayError) -> Option<Duration> {
    match e {
        GatewayError::Upstream(ProviderError::Status { retry_after, .. }) => *retry_after,
        _ => None,
    }
}

/// [`backoff`] with the jitter given: `jitter` in `[0, 1]` scales the exponential base by
/// `0.5 + jitter`. A provider's `Retry-After` is returned as is (never shortened, never
/// capped: [`retry_wait`] decides whether it is worth waiting); Keel's own back-off is
/// capped at `max_retry_wait`, so it never makes a retry impossible. Integer milliseconds
/// with saturating arithmetic: no configured duration can overflow it.
fn backoff_from(
    policy: &Routing,
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    if let Some(d) = retry_after {
        return d;
    }
    let base = policy.retry_backoff.saturating_mul(1 << attempt.min(10));
    let ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
    // `as` saturates a float to the integer's range (and NaN to 0).
    let jittered = (ms / 2).saturating_add((ms as f64 * jitter.clamp(0.0, 1.0)) as u64);
    Duration::from_millis(jittered).min(policy.max_retry_wait)
}

/// Whether failure `e` of try `n` (0-based) is retried on the same model, and after how
/// long: only a retryable class, only while retries are left, and only when the wait (a
/// `Retry-After` included) is within `max_retry_wait` — a longer one moves on to the
/// fallback instead of holding the caller.
fn retry_wait(policy: &Routing, n: u32, e: &GatewayError, wait: Duration) -> Option<Duration> {
    let retryable = classify(e).is_some_and(FailureClass::retryable);
    (retryable && n < policy.retries && wait <= policy.max_retry_wait).then_some(wait)
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
                    if let Some(wait) = retry_wait(&route.config.routing, n, &e, wait) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff_ms: u64, max_wait_ms: u64, retries: u32) -> Routing {
        Routing {
            retries,
            retry_backoff: Duration::from_millis(backoff_ms),
            max_retry_wait: Duration::from_millis(max_wait_ms),
            ..Routing::default()
        }
    }

    fn status(code: u16, retry_after: Option<Duration>) -> GatewayError {
        GatewayError::Upstream(ProviderError::Status {
            status: code,
            message: "upstream said no".into(),
            code: None,
            body: None,
            retry_after,
        })
    }

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    #[test]
    fn backoff_doubles_each_try_within_plus_or_minus_half() {
        let p = policy(100, 60_000, 5);
        for attempt in 0..5u32 {
            let base = 100u128 << attempt;
            assert_eq!(
                ms(backoff_from(&p, attempt, None, 0.0)),
                base / 2,
                "{attempt}"
            );
            assert_eq!(ms(backoff_from(&p, attempt, None, 0.5)), base, "{attempt}");
            assert_eq!(
                ms(backoff_from(&p, attempt, None, 1.0)),
                base * 3 / 2,
                "{attempt}"
            );
        }
        // The random jitter stays in the band, and actually varies.
        let e = status(500, None);
        let waits: Vec<u128> = (0..500).map(|_| ms(backoff(&p, 2, &e))).collect();
        assert!(waits.iter().all(|w| (200..=600).contains(w)), "{waits:?}");
        let (lo, hi) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
        assert!(*lo < 300 && *hi > 500, "jitter spans the band: {lo}..{hi}");
    }

    #[test]
    fn backoff_is_bounded_by_max_retry_wait_and_never_overflows() {
        let p = policy(1_000, 2_500, 10);
        assert_eq!(ms(backoff_from(&p, 1, None, 1.0)), 2_500);
        assert_eq!(ms(backoff_from(&p, 9, None, 0.0)), 2_500);
        assert_eq!(ms(backoff_from(&p, u32::MAX, None, 1.0)), 2_500);
        // An absurd configuration saturates instead of panicking.
        let mut huge = policy(0, 1_000, 3);
        huge.retry_backoff = Duration::MAX;
        assert_eq!(ms(backoff_from(&huge, 10, None, 1.0)), 1_000);
        assert_eq!(ms(backoff_from(&huge, 10, None, f64::NAN)), 1_000);
        // So Keel's own back-off never makes a retry impossible.
        let e = status(503, None);
        let wait = backoff(&p, 5, &e);
        assert_eq!(
            retry_wait(&p, 5, &e, wait),
            Some(Duration::from_millis(2_500))
        );
    }

    #[test]
    fn retry_after_from_the_provider_wins_over_the_backoff() {
        let p = policy(100, 10_000, 3);
        let e = status(429, Some(Duration::from_secs(2)));
        for attempt in 0..3 {
            for jitter in [0.0, 0.5, 1.0] {
                let wait = backoff_from(&p, attempt, retry_after(&e), jitter);
                assert_eq!(wait, Duration::from_secs(2));
            }
            assert_eq!(backoff(&p, attempt, &e), Duration::from_secs(2));
        }
        // Shorter than the back-off too: the provider knows best.
        let e = status(429, Some(Duration::ZERO));
        assert_eq!(backoff(&p, 2, &e), Duration::ZERO);
        assert_eq!(retry_wait(&p, 0, &e, Duration::ZERO), Some(Duration::ZERO));
    }

    #[test]
    fn a_retry_after_longer_than_max_retry_wait_skips_to_the_fallback() {
        let p = policy(100, 10_000, 3);
        let long = status(429, Some(Duration::from_secs(30)));
        let wait = backoff(&p, 0, &long);
        assert_eq!(wait, Duration::from_secs(30), "not shortened");
        assert_eq!(retry_wait(&p, 0, &long, wait), None);
        let exact = status(429, Some(Duration::from_secs(10)));
        assert_eq!(
            retry_wait(&p, 0, &exact, backoff(&p, 0, &exact)),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn only_retryable_failures_with_retries_left_are_retried() {
        let p = policy(10, 1_000, 2);
        let wait = Duration::from_millis(10);
        for e in [
            status(500, None),
            status(429, None),
            GatewayError::Upstream(ProviderError::Timeout(Duration::from_secs(1))),
            GatewayError::Upstream(ProviderError::Connect("refused".into())),
        ] {
            assert_eq!(retry_wait(&p, 0, &e, wait), Some(wait), "{e:?}");
            assert_eq!(retry_wait(&p, 1, &e, wait), Some(wait), "{e:?}");
            assert_eq!(retry_wait(&p, 2, &e, wait), None, "out of retries: {e:?}");
        }
        for e in [
            status(400, None),
            status(401, None),
            GatewayError::Upstream(ProviderError::InvalidResponse("garbage".into())),
            GatewayError::Upstream(ProviderError::StreamCut("cut".into())),
        ] {
            assert_eq!(retry_wait(&p, 0, &e, wait), None, "{e:?}");
        }
    }
}
