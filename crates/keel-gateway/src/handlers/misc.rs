//! The small endpoints: model list, health, metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::metrics::WriterFigures;
use crate::state::AppState;

/// `GET /v1/models` in OpenAI's list shape: the configured model names.
pub async fn list_models(State(app): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let data: Vec<_> = app
        .config
        .models
        .values()
        .map(|m| {
            json!({
                "id": m.name,
                "object": "model",
                "created": 0,
                "owned_by": m.provider,
                "upstream_model": m.upstream_model,
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

pub async fn health(State(app): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "models": app.models.len(),
        "trace_queue": app.writer.queue_len(),
    }))
}

pub async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let w = &app.writer;
    let text = app.metrics.render(WriterFigures {
        queue_len: w.queue_len() as u64,
        written: w.written_total(),
        dropped: w.dropped_total(),
        flushes: w.flushes_total(),
        flush_seconds: w.flush_seconds_total(),
    });
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
