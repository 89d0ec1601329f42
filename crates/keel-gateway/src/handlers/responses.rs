//! `POST /v1/responses`, `GET /v1/responses/{id}` and `DELETE /v1/responses/{id}` — the
//! OpenAI Responses API, served on any upstream.
//!
//! A Responses body is translated to a canonical chat request (with the stored
//! conversation of its `previous_response_id` in front of its input), run through the
//! same pipeline as `/v1/chat/completions` — keys, budgets, rate limits, guardrails,
//! retries and fallbacks, caching, functions and splits, online evals — and answered as
//! a response object or the Responses event stream. The trace's captured input is the
//! chat request as sent (earlier turns expanded), so the trace page shows what the model
//! saw. With `store` (the default) the response and its conversation are kept, scoped to
//! the caller's tenant (`conversations.rs`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use keel_core::chat::{ChatChunk, Message};
use keel_providers::responses::{
    chat_response_to_response, new_id, output_to_messages, response_shell,
    responses_request_to_chat, to_sse, ChunksToResponseEvents, ResponseObject, ResponsesRequest,
};
use keel_store::responses::StoredResponse;

use super::caller::caller;
use super::common::{self, ClientApi};
use crate::error::GatewayError;
use crate::pipeline::admit::Governed;
use crate::pipeline::drive::{self, CallOptions, Served};
use crate::pipeline::relay::StreamFormat;
use crate::pipeline::{parse, shadow};
use crate::state::AppState;

pub const ENDPOINT: &str = "/v1/responses";
const API: ClientApi = ClientApi::OpenAi;

/// Who made a response, for the scope of its later reads.
#[derive(Clone)]
struct Owner {
    tenant: Option<String>,
    key_id: Option<String>,
}

/// What storing the answer needs, taken when the call starts.
struct ToStore {
    app: Arc<AppState>,
    owner: Owner,
    trace_id: String,
    conversation: Vec<Message>,
}

impl ToStore {
    fn save(self, response: &ResponseObject) {
        let mut conversation = self.conversation;
        conversation.extend(output_to_messages(&response.output));
        let (Ok(response_json), Ok(conversation_json)) = (
            serde_json::to_string(response),
            serde_json::to_string(&conversation),
        ) else {
            return;
        };
        self.app.conversations.remember(
            &self.app,
            StoredResponse {
                id: response.id.clone(),
                tenant: self.owner.tenant,
                key_id: self.owner.key_id,
                trace_id: self.trace_id,
                created_ms: response.created_at.saturating_mul(1000),
                response_json,
                conversation_json,
            },
        );
    }
}

pub async fn create(
    State(app): State<Arc<AppState>>,
    common::CallRequest { headers, body }: common::CallRequest,
) -> Response {
    let common::Opened {
        mut pending,
        key,
        bytes,
        hold: _hold,
    } = match common::open_request(&app, &headers, body, ("openai", ENDPOINT), API).await {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let req = match parse::parse_json::<ResponsesRequest>(&bytes) {
        Ok(r) => r,
        Err(e) => {
            common::capture_input(&app, pending.trace(), bytes);
            return common::reject(pending, e, API);
        }
    };
    let owner = Owner {
        tenant: key
            .as_ref()
            .map(|k| k.tenant.clone())
            .or_else(|| pending.trace().tenant.clone()),
        key_id: key.as_ref().map(|k| k.id.clone()),
    };
    let history = match previous_turns(&app, &req, &owner, key.is_some()).await {
        Ok(h) => h,
        Err(e) => {
            common::capture_input(&app, pending.trace(), bytes);
            return common::reject(pending, e, API);
        }
    };
    let translated = responses_request_to_chat(&req, history)
        .map_err(|e| GatewayError::InvalidField {
            param: e.path.clone(),
            message: format!("invalid request body: `{}`: {}", e.path, e.message),
        })
        .and_then(|t| parse::validate_chat(&t.chat, app.is_function(&t.chat.model)).map(|_| t));
    let translated = match translated {
        Ok(t) => t,
        Err(e) => {
            common::capture_input(&app, pending.trace(), bytes);
            return common::reject(pending, e, API);
        }
    };
    // The trace keeps the chat request as sent: what the model saw, earlier turns included.
    if app.capture.keeps_text() {
        let sent = serde_json::to_vec(&translated.chat)
            .map(Bytes::from)
            .unwrap_or(bytes);
        common::capture_input(&app, pending.trace(), sent);
    }

    let shell = response_shell(&req, new_id("resp"), drive::now_ms() / 1000);
    let to_store = req.wants_store().then(|| ToStore {
        app: app.clone(),
        owner,
        trace_id: pending.id().to_string(),
        conversation: translated.conversation,
    });
    let chat = translated.chat;
    let mut opts = CallOptions::from_headers(&headers);
    opts.key = key.as_deref();
    let sampled = shadow::sample(&app, &chat, &opts);
    opts.registry = sampled.as_ref().map(shadow::Sampled::registry);
    let mut governed = Governed::default();
    let result = drive::run(&app, chat, opts, pending.trace(), Some(&mut governed)).await;
    pending.attach(governed);
    shadow::launch(&app, sampled, pending.trace(), result.as_ref().map(|_| ()));
    match result {
        Ok(Served::Whole { resp, cost, .. }) => {
            let response = chat_response_to_response(shell, &resp);
            match common::json_body(&response) {
                Ok(body) => {
                    if let Some(s) = to_store {
                        s.save(&response);
                    }
                    common::respond_whole(pending, body, cost)
                }
                Err(e) => common::reject(pending, GatewayError::Internal(e.to_string()), API),
            }
        }
        Ok(Served::Stream(opened, guard)) => {
            let format = ResponseEvents {
                machine: ChunksToResponseEvents::new(shell),
                to_store,
            };
            common::stream_response(app.clone(), pending, opened, guard, format)
        }
        Err(e) => common::reject(pending, e, API),
    }
}

/// The conversation `previous_response_id` ends, when the request names one the caller
/// may continue (its tenant's or its key's; anyone's on an open gateway without a key).
async fn previous_turns(
    app: &AppState,
    req: &ResponsesRequest,
    owner: &Owner,
    keyed: bool,
) -> Result<Vec<Message>, GatewayError> {
    let Some(prev) = req.previous_response_id.as_deref() else {
        return Ok(Vec::new());
    };
    let not_found = || {
        GatewayError::InvalidField {
        param: "previous_response_id".into(),
        message: format!(
            "previous response `{prev}` is not stored: it was created with `store: false`, deleted, or by another tenant's key"
        ),
    }
    };
    let found = app.conversations.find(app.store.as_ref(), prev).await?;
    let stored = found.ok_or_else(not_found)?;
    let visible = !keyed
        || stored.key_id == owner.key_id
        || (stored.tenant.is_some() && stored.tenant == owner.tenant);
    if !visible {
        return Err(not_found());
    }
    serde_json::from_str(&stored.conversation_json).map_err(|e| {
        GatewayError::Internal(format!(
            "stored conversation of `{prev}` is unreadable: {e}"
        ))
    })
}

/// `GET /v1/responses/{id}`.
pub async fn get(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match visible(&app, &headers, &id).await {
        Ok(r) => common::json_response(
            StatusCode::OK,
            r.response_json.clone().into_bytes(),
            &r.trace_id,
            None,
        ),
        Err(e) => common::error_response(&e, API, ""),
    }
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        visible(&app, &headers, &id).await?;
        app.conversations.forget(app.store.as_ref(), &id).await
    }
    .await;
    match result {
        Ok(()) => {
            let body = serde_json::json!({"id": id, "object": "response.deleted", "deleted": true});
            common::json_response(StatusCode::OK, body.to_string().into_bytes(), "", None)
        }
        Err(e) => common::error_response(&e, API, ""),
    }
}

/// The stored response `id` if the caller may see it; one 404 for unknown and not visible.
async fn visible(
    app: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<Arc<StoredResponse>, GatewayError> {
    let who = caller(app, headers)?;
    let found = app.conversations.find(app.store.as_ref(), id).await?;
    found
        .filter(|r| who.may_see(r.key_id.as_deref(), r.tenant.as_deref()))
        .ok_or_else(|| GatewayError::UnknownResponse(id.to_string()))
}

/// The Responses event stream, produced by the translation state machine; the finished
/// response is stored when the stream completes.
struct ResponseEvents {
    machine: ChunksToResponseEvents,
    to_store: Option<ToStore>,
}

fn sse(events: Vec<serde_json::Value>) -> Option<Bytes> {
    (!events.is_empty()).then(|| Bytes::from(to_sse(&events)))
}

impl StreamFormat for ResponseEvents {
    fn chunk(&mut self, chunk: &ChatChunk) -> Option<Bytes> {
        sse(self.machine.push(chunk))
    }

    fn done(&mut self) -> Bytes {
        let events = self.machine.finish();
        if let Some(s) = self.to_store.take() {
            s.save(self.machine.response());
        }
        sse(events).unwrap_or_default()
    }

    fn error(&mut self, err: &GatewayError) -> Bytes {
        let view = err.view();
        sse(self.machine.fail(&view.code, &view.message)).unwrap_or_default()
    }
}
