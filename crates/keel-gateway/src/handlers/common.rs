//! The part of a chat request that does not depend on which API the client speaks:
//! resolve the model, call it (whole or streamed), account for a whole reply, and turn
//! failures into traced error responses.

use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keel_core::chat::{ChatRequest, ChatResponse};
use keel_core::config::Capture;
use keel_core::money::Nanos;
use keel_core::trace::TraceRecord;

use crate::error::GatewayError;
use crate::pipeline::attribution::REQUEST_ID;
use crate::pipeline::cache::CACHE_HEADER;
use crate::pipeline::call::{self, OpenedStream};
use crate::pipeline::function::{self, PROMPT_VERSION_HEADER, VARIANT_HEADER};
use crate::pipeline::pending::PendingTrace;
use crate::pipeline::route::{self, Reply};
use crate::pipeline::{account, admit, relay::Relay, relay::StreamFormat};
use crate::state::AppState;

pub const COST_HEADER: &str = "x-keel-cost-usd";
/// After a retry or fallback: the configured model that answered.
pub const SERVED_BY_HEADER: &str = "x-keel-model";
/// After a retry or fallback: how many attempts the call took.
pub const ATTEMPTS_HEADER: &str = "x-keel-attempts";

/// Which wire format the client speaks (errors and streams are shaped by it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ClientApi {
    OpenAi,
    Anthropic,
}

pub enum Served {
    Whole {
        resp: ChatResponse,
        cost: Option<Nanos>,
    },
    Stream(OpenedStream),
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What the request's headers ask of the pipeline, and who is asking.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOptions<'a> {
    /// `x-keel-variant`: the function variant to serve.
    pub variant: Option<&'a str>,
    /// `x-keel-cache: bypass`.
    pub bypass_cache: bool,
    /// The caller's virtual key, when it sent one.
    pub key: Option<&'a keel_governance::KeyEntry>,
}

impl<'a> CallOptions<'a> {
    pub fn from_headers(headers: &'a axum::http::HeaderMap) -> CallOptions<'a> {
        CallOptions {
            variant: headers
                .get(VARIANT_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty()),
            bypass_cache: headers
                .get(CACHE_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("bypass")),
            key: None,
        }
    }
}

/// Resolve, admit, call and (for whole replies) account. The trace is filled in as we
/// go. `governed` is where admission leaves its reservation; `None` (eval, replay,
/// shadow) skips admission: those calls never count against a caller's limits.
pub async fn run(
    app: &AppState,
    mut req: ChatRequest,
    opts: CallOptions<'_>,
    trace: &mut TraceRecord,
    governed: Option<&mut admit::Governed>,
) -> Result<Served, GatewayError> {
    trace.model_requested = Some(req.model.clone());
    trace.stream = req.stream;
    if let Some(k) = opts.key {
        if !k.allows(&req.model) {
            return Err(keel_governance::GovError::ModelNotAllowed {
                key: k.id.clone(),
                model: req.model.clone(),
                allowed: k.models.as_deref().unwrap_or_default().join(", "),
            }
            .into());
        }
    }
    let mut plan = function::CallPlan::default();
    if let Some(f) = app.config.functions.get(&req.model) {
        plan = function::apply(app, f, &mut req, opts.variant, trace)?;
    }
    let first = call::resolve(app, &req.model)?;
    if let Some(out) = governed {
        admit::admit(app, opts.key, first, plan.chain, &mut req, trace, out).await?;
    }
    trace.provider = Some(first.primary().provider_name.clone());
    trace.upstream_model = Some(first.primary().upstream_model.clone());
    let cache = app.cache.as_ref().filter(|_| !opts.bypass_cache);
    let key = cache.and_then(|c| c.key(trace.tenant.as_deref(), first, &req));
    if let (Some(c), Some(k)) = (cache, &key) {
        if let Some(hit) = c.get(k) {
            return Ok(serve_hit(app, first, &hit, trace));
        }
        trace.cache = Some("miss".into());
    }
    let call = route::call_routed(app, first, plan.chain, plan.limits, req, trace);
    let (route, dep, reply) = match plan.limits.total {
        None => call.await?,
        Some(total) => tokio::time::timeout(total, call)
            .await
            .map_err(|_| GatewayError::Upstream(keel_providers::ProviderError::Timeout(total)))??,
    };
    if !std::ptr::eq(dep, first.primary()) {
        trace.provider = Some(dep.provider_name.clone());
        trace.upstream_model = Some(dep.upstream_model.clone());
    }
    let resp = match reply {
        Reply::Stream(opened) => return Ok(Served::Stream(opened)),
        Reply::Whole(resp) => resp,
    };
    trace.served_model = Some(resp.model.clone());
    trace
        .system_fingerprint
        .clone_from(&resp.system_fingerprint);
    trace.finish_reason = resp.choices.first().and_then(|c| c.finish_reason.clone());
    if app.capture == Capture::Full {
        trace.output = Some(captured_output(&resp));
    }
    match resp.usage {
        Some(usage) => account::settle(app, route, trace, &usage),
        None => trace.unpriced = route.config.price.is_none(),
    }
    let cost = trace.cost;
    if let (Some(c), Some(k)) = (cache, key) {
        c.put(k, resp.clone(), cost);
    }
    Ok(Served::Whole { resp, cost })
}

/// A reply from the cache: no upstream call, so it costs $0; the trace keeps the tokens
/// and what the call cost when it was made.
fn serve_hit(
    app: &AppState,
    route: &crate::state::ModelRoute,
    hit: &crate::pipeline::cache::Cached,
    trace: &mut TraceRecord,
) -> Served {
    let resp = hit.resp.clone();
    trace.cache = Some("hit".into());
    trace.saved_cost = hit.cost;
    trace.cost = Some(Nanos(0));
    trace.unpriced = false;
    trace.served_model = Some(resp.model.clone());
    trace
        .system_fingerprint
        .clone_from(&resp.system_fingerprint);
    trace.finish_reason = resp.choices.first().and_then(|c| c.finish_reason.clone());
    if let Some(u) = &resp.usage {
        trace.input_tokens = Some(u.prompt_tokens);
        trace.output_tokens = Some(u.completion_tokens);
        trace.cached_tokens = Some(u.cached_tokens());
        trace.reasoning_tokens = Some(u.reasoning_tokens());
    }
    if app.capture == Capture::Full {
        trace.output = Some(captured_output(&resp));
    }
    app.metrics.cache_hit(&route.config.name, hit.cost);
    Served::Whole {
        resp,
        cost: Some(Nanos(0)),
    }
}

/// What a trace keeps of a whole reply: the text, then the tool calls as JSON.
fn captured_output(resp: &ChatResponse) -> String {
    let mut out = resp.output_text();
    for c in &resp.choices {
        if let Some(calls) = &c.message.tool_calls {
            if let Ok(json) = serde_json::to_string(calls) {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&json);
            }
        }
    }
    out
}

/// Hand the trace to the relay and build the streamed response.
pub fn stream_response<F: StreamFormat>(
    app: Arc<AppState>,
    pending: PendingTrace,
    opened: OpenedStream,
    format: F,
) -> Response {
    let started = pending.started();
    let rate = pending.rate().clone();
    let (trace, ticket) = pending.into_trace();
    let id = trace.id.clone();
    let keel_headers = KeelHeaders::of(&trace);
    // The model that answered: the last attempt's after a retry or fallback.
    let model = trace
        .attempts
        .last()
        .map(|a| a.model.clone())
        .or_else(|| trace.model_requested.clone())
        .unwrap_or_default();
    let relay = Relay::new(app, model, trace, ticket, started, opened, format);
    let body = axum::body::Body::from_stream(relay.into_stream());
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    insert_header(h, REQUEST_ID, &id);
    keel_headers.apply(h);
    rate_headers(h, &rate);
    resp
}

/// OpenAI's `x-ratelimit-*` headers for the tightest request and token limits.
fn rate_headers(h: &mut axum::http::HeaderMap, rate: &keel_governance::RateHeaders) {
    for (kind, st) in [("requests", rate.requests), ("tokens", rate.tokens)] {
        let Some(st) = st else { continue };
        for (what, value) in [
            ("limit", st.limit.to_string()),
            ("remaining", st.remaining.to_string()),
            ("reset", reset_string(st.reset)),
        ] {
            let name = format!("x-ratelimit-{what}-{kind}");
            if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(&value)) {
                h.insert(n, v);
            }
        }
    }
}

/// A reset time as OpenAI writes it: `20ms`, `6s`, `1m30s`.
fn reset_string(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = format!("{:.3}", d.as_secs_f64());
        format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// The `x-keel-*` response headers a trace implies: the function's variant and prompt
/// version, the model that answered after a retry or fallback (and the attempt count),
/// and the cache outcome.
struct KeelHeaders {
    variant: Option<String>,
    prompt_version: Option<i64>,
    served: Option<(String, usize)>,
    cache: Option<String>,
}

impl KeelHeaders {
    fn of(t: &TraceRecord) -> KeelHeaders {
        KeelHeaders {
            variant: t.variant.clone(),
            prompt_version: t.prompt_version,
            served: t
                .attempts
                .last()
                .map(|a| (a.model.clone(), t.attempts.len())),
            cache: t.cache.clone(),
        }
    }

    fn apply(&self, h: &mut axum::http::HeaderMap) {
        if let Some(v) = &self.variant {
            insert_header(h, VARIANT_HEADER, v);
        }
        if let Some(n) = self.prompt_version {
            h.insert(
                HeaderName::from_static(PROMPT_VERSION_HEADER),
                HeaderValue::from(n),
            );
        }
        if let Some((model, n)) = &self.served {
            insert_header(h, SERVED_BY_HEADER, model);
            h.insert(
                HeaderName::from_static(ATTEMPTS_HEADER),
                HeaderValue::from(*n),
            );
        }
        if let Some(c) = &self.cache {
            insert_header(h, CACHE_HEADER, c);
        }
    }
}

/// Write the trace of a successful whole reply and answer with its JSON body.
pub fn respond_whole(mut pending: PendingTrace, body: Vec<u8>, cost: Option<Nanos>) -> Response {
    let id = pending.id().to_string();
    let keel_headers = KeelHeaders::of(pending.trace());
    let rate = pending.rate().clone();
    pending.finish();
    let mut resp = json_response(StatusCode::OK, body, &id, cost);
    keel_headers.apply(resp.headers_mut());
    rate_headers(resp.headers_mut(), &rate);
    resp
}

/// Trace a failed request and answer with the error in the client's format.
pub fn reject(mut pending: PendingTrace, err: GatewayError, api: ClientApi) -> Response {
    let id = pending.id().to_string();
    let keel_headers = KeelHeaders::of(pending.trace());
    pending.fail(&err);
    let mut resp = error_response(&err, api, &id);
    keel_headers.apply(resp.headers_mut());
    resp
}

pub fn error_response(err: &GatewayError, api: ClientApi, request_id: &str) -> Response {
    let view = err.view();
    let body = match api {
        ClientApi::OpenAi => err.openai_body(),
        ClientApi::Anthropic => err.anthropic_body(),
    };
    let mut resp = (view.status, axum::Json(body)).into_response();
    insert_header(resp.headers_mut(), REQUEST_ID, request_id);
    if let Some(secs) = err.retry_after_secs() {
        resp.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// A JSON body with Keel's response headers.
pub fn json_response(
    status: StatusCode,
    body: Vec<u8>,
    request_id: &str,
    cost: Option<Nanos>,
) -> Response {
    let mut resp = Response::new(axum::body::Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    insert_header(h, REQUEST_ID, request_id);
    if let Some(c) = cost {
        insert_header(h, COST_HEADER, &c.to_dollar_string());
    }
    resp
}

pub fn insert_header(h: &mut axum::http::HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

/// Keep the request body in the trace when capture is on (lossy for invalid UTF-8).
pub fn capture_input(app: &AppState, trace: &mut TraceRecord, body: &[u8]) {
    if app.capture == Capture::Full {
        trace.input = Some(String::from_utf8_lossy(body).into_owned());
    }
}
