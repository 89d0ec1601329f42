//! Relaying a stream to the client while accounting for it.
//!
//! The relay owns the upstream stream and the unfinished trace. It forwards each
//! chunk in the client's wire format (`StreamFormat`), records time to first token,
//! the output and the usage, and enforces the total deadline. Its `Drop` closes the
//! trace: when the client disconnects, the response body — and with it the relay and
//! the upstream connection — is dropped, and the trace says `client_disconnected`.
//! Nothing leaks and no request goes untraced.
//!
//! A stream that fails after it started ends with an error event — unless its model
//! resumes cut streams (`pipeline::resume`): then the relay asks the chain for the
//! continuation of the text already sent and goes on forwarding, the chunks keeping the
//! stream's first id, so the client reads one stream.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use keel_core::chat::{ChatChunk, Usage};
use keel_core::trace::{Attempt, TraceRecord};
use keel_providers::{ChunkStream, ProviderError};

use super::call::OpenedStream;
use super::close::{StreamEnd, ToolCallCapture};
use super::resume::Resume;
use super::route::{self, Reply};
use crate::error::GatewayError;
use crate::guard::stream::StreamGuard;
use crate::state::AppState;

/// How chunks are written for one client API (OpenAI SSE, Anthropic events).
pub trait StreamFormat: Send + 'static {
    /// Bytes for one chunk, or `None` to forward nothing.
    fn chunk(&mut self, chunk: &ChatChunk) -> Option<Bytes>;
    /// Bytes that end a successful stream.
    fn done(&mut self) -> Bytes;
    /// Bytes that report an error after the stream started.
    fn error(&mut self, err: &GatewayError) -> Bytes;
}

pub struct Relay<F: StreamFormat> {
    app: Arc<AppState>,
    model: String,
    trace: Option<TraceRecord>,
    started: Instant,
    deadline: tokio::time::Instant,
    /// The timeout `deadline` enforces (for the error message).
    limit: std::time::Duration,
    format: F,
    pending_first: Option<ChatChunk>,
    upstream: Option<ChunkStream>,
    output: String,
    tool_calls: Vec<ToolCallCapture>,
    usage: Option<Usage>,
    outcome: Option<Result<(), GatewayError>>,
    ticket: Option<keel_governance::Ticket>,
    /// Output guardrails on this stream (see `guard::stream`).
    guard: Option<Box<StreamGuard>>,
    /// With a guard that restores placeholders: the last chunk, the template of a flushed one.
    last_chunk: Option<ChatChunk>,
    /// When the serving attempt started (the latency of a cut attempt).
    attempt_started: Instant,
    /// How to continue after a mid-stream failure (see `pipeline::resume`).
    resume: Option<Box<Resume>>,
    /// With `resume`: the stream's first chunk id, kept on every chunk after a
    /// continuation (`resumed`).
    stream_id: Option<String>,
    resumed: bool,
    /// Whitespace the client already has that the prefill left out (Anthropic refuses a
    /// prefill ending in whitespace): dropped from the start of the continuation.
    skip_ws: String,
    /// Keel's count of the request's input tokens (prices a stream that ends without
    /// the provider's usage: `pipeline::close`).
    input_estimate: u64,
}

impl<F: StreamFormat> Relay<F> {
    pub fn new(
        app: Arc<AppState>,
        model: String,
        mut trace: TraceRecord,
        ticket: Option<keel_governance::Ticket>,
        started: Instant,
        opened: OpenedStream,
        format: F,
    ) -> Self {
        // The serving attempt's own deadline (see `OpenedStream::attempt_started`).
        let (from, limit) = match app.models.get(&model) {
            Some(route) => (opened.attempt_started, route.config.timeout),
            None => (started, app.config.gateway.request_timeout),
        };
        let deadline = tokio::time::Instant::from_std(from + limit);
        let attempt_started = opened.attempt_started;
        let resume = opened.resume;
        let input_estimate = opened.input_estimate;
        trace.ttft_ms = Some(opened.first_at.duration_since(started).as_millis() as u64);
        Relay {
            app,
            model,
            trace: Some(trace),
            started,
            deadline,
            limit,
            format,
            pending_first: Some(opened.first),
            upstream: Some(opened.rest),
            output: String::new(),
            tool_calls: Vec::new(),
            usage: None,
            outcome: None,
            ticket,
            guard: None,
            last_chunk: None,
            attempt_started,
            resume,
            stream_id: None,
            resumed: false,
            skip_ws: String::new(),
            input_estimate,
        }
    }

    /// Watch the stream with these output guardrails.
    pub fn with_guard(mut self, guard: Option<Box<StreamGuard>>) -> Self {
        self.guard = guard;
        self
    }

    /// Run the stream guard over a chunk: text is checked (and placeholders restored)
    /// before it is forwarded; a block ends the stream.
    fn guard_chunk(&mut self, chunk: &mut ChatChunk) -> Result<(), GatewayError> {
        let (Some(g), Some(trace)) = (self.guard.as_mut(), self.trace.as_mut()) else {
            return Ok(());
        };
        for choice in chunk.choices.iter_mut() {
            if let Some(text) = choice.delta.content.as_mut() {
                *text = g.on_text(&self.app, trace, text)?;
            }
            for tc in choice.delta.tool_calls.iter().flatten() {
                if let Some(name) = tc.function.as_ref().and_then(|f| f.name.as_deref()) {
                    g.on_tool_name(&self.app, trace, name)?;
                }
            }
        }
        Ok(())
    }

    /// Text the guard held back (a partial placeholder), as one last chunk.
    fn guard_flush(&mut self, last: Option<&ChatChunk>) -> Option<Bytes> {
        let rest = self.guard.as_mut()?.flush();
        if rest.is_empty() {
            return None;
        }
        let mut chunk = last?.clone();
        chunk.usage = None;
        chunk.choices.truncate(1);
        let choice = chunk.choices.first_mut()?;
        choice.delta.content = Some(rest);
        choice.delta.tool_calls = None;
        choice.finish_reason = None;
        self.format.chunk(&chunk)
    }

    /// The SSE body: relay chunks until the upstream ends, fails or the deadline passes.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
        futures::stream::unfold(self, |mut relay| async move {
            let bytes = relay.step().await?;
            Some((Ok(bytes), relay))
        })
    }

    async fn step(&mut self) -> Option<Bytes> {
        loop {
            let item = if let Some(first) = self.pending_first.take() {
                Some(Ok(first))
            } else {
                let upstream = self.upstream.as_mut()?;
                match tokio::time::timeout_at(self.deadline, upstream.next()).await {
                    Ok(item) => item,
                    Err(_) => Some(Err(ProviderError::Timeout(self.limit))),
                }
            };
            match item {
                Some(Ok(mut chunk)) => {
                    if self.resume.is_some() {
                        match &self.stream_id {
                            Some(id) if self.resumed => chunk.id.clone_from(id),
                            Some(_) => {}
                            None => self.stream_id = Some(chunk.id.clone()),
                        }
                        self.skip_sent_whitespace(&mut chunk);
                    }
                    self.observe(&chunk);
                    if let Err(e) = self.guard_chunk(&mut chunk) {
                        self.upstream = None;
                        let bytes = self.format.error(&e);
                        self.outcome = Some(Err(e));
                        return Some(bytes);
                    }
                    // The template of a flushed chunk, only when text can be held back.
                    if self.guard.as_ref().is_some_and(|g| g.restoring()) {
                        self.last_chunk = Some(chunk.clone());
                    }
                    if let Some(bytes) = self.format.chunk(&chunk) {
                        return Some(bytes);
                    }
                }
                None => {
                    self.upstream = None;
                    self.outcome = Some(Ok(()));
                    let last = self.last_chunk.take();
                    let done = self.format.done();
                    return Some(match self.guard_flush(last.as_ref()) {
                        Some(rest) => [rest, done].concat().into(),
                        None => done,
                    });
                }
                Some(Err(e)) => {
                    self.upstream = None;
                    // With resumption on, a cut after the answer's finish reason lost
                    // nothing but the trailer: the stream ends as it would have.
                    let finished = self
                        .trace
                        .as_ref()
                        .is_some_and(|t| t.finish_reason.is_some());
                    if self.resume.is_some() && finished {
                        self.outcome = Some(Ok(()));
                        let last = self.last_chunk.take();
                        let done = self.format.done();
                        return Some(match self.guard_flush(last.as_ref()) {
                            Some(rest) => [rest, done].concat().into(),
                            None => done,
                        });
                    }
                    let err = GatewayError::from(e);
                    if self.resume_after(&err).await {
                        continue;
                    }
                    let bytes = self.format.error(&err);
                    self.outcome = Some(Err(err));
                    return Some(bytes);
                }
            }
        }
    }

    /// Continue the stream after `err` cut it (see `pipeline::resume`): record the cut
    /// attempt, ask the next model for the continuation of the text sent, and go on with
    /// its stream (its first chunk loses the `assistant` role: the client has had one).
    /// `false` when the stream does not resume, cannot (a tool call under way, several
    /// choices, a failure its chain does not cover), or the continuation failed too.
    async fn resume_after(&mut self, err: &GatewayError) -> bool {
        let app = Arc::clone(&self.app);
        let (Some(resume), Some(trace)) = (self.resume.as_mut(), self.trace.as_mut()) else {
            return false;
        };
        let covered = app.models.get(&self.model).is_some_and(|r| {
            route::classify(err).is_some_and(|c| r.config.routing.fallback_on.contains(c))
        });
        if !covered || !self.tool_calls.is_empty() {
            return false;
        }
        let Some((next, rest)) = resume.take(&self.model) else {
            return false;
        };
        let Some(next_route) = app.models.get(&next) else {
            return false;
        };
        trace.attempts.push(Attempt {
            model: self.model.clone(),
            provider: trace.provider.clone().unwrap_or_default(),
            upstream_model: trace.upstream_model.clone().unwrap_or_default(),
            outcome: err.class().into(),
            latency_ms: u64::try_from(self.attempt_started.elapsed().as_millis())
                .unwrap_or(u64::MAX),
            error: Some(format!(
                "{} (after {} characters had been sent; continued on `{next}`)",
                err.view().message,
                self.output.chars().count()
            )),
        });
        let (req, skip_ws) = resume.request(&self.output);
        let limits = resume.limits;
        let call = route::call_routed(&app, next_route, Some(&rest), limits, req, trace);
        // A function's `timeout` bounds every attempt of the call, continuations too.
        let result = match limits.total {
            None => call.await,
            Some(total) => {
                let until = tokio::time::Instant::from_std(self.started + total);
                match tokio::time::timeout_at(until, call).await {
                    Ok(r) => r,
                    Err(_) => return false,
                }
            }
        };
        let Ok((served, dep, Reply::Stream(opened))) = result else {
            return false;
        };
        self.skip_ws = skip_ws;
        // The routing fast path (one plain model) records no attempt; the trace must
        // still say who finished the stream.
        if trace.attempts.last().is_some_and(|a| a.outcome != "ok") {
            trace.attempts.push(Attempt {
                model: served.config.name.clone(),
                provider: dep.provider_name.clone(),
                upstream_model: dep.upstream_model.clone(),
                outcome: "ok".into(),
                latency_ms: u64::try_from(
                    opened
                        .first_at
                        .duration_since(opened.attempt_started)
                        .as_millis(),
                )
                .unwrap_or(u64::MAX),
                error: None,
            });
        }
        trace.provider = Some(dep.provider_name.clone());
        trace.upstream_model = Some(dep.upstream_model.clone());
        app.metrics.streams_resumed.inc();
        self.model.clone_from(&served.config.name);
        self.limit = served.config.timeout;
        self.deadline = tokio::time::Instant::from_std(opened.attempt_started + self.limit);
        self.attempt_started = opened.attempt_started;
        self.resumed = true;
        let mut first = opened.first;
        for choice in first.choices.iter_mut() {
            choice.delta.role = None;
        }
        self.pending_first = Some(first);
        self.upstream = Some(opened.rest);
        true
    }

    /// Drop from a continuation's first text what [`Self::skip_ws`] holds (the
    /// whitespace the prefill left out but the client already has). A continuation that
    /// does not repeat it is forwarded as is.
    fn skip_sent_whitespace(&mut self, chunk: &mut ChatChunk) {
        if self.skip_ws.is_empty() {
            return;
        }
        for choice in chunk.choices.iter_mut() {
            if let Some(text) = choice.delta.content.as_mut() {
                super::resume::drop_repeated(text, &mut self.skip_ws);
            }
        }
    }

    fn observe(&mut self, chunk: &ChatChunk) {
        // The text is kept whatever the capture: it prices a stream that ends without
        // usage, guards check it, and a continuation is asked for it.
        if let Some(trace) = self.trace.as_mut() {
            super::close::observe(
                trace,
                &mut self.usage,
                &mut self.output,
                &mut self.tool_calls,
                chunk,
            );
        }
    }
}

impl<F: StreamFormat> Drop for Relay<F> {
    /// Account for the stream (see `pipeline::close`): a client that left before the
    /// provider's usage arrived leaves the rest of the upstream to be read for it.
    fn drop(&mut self) {
        let Some(trace) = self.trace.take() else {
            return;
        };
        let end = StreamEnd {
            app: Arc::clone(&self.app),
            model: std::mem::take(&mut self.model),
            trace,
            started: self.started,
            output: std::mem::take(&mut self.output),
            tool_calls: std::mem::take(&mut self.tool_calls),
            usage: self.usage,
            outcome: self.outcome.take(),
            ticket: self.ticket.take(),
            guard: self.guard.take(),
            input_estimate: self.input_estimate,
            client_left: false,
        };
        end.close_or_drain(
            self.upstream.take(),
            self.pending_first.take(),
            self.deadline,
        );
    }
}
