//! OpenTelemetry: Keel's calls out as OTLP spans, apps' spans in.
//!
//! - `context` — the caller's W3C `traceparent` (Keel's span joins the app's trace);
//! - `span` — a finished trace as a GenAI-conventions span (OTLP JSON);
//! - `export` — the bounded queue and the batching task that POSTs to the collector;
//! - `ingest` — `POST /v1/traces` (OTLP/HTTP JSON and protobuf) into `app_spans`;
//! - `proto` — the OTLP protobuf messages ingest decodes.

pub mod context;
pub mod export;
pub mod ingest;
pub mod proto;
pub mod span;

pub use export::{ExportTask, SpanExporter};
