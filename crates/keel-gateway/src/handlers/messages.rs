//! `POST /v1/messages` — the Anthropic-compatible entry point.
//!
//! The Anthropic request is translated to the canonical one, routed like any chat call
//! (to any configured model, whatever its provider), and the reply translated back:
//! a Messages object, or Anthropic's streaming event sequence. Errors use Anthropic's
//! error shape so the official SDK raises the right exception.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use keel_core::chat::ChatChunk;
use keel_providers::anthropic::{
    chat_response_to_messages, messages_request_to_chat, AnthropicSseEvent, ChunksToEvents,
    MessagesRequest,
};

use super::common::{self, ClientApi};
use crate::error::GatewayError;
use crate::pipeline::admit::Governed;
use crate::pipeline::drive::{self, CallOptions, Served};
use crate::pipeline::relay::StreamFormat;
use crate::pipeline::{parse, shadow};
use crate::state::AppState;

pub async fn messages(
    State(app): State<Arc<AppState>>,
    common::CallRequest { headers, body }: common::CallRequest,
) -> Response {
    const API: ClientApi = ClientApi::Anthropic;
    let common::Opened {
        mut pending,
        key,
        bytes,
        hold: _hold,
    } = match common::open_request(&app, &headers, body, ("anthropic", "/v1/messages"), API).await {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let parsed = parse::parse_json::<MessagesRequest>(&bytes)
        .and_then(require_max_tokens)
        .and_then(|r| {
            messages_request_to_chat(r).map_err(|e| {
                GatewayError::InvalidRequest(format!(
                    "invalid request body: `{}`: {}",
                    e.path, e.message
                ))
            })
        })
        .and_then(|r| parse::validate_chat(&r, app.is_function(&r.model)).map(|_| r));
    common::capture_input(&app, pending.trace(), bytes);
    let req = match parsed {
        Ok(r) => r,
        Err(e) => return common::reject(pending, e, API),
    };
    let model = req.model.clone();

    let mut opts = CallOptions::from_headers(&headers);
    opts.key = key.as_deref();
    let sampled = shadow::sample(&app, &req, &opts);
    opts.registry = sampled.as_ref().map(shadow::Sampled::registry);
    let mut governed = Governed::default();
    let result = drive::run(&app, req, opts, pending.trace(), Some(&mut governed)).await;
    pending.attach(governed);
    shadow::launch(&app, sampled, pending.trace(), result.as_ref().map(|_| ()));
    match result {
        Ok(Served::Whole { resp, cost, .. }) => {
            match common::json_body(&chat_response_to_messages(&resp, &model)) {
                Ok(body) => common::respond_whole(pending, body, cost),
                Err(e) => common::reject(pending, GatewayError::Internal(e.to_string()), API),
            }
        }
        Ok(Served::Stream(opened, guard)) => {
            let msg_id = format!("msg_{}", pending.id().replace('-', ""));
            let format = AnthropicEvents {
                inner: ChunksToEvents::new(&model, &msg_id),
            };
            common::stream_response(app.clone(), pending, opened, guard, format)
        }
        Err(e) => common::reject(pending, e, API),
    }
}

/// Anthropic's API requires `max_tokens`; so does Keel's Anthropic surface, so a client
/// written against Keel works against Anthropic too.
fn require_max_tokens(req: MessagesRequest) -> Result<MessagesRequest, GatewayError> {
    if req.max_tokens.is_none() {
        return Err(GatewayError::InvalidRequest(
            "invalid request body: `max_tokens`: field required; set the most output tokens the reply may use".into(),
        ));
    }
    Ok(req)
}

/// Anthropic's event stream, produced by the translation state machine.
struct AnthropicEvents {
    inner: ChunksToEvents,
}

fn join(events: Vec<AnthropicSseEvent>) -> Option<Bytes> {
    if events.is_empty() {
        return None;
    }
    let mut s = String::new();
    for e in events {
        s.push_str(&e.to_sse());
    }
    Some(Bytes::from(s))
}

impl StreamFormat for AnthropicEvents {
    fn chunk(&mut self, chunk: &ChatChunk) -> Option<Bytes> {
        join(self.inner.push(chunk))
    }

    fn done(&mut self) -> Bytes {
        join(self.inner.finish()).unwrap_or_default()
    }

    fn error(&mut self, err: &GatewayError) -> Bytes {
        let body = err.anthropic_body();
        let kind = body["error"]["type"]
            .as_str()
            .unwrap_or("api_error")
            .to_string();
        Bytes::from(AnthropicSseEvent::error(&kind, err.view().message).to_sse())
    }
}
