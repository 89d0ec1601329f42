//! Accounting: tokens and cost into the trace and the metrics, and the hand-off of the
//! finished trace to the writer. Every request, whatever its outcome, ends in `finish`.

use std::time::Instant;

use keel_core::chat::Usage;
use keel_core::trace::{TraceRecord, TraceStatus};

use crate::error::GatewayError;
use crate::metrics::{ErrorLabels, ModelMetrics};
use crate::state::{AppState, ModelRoute, NO_MODEL, UNKNOWN_MODEL};

/// The metric handles for a trace's model: its own when configured, else a shared
/// `(unknown)` / `(none)` set, so client-chosen names never become labels.
fn model_metrics<'a>(app: &'a AppState, model: Option<&str>) -> Option<&'a ModelMetrics> {
    // One lookup for a configured model (the common case), a second for the fallback.
    match model {
        Some(m) => app
            .model_metrics
            .get(m)
            .or_else(|| app.model_metrics.get(UNKNOWN_MODEL)),
        None => app.model_metrics.get(NO_MODEL),
    }
}

/// Record usage and its exact cost. A model without a price is marked unpriced —
/// its cost stays `None`, never $0.
pub fn settle(app: &AppState, route: &ModelRoute, trace: &mut TraceRecord, usage: &Usage) {
    trace.input_tokens = Some(usage.prompt_tokens);
    trace.output_tokens = Some(usage.completion_tokens);
    trace.cached_tokens = Some(usage.cached_tokens());
    trace.reasoning_tokens = Some(usage.reasoning_tokens());
    let metrics = model_metrics(app, Some(&route.config.name));
    if let Some(m) = metrics {
        let counts = [
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens(),
            usage.reasoning_tokens(),
        ];
        for (counter, n) in m.tokens.iter().zip(counts) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
    }
    match route.config.price {
        Some(price) => {
            let cost = price.cost(usage);
            trace.cost = Some(cost);
            trace.unpriced = false;
            if let Some(c) = metrics.and_then(|m| m.cost_usd.as_ref()) {
                c.inc_by(cost.as_dollars());
            }
        }
        None => {
            trace.cost = None;
            trace.unpriced = true;
            if let Some(m) = metrics {
                m.unpriced.inc();
            }
        }
    }
}

/// Mark a trace as failed with this error.
pub fn fail(trace: &mut TraceRecord, err: &GatewayError) {
    let view = err.view();
    trace.status = TraceStatus::Error;
    trace.http_status = view.status.as_u16();
    trace.error_class = Some(err.class().to_string());
    trace.error_message = Some(view.message);
}

/// Close the trace: latency, request metrics, the settlement of its budget reservation
/// (off the response, on a spawned task), and the non-blocking hand-off to the writer.
pub fn finish(
    app: &AppState,
    mut trace: TraceRecord,
    started: Instant,
    ticket: Option<keel_governance::Ticket>,
) {
    if let Some(t) = ticket {
        let tokens = match (trace.input_tokens, trace.output_tokens) {
            (None, None) => None,
            (i, o) => Some(i.unwrap_or(0) + o.unwrap_or(0)),
        };
        t.settle(trace.cost, tokens);
    }
    app.governor.observe(&trace);
    crate::guard::scrub::apply_capture(app, &mut trace);
    // Every request that entered a handler ends here exactly once (streams via the relay's Drop).
    app.metrics.in_flight.dec();
    let elapsed = started.elapsed();
    trace.latency_ms = elapsed.as_millis() as u64;
    let api = usize::from(trace.api == "anthropic");
    let status = match trace.status {
        TraceStatus::Ok => 0,
        TraceStatus::Error => 1,
        TraceStatus::ClientDisconnected => 2,
    };
    if let Some(m) = model_metrics(app, trace.model_requested.as_deref()) {
        m.request(api, status).inc();
        m.latency.observe(elapsed.as_secs_f64());
        if let Some(ttft) = trace.ttft_ms {
            m.ttft.observe(ttft as f64 / 1000.0);
        }
    }
    if trace.status == TraceStatus::Error {
        let model = match trace.model_requested.as_deref() {
            Some(m) if app.model_metrics.contains_key(m) => m.to_string(),
            Some(_) => UNKNOWN_MODEL.to_string(),
            None => NO_MODEL.to_string(),
        };
        // The class the error type gave the trace (a fixed set in the code), so the
        // label cannot drift from the classes errors have.
        let class = trace.error_class.clone().unwrap_or_else(|| "other".into());
        app.metrics
            .errors
            .get_or_create(&ErrorLabels { model, class })
            .inc();
    }
    if let Some(otel) = &app.otel {
        otel.record(&trace);
    }
    // Online evals judge answers; an embeddings call has none.
    if trace.endpoint != super::embed::ENDPOINT {
        app.online.offer(&trace);
    }
    app.writer.record(trace);
}
