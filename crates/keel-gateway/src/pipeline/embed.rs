//! An embeddings call (`POST /v1/embeddings`): the chat pipeline's key scope, kill
//! switches, admission and accounting around one provider call.
//!
//! In order: the key may use the model; no switch covers it; the model is a configured
//! model (functions render chat prompts, so they are refused); admission reserves the
//! inputs' tokens at the model's input price (no output); the primary deployment is
//! called under the model's `timeout`; the provider's usage is priced (input tokens
//! only; the tokenizer's count, marked `usage_estimated`, for a provider that reports
//! none) and the reservation settled with it. With `[cache]`, an identical request from
//! the same tenant is answered from the cache (`x-keel-cache: bypass` skips it). Not in
//! this path yet: retries and fallbacks, and guardrails.

use keel_core::chat::Usage;
use keel_core::embeddings::{EmbeddingRequest, EmbeddingResponse};
use keel_core::money::Nanos;
use keel_core::scope::CallScope;
use keel_core::trace::TraceRecord;
use keel_governance::estimate::embedding_estimate;
use keel_providers::ProviderError;

use super::admit::Governed;
use super::drive::{key_allows, switched_off, CallOptions};
use super::{account, call};
use crate::error::GatewayError;
use crate::state::AppState;

/// The endpoint, as traces record it (reports tell embeddings apart by it).
pub const ENDPOINT: &str = "/v1/embeddings";

/// Admit, call and account one embeddings request.
pub async fn run(
    app: &AppState,
    mut req: EmbeddingRequest,
    opts: CallOptions<'_>,
    trace: &mut TraceRecord,
    governed: &mut Governed,
) -> Result<(EmbeddingResponse, Option<Nanos>), GatewayError> {
    trace.model_requested = Some(req.model.clone());
    key_allows(opts.key, &req.model)?;
    switched_off(app, opts, &req.model, trace)?;
    if app.is_function(&req.model) {
        return Err(GatewayError::InvalidRequest(format!(
            "`{}` is a function: functions render chat prompts; send embeddings to a model",
            req.model
        )));
    }
    let route = call::resolve(app, &req.model)?;
    let dep = route.primary();
    if app.governor.limits_apply(opts.key) {
        let cs = CallScope {
            key: opts.key.map(|k| k.id.as_str()),
            tenant: trace.tenant.as_deref(),
            feature: trace.feature.as_deref(),
            model: Some(route.config.name.as_str()),
        };
        let margin = app.governor.config().limits.input_margin;
        let inputs = req.input.texts();
        let est = || embedding_estimate(&inputs, &dep.upstream_model, margin);
        let admission = app
            .governor
            .admit(opts.key, cs, route.config.price, &est, &trace.id)
            .await?;
        governed.ticket = admission.ticket;
        governed.rate = admission.rate;
    }
    trace.provider = Some(dep.provider_name.clone());
    trace.upstream_model = Some(dep.upstream_model.clone());
    let cache = app.cache.as_ref().filter(|_| !opts.bypass_cache);
    let key = cache.and_then(|c| c.embeddings_key(trace.tenant.as_deref(), route, &req));
    if let (Some(c), Some(k)) = (cache, &key) {
        if let Some(hit) = c.get_embeddings(k).await {
            trace.cache = Some("hit".into());
            trace.saved_cost = hit.cost;
            trace.cost = Some(Nanos(0));
            trace.unpriced = false;
            trace.served_model = Some(hit.resp.model.clone());
            trace.input_tokens = Some(hit.resp.usage.prompt_tokens);
            trace.output_tokens = Some(0);
            app.metrics.cache_hit(&route.config.name, hit.cost);
            capture(app, &hit.resp, trace);
            return Ok((hit.resp.clone(), Some(Nanos(0))));
        }
        trace.cache = Some("miss".into());
    }
    req.model.clone_from(&dep.upstream_model);
    // Kept only for a provider that reports no token counts, to estimate them.
    let texts = (!dep.provider.reports_embedding_usage()).then(|| req.input.texts());
    let timeout = route.config.timeout;
    let resp = match tokio::time::timeout(timeout, dep.provider.embed(req)).await {
        Ok(r) => r.map_err(GatewayError::from)?,
        Err(_) => return Err(ProviderError::Timeout(timeout).into()),
    };
    trace.served_model = Some(resp.model.clone());
    let mut tokens = resp.usage.prompt_tokens;
    if let (0, Some(texts)) = (tokens, &texts) {
        // A provider that reports no usage (Gemini's embeddings): the tokenizer's count,
        // marked as an estimate, never an unrecorded call.
        tokens = embedding_estimate(texts, &dep.upstream_model, 0.0).input_tokens;
        trace.usage_estimated = true;
    }
    account::settle(app, route, trace, &Usage::new(tokens, 0));
    capture(app, &resp, trace);
    if let (Some(c), Some(k)) = (cache, key) {
        c.put_embeddings(k, resp.clone(), trace.cost);
    }
    Ok((resp, trace.cost))
}

/// What a trace keeps of vectors: how many, of what size (never the numbers).
fn capture(app: &AppState, resp: &EmbeddingResponse, trace: &mut TraceRecord) {
    if app.capture.keeps_text() {
        trace.output = Some(format!(
            "{} vectors of {} dimensions",
            resp.data.len(),
            resp.data.first().map_or(0, |e| match &e.embedding {
                keel_core::embeddings::Vector::Float(v) => v.len(),
                keel_core::embeddings::Vector::Base64(b) => b.len() * 3 / 4 / 4,
            })
        ));
    }
}
