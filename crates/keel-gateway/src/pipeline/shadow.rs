//! Shadow traffic: a function may mirror a sampled share of its live calls to a shadow
//! variant (a new model or prompt), so a cut-over is decided on real inputs.
//!
//! The mirror is sampled before the live call runs (it needs the request as the caller
//! sent it) and spawned as its own task once the live call has been admitted and run up
//! to its answer (whole, or a stream's first chunk); it shares nothing with it: the live
//! response is never delayed or changed, the shadow's failures never
//! reach the caller, it never reads or fills the response cache, and its trace has
//! `origin = "shadow"` (kept out of reports and budgets) with `parent_id` = the live
//! call's request id, which `keel shadow report` pairs on. A call that explicitly asked
//! for the shadow variant (`x-keel-variant`), or that the split served with it, is not
//! mirrored; nor is a live call that failed or was refused or blocked. A shadow call is
//! exported as an OpenTelemetry span like any call.
//!
//! Shadows are capped per function (`max_concurrent`, default 16): a slow shadow model
//! must not pile up tasks, connections and memory beside live traffic. A sampled call
//! that finds every slot taken is not sent, only counted (`keel_shadow_skipped_total`).
//! A shadow is run without admission (no key, no `Governed` to fill), so it never counts
//! against the caller's rate limits or budgets.
//!
//! The live call and its shadow are resolved in one registry snapshot, taken when the
//! call is sampled: a label moved while the live call runs (the registry refreshes every
//! few seconds) would otherwise give the shadow the new prompt version and the pair
//! would compare two prompts, not two variants.

use std::sync::Arc;
use std::time::Instant;

use keel_core::chat::ChatRequest;
use keel_core::trace::{Origin, TraceRecord};

use super::account;
use super::drive::{self, CallOptions};
use crate::error::GatewayError;
use crate::registry::Snapshot;
use crate::state::AppState;

/// A live call picked for mirroring: the request as the caller sent it, kept until the
/// live call has been admitted, and the registry snapshot both calls are resolved in
/// (`Sampled::registry`): a label moved while the live call runs must not make the pair
/// compare two prompt versions.
pub struct Sampled {
    req: ChatRequest,
    variant: String,
    registry: Arc<Snapshot>,
}

impl Sampled {
    /// The snapshot the live call is resolved in (its `CallOptions::registry`).
    pub fn registry(&self) -> &Snapshot {
        &self.registry
    }
}

/// Whether to mirror `req` (the request as the caller sent it): a function with a shadow,
/// a call that did not name the shadow variant itself, and the sample's dice.
pub fn sample(app: &AppState, req: &ChatRequest, opts: &CallOptions<'_>) -> Option<Sampled> {
    let shadow = app
        .config
        .functions
        .get(&req.model)
        .and_then(|f| f.shadow.as_ref())?;
    if opts.variant == Some(shadow.variant.as_str()) || fastrand::f64() >= shadow.sample {
        return None;
    }
    Some(Sampled {
        req: req.clone(),
        variant: shadow.variant.clone(),
        registry: app.registry.current().clone(),
    })
}

/// Start the shadow of a sampled call, once the live call has run as far as `live`
/// says: only a live call that succeeded, on another variant than the shadow's, is
/// mirrored — a caller over its limits, a failed call or a blocked one must not cause
/// shadow spend. Skipped, and counted, when the function's shadows in flight are at
/// `max_concurrent`.
pub fn launch(
    app: &Arc<AppState>,
    sampled: Option<Sampled>,
    live: &TraceRecord,
    outcome: Result<(), &GatewayError>,
) {
    let Some(Sampled {
        mut req,
        variant,
        registry,
    }) = sampled
    else {
        return;
    };
    // Only a live call that was answered is mirrored: a refused call (rate limit,
    // budget), a failed one or one a guardrail blocked is not — a blocked input would
    // be blocked again in the shadow, and show twice in the audit log. A call the split
    // already served with the shadow variant is not mirrored to itself either.
    if outcome.is_err() || live.variant.as_deref() == Some(variant.as_str()) {
        return;
    }
    let Some(slots) = app.shadow_slots.get(&req.model) else {
        return;
    };
    let Ok(permit) = slots.clone().try_acquire_owned() else {
        app.metrics.shadow_skipped(&req.model);
        return;
    };
    req.stream = false;
    req.stream_options = None;
    let mut trace = TraceRecord::new(
        uuid::Uuid::now_v7().to_string(),
        drive::now_ms(),
        &live.api,
        &live.endpoint,
    );
    trace.origin = Origin::Shadow;
    trace.parent_id = Some(live.id.clone());
    trace.tenant.clone_from(&live.tenant);
    trace.feature.clone_from(&live.feature);
    trace.user.clone_from(&live.user);
    trace.session.clone_from(&live.session);
    trace.tags.clone_from(&live.tags);
    // In the live call's OpenTelemetry trace, as a child of its span.
    if let Some(t) = &live.otel_trace_id {
        trace.otel_trace_id = Some(t.clone());
        trace.otel_parent_span_id.clone_from(&live.otel_span_id);
        trace.otel_span_id = Some(crate::otel::context::new_span_id());
    }
    let app = app.clone();
    tokio::spawn(async move {
        // Held until the shadow is traced: its slot frees when it is done.
        let _permit = permit;
        let started = Instant::now();
        let opts = CallOptions {
            variant: Some(&variant),
            bypass_cache: true,
            key: None,
            registry: Some(&registry),
        };
        if let Err(e) = drive::run(&app, req, opts, &mut trace, None).await {
            account::fail(&mut trace, &e);
        }
        trace.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        // Exported like any call (the README's promise), as a child of the live span.
        if let Some(otel) = &app.otel {
            otel.record(&trace);
        }
        app.writer.record(trace);
    });
}
