//! Human review: people label a share of real calls, and what they find flows back as
//! scores on the calls and as eval cases.
//!
//! The queues themselves are config (`keel_core::config::review`); their items, claims
//! and labels are stored by `keel_store::review`.
//!
//! Map:
//! - [`agreement`] — a queue's figures: items reviewed, label spread, reviewer-vs-reviewer
//!   and human-vs-judge agreement (Cohen's kappa);
//! - [`intake`] — filling the queues off the request path, by their entry rules, under
//!   their daily caps;
//! - [`label`] — a reviewer's answers checked against the queue's label schema, stored,
//!   and turned into `human` scores on the trace;

pub mod agreement;
pub mod intake;
pub mod label;

pub use keel_stats::agreement::Agreement;
