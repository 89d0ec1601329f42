//! Admission: rate limits and budgets for a resolved call, before anything goes
//! upstream. Runs after the function step (so the prompt is rendered and the model
//! known) and before the cache. The reservation is for the worst case over the model
//! and every model its fallback chain may reach; a request with no output limit gets
//! `[limits] output_reserve_tokens` as its `max_tokens` when a hard budget applies, so
//! the reservation is a true ceiling. Eval, replay and shadow calls are not admitted
//! here: they never count against a caller's limits.

use keel_core::chat::ChatRequest;
use keel_core::money::Nanos;
use keel_core::prices::ModelPrice;
use keel_core::scope::CallScope;
use keel_core::trace::TraceRecord;
use keel_governance::estimate::{cap_output, estimate};
use keel_governance::{KeyEntry, RateHeaders, Ticket};

use crate::error::GatewayError;
use crate::state::{AppState, ModelRoute};

/// What admission leaves with the request: the ticket to settle and the rate headers.
#[derive(Default)]
pub struct Governed {
    pub ticket: Option<Ticket>,
    pub rate: RateHeaders,
    /// The input tokens admission counted, when it counted them (budgets, `tpm`
    /// limits): a stream keeps this count instead of making it again.
    pub input_tokens: Option<u64>,
}

/// The dearest price among the models this call may be served by.
fn worst_price(app: &AppState, first: &ModelRoute, chain: Option<&[String]>) -> Option<ModelPrice> {
    let chain = chain.unwrap_or(&first.config.routing.fallbacks);
    let mut worst = first.config.price?;
    for m in chain.iter().filter_map(|m| app.models.get(m)) {
        // An unpriced fallback cannot be bounded: budget at the priced ones.
        let Some(p) = m.config.price else { continue };
        worst.input_per_mtok = Nanos(worst.input_per_mtok.0.max(p.input_per_mtok.0));
        worst.output_per_mtok = Nanos(worst.output_per_mtok.0.max(p.output_per_mtok.0));
        worst.cached_input_per_mtok = None;
    }
    Some(worst)
}

/// Admit `req` (about to be sent to `first`) for `key`, filling `out`.
pub async fn admit(
    app: &AppState,
    key: Option<&KeyEntry>,
    first: &ModelRoute,
    chain: Option<&[String]>,
    req: &mut ChatRequest,
    trace: &TraceRecord,
    out: &mut Governed,
) -> Result<(), GatewayError> {
    if !app.governor.limits_apply(key) {
        return Ok(());
    }
    let cs = CallScope {
        key: key.map(|k| k.id.as_str()),
        tenant: trace.tenant.as_deref(),
        feature: trace.feature.as_deref(),
        model: Some(first.config.name.as_str()),
    };
    let limits = &app.governor.config().limits;
    let upstream = first.primary().upstream_model.as_str();
    let price = worst_price(app, first, chain);
    let counted = std::sync::OnceLock::new();
    let admission = {
        let r: &ChatRequest = req;
        let est = || {
            let e = estimate(
                r,
                upstream,
                limits.output_reserve_tokens,
                limits.input_margin,
            );
            let _ = counted.set(e.input_tokens);
            e
        };
        app.governor.admit(key, cs, price, &est, &trace.id).await?
    };
    out.input_tokens = counted.into_inner();
    if let Some(tokens) = admission.cap_output {
        cap_output(req, upstream, tokens);
    }
    out.ticket = admission.ticket;
    out.rate = admission.rate;
    Ok(())
}
