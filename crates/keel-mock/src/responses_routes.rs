//! `POST /v1/responses`: the mock answering in OpenAI's Responses API wire format, so an
//! `openai` provider with `api = "responses"` can be tested against a local server.
//!
//! The request is translated to the canonical shape with
//! `keel_providers::responses::responses_request_to_chat`, so the reply is the one the
//! chat route gives for the same conversation (directives, rules, faults), then answered
//! as the Responses API does: a response object, or its typed event stream (no
//! `[DONE]`; a cut stream breaks before `response.completed`). Faults carry OpenAI's
//! error body. Like an upstream called with `store: false`, the mock keeps nothing:
//! `previous_response_id` is refused.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use keel_providers::mock::{MockFault, MockReply, MockServerState, HANG};
use keel_providers::responses::{
    chat_response_to_response, new_id, response_shell, responses_request_to_chat, to_sse,
    ChunksToResponseEvents, ResponseObject, ResponsesRequest,
};

use crate::openai_routes::{fault_response, json_body, paced_sse};

pub(crate) async fn responses(State(mock): State<Arc<MockServerState>>, body: Bytes) -> Response {
    let bad = |message: String| fault_response(&MockFault::status(400, message));
    let req: ResponsesRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad(format!(
                "We could not parse the JSON body of your request: {e}."
            ))
        }
    };
    if req.previous_response_id.is_some() {
        return bad("the mock stores no responses: send the whole conversation as `input`".into());
    }
    let chat = match responses_request_to_chat(&req, Vec::new()) {
        Ok(t) => t.chat,
        Err(e) => return bad(e.to_string()),
    };
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let shell = response_shell(&req, new_id("resp"), created);
    match mock.respond(&chat).await {
        Ok(reply) if req.wants_stream() => sse_response(&reply, shell),
        Ok(reply) => json_response(&reply, shell),
        Err(MockFault::Timeout) => {
            tokio::time::sleep(HANG).await;
            fault_response(&MockFault::hung())
        }
        Err(fault) => fault_response(&fault),
    }
}

fn json_response(reply: &MockReply, shell: ResponseObject) -> Response {
    json_body(
        &chat_response_to_response(shell, &reply.response),
        reply.cut,
    )
}

/// One frame per canonical chunk (the events it made); `response.completed` last unless
/// the reply is cut.
fn sse_response(reply: &MockReply, shell: ResponseObject) -> Response {
    let mut machine = ChunksToResponseEvents::new(shell);
    let mut frames = Vec::new();
    for chunk in reply.chunks(true) {
        let events = machine.push(&chunk);
        if !events.is_empty() {
            frames.push(Bytes::from(to_sse(&events)));
        }
    }
    if !reply.cut {
        frames.push(Bytes::from(to_sse(&machine.finish())));
    }
    paced_sse(frames, reply.chunk_delay, reply.cut)
}
