//! Starting and stopping a gateway: open the store, start the trace writer, build the
//! router, serve until told to stop, then drain the trace queue before returning.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use keel_core::config::Config;
use keel_store::{Store, WriterOptions};
use tokio::net::TcpListener;

use crate::handlers::{admin, chat, common, embeddings, feedback, messages, misc, responses};
use crate::state::AppState;

/// A model call handler, its future boxed before axum moves it (`common::CallFuture`).
macro_rules! boxed {
    ($handler:path) => {
        |app: axum::extract::State<Arc<AppState>>, req: common::CallRequest| {
            common::boxed_call(move || $handler(app, req))
        }
    };
}

/// The gateway's routes.
pub fn router(app: Arc<AppState>) -> Router {
    let router = Router::new()
        .route("/v1/chat/completions", post(boxed!(chat::chat_completions)))
        .route("/chat/completions", post(boxed!(chat::chat_completions)))
        .route("/v1/embeddings", post(boxed!(embeddings::embeddings)))
        .route("/embeddings", post(boxed!(embeddings::embeddings)))
        .route("/v1/messages", post(boxed!(messages::messages)))
        .route("/v1/responses", post(boxed!(responses::create)))
        .route("/responses", post(boxed!(responses::create)))
        .route(
            "/v1/responses/{id}",
            get(responses::get).delete(responses::delete),
        )
        .route("/v1/models", get(misc::list_models))
        .route("/health", get(misc::health))
        .route("/status", get(misc::status))
        .route("/metrics", get(misc::metrics))
        .route("/admin/keys", get(admin::list_keys).post(admin::create_key))
        .route("/admin/keys/{id}/revoke", post(admin::revoke_key))
        .route("/admin/keys/{id}/rotate", post(admin::rotate_key))
        .route("/admin/budgets", get(admin::budgets))
        .route("/v1/traces", post(crate::otel::ingest::ingest))
        .route("/v1/feedback", post(feedback::post_feedback))
        .merge(crate::dashboard::routes(app.clone()))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(app);
    #[cfg(feature = "count-allocations")]
    let router = crate::alloc_count::count(router);
    router
}

async fn unknown_route(uri: axum::http::Uri) -> axum::response::Response {
    route_error(
        axum::http::StatusCode::NOT_FOUND,
        "unknown_route",
        format!("Keel has no endpoint {}; it serves POST /v1/chat/completions, POST /v1/messages, GET /v1/models, POST /v1/traces, POST /v1/feedback, GET /health, GET /status, GET /metrics, /admin/* and the dashboard (/ and /ui/*)", uri.path()),
    )
}

async fn wrong_method(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    route_error(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

fn route_error(
    status: axum::http::StatusCode,
    code: &str,
    message: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "code": code, "param": null}});
    (status, axum::Json(body)).into_response()
}

/// How long shutdown waits for online-eval judges to finish the call in hand.
pub const JUDGES_STOP_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// What crates that depend on the gateway plug into it (it cannot call them itself).
#[derive(Default)]
pub struct Extensions {
    /// Runs eval suites for the dashboard's playground (`keel_evals::playground`).
    pub suites: Option<Arc<dyn crate::playground::suites::SuiteRunner>>,
    /// Judges live calls for `[[online_evals]]` (`keel_online`); without it nothing is
    /// sampled.
    pub online: Option<Arc<dyn crate::online::Judges>>,
    /// Proposes recorded calls as eval cases ("add to dataset", `keel_evals`).
    pub case_drafts: Option<Arc<dyn crate::case_drafts::CaseDrafts>>,
}

/// What a stopped gateway reports.
#[derive(Debug)]
pub struct StopReport {
    pub traces_written: u64,
    pub traces_dropped: u64,
}

/// A gateway serving on a listener.
pub struct Gateway {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<StopReport>>,
}

impl Gateway {
    /// Open the store, start the writer and serve on `listener` in a background task.
    pub async fn start(config: Config, listener: TcpListener) -> anyhow::Result<Gateway> {
        Gateway::start_with(config, listener, Extensions::default()).await
    }

    /// [`Gateway::start`], with what crates above this one provide.
    pub async fn start_with(
        config: Config,
        listener: TcpListener,
        extensions: Extensions,
    ) -> anyhow::Result<Gateway> {
        let config = Arc::new(config);
        // The token tables load beside the start (store, migrations, keys), not on the
        // first calls that count tokens (budgets, tpm limits, streams).
        let models: Vec<String> = config
            .models
            .values()
            .flat_map(|m| m.deployments.iter().map(|d| d.upstream_model.clone()))
            .collect();
        let _ = std::thread::Builder::new()
            .name("keel-warm-tokens".into())
            .spawn(move || keel_registry::warm_encodings(models.iter().map(String::as_str)));
        let store = Arc::new(Store::open(&config.gateway.store)?);
        let opts = WriterOptions {
            capacity: config.gateway.trace_queue_capacity.get(),
            max_batch: config.gateway.trace_batch_max.get(),
            full_wait: config.gateway.trace_full_wait,
        };
        let (writer, writer_handle) = keel_store::spawn(&store, opts)?;
        let (registry, refresher) = crate::registry::refresh::start(&store, config.clone())?;
        let mut state = AppState::new(config.clone(), writer, registry)?;
        let (governor, governance) = crate::governance::start(&config, &store)?;
        state.governor = governor.clone();
        state.store = Some(store.clone());
        state.suites = extensions.suites;
        state.case_drafts = extensions.case_drafts;
        let mut otel_task = None;
        if let Some(settings) = &config.otel {
            let (exporter, task) =
                crate::otel::export::start(&config, settings, state.metrics.otel.clone())?;
            state.otel = Some(exporter);
            otel_task = Some(task);
        }
        let state = Arc::new(state);
        let model_watch = tokio::spawn(crate::model_watch::run_every(store.clone(), state.clone()));
        let canaries = (!config.canaries.is_empty())
            .then(|| tokio::spawn(crate::canary::run_every(state.clone(), store.clone())));
        let retention = config
            .retention
            .clone()
            .map(|r| tokio::spawn(crate::retention::run_every(state.clone(), store.clone(), r)));
        // Sampling starts only when judges are plugged in: without them nothing is queued.
        let judges = extensions.online.as_ref().and_then(|j| {
            let queue = state.online.attach(crate::online::QUEUE_CAPACITY)?;
            Some(j.start(state.clone(), queue))
        });
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(state.clone());
        let state_for_stop = state.clone();
        let limits = crate::connections::Limits {
            header_read_timeout: config.gateway.header_read_timeout,
            idle_timeout: config.gateway.idle_timeout,
            max_connections: config.gateway.max_connections.get(),
            shutdown_timeout: config.gateway.shutdown_timeout,
        };
        let task = tokio::spawn(async move {
            let stopping = state_for_stop.stopping.clone();
            let stop = async move {
                let _ = stop_rx.await;
            };
            let deadline =
                crate::connections::serve(listener, app, limits, stop, stopping.clone()).await;
            // Streams whose clients left are read to their end for the provider's
            // usage, within the same deadline; past it they close with an estimate.
            let afterwork = state_for_stop.afterwork.clone();
            afterwork.close();
            if tokio::time::timeout_at(deadline, afterwork.wait())
                .await
                .is_err()
            {
                stopping.cancel();
                afterwork.wait().await;
            }
            // Judges finish the call in hand (their scores and judge traces go to the
            // writer, still open); what is still queued is counted as skipped.
            if let Some(j) = judges {
                j.stop(JUDGES_STOP_WITHIN).await;
            }
            model_watch.abort();
            if let Some(c) = canaries {
                c.abort();
            }
            if let Some(r) = retention {
                r.abort();
            }
            governance.stop(&governor).await;
            if let Some(r) = refresher {
                tokio::task::spawn_blocking(move || r.stop()).await?;
            }
            // Every connection is closed, so every span is queued: flush them.
            if let Some(t) = otel_task {
                t.shutdown().await;
            }
            // Every connection is closed, so every trace has been handed to the writer:
            // drain the queue and stop the writer thread.
            let stats = tokio::task::spawn_blocking(move || writer_handle.shutdown()).await?;
            drop(store);
            Ok(StopReport {
                traces_written: stats.written_total,
                traces_dropped: stats.dropped_total,
            })
        });
        Ok(Gateway {
            addr,
            state,
            stop: Some(stop_tx),
            task,
        })
    }

    /// Stop accepting, finish in-flight requests, drain the trace queue.
    pub async fn shutdown(mut self) -> anyhow::Result<StopReport> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await?
    }

    /// Serve until `signal` resolves, then shut down cleanly.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> anyhow::Result<StopReport> {
        signal.await;
        self.shutdown().await
    }
}
