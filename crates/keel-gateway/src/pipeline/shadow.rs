//! Shadow traffic: a function may mirror a sampled share of its live calls to a shadow
//! variant (a new model or prompt), so a cut-over is decided on real inputs.
//!
//! The mirror is spawned as its own task before the live call runs and shares nothing
//! with it: the live response is never delayed or changed, the shadow's failures never
//! reach the caller, it never reads or fills the response cache, and its trace has
//! `origin = "shadow"` (kept out of reports and budgets) with `parent_id` = the live
//! call's request id, which `keel shadow report` pairs on. A call that explicitly asked
//! for the shadow variant (`x-keel-variant`) is not mirrored.

use std::sync::Arc;
use std::time::Instant;

use keel_core::chat::ChatRequest;
use keel_core::trace::{Origin, TraceRecord};

use super::account;
use crate::handlers::common::{self, CallOptions};
use crate::state::AppState;

/// Maybe start a shadow call mirroring `req` (the request as the caller sent it).
pub fn mirror(app: &Arc<AppState>, req: &ChatRequest, live: &TraceRecord, opts: &CallOptions<'_>) {
    let Some(shadow) = app
        .config
        .functions
        .get(&req.model)
        .and_then(|f| f.shadow.as_ref())
    else {
        return;
    };
    if opts.variant == Some(shadow.variant.as_str()) || fastrand::f64() >= shadow.sample {
        return;
    }
    let mut req = req.clone();
    req.stream = false;
    req.stream_options = None;
    let mut trace = TraceRecord::new(
        uuid::Uuid::now_v7().to_string(),
        common::now_ms(),
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
    let app = app.clone();
    let variant = shadow.variant.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let opts = CallOptions {
            variant: Some(&variant),
            bypass_cache: true,
            key: None,
        };
        if let Err(e) = common::run(&app, req, opts, &mut trace, None).await {
            account::fail(&mut trace, &e);
        }
        trace.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        app.writer.record(trace);
    });
}
