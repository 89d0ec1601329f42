//! The statistics and text measures Keel's figures are made of, in one crate below every
//! consumer, so the eval gate (`keel-evals`), the CLI and the dashboard (`keel-gateway`)
//! compute each figure with one implementation.
//!
//! - [`agreement`] — two raters on the same items: observed agreement, Cohen's kappa;
//! - [`intervals`] — confidence intervals (Wilson, bootstrap), paired tests (McNemar,
//!   Wilcoxon), nearest-rank percentiles;
//! - [`proportions`] — two independent rates compared (a z-test), a mean's interval from
//!   its sums;
//! - [`text`] — text similarity (normalized Levenshtein, ROUGE-L F1).

pub mod agreement;
pub mod intervals;
pub mod proportions;
pub mod text;
