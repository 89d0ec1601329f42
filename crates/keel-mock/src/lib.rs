//! The mock LLM upstream over HTTP: what `keel mock-provider --listen ADDR` serves, and
//! what tests, the quickstart and the benchmark point at instead of a real provider.
//!
//! Routes:
//! - `POST /v1/chat/completions` — OpenAI Chat Completions (JSON, or SSE when
//!   `stream: true`; the usage chunk only with `stream_options.include_usage: true`);
//! - `POST /v1/messages` — Anthropic Messages (`anthropic_routes`);
//! - `POST /v1/responses` — OpenAI Responses, stateless (`responses_routes`);
//! - `POST /v1/embeddings` — deterministic vectors;
//! - `GET /v1/models`, `GET /v1/models/{id}` — the mock models `mock-1`, `mock-2`,
//!   `mock-large` (any model id is accepted by the chat routes);
//! - `GET /health` — `{"status":"ok"}`.
//!
//! Replies, directives (`[mock:status=429]`...), rules and fault rates are those of
//! `keel_providers::mock`, whose docs list them; the server and the in-process
//! `MockProvider` share [`MockServerState`] and answer alike. The server is the
//! benchmark's upstream, so the hot path takes no lock across an await and logs nothing
//! above `debug`.

mod anthropic_routes;
mod openai_routes;
mod responses_routes;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use keel_core::config::mock::MockSettings;
use keel_providers::mock::{MockFault, MockServerState, CREATED};
use serde_json::{json, Value};

/// The model ids `GET /v1/models` lists.
pub const MODELS: [&str; 3] = ["mock-1", "mock-2", "mock-large"];

/// The largest request body accepted.
const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Serve the mock on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: MockSettings,
) -> anyhow::Result<()> {
    serve_with_shutdown(listener, settings, std::future::pending()).await
}

/// Serve the mock on `listener` until `shutdown` completes, then finish in-flight
/// requests and return.
pub async fn serve_with_shutdown(
    listener: tokio::net::TcpListener,
    settings: MockSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = Arc::new(MockServerState::new(settings)?);
    // Like the gateway: no Nagle delay on small streamed writes.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// The mock's routes over a shared state.
pub fn router(state: Arc<MockServerState>) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(openai_routes::chat_completions),
        )
        .route("/v1/embeddings", post(openai_routes::embeddings))
        .route("/v1/messages", post(anthropic_routes::messages))
        .route("/v1/responses", post(responses_routes::responses))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route("/health", get(health))
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": CREATED, "owned_by": "keel-mock"})
}

async fn list_models() -> Json<Value> {
    let data: Vec<Value> = MODELS.iter().map(|m| model_object(m)).collect();
    Json(json!({"object": "list", "data": data}))
}

async fn get_model(Path(id): Path<String>) -> Response {
    if MODELS.contains(&id.as_str()) {
        Json(model_object(&id)).into_response()
    } else {
        openai_routes::fault_response(&MockFault::status(
            404,
            format!("The model `{id}` does not exist."),
        ))
    }
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn unknown_route(method: Method, uri: Uri) -> Response {
    let body = json!({"error": {
        "message": format!("Unknown request URL: {method} {}.", uri.path()),
        "type": "invalid_request_error",
        "param": null,
        "code": "unknown_url",
    }});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
