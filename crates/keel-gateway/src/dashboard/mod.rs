//! The dashboard: server-side rendered pages served by `keel serve` on its own port, so
//! a team sees costs, latencies, traces, prompts, evals, experiments and governance
//! without another service and without internet access (no CDN, no script framework:
//! the CSS is embedded and charts are SVG drawn in Rust).
//!
//! One module per page; each reads the store through [`read`] (a blocking-pool task,
//! never the async threads) with bounded, indexed queries. [`access`] guards every page
//! with the admin key when auth is required ([`session`] keeps who signed in). The playground is the one page that writes
//! (drafts, and a saved version), through [`write`].

mod access;
mod add_to_dataset;
mod charts;
mod evals;
mod functions;
mod governance;
mod html;
mod incidents;
mod models;
mod overview;
mod playground;
mod prompts;
mod review;
mod review_view;
mod session;
mod trace;
mod traces;

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use keel_store::sql::Db;

use crate::state::AppState;
use html::PageError;
pub use session::Sessions;

/// The page's query parameters (each page reads the ones it knows).
pub(crate) type Params = HashMap<String, String>;

const STYLE: &str = include_str!("style.css");

/// The dashboard's routes: pages behind the admin check, then the login form and the
/// stylesheet, which are open.
pub fn routes(app: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(overview::page))
        .route("/ui", get(|| async { Redirect::to("/") }))
        .route("/ui/traces", get(traces::page))
        .route("/ui/traces/{id}", get(trace::page))
        .route("/ui/prompts", get(prompts::list))
        .route("/ui/prompts/{*name}", get(prompts::detail))
        .route("/ui/playground", get(playground::index))
        .route(
            "/ui/playground/{*name}",
            get(playground::editor).post(playground::post),
        )
        .route("/ui/evals", get(evals::runs))
        .route("/ui/evals/compare", get(evals::compare))
        .route("/ui/functions", get(functions::page))
        .route("/ui/governance", get(governance::page))
        .route("/ui/models", get(models::page))
        .route("/ui/incidents", get(incidents::list))
        .route(
            "/ui/incidents/{id}",
            get(incidents::detail).post(incidents::post),
        )
        .route("/ui/review", get(review::index).post(review::post_index))
        .route("/ui/datasets/propose", post(add_to_dataset::post))
        .route("/ui/review/{queue}", get(review::page).post(review::post))
        .route("/ui/logout", get(access::logout_form))
        .route_layer(axum::middleware::from_fn_with_state(app, access::require))
        .route("/ui/login", get(access::form).post(access::login))
        .route("/ui/logout", post(access::logout))
        .route("/ui/style.css", get(style))
}

async fn style() -> Response {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        STYLE,
    )
        .into_response()
}

/// Run `f` on a read-write connection in the blocking pool (the playground's drafts and
/// saves; every other page only reads).
pub(crate) async fn write<T: Send + 'static>(
    app: &AppState,
    f: impl FnOnce(Db<'_>) -> Result<T, PageError> + Send + 'static,
) -> Result<T, PageError> {
    on_store(app, f).await
}

/// Run `f` on the writer connection, mutably (for writes that need a transaction: a
/// review claim, a label).
pub(crate) async fn write_mut<T: Send + 'static>(
    app: &AppState,
    f: impl FnOnce(Db<'_>) -> Result<T, PageError> + Send + 'static,
) -> Result<T, PageError> {
    let store = app
        .store
        .clone()
        .ok_or_else(|| PageError::Internal("this gateway has no store".into()))?;
    tokio::task::spawn_blocking(move || f(store.conn()?.db()))
        .await
        .map_err(|e| PageError::Internal(e.to_string()))?
}

/// Run `f` on a read connection in the blocking pool.
pub(crate) async fn read<T: Send + 'static>(
    app: &AppState,
    f: impl FnOnce(Db<'_>) -> Result<T, PageError> + Send + 'static,
) -> Result<T, PageError> {
    on_store(app, f).await
}

async fn on_store<T: Send + 'static>(
    app: &AppState,
    f: impl FnOnce(Db<'_>) -> Result<T, PageError> + Send + 'static,
) -> Result<T, PageError> {
    let store = app
        .store
        .clone()
        .ok_or_else(|| PageError::Internal("this gateway has no store".into()))?;
    tokio::task::spawn_blocking(move || f(store.conn()?.db()))
        .await
        .map_err(|e| PageError::Internal(e.to_string()))?
}

/// The time windows the pages offer: (`?since=` value, length in ms, chart buckets).
pub(crate) const WINDOWS: [(&str, i64, usize); 4] = [
    ("1h", 3_600_000, 12),
    ("24h", 86_400_000, 24),
    ("7d", 7 * 86_400_000, 28),
    ("30d", 30 * 86_400_000, 30),
];

/// The window named by `?since=` (default 24h): (name, length ms, buckets).
pub(crate) fn window(params: &Params) -> Result<(&'static str, i64, usize), PageError> {
    let want = params.get("since").map_or("24h", String::as_str);
    WINDOWS
        .iter()
        .find(|(name, _, _)| *name == want)
        .copied()
        .ok_or_else(|| {
            PageError::BadRequest(format!(
                "since={want} is not a window; use 1h, 24h, 7d or 30d"
            ))
        })
}

/// Links to the same page over each window, the current one marked.
pub(crate) fn window_links(path: &str, current: &str) -> String {
    let mut out = String::from("<p class=\"windows\">Window: ");
    for (name, _, _) in WINDOWS {
        let class = if name == current {
            " class=\"active\""
        } else {
            ""
        };
        out.push_str(&format!(
            "<a href=\"{path}?since={name}\"{class}>{name}</a> "
        ));
    }
    out.push_str("</p>");
    out
}
