//! The small endpoints: model list, health, metrics. With `[auth] mode = "required"` the
//! model list and the metrics are closed unless `[auth] public_models` /
//! `public_metrics` open them: what is public is a choice the config states.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::GatewayError;
use crate::metrics::{GovFigures, WriterFigures};
use crate::state::AppState;

/// Whether a caller may read `/v1/models`: anyone when `[auth] public_models`, else a
/// valid virtual key or the admin key.
fn may_list_models(app: &AppState, headers: &HeaderMap) -> Result<(), GatewayError> {
    if app.governor.config().auth.public_models
        || crate::pipeline::auth::admin(app, headers).is_ok()
    {
        return Ok(());
    }
    match app
        .governor
        .authenticate(crate::pipeline::auth::credential(headers))?
    {
        Some(_) => Ok(()),
        None => Err(keel_governance::GovError::MissingKey.into()),
    }
}

/// `GET /v1/models` in OpenAI's list shape: the configured models, then the functions
/// (callable by name the same way), each function with its variants and what they serve.
pub async fn list_models(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = may_list_models(&app, &headers) {
        return super::common::error_response(&e, super::common::ClientApi::OpenAi, "");
    }
    let mut data: Vec<_> = app
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
    let snapshot = app.registry.current();
    for f in app.config.functions.values() {
        let variants: Vec<_> = f
            .variants
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut out = json!({"name": v.name, "weight": v.weight, "model": v.model, "prompt": v.prompt});
                match snapshot.slot(&f.name, i) {
                    Some(Ok(d)) => {
                        out["prompt_version"] = json!(d.prompt_version);
                        out["release"] = json!(d.release.id);
                    }
                    Some(Err(why)) => out["unavailable"] = json!(why.as_ref()),
                    None => out["unavailable"] = json!("not loaded yet"),
                }
                out
            })
            .collect();
        // The traffic split served now: a `keel function canary` override, or the config's.
        let configured = keel_core::split::config_weights(f);
        let split = match snapshot.split(&f.name) {
            Some(w) => {
                let served: Vec<(String, u32)> = configured
                    .iter()
                    .zip(w)
                    .map(|((n, _), w)| (n.clone(), *w))
                    .collect();
                json!({"source": "override", "shares": keel_core::split::format_shares(&served)})
            }
            None => {
                json!({"source": "config", "shares": keel_core::split::format_shares(&configured)})
            }
        };
        data.push(json!({
            "id": f.name,
            "object": "model",
            "created": 0,
            "owned_by": "keel-function",
            "description": f.description,
            "variants": variants,
            "split": split,
        }));
    }
    Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /status`: what `keel status` shows — per model its provider, upstream id,
/// routing and circuit state; the functions that cannot serve; the trace queue.
pub async fn status(State(app): State<Arc<AppState>>, headers: axum::http::HeaderMap) -> Response {
    if let Err(e) = crate::pipeline::auth::admin(&app, &headers) {
        return super::common::error_response(&e, super::common::ClientApi::OpenAi, "");
    }
    let mut models = serde_json::Map::new();
    let mut names: Vec<&String> = app.models.keys().collect();
    names.sort();
    for name in names {
        let Some(r) = app.models.get(name) else {
            continue;
        };
        let routing = &r.config.routing;
        models.insert(
            name.clone(),
            json!({
                "provider": r.primary().provider_name,
                "upstream_model": r.primary().upstream_model,
                "retries": routing.retries,
                "fallbacks": routing.fallbacks,
                "circuit": r.primary().breaker.as_ref().map(|b| b.state()),
                "deployments": r.deployments.iter().map(|d| json!({
                    "provider": d.provider_name,
                    "upstream_model": d.upstream_model,
                    "weight": d.weight,
                    "rpm": d.rpm,
                    "circuit": d.breaker.as_ref().map(|b| b.state()),
                    "latency_ms": d.latency().map(|l| l.as_secs_f64() * 1000.0),
                })).collect::<Vec<_>>(),
            }),
        );
    }
    let snapshot = app.registry.current();
    let problems: Vec<_> = snapshot
        .problems()
        .into_iter()
        .map(|(f, _, why)| json!({"function": f, "problem": why.as_ref()}))
        .collect();
    let cheapest: serde_json::Map<String, serde_json::Value> = app
        .config
        .functions
        .values()
        .filter_map(|f| {
            let pick = snapshot.cheapest(&f.name)?;
            Some((
                f.name.clone(),
                match pick {
                    Ok(i) => json!({"variant": f.variants.get(*i).map(|v| v.name.clone())}),
                    Err(why) => json!({"variant": null, "why": why}),
                },
            ))
        })
        .collect();
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "models": models,
        "cheapest": cheapest,
        "functions_unavailable": problems,
        // Stored `keel function canary` splits that do not fit keel.toml (not served).
        "split_problems": snapshot.split_problems(),
        "trace_queue": app.writer.queue_len(),
        "in_flight": app.metrics.in_flight.get(),
        "online_evals": app.online.figures(),
        "governance": {
            "auth": format!("{:?}", app.governor.config().auth.mode).to_lowercase(),
            "keys": app.governor.keys().len(),
            "limits_backend": app.governor.backend_name(),
            "budgets": app.governor.config().budgets.len(),
            "rate_limits": app.governor.config().rate_limits.len(),
        },
    }))
    .into_response()
}

/// `GET /health`: 200 while Keel serves calls. `status` is `degraded` while the store
/// cannot be reached (PostgreSQL down: calls are served, traces wait in the queue).
pub async fn health(State(app): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let degraded = app.writer.store_degraded();
    let backend = match &app.store {
        Some(s) if s.is_postgres() => "postgres",
        _ => "sqlite",
    };
    Json(json!({
        "status": if degraded { "degraded" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "models": app.models.len(),
        "trace_queue": app.writer.queue_len(),
        "store": {
            "backend": backend,
            "status": if degraded { "degraded" } else { "ok" },
            "error": app.writer.store_error(),
        },
    }))
}

/// `GET /metrics`: open when `[auth] public_metrics`, else the admin key.
pub async fn metrics(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !app.governor.config().auth.public_metrics {
        if let Err(e) = crate::pipeline::auth::admin(&app, &headers) {
            return super::common::error_response(&e, super::common::ClientApi::OpenAi, "");
        }
    }
    let w = &app.writer;
    let text = app.metrics.render(
        WriterFigures {
            queue_len: w.queue_len() as u64,
            written: w.written_total(),
            dropped: w.dropped_total(),
            flushes: w.flushes_total(),
            flush_seconds: w.flush_seconds_total(),
        },
        {
            use std::sync::atomic::Ordering::Relaxed;
            let g = &app.governor.stats;
            GovFigures {
                backend_errors: g.backend_errors.load(Relaxed),
                fail_open_admits: g.fail_open_admits.load(Relaxed),
                spikes: g.spikes.load(Relaxed),
            }
        },
    );
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
