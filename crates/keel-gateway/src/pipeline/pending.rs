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

use keel_governance::{RateHeaders, Ticket};

use super::account;
use super::admit::Governed;
use crate::error::GatewayError;
use crate::state::AppState;

pub struct PendingTrace {
    app: Arc<AppState>,
    trace: TraceRecord,
    started: Instant,
    armed: bool,
    /// The call's budget reservation, settled when the trace is written.
    ticket: Option<Ticket>,
    /// Rate-limit state for the response headers.
    rate: RateHeaders,
}

impl PendingTrace {
    pub fn start(app: Arc<AppState>, trace: TraceRecord, started: Instant) -> PendingTrace {
        app.metrics.in_flight.inc();
        PendingTrace {
            app,
            trace,
            started,
            armed: true,
            ticket: None,
            rate: RateHeaders::default(),
        }
    }

    /// The state and the trace together (what response headers are built from).
    pub fn parts(&self) -> (&AppState, &TraceRecord) {
        (&self.app, &self.trace)
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

    /// Keep what admission returned with the request.
    pub fn attach(&mut self, g: Governed) {
        self.ticket = g.ticket;
        self.rate = g.rate;
    }

    pub fn rate(&self) -> &RateHeaders {
        &self.rate
    }

    /// Hand the trace (and the reservation) to someone who will finish it (the relay).
    pub fn into_trace(mut self) -> (TraceRecord, Option<Ticket>) {
        self.armed = false;
        let trace = std::mem::replace(&mut self.trace, TraceRecord::new(String::new(), 0, "", ""));
        (trace, self.ticket.take())
    }

    /// The request succeeded: write the trace.
    pub fn finish(mut self) {
        self.armed = false;
        let trace = std::mem::replace(&mut self.trace, TraceRecord::new(String::new(), 0, "", ""));
        account::finish(&self.app, trace, self.started, self.ticket.take());
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
        if self.app.stopping.is_cancelled() {
            super::close::mark_shutdown(&mut trace);
        } else {
            trace.status = TraceStatus::ClientDisconnected;
            trace.http_status = 499;
            trace.error_class = Some("client_disconnected".to_string());
            trace.error_message =
                Some("the client closed the connection before the response started".to_string());
        }
        account::finish(&self.app, trace, self.started, self.ticket.take());
    }
}
