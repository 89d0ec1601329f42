//! The part of a chat request that does not depend on which API the client speaks:
//! resolve the model, call it (whole or streamed), account for a whole reply, and turn
//! failures into traced error responses.

use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keel_core::chat::{ChatRequest, ChatResponse};
use keel_core::money::Nanos;
use keel_core::trace::TraceRecord;

use crate::error::GatewayError;
use crate::guard;
use crate::pipeline::attribution::REQUEST_ID;
use crate::pipeline::cache::CACHE_HEADER;
use crate::pipeline::call::{self, OpenedStream};
use crate::pipeline::function::{self, PROMPT_VERSION_HEADER, VARIANT_HEADER};
use crate::pipeline::pending::PendingTrace;
use crate::pipeline::resume::Resume;
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
    /// The opened upstream stream, and the guardrails that watch it (if any apply).
    Stream(OpenedStream, Option<Box<crate::guard::stream::StreamGuard>>),
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
        plan = function::apply(app, f, &mut req, opts.variant, trace).await?;
    }
    let first = call::resolve(app, &req.model)?;
    // Guardrails: the policies of this function, model and key; input checks on the
    // rendered request (redaction rewrites it) before anything is reserved or sent.
    let applied = app.guards.for_call(
        trace.function.as_deref(),
        &first.config.name,
        opts.key.map(|k| k.id.as_str()),
    );
    let guarded = guard::input::check_input(app, &applied, &mut req, trace)?;
    if let Some(out) = governed {
        admit::admit(app, opts.key, first, plan.chain, &mut req, trace, out).await?;
    }
    trace.provider = Some(first.primary().provider_name.clone());
    trace.upstream_model = Some(first.primary().upstream_model.clone());
    // What the output checks need of the request once it is sent: the schema it asked
    // for, and the whole request when an answer may have to be asked for again.
    let kept = (!applied.is_empty()).then(|| KeptRequest::of(&req, applied.may_reask()));
    let cache = app.cache.as_ref().filter(|_| !opts.bypass_cache);
    let key = cache.and_then(|c| c.key(trace.tenant.as_deref(), first, &req));
    if let (Some(c), Some(k)) = (cache, &key) {
        if let Some(hit) = c.get(k) {
            let Served::Whole { mut resp, cost } = serve_hit(app, first, &hit, trace) else {
                return Err(GatewayError::Internal(
                    "a cache hit is a whole reply".into(),
                ));
            };
            if let Some(kept) = &kept {
                // `reasked`: a stored answer is never asked for again; a broken one fails.
                guard::output::check_output(
                    app,
                    &applied,
                    &guarded,
                    kept.schema.as_ref(),
                    &mut resp,
                    trace,
                    true,
                )?;
            }
            return Ok(Served::Whole { resp, cost });
        }
        trace.cache = Some("miss".into());
    }
    // A stream of a model that resumes cut streams keeps its request for that.
    let resume = (req.stream && first.config.routing.resume_streams && req.n.unwrap_or(1) == 1)
        .then(|| {
            let chain = plan.chain.unwrap_or(&first.config.routing.fallbacks);
            Box::new(Resume::new(
                req.clone(),
                &first.config.name,
                chain,
                plan.limits,
            ))
        });
    // A stream that ends without the provider's usage is priced from this count.
    let input_estimate = if req.stream {
        let margin = app.governor.config().limits.input_margin;
        keel_governance::estimate::input_tokens(&req, &first.primary().upstream_model, margin).0
    } else {
        0
    };
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
    let mut resp = match reply {
        Reply::Stream(mut opened) => {
            opened.resume = resume;
            opened.input_estimate = input_estimate;
            let guard = guard::stream::StreamGuard::new(applied, guarded).map(Box::new);
            return Ok(Served::Stream(opened, guard));
        }
        Reply::Whole(resp) => resp,
    };
    let mut route = route;
    record_reply(app, route, &resp, trace);
    let cost = trace.cost;
    if let (Some(c), Some(k)) = (cache, key) {
        c.put(k, resp.clone(), cost);
    }
    if let Some(kept) = &kept {
        let mut reasked = false;
        while let guard::output::Verdict::Reask { feedback, fallback } =
            guard::output::check_output(
                app,
                &applied,
                &guarded,
                kept.schema.as_ref(),
                &mut resp,
                trace,
                reasked,
            )?
        {
            reasked = true;
            let target = if fallback {
                let next = plan
                    .chain
                    .unwrap_or(&first.config.routing.fallbacks)
                    .first()
                    .ok_or_else(|| GatewayError::OutputContract {
                        policy: "(json_schema)".into(),
                        check: "on_fail = fallback".into(),
                        detail: format!(
                            "{feedback} — and `{}` has no fallback model to ask",
                            first.config.name
                        ),
                    })?;
                call::resolve(app, next)?
            } else {
                route
            };
            let again = kept.reask(&resp, feedback)?;
            let before = (
                trace.input_tokens,
                trace.output_tokens,
                trace.cost,
                trace.unpriced,
            );
            let (r2, _, reply) =
                route::call_routed(app, target, Some(&[]), plan.limits, again, trace).await?;
            let Reply::Whole(r) = reply else {
                return Err(GatewayError::Internal("a re-asked call streamed".into()));
            };
            resp = r;
            route = r2;
            record_reply(app, route, &resp, trace);
            add_earlier_usage(trace, before);
        }
    }
    Ok(Served::Whole {
        resp,
        cost: trace.cost,
    })
}

/// Fill the trace from a whole reply: the served model, tokens, cost, captured output.
fn record_reply(
    app: &AppState,
    route: &crate::state::ModelRoute,
    resp: &ChatResponse,
    trace: &mut TraceRecord,
) {
    trace.served_model = Some(resp.model.clone());
    trace
        .system_fingerprint
        .clone_from(&resp.system_fingerprint);
    trace.finish_reason = resp.choices.first().and_then(|c| c.finish_reason.clone());
    if app.capture.keeps_text() {
        trace.output = Some(captured_output(resp));
    }
    match resp.usage {
        Some(usage) => account::settle(app, route, trace, &usage),
        None => trace.unpriced = route.config.price.is_none(),
    }
}

/// A re-asked answer's trace counts both calls' tokens and cost.
fn add_earlier_usage(
    trace: &mut TraceRecord,
    (input, output, cost, unpriced): (Option<u64>, Option<u64>, Option<Nanos>, bool),
) {
    let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    };
    trace.input_tokens = add(trace.input_tokens, input);
    trace.output_tokens = add(trace.output_tokens, output);
    trace.unpriced |= unpriced;
    trace.cost = match (trace.cost, cost) {
        (Some(a), Some(b)) if !trace.unpriced => Some(a.saturating_add(b)),
        _ => None,
    };
}

/// What output checks need of a request after it was sent upstream.
struct KeptRequest {
    /// The JSON schema the request asked for in `response_format`.
    schema: Option<serde_json::Value>,
    /// The whole request, when an answer may be asked for again.
    whole: Option<ChatRequest>,
}

impl KeptRequest {
    fn of(req: &ChatRequest, whole: bool) -> KeptRequest {
        KeptRequest {
            schema: guard::output::requested_schema(req).cloned(),
            whole: whole.then(|| req.clone()),
        }
    }

    /// The request again, with the rejected answer and what was wrong with it.
    fn reask(&self, bad: &ChatResponse, feedback: String) -> Result<ChatRequest, GatewayError> {
        let mut again = self
            .whole
            .clone()
            .ok_or_else(|| GatewayError::Internal("no request kept to ask again".into()))?;
        again.stream = false;
        again.messages.push(keel_core::chat::Message::text(
            "assistant",
            bad.output_text(),
        ));
        again
            .messages
            .push(keel_core::chat::Message::text("user", feedback));
        Ok(again)
    }
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
    if app.capture.keeps_text() {
        trace.output = Some(captured_output(&resp));
    }
    app.metrics.cache_hit(&route.config.name, hit.cost);
    Served::Whole {
        resp,
        cost: Some(Nanos(0)),
    }
}

/// What a trace keeps of a whole reply: the text, then the tool calls as JSON.
pub(crate) fn captured_output(resp: &ChatResponse) -> String {
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
    guard: Option<Box<crate::guard::stream::StreamGuard>>,
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
    let relay = Relay::new(app, model, trace, ticket, started, opened, format).with_guard(guard);
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
    if app.capture.keeps_text() {
        trace.input = Some(String::from_utf8_lossy(body).into_owned());
    }
}
