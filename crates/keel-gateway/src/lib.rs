//! Keel's gateway: the HTTP server and its request pipeline.
//!
//! Where to look:
//! - `handlers/chat.rs` — `POST /v1/chat/completions`, read top to bottom in pipeline order;
//! - `handlers/messages.rs` — `POST /v1/messages` (Anthropic wire format);
//! - `handlers/responses.rs` — `POST /v1/responses` and `GET`/`DELETE /v1/responses/{id}`
//!   (OpenAI's Responses API, translated to a chat call; the translation is
//!   `keel_providers::responses`); `conversations.rs` — the stored responses and
//!   conversations behind `previous_response_id`;
//! - `pipeline/` — one module per step (attribution, body, parse, call, relay, close,
//!   account); `pipeline/drive.rs` takes a call through them for every entry point;
//! - `handlers/` — HTTP only: parse the request, call `drive::run`, shape the response;
//! - `registry/` — which prompt version, model and params each function variant serves;
//! - `pipeline/function.rs` — a function call: pick the variant, render its prompt;
//! - `pipeline/auth.rs`, `pipeline/admit.rs` — keys, rate limits, budget reservations
//!   (the rules live in `keel-governance`); `governance.rs` — starting it;
//! - `handlers/admin.rs` — `/admin/keys`, `/admin/budgets`;
//! - `error.rs` — the one error type and its HTTP mapping;
//! - `parity.rs` — shadow parity, one definition for `keel shadow report` and the
//!   Experiments page;
//! - `rendered.rs` — the messages a traced call sent (its prompt rendered again), for the
//!   trace page and `keel traces show`;
//! - `model_watch.rs` — the version behind each model name, watched off the request path
//!   (`model.version_changed` audit events, `keel_model_version_changes_total`);
//! - `online.rs` — online evals' sampling of finished live calls and the bounded queue to
//!   their judges (the judges are `keel-online`);
//! - `otel/` — OpenTelemetry: span export (GenAI conventions, `traceparent`) and
//!   `POST /v1/traces` ingest of apps' spans;
//! - `dashboard/` — the server-rendered dashboard under `/` and `/ui/*`, one module per page
//!   (the reviewer's pages in `dashboard/review*.rs`; their logic is `keel-review`);
//! - `case_drafts.rs` — "add to dataset": what the dashboard needs of `keel-evals`;
//! - `playground/` — the prompt playground's work: drafts checked and tried beside the
//!   live version (its pages are in `dashboard/playground/`);
//! - `retention.rs` — `[retention]`: old traces and captured text removed on a schedule;
//! - `server.rs` — start, serve, drain the trace queue on shutdown;
//! - `connections.rs` — accepting connections under explicit limits (header-read and idle
//!   timeouts, a connection cap, a shutdown deadline);
//! - `alloc_count.rs` — bench build only (feature `count-allocations`): heap allocations
//!   per request, read at `GET /debug/allocations` (`bench/allocations.sh`).
//!
//! The trace writer itself lives in `keel-store` (`writer.rs`).

#[cfg(feature = "count-allocations")]
mod alloc_count;
pub mod balance;
pub mod breaker;
pub mod canary;
pub mod case_drafts;
pub mod connections;
pub mod conversations;
pub mod dashboard;
pub mod error;
pub mod governance;
pub mod guard;
pub mod handlers;
pub mod inproc;
pub mod inventory;
pub mod metrics;
pub mod model_watch;
pub mod online;
pub mod otel;
pub mod parity;
pub mod pipeline;
pub mod playground;
pub mod registry;
pub mod rendered;
pub mod replay;
pub mod replay_totals;
pub mod retention;
pub mod server;
pub mod state;
pub mod store_task;

pub use server::{router, Extensions, Gateway, StopReport};
