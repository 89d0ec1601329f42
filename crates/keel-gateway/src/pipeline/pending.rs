//! A request's trace while the request is being served.
//!
//! `PendingTrace` is a guard: every request that reaches a handler creates one, and the
//! trace is written exactly once — by `finish`/`fail` on the normal paths, by the stream
//! relay once the response streams, or by `Drop` when the client goes away before the
//! response starts (hyper drops the handler's future). So an impatient client still
//! leaves a `client_disconnected` trace and the in-flight gauge never drifts.

use std::sync::Arc;
use std::time::Instant;

use keel_core::trace::{TraceRecord, TraceStatus};

use super::account;
use crate::error::GatewayError;
use crate::state::AppState;

pub struct PendingTrace {
    app: Arc<AppState>,
    trace: TraceRecord,
    started: Instant,
    armed: bool,
}

impl PendingTrace {
    pub fn start(app: Arc<AppState>, trace: TraceRecord, started: Instant) -> PendingTrace {
        app.metrics.in_flight.inc();
        PendingTrace {
            app,
            trace,
            started,
            armed: true,
        }
    }

    pub fn trace(&mut self) -> &mut TraceRecord {
        &mut self.trace
    }

    pub fn id(&self) -> &str {
        &self.trace.id
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Hand the trace to someone who will finish it (the stream relay).
    pub fn into_trace(mut self) -> TraceRecord {
        self.armed = false;
        std::mem::replace(&mut self.trace, TraceRecord::new(String::new(), 0, "", ""))
    }

    /// The request succeeded: write the trace.
    pub fn finish(mut self) {
        self.armed = false;
        let trace = std::mem::replace(&mut self.trace, TraceRecord::new(String::new(), 0, "", ""));
        account::finish(&self.app, trace, self.started);
    }

    /// The request failed with `err`: record it and write the trace.
    pub fn fail(mut self, err: &GatewayError) {
        account::fail(&mut self.trace, err);
        self.finish();
    }
}

impl Drop for PendingTrace {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut trace =
            std::mem::replace(&mut self.trace, TraceRecord::new(String::new(), 0, "", ""));
        trace.status = TraceStatus::ClientDisconnected;
        trace.http_status = 499;
        trace.error_class = Some("client_disconnected".to_string());
        trace.error_message =
            Some("the client closed the connection before the response started".to_string());
        account::finish(&self.app, trace, self.started);
    }
}
