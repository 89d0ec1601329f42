//! Evals as CI gates: suites as files, locked datasets, assertions, honest statistics.
//!
//! - [`case`] — one dataset case (JSONL line) and the dataset's content hash;
//! - [`output`] — what a target produced for a case (text, tool calls, cost, latency);
//! - [`assert`] — every assertion type, each a pure (or judge-backed) scoring of an output;
//! - [`stats`] — confidence intervals and paired significance tests (`keel-stats`, shared
//!   with the CLI and the dashboard);
//! - [`fresh`] — a stratified random sample of recent production inputs as its own suite;
//! - [`from_traces`] — cases from recorded calls (variables or messages, a reviewer's
//!   correction as `expected`, redacted), appended without duplicates;
//! - [`compare`] — a run's summary, and a candidate compared with a baseline case by case;
//! - [`gate`] — the suite's rules, checked against a run and its baseline;
//! - [`report`] — a run rendered for a terminal, a PR comment, JUnit and JSON;
//! - [`playground`] — the dashboard playground's suite runner (a draft against the live version).

pub mod assert;
pub mod canary;
pub mod case;
pub mod compare;
pub mod dataset;
pub mod fresh;
pub mod from_traces;
pub mod gate;
pub mod output;
pub mod playground;
pub mod report;
pub mod runner;
pub use keel_stats::intervals as stats;
pub mod suite;
pub mod suite_models;
