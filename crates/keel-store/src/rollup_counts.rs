//! A rollup row's numbers ([`Counts`]): the report's sums and the latency and
//! time-to-first-token histograms, added to per trace and merged per row.

use crate::error::StoreError;
use crate::histogram::Histogram;
use crate::report::{GroupStats, Sums};
use crate::rollup::Sample;
use crate::sql::Row;

/// The sums and histograms of one rollup row (or of several merged).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub calls_with_usage: u64,
    /// Priced calls only.
    pub cost_nanos: i64,
    pub unpriced: u64,
    pub latency: Histogram,
    pub ttft: Histogram,
}

impl Counts {
    pub(crate) fn add(&mut self, s: &Sample<'_>) {
        self.requests += 1;
        self.errors += u64::from(s.error);
        self.input_tokens = self
            .input_tokens
            .saturating_add(s.input_tokens.unwrap_or(0));
        self.output_tokens = self
            .output_tokens
            .saturating_add(s.output_tokens.unwrap_or(0));
        self.calls_with_usage += u64::from(s.input_tokens.is_some() || s.output_tokens.is_some());
        if s.unpriced {
            self.unpriced += 1;
        } else {
            self.cost_nanos = self.cost_nanos.saturating_add(s.cost_nanos.unwrap_or(0));
        }
        self.latency.add(s.latency_ms);
        if let Some(t) = s.ttft_ms {
            self.ttft.add(t);
        }
    }

    pub fn merge(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.input_tokens = self.input_tokens.saturating_add(o.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(o.output_tokens);
        self.calls_with_usage += o.calls_with_usage;
        self.cost_nanos = self.cost_nanos.saturating_add(o.cost_nanos);
        self.unpriced += o.unpriced;
        self.latency.merge(&o.latency);
        self.ttft.merge(&o.ttft);
    }

    /// The report's numbers for these counts; percentiles are histogram estimates.
    pub fn stats(&self) -> GroupStats {
        Sums {
            requests: self.requests,
            errors: self.errors,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            calls_with_usage: self.calls_with_usage,
            cost_nanos: self.cost_nanos,
            unpriced_calls: self.unpriced,
        }
        .stats(
            self.latency.percentiles().unwrap_or_default(),
            self.ttft.percentiles(),
        )
    }

    /// Columns in the order of [`COUNT_COLUMNS`], from `first`.
    pub(crate) fn from_row(row: &Row<'_>, first: usize) -> Result<Counts, StoreError> {
        let n = |i: usize| -> Result<u64, StoreError> {
            let v: i64 = row.get(first + i)?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        let hist = |i: usize| -> Result<Histogram, StoreError> {
            let bytes: Vec<u8> = row.get(first + i)?;
            Histogram::decode(&bytes)
                .map_err(|e| StoreError::Decode(format!("rollup histogram: {e}")))
        };
        Ok(Counts {
            requests: n(0)?,
            errors: n(1)?,
            input_tokens: n(2)?,
            output_tokens: n(3)?,
            calls_with_usage: n(4)?,
            cost_nanos: row.get(first + 5)?,
            unpriced: n(6)?,
            latency: hist(7)?,
            ttft: hist(8)?,
        })
    }
}

/// The count columns of `trace_rollups`, in the order `Counts::from_row` reads them.
pub(crate) const COUNT_COLUMNS: &str = "requests, errors, input_tokens, output_tokens, \
     calls_with_usage, cost_nanos, unpriced, latency_hist, ttft_hist";
