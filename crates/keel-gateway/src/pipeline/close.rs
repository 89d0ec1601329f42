//! Closing a streamed call: what the provider bills is what the trace records and the
//! budget settles.
//!
//! - A client that leaves mid-stream does not stop the provider's billing: the rest of
//!   the upstream stream is read to its end (never past the call's deadline, nor past
//!   the gateway's shutdown) on a background task, for the usage the provider reports
//!   at the end. Nothing more is sent to anyone.
//! - A stream that ended without usage (cut upstream, a deadline, a provider that does
//!   not report it) is priced from Keel's tokenizer count of the request and of the
//!   output produced, and marked `usage_estimated`. Its budget reservation settles at
//!   that cost: a call whose output reached a client is never recorded at NULL cost or
//!   released as if it were free.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use keel_core::chat::{ChatChunk, Usage};
use keel_core::trace::{TraceRecord, TraceStatus};
use keel_providers::ChunkStream;

use super::account;
use crate::error::GatewayError;
use crate::guard::stream::StreamGuard;
use crate::state::AppState;

/// A tool call assembled from stream deltas.
pub struct ToolCallCapture {
    pub name: String,
    pub arguments: String,
}

/// Everything a finished (or abandoned) stream leaves to account for.
pub struct StreamEnd {
    pub app: Arc<AppState>,
    /// The configured model that served the stream (its price settles it).
    pub model: String,
    pub trace: TraceRecord,
    pub started: Instant,
    pub output: String,
    pub tool_calls: Vec<ToolCallCapture>,
    pub usage: Option<Usage>,
    /// `None`: the client went away before the stream ended.
    pub outcome: Option<Result<(), GatewayError>>,
    pub ticket: Option<keel_governance::Ticket>,
    pub guard: Option<Box<StreamGuard>>,
    /// Keel's count of the request's input tokens (prices a stream without usage).
    pub input_estimate: u64,
    /// Set when the stream was read on after its client left: a shutdown that cuts the
    /// reading does not make it a `shutdown` trace (the client had already gone).
    pub client_left: bool,
}

/// Record what a stream chunk says about the call: model, fingerprint, finish reason,
/// usage, and the text and tool calls it carries.
pub fn observe(
    trace: &mut TraceRecord,
    usage: &mut Option<Usage>,
    output: &mut String,
    tool_calls: &mut Vec<ToolCallCapture>,
    chunk: &ChatChunk,
) {
    if !chunk.model.is_empty() && trace.served_model.is_none() {
        trace.served_model = Some(chunk.model.clone());
    }
    if chunk.system_fingerprint.is_some() && trace.system_fingerprint.is_none() {
        trace
            .system_fingerprint
            .clone_from(&chunk.system_fingerprint);
    }
    if let Some(u) = chunk.usage {
        *usage = Some(u);
    }
    for choice in &chunk.choices {
        if let Some(reason) = &choice.finish_reason {
            trace.finish_reason = Some(reason.clone());
        }
        if let Some(text) = &choice.delta.content {
            output.push_str(text);
        }
        for tc in choice.delta.tool_calls.iter().flatten() {
            let i = tc.index as usize;
            while tool_calls.len() <= i {
                tool_calls.push(ToolCallCapture {
                    name: String::new(),
                    arguments: String::new(),
                });
            }
            if let Some(f) = &tc.function {
                if let Some(n) = &f.name {
                    tool_calls[i].name.push_str(n);
                }
                if let Some(a) = &f.arguments {
                    tool_calls[i].arguments.push_str(a);
                }
            }
        }
    }
}

impl StreamEnd {
    /// Close now, or — when the client left before the provider's usage arrived — read
    /// the rest of `upstream` on a background task first (see the module doc).
    pub fn close_or_drain(
        self,
        upstream: Option<ChunkStream>,
        pending: Option<ChatChunk>,
        deadline: tokio::time::Instant,
    ) {
        let abandoned = self.outcome.is_none() && self.usage.is_none();
        match (upstream, tokio::runtime::Handle::try_current()) {
            (Some(upstream), Ok(rt)) if abandoned => {
                let tasks = self.app.afterwork.clone();
                rt.spawn(tasks.track_future(self.drain(upstream, pending, deadline)));
            }
            _ => self.close(),
        }
    }

    async fn drain(
        mut self,
        mut upstream: ChunkStream,
        pending: Option<ChatChunk>,
        deadline: tokio::time::Instant,
    ) {
        self.client_left = true;
        if let Some(chunk) = pending {
            self.observe(&chunk);
        }
        let stopping = self.app.stopping.clone();
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout_at(deadline, upstream.next()) => next,
                () = stopping.cancelled() => break,
            };
            match next {
                Ok(Some(Ok(chunk))) => self.observe(&chunk),
                // The end, a failure or the deadline: what was read is what is known.
                Ok(Some(Err(_))) | Ok(None) | Err(_) => break,
            }
        }
        self.close();
    }

    fn observe(&mut self, chunk: &ChatChunk) {
        observe(
            &mut self.trace,
            &mut self.usage,
            &mut self.output,
            &mut self.tool_calls,
            chunk,
        );
    }

    /// The provider's usage, else Keel's estimate of the request and the output produced.
    fn usage(&mut self) -> Usage {
        if let Some(u) = self.usage {
            return u;
        }
        self.trace.usage_estimated = true;
        let upstream = self.trace.upstream_model.as_deref().unwrap_or(&self.model);
        let mut out = keel_governance::estimate::output_tokens(&self.output, upstream);
        for c in &self.tool_calls {
            out += keel_governance::estimate::output_tokens(&c.name, upstream)
                + keel_governance::estimate::output_tokens(&c.arguments, upstream);
        }
        Usage::new(self.input_estimate, out)
    }

    /// Settle usage and cost, run the output guard's last checks, keep the output and
    /// hand the trace to the writer.
    pub fn close(mut self) {
        let usage = self.usage();
        let app = Arc::clone(&self.app);
        let mut trace =
            std::mem::replace(&mut self.trace, TraceRecord::new(String::new(), 0, "", ""));
        if let Some(route) = app.models.get(&self.model) {
            account::settle(&app, route, &mut trace, &usage);
        }
        if let Some(g) = self.guard.take() {
            let tools: Vec<(String, String)> = self
                .tool_calls
                .iter()
                .map(|c| (c.name.clone(), c.arguments.clone()))
                .collect();
            if let Some(redacted) = g.finish(&app, &mut trace, &self.output, &tools) {
                self.output = redacted;
            }
        }
        if app.capture.keeps_text() {
            let mut out = std::mem::take(&mut self.output);
            if !self.tool_calls.is_empty() {
                let calls: Vec<serde_json::Value> = self
                    .tool_calls
                    .iter()
                    .map(|c| serde_json::json!({"name": c.name, "arguments": c.arguments}))
                    .collect();
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&serde_json::Value::Array(calls).to_string());
            }
            trace.output = Some(out);
        }
        match self.outcome.take() {
            Some(Ok(())) => trace.status = TraceStatus::Ok,
            Some(Err(err)) => {
                account::fail(&mut trace, &err);
                // The client already got 200 and the stream; record what the failure was.
                trace.http_status = 200;
            }
            None if app.stopping.is_cancelled() && !self.client_left => mark_shutdown(&mut trace),
            None => {
                trace.status = TraceStatus::ClientDisconnected;
                trace.error_class = Some("client_disconnected".to_string());
                trace.error_message =
                    Some("the client closed the connection before the stream ended".to_string());
            }
        }
        account::finish(&app, trace, self.started, self.ticket.take());
    }
}

/// The gateway's `shutdown_timeout` ended the call before it finished.
pub fn mark_shutdown(trace: &mut TraceRecord) {
    trace.status = TraceStatus::Error;
    trace.http_status = 503;
    trace.error_class = Some("shutdown".to_string());
    trace.error_message = Some(
        "the gateway shut down before the call finished ([gateway] shutdown_timeout)".to_string(),
    );
}
