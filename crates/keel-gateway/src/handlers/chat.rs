//! `POST /v1/chat/completions` — the OpenAI-compatible entry point.
//!
//! Reads top to bottom in pipeline order: attribution, body, parse, run (resolve →
//! call), respond whole or streamed; every path ends in a trace.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use keel_core::chat::{ChatChunk, ChatRequest};

use super::common::{self, ClientApi};
use crate::error::GatewayError;
use crate::pipeline::admit::Governed;
use crate::pipeline::drive::{self, CallOptions, Served};
use crate::pipeline::relay::StreamFormat;
use crate::pipeline::{parse, shadow};
use crate::state::AppState;

pub async fn chat_completions(
    State(app): State<Arc<AppState>>,
    common::CallRequest { headers, body }: common::CallRequest,
) -> Response {
    const API: ClientApi = ClientApi::OpenAi;
    let common::Opened {
        mut pending,
        key,
        bytes,
        hold: _hold,
    } = match common::open_request(
        &app,
        &headers,
        body,
        ("openai", "/v1/chat/completions"),
        API,
    )
    .await
    {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let parsed = parse::parse_json(&bytes)
        .and_then(|r: ChatRequest| parse::validate_chat(&r, app.is_function(&r.model)).map(|_| r));
    common::capture_input(&app, pending.trace(), bytes);
    let req: ChatRequest = match parsed {
        Ok(r) => r,
        Err(e) => return common::reject(pending, e, API),
    };
    let include_usage = req.wants_stream_usage();

    let mut opts = CallOptions::from_headers(&headers);
    opts.key = key.as_deref();
    let sampled = shadow::sample(&app, &req, &opts);
    opts.registry = sampled.as_ref().map(shadow::Sampled::registry);
    let mut governed = Governed::default();
    let result = drive::run(&app, req, opts, pending.trace(), Some(&mut governed)).await;
    pending.attach(governed);
    shadow::launch(&app, sampled, pending.trace(), result.as_ref().map(|_| ()));
    match result {
        Ok(Served::Whole {
            wire: Some(body),
            cost,
            ..
        }) => common::respond_whole(pending, body, cost),
        Ok(Served::Whole { resp, cost, .. }) => match common::json_body(&resp) {
            Ok(body) => common::respond_whole(pending, body, cost),
            Err(e) => common::reject(pending, GatewayError::Internal(e.to_string()), API),
        },
        Ok(Served::Stream(opened, guard)) => common::stream_response(
            app.clone(),
            pending,
            opened,
            guard,
            OpenAiSse { include_usage },
        ),
        Err(e) => common::reject(pending, e, API),
    }
}

/// OpenAI's SSE framing: `data: {chunk}` lines, `data: [DONE]` at the end. Usage is
/// always obtained from the upstream, but only forwarded when the client asked.
pub struct OpenAiSse {
    pub include_usage: bool,
}

fn sse_data(json: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(json.len() + 8);
    buf.extend_from_slice(b"data: ");
    buf.extend_from_slice(json);
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

/// `data: {json}\n\n`, serialized in place: one buffer per event, sized for a typical
/// chunk, instead of the JSON's own growing buffer and then a framed copy of it.
fn sse_event(value: &impl serde::Serialize) -> Option<Bytes> {
    let mut buf = Vec::with_capacity(SSE_EVENT_CAPACITY);
    buf.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut buf, value).ok()?;
    buf.extend_from_slice(b"\n\n");
    Some(Bytes::from(buf))
}

/// A content chunk of a few tokens serializes to ~200–300 bytes.
const SSE_EVENT_CAPACITY: usize = 384;

impl StreamFormat for OpenAiSse {
    fn chunk(&mut self, chunk: &ChatChunk) -> Option<Bytes> {
        if chunk.usage.is_some() && !self.include_usage {
            if chunk.choices.is_empty() {
                return None;
            }
            let mut c = chunk.clone();
            c.usage = None;
            sse_event(&c)
        } else {
            sse_event(chunk)
        }
    }

    fn done(&mut self) -> Bytes {
        Bytes::from_static(b"data: [DONE]\n\n")
    }

    fn error(&mut self, err: &GatewayError) -> Bytes {
        sse_data(err.openai_body().to_string().as_bytes())
    }
}
