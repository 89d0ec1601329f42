//! Where budgets and rate limits are counted: in this process ([`local::Local`]) or in
//! Redis ([`redis::RedisBackend`], shared by every replica, each operation one atomic
//! Lua script). Both give the same answers; the governor picks one from `[limits]`.
//!
//! A budget bucket holds `spent` and `reserved` nano-dollars for one budget, scope value
//! and window. Admission reserves a call's worst case in every bucket it falls in — all
//! or none — and refuses when `spent + reserved + worst case > limit`; the call's end
//! settles the reservation to its real cost. So concurrent calls cannot overrun a hard
//! budget by more than the amount by which their real costs exceed their reservations.

pub mod local;
pub mod redis;

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

/// The outcome of a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserve {
    /// The shared ledger has no record of these buckets (by index; nothing was
    /// reserved): ask again with their spend from the store ([`Backend::reserve`]'s
    /// `seeds`).
    Missing(Vec<usize>),
    Admitted,
    /// Bucket `index` would overrun: what it had spent and reserved (nothing was reserved).
    Blocked {
        index: usize,
        spent: Nanos,
        reserved: Nanos,
    },
}

/// One rate-limit bucket a call is charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateSpec {
    pub id: String,
    pub per_minute: u64,
    pub cost: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// Every bucket admitted the call; their states, in order.
    Admitted(Vec<RateState>),
    /// Bucket `index` refused (nothing was charged).
    Refused { index: usize, why: Refusal },
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

    /// Reserve `amount` in every bucket or none. `seeds`: the spend to start each
    /// missing bucket from; without them, a shared ledger answers [`Reserve::Missing`]
    /// for buckets it lost that have a [`SpendSource`].
    pub async fn reserve(
        &self,
        buckets: &[BucketSpec],
        amount: Nanos,
        reservation: &str,
        hold: Duration,
        now_ms: i64,
        seeds: Option<&[Nanos]>,
    ) -> Result<Reserve, BackendError> {
        match self {
            Backend::Local(l) => Ok(l.reserve(buckets, amount, now_ms)),
            Backend::Redis(r) => {
                r.reserve(buckets, amount, reservation, hold, now_ms, seeds)
                    .await
            }
        }
    }

    /// Release `reserved` and add `actual` in each bucket; the spend after, per bucket.
    pub async fn settle(
        &self,
        buckets: &[BucketSpec],
        reservation: &str,
        reserved: Nanos,
        actual: Nanos,
    ) -> Result<Vec<Nanos>, BackendError> {
        match self {
            Backend::Local(l) => Ok(l.settle(buckets, reserved, actual)),
            Backend::Redis(r) => r.settle(buckets, reservation, reserved, actual).await,
        }
    }

    /// (spent, reserved) of each bucket; zeros for one never used.
    pub async fn usage(&self, ids: &[String]) -> Result<Vec<(Nanos, Nanos)>, BackendError> {
        match self {
            Backend::Local(l) => Ok(l.usage(ids)),
            Backend::Redis(r) => r.usage(ids).await,
        }
    }

    pub async fn acquire(&self, rates: &[RateSpec], now_us: i64) -> Result<Acquire, BackendError> {
        match self {
            Backend::Local(l) => Ok(l.acquire(rates, now_us)),
            Backend::Redis(r) => r.acquire(rates, now_us).await,
        }
    }

    /// Charge (or give back, when negative) `delta` units to a rate bucket.
    pub async fn adjust(
        &self,
        rate: &RateSpec,
        delta: i64,
        now_us: i64,
    ) -> Result<(), BackendError> {
        match self {
            Backend::Local(l) => {
                l.adjust(rate, delta, now_us);
                Ok(())
            }
            Backend::Redis(r) => r.adjust(rate, delta, now_us).await,
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
