//! Accounting: tokens and cost into the trace and the metrics, and the hand-off of the
//! finished trace to the writer. Every request, whatever its outcome, ends in `finish`.

use std::time::Instant;

use keel_core::chat::Usage;
use keel_core::trace::{TraceRecord, TraceStatus};

use crate::error::GatewayError;
use crate::metrics::{ErrorLabels, ModelLabels, RequestLabels, TokenLabels};
use crate::state::{AppState, ModelRoute};

/// Record usage and its exact cost. A model without a price is marked unpriced —
/// its cost stays `None`, never $0.
pub fn settle(app: &AppState, route: &ModelRoute, trace: &mut TraceRecord, usage: &Usage) {
    trace.input_tokens = Some(usage.prompt_tokens);
    trace.output_tokens = Some(usage.completion_tokens);
    trace.cached_tokens = Some(usage.cached_tokens());
    trace.reasoning_tokens = Some(usage.reasoning_tokens());
    let model = route.config.name.clone();
    for (kind, n) in [
        ("input", usage.prompt_tokens),
        ("output", usage.completion_tokens),
        ("cached", usage.cached_tokens()),
        ("reasoning", usage.reasoning_tokens()),
    ] {
        if n > 0 {
            app.metrics
                .tokens
                .get_or_create(&TokenLabels {
                    model: model.clone(),
                    kind,
                })
                .inc_by(n);
        }
    }
    match route.config.price {
        Some(price) => {
            let cost = price.cost(usage);
            trace.cost = Some(cost);
            trace.unpriced = false;
            app.metrics
                .cost_usd
                .get_or_create(&ModelLabels { model })
                .inc_by(cost.as_dollars());
        }
        None => {
            trace.cost = None;
            trace.unpriced = true;
            app.metrics
                .unpriced
                .get_or_create(&ModelLabels { model })
                .inc();
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

/// Close the trace: latency, request metrics, and the non-blocking hand-off to the writer.
pub fn finish(app: &AppState, mut trace: TraceRecord, started: Instant) {
    // Every request that entered a handler ends here exactly once (streams via the relay's Drop).
    app.metrics.in_flight.dec();
    trace.latency_ms = started.elapsed().as_millis() as u64;
    let model = trace
        .model_requested
        .clone()
        .unwrap_or_else(|| "(none)".to_string());
    let api = if trace.api == "anthropic" {
        "anthropic"
    } else {
        "openai"
    };
    app.metrics
        .requests
        .get_or_create(&RequestLabels {
            model: model.clone(),
            api,
            status: trace.status.as_str(),
        })
        .inc();
    if trace.status == TraceStatus::Error {
        let class = error_class_static(trace.error_class.as_deref());
        app.metrics
            .errors
            .get_or_create(&ErrorLabels {
                model: model.clone(),
                class,
            })
            .inc();
    }
    let labels = ModelLabels { model };
    app.metrics
        .latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    if let Some(ttft) = trace.ttft_ms {
        app.metrics
            .ttft
            .get_or_create(&labels)
            .observe(ttft as f64 / 1000.0);
    }
    app.writer.record(trace);
}

/// Metric labels must be `'static`; error classes come from a fixed set.
fn error_class_static(class: Option<&str>) -> &'static str {
    const KNOWN: [&str; 14] = [
        "invalid_request",
        "body_too_large",
        "client_timeout",
        "model_not_found",
        "internal",
        "upstream_rate_limit",
        "upstream_client_error",
        "upstream_server_error",
        "upstream_timeout",
        "upstream_unreachable",
        "upstream_invalid_response",
        "upstream_stream_cut",
        "unsupported_request",
        "client_disconnected",
    ];
    class
        .and_then(|c| KNOWN.iter().find(|k| **k == c).copied())
        .unwrap_or("other")
}
