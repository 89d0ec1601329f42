//! `POST /v1/chat/completions`: the mock answering in OpenAI's wire format — a JSON
//! completion, an SSE stream (`data: {chunk}\n\n` ... `data: [DONE]\n\n`), or one of the
//! injected faults exactly as an upstream would deliver it (error status and body with
//! `Retry-After`, a hang, a non-JSON 200, a body or stream broken half-way).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{stream, StreamExt};
use keel_core::chat::ChatRequest;
use keel_providers::mock::{MockFault, MockReply, MockServerState, GARBAGE_BODY, HANG};

const DONE: &[u8] = b"data: [DONE]\n\n";

pub(crate) async fn chat_completions(
    State(mock): State<Arc<MockServerState>>,
    body: Bytes,
) -> Response {
    let req: ChatRequest = match serde_json::from_slice(&body) {
        Ok(req) => req,
        Err(e) => {
            return fault_response(&MockFault::status(
                400,
                format!("We could not parse the JSON body of your request: {e}."),
            ))
        }
    };
    match mock.respond(&req).await {
        Ok(reply) if req.stream => sse_response(&reply, req.wants_stream_usage()),
        Ok(reply) => json_response(&reply),
        Err(MockFault::Timeout) => {
            tokio::time::sleep(HANG).await;
            fault_response(&MockFault::hung())
        }
        Err(fault) => fault_response(&fault),
    }
}

/// `POST /v1/embeddings`: deterministic vectors (`keel_providers::mock::embed`).
pub(crate) async fn embeddings(body: Bytes) -> Response {
    match serde_json::from_slice::<keel_core::embeddings::EmbeddingRequest>(&body) {
        Ok(req) => match req.problem() {
            None => axum::Json(keel_providers::mock::embed::embed(&req)).into_response(),
            Some((message, _)) => fault_response(&MockFault::status(400, message)),
        },
        Err(e) => fault_response(&MockFault::status(
            400,
            format!("We could not parse the JSON body of your request: {e}."),
        )),
    }
}

/// A fault as an HTTP response: the OpenAI error body with its status (and
/// `Retry-After`), or for `Garbage` a 200 that is not JSON. `Timeout` gives the 504 a
/// hang ends with; the caller hangs first.
pub(crate) fn fault_response(fault: &MockFault) -> Response {
    if *fault == MockFault::Garbage {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            GARBAGE_BODY,
        )
            .into_response();
    }
    let status =
        StatusCode::from_u16(fault.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(fault.openai_error_body())).into_response();
    if let MockFault::Status {
        retry_after: Some(secs),
        ..
    } = fault
    {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(*secs));
    }
    response
}

fn json_response(reply: &MockReply) -> Response {
    json_body(&reply.response, reply.cut)
}

/// A JSON body; when `cut`, only its first half (a body broken half-way).
pub(crate) fn json_body(value: &impl serde::Serialize, cut: bool) -> Response {
    let mut body = match serde_json::to_vec(value) {
        Ok(b) => b,
        Err(e) => {
            return fault_response(&MockFault::status(
                500,
                format!("mock could not encode its reply: {e}"),
            ))
        }
    };
    if cut {
        body.truncate(body.len() / 2);
    }
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Frame every chunk as `data: {json}\n\n`; `[DONE]` last unless cut.
fn sse_response(reply: &MockReply, include_usage: bool) -> Response {
    let mut frames: Vec<Bytes> = Vec::new();
    for chunk in reply.chunks(include_usage) {
        let mut frame = Vec::with_capacity(256);
        frame.extend_from_slice(b"data: ");
        if let Err(e) = serde_json::to_writer(&mut frame, &chunk) {
            return fault_response(&MockFault::status(
                500,
                format!("mock could not encode a chunk: {e}"),
            ));
        }
        frame.extend_from_slice(b"\n\n");
        frames.push(Bytes::from(frame));
    }
    if !reply.cut {
        frames.push(Bytes::from_static(DONE));
    }
    paced_sse(frames, reply.chunk_delay, reply.cut)
}

/// An event stream of `frames`, `delay` apart; when `cut`, the connection breaks after
/// the last one, as a crashed upstream's would.
pub(crate) fn paced_sse(frames: Vec<Bytes>, delay: Duration, cut: bool) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    if !cut && delay.is_zero() {
        // The benchmark's path: one buffer, no per-chunk wakeups.
        return (headers, frames.concat()).into_response();
    }
    let paced = stream::iter(frames.into_iter().enumerate()).then(move |(i, frame)| async move {
        if i > 0 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<Bytes, io::Error>(frame)
    });
    let body = if cut {
        Body::from_stream(paced.chain(stream::once(cut_stream(delay))))
    } else {
        Body::from_stream(paced)
    };
    (headers, body).into_response()
}

/// The end of a cut stream: an error, which makes the server drop the connection
/// without ending the chunked body, as a crashed upstream would. The short pause lets
/// the frames before it reach the client first.
async fn cut_stream(delay: Duration) -> Result<Bytes, io::Error> {
    tokio::time::sleep(delay.max(Duration::from_millis(5))).await;
    Err(io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "mock: stream cut before its end",
    ))
}
