//! The HTTP side of a chat request that does not depend on which API the client speaks:
//! Keel's response headers, the streamed response around the relay, whole replies, and
//! failures turned into traced error responses. The call itself is `pipeline::drive`.

use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keel_core::money::Nanos;
use keel_core::trace::TraceRecord;

use crate::error::GatewayError;
use crate::pipeline::attribution::REQUEST_ID;
use crate::pipeline::cache::CACHE_HEADER;
use crate::pipeline::call::OpenedStream;
use crate::pipeline::function::{PROMPT_VERSION_HEADER, VARIANT_HEADER};
use crate::pipeline::pending::PendingTrace;
use crate::pipeline::{relay::Relay, relay::StreamFormat};
use crate::state::AppState;

pub const COST_HEADER: &str = "x-keel-cost-usd";
/// After a retry or fallback: the configured model that answered.
pub const SERVED_BY_HEADER: &str = "x-keel-model";
/// After a retry or fallback: how many attempts the call took.
pub const ATTEMPTS_HEADER: &str = "x-keel-attempts";

/// A model call's headers and body, moved out of the request. axum's `HeaderMap`
/// extractor clones the map (allocations on every call); the handlers of model calls
/// take this instead.
pub struct CallRequest {
    pub headers: axum::http::HeaderMap,
    pub body: axum::body::Body,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for CallRequest {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: axum::extract::Request, _: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        Ok(CallRequest {
            headers: parts.headers,
            body,
        })
    }
}

/// A model call handler's future, boxed while it is still unstarted.
///
/// axum moves every handler's future into a box of its own, and a move copies the whole
/// future: ~8 KB for a chat call, nearly all of it the states of steps not reached yet (the
/// unstarted future holds ~120 bytes). Boxed here first, axum's move copies a pointer
/// (`bench/instructions.sh`: that copy was ~8,500 instructions of every call).
pub type CallFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;

/// See [`CallFuture`]. The box is allocated before the future is made, so the future
/// can be written into it where it is built instead of being built and then copied in.
pub fn boxed_call<F>(make: impl FnOnce() -> F) -> CallFuture
where
    F: std::future::Future<Output = Response> + Send + 'static,
{
    let slot = Box::<F>::new_uninit();
    let call: std::pin::Pin<Box<F>> = Box::into_pin(Box::write(slot, make()));
    call
}

/// Which wire format the client speaks (errors and streams are shaped by it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ClientApi {
    OpenAi,
    Anthropic,
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
    let keel_headers = KeelHeaders::of(&app, &trace);
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
/// A deprecated model's answers also carry `Deprecation` and `Sunset`.
struct KeelHeaders {
    variant: Option<String>,
    prompt_version: Option<i64>,
    served: Option<(String, usize)>,
    cache: Option<String>,
    lifecycle: Vec<(HeaderName, HeaderValue)>,
}

impl KeelHeaders {
    fn of(app: &AppState, t: &TraceRecord) -> KeelHeaders {
        // The model that answered: the last attempt's, else the one resolved.
        let model = t
            .attempts
            .last()
            .map(|a| a.model.as_str())
            .or(t.model_requested.as_deref());
        KeelHeaders {
            lifecycle: model
                .and_then(|m| app.models.get(m))
                .map(|r| r.lifecycle_headers.clone())
                .unwrap_or_default(),
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
        for (name, value) in &self.lifecycle {
            h.insert(name.clone(), value.clone());
        }
    }
}

/// Write the trace of a successful whole reply and answer with its JSON body.
pub fn respond_whole(
    pending: PendingTrace,
    body: impl Into<bytes::Bytes>,
    cost: Option<Nanos>,
) -> Response {
    let id = pending.id().to_string();
    let keel_headers = {
        let (app, trace) = pending.parts();
        KeelHeaders::of(app, trace)
    };
    let rate = pending.rate().clone();
    pending.finish();
    let mut resp = json_response(StatusCode::OK, body, &id, cost);
    keel_headers.apply(resp.headers_mut());
    rate_headers(resp.headers_mut(), &rate);
    resp
}

/// Trace a failed request and answer with the error in the client's format.
pub fn reject(pending: PendingTrace, err: GatewayError, api: ClientApi) -> Response {
    let id = pending.id().to_string();
    let keel_headers = {
        let (app, trace) = pending.parts();
        KeelHeaders::of(app, trace)
    };
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

/// A response body as JSON, in a buffer sized for a typical reply: `serde_json::to_vec`
/// starts at 128 bytes and reallocates its way up to every answer's size.
pub fn json_body(value: &impl serde::Serialize) -> serde_json::Result<Vec<u8>> {
    let mut body = Vec::with_capacity(JSON_BODY_CAPACITY);
    serde_json::to_writer(&mut body, value)?;
    Ok(body)
}

/// Room for a short answer with its envelope; longer ones grow from here.
const JSON_BODY_CAPACITY: usize = 1024;

/// A JSON body with Keel's response headers.
pub fn json_response(
    status: StatusCode,
    body: impl Into<bytes::Bytes>,
    request_id: &str,
    cost: Option<Nanos>,
) -> Response {
    let mut resp = Response::new(axum::body::Body::from(body.into()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    insert_header(h, REQUEST_ID, request_id);
    if let Some(c) = cost {
        // Formatted on the stack: `HeaderValue` makes the one copy (was four allocations).
        let mut text = [0u8; 48];
        let mut rest = &mut text[..];
        if std::io::Write::write_fmt(&mut rest, format_args!("{}", c.dollars())).is_ok() {
            let len = 48 - rest.len();
            if let Ok(v) = HeaderValue::from_bytes(&text[..len]) {
                h.insert(HeaderName::from_static(COST_HEADER), v);
            }
        }
    }
    resp
}

pub fn insert_header(h: &mut axum::http::HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

/// Keep the request body in the trace when capture is on (lossy for invalid UTF-8).
/// Called once the body is parsed: the buffer then has no other owner, so it becomes the
/// captured text without a copy.
pub fn capture_input(app: &AppState, trace: &mut TraceRecord, body: bytes::Bytes) {
    if app.capture.keeps_text() {
        let bytes: Vec<u8> = body.into();
        trace.input = Some(match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        });
    }
}

/// A request's start, shared by the model endpoints: its trace (attributed, with the
/// caller's OpenTelemetry context), the caller's key, and its body read under the
/// gateway's limits. `Err` is the response already sent (traced).
pub struct Opened {
    pub pending: crate::pipeline::pending::PendingTrace,
    pub key: Option<std::sync::Arc<keel_governance::KeyEntry>>,
    pub bytes: bytes::Bytes,
    /// Keeps the body's share of the in-flight byte budget until the answer.
    pub hold: crate::pipeline::body::BodyHold,
}

pub async fn open_request(
    app: &std::sync::Arc<AppState>,
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    (api_name, endpoint): (&str, &str),
    api: ClientApi,
) -> Result<Opened, Response> {
    use crate::pipeline::{attribution, auth, body as read, pending::PendingTrace};
    let mut trace = TraceRecord::new(
        attribution::request_id(headers),
        crate::pipeline::drive::now_ms(),
        api_name,
        endpoint,
    );
    attribution::attribute(&mut trace, headers);
    crate::otel::context::attach(&mut trace, headers, app.otel.is_some());
    let mut pending = PendingTrace::start(app.clone(), trace, std::time::Instant::now());
    let key = match auth::authenticate(app, headers, pending.trace()) {
        Ok(k) => k,
        Err(e) => return Err(reject(pending, e, api)),
    };
    match read::read_body(app, headers, body).await {
        Ok(b) => Ok(Opened {
            pending,
            key,
            bytes: b.bytes,
            hold: b.hold,
        }),
        Err(e) => Err(reject(pending, e, api)),
    }
}
