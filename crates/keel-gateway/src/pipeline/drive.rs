//! Driving one call through the pipeline, whatever the entry point: the HTTP handlers
//! (`handlers/`), in-process calls (evals, replay), shadow calls and the playground all
//! call [`run`]. It reads in DESIGN.md's order — key scope, function (variant + prompt),
//! resolve, input guardrails, admission, cache, the routed call, output guardrails — each
//! step a function below; a whole reply is accounted here, a stream by the relay.

use keel_core::chat::{ChatRequest, ChatResponse};
use keel_core::money::Nanos;
use keel_core::trace::TraceRecord;

use super::cache::CACHE_HEADER;
use super::call::{self, OpenedStream};
use super::function::{self, VARIANT_HEADER};
use super::resume::Resume;
use super::route::{self, Reply};
use super::{account, admit};
use crate::error::GatewayError;
use crate::guard;
use crate::state::AppState;

pub enum Served {
    Whole {
        resp: ChatResponse,
        cost: Option<Nanos>,
        /// The upstream's body, byte for byte, when it is an OpenAI chat completion and
        /// nothing rewrote the answer (no guardrail applied, not from the cache): an
        /// OpenAI-format client is sent it as it came, not `resp` serialized again.
        wire: Option<bytes::Bytes>,
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
    /// The registry snapshot a function call is resolved in; `None` reads the current
    /// one. A sampled live call and its shadow share one, so a label moved between the
    /// two cannot make a pair compare two prompt versions.
    pub registry: Option<&'a crate::registry::Snapshot>,
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
            registry: None,
        }
    }
}

/// Resolve, admit, call and (for whole replies) account, in DESIGN.md's order. The
/// trace is filled in as we go. `governed` is where admission leaves its reservation;
/// `None` (eval, replay, shadow) skips admission: those calls never count against a
/// caller's limits.
pub async fn run(
    app: &AppState,
    mut req: ChatRequest,
    opts: CallOptions<'_>,
    trace: &mut TraceRecord,
    governed: Option<&mut admit::Governed>,
) -> Result<Served, GatewayError> {
    trace.model_requested = Some(req.model.clone());
    trace.stream = req.stream;
    key_allows(opts.key, &req.model)?;
    switched_off(app, opts, &req.model, trace)?;
    let plan = resolve_function(app, &mut req, opts, trace).await?;
    if trace.function.is_some() {
        // The variant's model, now known.
        app.registry.current().switches().check_model(&req.model)?;
    }
    let first = call::resolve(app, &req.model)?;
    let guards = input_guardrails(app, first, &mut req, opts, trace).await?;
    let mut counted = None;
    if let Some(out) = governed {
        admit::admit(app, opts.key, first, plan.chain, &mut req, trace, out).await?;
        counted = out.input_tokens;
    }
    trace.provider = Some(first.primary().provider_name.clone());
    trace.upstream_model = Some(first.primary().upstream_model.clone());
    let cache = app.cache.as_ref().filter(|_| !opts.bypass_cache);
    let key = cache.and_then(|c| c.key(trace.tenant.as_deref(), first, &req));
    if let (Some(c), Some(k)) = (cache, &key) {
        if let Some(hit) = c.get(k).await {
            return serve_hit(app, first, &hit, &guards, trace);
        }
        trace.cache = Some("miss".into());
    }
    let stream_end = StreamEnd::prepare(app, first, &plan, &req, counted);
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
    let keel_providers::Completed { resp, wire } = match reply {
        Reply::Stream(mut opened) => {
            opened.resume = stream_end.resume;
            opened.input_estimate = stream_end.input_estimate;
            let guard = guard::stream::StreamGuard::new(guards.applied, guards.found).map(Box::new);
            return Ok(Served::Stream(opened, guard));
        }
        Reply::Whole(whole) => whole,
    };
    record_reply(app, route, &resp, trace);
    if let (Some(c), Some(k)) = (cache, key) {
        c.put(k, resp.clone(), trace.cost);
    }
    // Output guardrails may rewrite the answer (redaction, placeholders restored) or
    // replace it (asked again): the upstream's bytes stand for it only without them.
    let wire = wire.filter(|_| guards.kept.is_none());
    let resp = output_guardrails(app, first, route, &plan, &guards, resp, trace).await?;
    Ok(Served::Whole {
        resp,
        cost: trace.cost,
        wire,
    })
}

/// An operator's kill switch or budget freeze covering the call: fail fast, before
/// anything is rendered, reserved or sent.
pub(super) fn switched_off(
    app: &AppState,
    opts: CallOptions<'_>,
    model: &str,
    trace: &TraceRecord,
) -> Result<(), GatewayError> {
    let snapshot = app.registry.current();
    let switches = snapshot.switches();
    if switches.is_empty() {
        return Ok(());
    }
    let is_function = app.config.functions.contains_key(model);
    switches.check(
        &app.config,
        &crate::registry::switches::SwitchedCall {
            function: is_function.then_some(model),
            feature: trace.feature.as_deref(),
            key: opts.key.map(|k| k.id.as_str()),
            tenant: trace.tenant.as_deref(),
            model: (!is_function).then_some(model),
        },
    )
}

/// A virtual key may be limited to some models and functions.
pub(super) fn key_allows(
    key: Option<&keel_governance::KeyEntry>,
    model: &str,
) -> Result<(), GatewayError> {
    match key {
        Some(k) if !k.allows(model) => Err(keel_governance::GovError::ModelNotAllowed {
            key: k.id.clone(),
            model: model.to_string(),
            allowed: k.models.as_deref().unwrap_or_default().join(", "),
        }
        .into()),
        _ => Ok(()),
    }
}

/// A function call: pick the variant, render its prompt into `req` (a model call
/// passes through with the default plan).
async fn resolve_function<'a>(
    app: &'a AppState,
    req: &mut ChatRequest,
    opts: CallOptions<'_>,
    trace: &mut TraceRecord,
) -> Result<function::CallPlan<'a>, GatewayError> {
    match app.config.functions.get(&req.model) {
        Some(f) => function::apply(app, f, req, opts.variant, opts.registry, trace).await,
        None => Ok(function::CallPlan::default()),
    }
}

/// The guardrails of one call: the policies that apply, what the input checks found,
/// and what the output checks need of the request once it is sent.
struct CallGuards {
    applied: guard::Applied,
    found: guard::input::InputGuarded,
    kept: Option<KeptRequest>,
}

impl CallGuards {
    /// The output checks on a whole answer (`reasked`: it may not be asked for again).
    fn check_output(
        &self,
        app: &AppState,
        resp: &mut ChatResponse,
        trace: &mut TraceRecord,
        reasked: bool,
    ) -> Result<guard::output::Verdict, GatewayError> {
        let schema = self.kept.as_ref().and_then(|k| k.schema.as_ref());
        guard::output::check_output(
            app,
            &self.applied,
            &self.found,
            schema,
            resp,
            trace,
            reasked,
        )
    }
}

/// The policies of this function, model and key; input checks on the rendered request
/// (redaction rewrites it) before anything is reserved or sent, then the injection
/// judge for what they were unsure of. A judge's own call is not checked on input: its
/// prompt quotes the text it judges (an online eval's judge, or `guard::judge`).
async fn input_guardrails(
    app: &AppState,
    first: &crate::state::ModelRoute,
    req: &mut ChatRequest,
    opts: CallOptions<'_>,
    trace: &mut TraceRecord,
) -> Result<CallGuards, GatewayError> {
    let applied = if trace.origin == keel_core::trace::Origin::Judge {
        guard::Applied::default()
    } else {
        app.guards.for_call(
            trace.function.as_deref(),
            &first.config.name,
            opts.key.map(|k| k.id.as_str()),
        )
    };
    let mut found = guard::input::check_input(app, &applied, req, trace)?;
    if !found.unsure.is_empty() {
        guard::judge::judge_unsure(app, std::mem::take(&mut found.unsure), trace).await?;
    }
    // The schema the request asked for, and the whole request when an answer may have
    // to be asked for again.
    let kept = (!applied.is_empty()).then(|| KeptRequest::of(req, applied.may_reask()));
    Ok(CallGuards {
        applied,
        found,
        kept,
    })
}

/// What a stream keeps of its request for its end (see `pipeline::close`, `resume`).
struct StreamEnd {
    /// With `resume_streams`: how to continue the stream if it is cut.
    resume: Option<Box<Resume>>,
    /// Keel's count of the input tokens: prices a stream that ends without usage.
    input_estimate: u64,
}

impl StreamEnd {
    fn prepare(
        app: &AppState,
        first: &crate::state::ModelRoute,
        plan: &function::CallPlan<'_>,
        req: &ChatRequest,
        counted: Option<u64>,
    ) -> StreamEnd {
        if !req.stream {
            return StreamEnd {
                resume: None,
                input_estimate: 0,
            };
        }
        let resume = (first.config.routing.resume_streams && req.n.unwrap_or(1) == 1).then(|| {
            let chain = plan.chain.unwrap_or(&first.config.routing.fallbacks);
            Box::new(Resume::new(
                req.clone(),
                &first.config.name,
                chain,
                plan.limits,
            ))
        });
        // Admission's count when it made one (the same model, margin and messages: only
        // the output limit may have changed since), else counted here.
        let input_estimate = counted.unwrap_or_else(|| {
            let margin = app.governor.config().limits.input_margin;
            let upstream = &first.primary().upstream_model;
            keel_governance::estimate::input_tokens(req, upstream, margin).0
        });
        StreamEnd {
            resume,
            input_estimate,
        }
    }
}

/// Output checks on a whole reply; an answer that breaks its schema is asked for again
/// (of the same model, or its first fallback) as the policy says.
async fn output_guardrails<'a>(
    app: &'a AppState,
    first: &'a crate::state::ModelRoute,
    mut route: &'a crate::state::ModelRoute,
    plan: &function::CallPlan<'_>,
    guards: &CallGuards,
    mut resp: ChatResponse,
    trace: &mut TraceRecord,
) -> Result<ChatResponse, GatewayError> {
    let Some(kept) = &guards.kept else {
        return Ok(resp);
    };
    let mut reasked = false;
    while let guard::output::Verdict::Reask { feedback, fallback } =
        guards.check_output(app, &mut resp, trace, reasked)?
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
        resp = r.resp;
        route = r2;
        record_reply(app, route, &resp, trace);
        add_earlier_usage(trace, before);
    }
    Ok(resp)
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
/// and what the call cost when it was made. Output checks run on it; a stored answer is
/// never asked for again (a broken one fails).
fn serve_hit(
    app: &AppState,
    route: &crate::state::ModelRoute,
    hit: &crate::pipeline::cache::Cached,
    guards: &CallGuards,
    trace: &mut TraceRecord,
) -> Result<Served, GatewayError> {
    let mut resp = hit.resp.clone();
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
    if guards.kept.is_some() {
        guards.check_output(app, &mut resp, trace, true)?;
    }
    Ok(Served::Whole {
        resp,
        cost: Some(Nanos(0)),
        wire: None,
    })
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
