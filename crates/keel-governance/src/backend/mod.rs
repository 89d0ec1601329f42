//! Where budgets and rate limits are counted: in this process ([`local::Local`]) or in
//! Redis ([`redis::RedisBackend`], shared by every replica, each operation one atomic
//! Lua script). Both give the same answers; the governor picks one from `[limits]`.
//!
//! A budget bucket holds `spent` and `reserved` nano-dollars for one budget, scope value
//! and window. Admission reserves a call's worst case in every bucket it falls in — all
//! or none — and refuses when `spent + reserved + worst case > limit`; the call's end
//! settles the reservation to its real cost. So concurrent calls cannot overrun a hard
//! budget by more than the amount by which their real costs exceed their reservations.
//!
//! A call costs a shared ledger two script runs, whatever it is limited by: one
//! [`Backend::admit`] (rate limits and budget reservation in one script, its own round
//! trip; a call refused anywhere is charged nowhere) and one [`Backend::finish`] after
//! the response, off the request path (token correction and settlement in one script;
//! on Redis sent in one pipeline with the other settlements of the same 2 ms). Only a
//! bucket the ledger lost costs a third: it is re-seeded from the store and asked again.

pub mod local;
pub mod redis;
mod settle_batch;

use std::time::Duration;

use keel_core::money::Nanos;

use crate::gcra::{RateState, Refusal};

/// One budget bucket a call falls in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketSpec {
    /// Stable id: budget, scope value and window label.
    pub id: String,
    /// `None`: counted, never blocks (soft budgets).
    pub limit: Option<Nanos>,
    /// When its window ends (Unix ms; `i64::MAX` for total).
    pub window_end_ms: i64,
    /// Where the store records this bucket's spend: what a shared ledger that lost the
    /// bucket (a Redis restart, an eviction, a failover) is re-seeded from.
    pub source: Option<SpendSource>,
}

/// The store's view of a bucket: live priced spend of one scope value since `start_ms`
/// (until the bucket's window end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendSource {
    /// The scope with its value (`tenant=acme`; `key=…` for a key's own budget).
    pub scope: keel_core::scope::Scope,
    pub start_ms: i64,
}

/// What one call asks of the limits at admission: its rate buckets and, when it is
/// priced and falls in budgets, a reservation of its worst-case cost.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub rates: &'a [RateSpec],
    pub budget: Option<BudgetAsk<'a>>,
    pub now_ms: i64,
}

/// Reserve `amount` in every bucket (all or none) under the id `reservation`, lapsing
/// after `hold` if never settled.
#[derive(Debug, Clone, Copy)]
pub struct BudgetAsk<'a> {
    pub buckets: &'a [BucketSpec],
    pub amount: Nanos,
    pub reservation: &'a str,
    pub hold: Duration,
    /// The spend to start each missing bucket from; without them, a shared ledger
    /// answers [`Admit::Missing`] for buckets it lost that have a [`SpendSource`].
    pub seeds: Option<&'a [Nanos]>,
}

/// The outcome of an admission. Whatever refuses, nothing was charged or reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Every rate bucket charged (their states, in order) and every budget reserved.
    Admitted(Vec<RateState>),
    /// Rate bucket `index` refused.
    RateRefused { index: usize, why: Refusal },
    /// The shared ledger has no record of these budget buckets (by index): ask again
    /// with their spend from the store ([`BudgetAsk::seeds`]).
    Missing(Vec<usize>),
    /// Budget bucket `index` would overrun: what it had spent and reserved.
    Blocked {
        index: usize,
        spent: Nanos,
        reserved: Nanos,
    },
}

/// What one finished call settles: the token rate buckets it was charged, corrected by
/// `token_delta` (real tokens minus charged), and its budget reservation replaced by
/// its real cost. Either part may be empty.
#[derive(Debug, Clone, Copy)]
pub struct Settlement<'a> {
    pub token_rates: &'a [RateSpec],
    pub token_delta: i64,
    pub buckets: &'a [BucketSpec],
    pub reservation: &'a str,
    pub reserved: Nanos,
    pub actual: Nanos,
    pub now_ms: i64,
}

/// One rate-limit bucket a call is charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateSpec {
    pub id: String,
    pub per_minute: u64,
    pub cost: u64,
}

/// The shared backend failed (unreachable, timed out, a script error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

pub enum Backend {
    Local(local::Local),
    Redis(redis::RedisBackend),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Local(_) => "local",
            Backend::Redis(_) => "redis",
        }
    }

    /// Start a bucket at `spent` (from the store) unless it already holds a value.
    pub fn seed(&self, bucket: &BucketSpec, spent: Nanos) {
        match self {
            Backend::Local(l) => l.seed(bucket, spent),
            Backend::Redis(r) => r.seed(&bucket.id, spent),
        }
    }

    /// Rate limits and budget reservation of one call, all or nothing: one round trip
    /// to a shared ledger.
    pub async fn admit(&self, ask: Ask<'_>) -> Result<Admit, BackendError> {
        match self {
            Backend::Local(l) => Ok(l.admit(ask)),
            Backend::Redis(r) => r.admit(ask).await,
        }
    }

    /// Settle one finished call (one round trip to a shared ledger); the spend after,
    /// per budget bucket.
    pub async fn finish(&self, s: Settlement<'_>) -> Result<Vec<Nanos>, BackendError> {
        match self {
            Backend::Local(l) => Ok(l.finish(s)),
            Backend::Redis(r) => r.finish(s).await,
        }
    }

    /// (spent, reserved) of each bucket; zeros for one never used.
    pub async fn usage(&self, ids: &[String]) -> Result<Vec<(Nanos, Nanos)>, BackendError> {
        match self {
            Backend::Local(l) => Ok(l.usage(ids)),
            Backend::Redis(r) => r.usage(ids).await,
        }
    }

    /// Forget buckets whose window ended more than a day before `now_ms` (local only;
    /// Redis expires them itself).
    pub fn prune(&self, now_ms: i64) {
        if let Backend::Local(l) = self {
            l.prune(now_ms);
        }
    }
}
