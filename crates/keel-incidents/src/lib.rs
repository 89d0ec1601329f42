//! Incident response: what is happening, what changed just before, and what to do.
//!
//! Keel already holds every fact an on-call engineer needs — alerts, the audit log,
//! traces, rollups — and this crate joins them for one incident (its scope and window):
//!
//! - [`changepoint`] — the documented method that finds where a metric's level shifted.
//! - [`series`] — the scope's metrics in five-minute buckets (error rate and errors by
//!   class, p95 latency, TTFT, spend per hour, tokens per call, guardrail blocks, online
//!   quality, negative feedback), and their change points with example traces.
//! - [`timeline`] — alert events, audit changes, change points and the incident's own
//!   notes and actions, in time order.
//! - [`suspects`] — the changes before the first change point, ranked, each with the
//!   command that reverts it.
//! - [`playbook`] — the shipped playbooks (`playbooks/*.md`) and a team's own.
//! - [`postmortem`] — the Markdown draft `keel incident export` writes.
//!
//! The store side (incidents, switches, the series' SQL) is `keel_store::incidents`,
//! `keel_store::switches` and `keel_store::incident_series`; the CLI is `keel incident`,
//! the page `/ui/incidents`.

pub mod changepoint;
pub mod playbook;
pub mod postmortem;
pub mod series;
pub mod suspects;
pub mod timeline;
