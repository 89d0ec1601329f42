//! Where traces live, how they are written, and the report a team reads.
//!
//! A SQLite [`Store`] (WAL, numbered migrations), the [`TraceWriter`] that is the only
//! part of storage on the request path (bounded queue, batched writer thread, counted
//! drops, draining shutdown), the read side for `keel traces` ([`list_traces`],
//! [`get_trace`]) and the weekly report for `keel report` ([`build_report`],
//! [`render_table`], [`render_markdown`]), prompt versions, labels and the audit log
//! ([`prompts`], [`audit`]), and releases with their traffic for `keel releases`
//! ([`releases`], [`list_releases`]), replay runs for `keel replay` ([`replays`]), and
//! governance: virtual keys ([`keys`]), alert events ([`alerts`]) and spend by scope
//! ([`spend`]), functions' traffic-split overrides ([`splits`]), the spans apps send over OTLP
//! ([`spans`]), what the dashboard reads at scale: the overview from pre-aggregated
//! [`rollup`]s ([`overview`], with latency [`histogram`]s) and trace search with a time
//! budget ([`search_traces`]), the prompt playground's drafts ([`drafts`]), scores on
//! traces from online evals with the figures of the judging itself ([`scores`]), and the
//! feedback apps' users give calls (`POST /v1/feedback`: [`feedback`]), and both summed
//! per function, variant, prompt version, model and release ([`quality`]) into pass rates
//! with intervals and variants compared ([`quality_figures`]), and per consecutive window
//! for quality alerts ([`quality_windows`]).

pub mod alerts;
pub mod audit;
mod background;
pub mod canaries;
pub mod datasets;
mod db;
pub mod drafts;
mod error;
pub mod evals;
pub mod feedback;
pub mod histogram;
pub mod incident_series;
pub mod incidents;
pub mod keys;
mod migrations;
pub mod model_versions;
pub mod overview;
pub mod partitions;
pub mod prompt_traffic;
pub mod prompts;
pub mod purge;
pub mod quality;
pub mod quality_figures;
pub mod quality_windows;
pub mod query;
pub mod release_report;
pub mod releases;
pub mod replays;
pub mod report;
pub mod report_compare;
pub mod report_embeddings;
mod report_render;
pub mod responses;
pub mod retention;
pub mod review;
pub mod review_intake;
pub mod rollup;
mod rollup_cache;
mod rollup_counts;
mod rollup_pg;
pub mod scores;
pub mod search;
pub mod shadow;
pub mod spans;
pub mod spend;
pub mod splits;
pub mod sql;
mod sqlite_pool;
pub mod store_copy;
pub mod switches;
pub mod synth;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod trace_row;
pub mod writer;
mod writer_sink;

pub use audit::{list_audit, list_blocks, AuditEvent};
pub use db::{Conn, Store};
pub use error::StoreError;
pub use feedback::{feedback_for_trace, Feedback, FeedbackTarget, FeedbackValue};
pub use prompts::{
    all_labels, get_version, label_moves, label_version, latest_version, list_prompts,
    push_version, push_version_with, rollback_label, set_label, version_by_hash, versions,
    LabelMove, LabelOutcome, LabelPosition, PromptStoreError, PromptSummary, PromptVersion,
    PushOutcome,
};
pub use query::{count_traces, get_trace, list_traces, reused_request_id, TraceFilter};
pub use release_report::{list_releases, ReleaseFilter, ReleaseRow, ReleaseTraffic};
pub use releases::record_release;
pub use replays::{
    create_run, finish_run, get_run, list_runs, record_case, CallSide, NewReplayRun, ReplayCase,
    ReplayRun, ReplayRunDetail,
};
pub use report::{
    build_report, CallerKind, CallerRow, Cost, GroupRow, GroupStats, Percentiles, Report,
    ReportWindow, UnpricedModel,
};
pub use report_compare::{previous_period, PreviousPeriod};
pub use report_render::{render_markdown, render_table};
pub use rusqlite::Connection;
pub use search::{search_traces, TraceSearch};
pub use spans::{calls_in_trace, spans_for_trace, AppSpan, SpanStatus};
pub use writer::{spawn, spawn_postgres, TraceWriter, WriterHandle, WriterOptions, WriterStats};

/// A writer connection to a fresh store in a temporary folder (kept while the folder is).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_conn() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("k.db").to_str().unwrap()).unwrap();
    let c = store.writer_conn().unwrap();
    (dir, c)
}
