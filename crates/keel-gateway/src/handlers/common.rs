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
use crate::pipeline::call::{self, OpenedStream};
use crate::pipeline::function::{self, PROMPT_VERSION_HEADER, VARIANT_HEADER};
use crate::pipeline::pending::PendingTrace;
use crate::pipeline::route::{self, Reply};
use crate::pipeline::{account, relay::Relay, relay::StreamFormat};
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

/// Resolve, call and (for whole replies) account. The trace is filled in as we go.
pub async fn run(
    app: &AppState,
    mut req: ChatRequest,
    override_variant: Option<&str>,
    trace: &mut TraceRecord,
) -> Result<Served, GatewayError> {
    trace.model_requested = Some(req.model.clone());
    trace.stream = req.stream;
    let mut chain = None;
    if let Some(f) = app.config.functions.get(&req.model) {
        chain = function::apply(app, f, &mut req, override_variant, trace)?;
    }
    let first = call::resolve(app, &req.model)?;
    trace.provider = Some(first.provider_name.clone());
    trace.upstream_model = Some(first.config.upstream_model.clone());
    let (route, reply) = route::call_routed(app, first, chain, req, trace).await?;
    if !std::ptr::eq(route, first) {
        trace.provider = Some(route.provider_name.clone());
        trace.upstream_model = Some(route.config.upstream_model.clone());
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
    Ok(Served::Whole { resp, cost })
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
    let trace = pending.into_trace();
    let id = trace.id.clone();
    let variant = trace.variant.clone();
    let prompt_version = trace.prompt_version;
    // The model that answered: the last attempt's after a retry or fallback.
    let model = trace
        .attempts
        .last()
        .map(|a| a.model.clone())
        .or_else(|| trace.model_requested.clone())
        .unwrap_or_default();
    let served = routing_headers(&trace.attempts);
    let relay = Relay::new(app, model, trace, started, opened, format);
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
    function_headers(h, &variant, prompt_version);
    if let Some((model, n)) = &served {
        insert_header(h, SERVED_BY_HEADER, model);
        h.insert(
            HeaderName::from_static(ATTEMPTS_HEADER),
            HeaderValue::from(*n),
        );
    }
    resp
}

/// After a retry or fallback: the model that answered and how many attempts it took.
fn routing_headers(attempts: &[keel_core::trace::Attempt]) -> Option<(String, usize)> {
    attempts.last().map(|a| (a.model.clone(), attempts.len()))
}

/// Write the trace of a successful whole reply and answer with its JSON body.
pub fn respond_whole(mut pending: PendingTrace, body: Vec<u8>, cost: Option<Nanos>) -> Response {
    let id = pending.id().to_string();
    let variant = pending.trace().variant.clone();
    let prompt_version = pending.trace().prompt_version;
    let served = routing_headers(&pending.trace().attempts);
    pending.finish();
    let mut resp = json_response(StatusCode::OK, body, &id, cost);
    let h = resp.headers_mut();
    function_headers(h, &variant, prompt_version);
    if let Some((model, n)) = &served {
        insert_header(h, SERVED_BY_HEADER, model);
        h.insert(
            HeaderName::from_static(ATTEMPTS_HEADER),
            HeaderValue::from(*n),
        );
    }
    resp
}

/// Trace a failed request and answer with the error in the client's format.
pub fn reject(mut pending: PendingTrace, err: GatewayError, api: ClientApi) -> Response {
    let id = pending.id().to_string();
    let variant = pending.trace().variant.clone();
    let prompt_version = pending.trace().prompt_version;
    pending.fail(&err);
    let mut resp = error_response(&err, api, &id);
    function_headers(resp.headers_mut(), &variant, prompt_version);
    resp
}

/// `x-keel-variant` and `x-keel-prompt-version`, on responses to function calls.
fn function_headers(
    h: &mut axum::http::HeaderMap,
    variant: &Option<String>,
    prompt_version: Option<i64>,
) {
    if let Some(v) = variant {
        insert_header(h, VARIANT_HEADER, v);
    }
    if let Some(n) = prompt_version {
        h.insert(
            HeaderName::from_static(PROMPT_VERSION_HEADER),
            HeaderValue::from(n),
        );
    }
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
