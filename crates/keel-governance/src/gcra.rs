//! The generic cell rate algorithm (GCRA): a rate limit as one timestamp per bucket.
//!
//! A limit of `L` per minute emits one unit every `T = 60 s / L`; the bucket stores its
//! theoretical arrival time (TAT). A call costing `c` units is admitted when
//! `max(TAT, now) + c·T − now ≤ 60 s` — so a quiet bucket admits a whole minute's worth
//! at once (burst = `L`) and a busy one exactly `L` per minute — and then TAT moves
//! there. Requests per minute cost 1 each; tokens per minute cost the call's tokens.
//! So `rpm = 600` is a sustained 600 a minute with bursts of up to 600 from idle: any
//! stretch of time admits at most `limit + limit × minutes` (a 60-second span right after
//! an idle spell can see up to twice the limit; a busy bucket never more than the rate).
//! The same arithmetic runs in-process (`backend::local`) and in Redis's Lua script
//! (`backend/admit.lua`); a test checks they agree.

use std::time::Duration;

/// One minute in microseconds: the period of every limit.
pub const PERIOD_US: i64 = 60_000_000;

/// What a rate limit looks like after a call (for `x-ratelimit-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    pub limit: u64,
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset: Duration,
}

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Retry after this long.
    Wait(Duration),
    /// The call costs more than the whole limit: it can never be admitted.
    TooLarge,
}

/// Emission interval of a per-minute limit, in microseconds (at least 1).
pub fn interval_us(per_minute: u64) -> i64 {
    (PERIOD_US / i64::try_from(per_minute.max(1)).unwrap_or(i64::MAX)).max(1)
}

/// Admit `cost` units at `now_us` against a bucket whose TAT is `tat_us`: the new TAT
/// and the state after, or why not.
pub fn check(
    tat_us: i64,
    now_us: i64,
    per_minute: u64,
    cost: u64,
) -> Result<(i64, RateState), Refusal> {
    let t = interval_us(per_minute);
    let cost = i64::try_from(cost).unwrap_or(i64::MAX);
    if cost > i64::try_from(per_minute).unwrap_or(i64::MAX) {
        return Err(Refusal::TooLarge);
    }
    let new_tat = tat_us.max(now_us).saturating_add(cost.saturating_mul(t));
    let ahead = new_tat - now_us;
    if ahead > PERIOD_US {
        let wait = u64::try_from(ahead - PERIOD_US).unwrap_or(0);
        return Err(Refusal::Wait(Duration::from_micros(wait)));
    }
    Ok((new_tat, state(new_tat, now_us, per_minute)))
}

/// The state of a bucket with TAT `tat_us` at `now_us`.
pub fn state(tat_us: i64, now_us: i64, per_minute: u64) -> RateState {
    let t = interval_us(per_minute);
    let ahead = (tat_us - now_us).max(0);
    let remaining = u64::try_from((PERIOD_US - ahead) / t).unwrap_or(0);
    RateState {
        limit: per_minute,
        remaining: remaining.min(per_minute),
        reset: Duration::from_micros(u64::try_from(ahead).unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_quiet_bucket_bursts_a_minute_then_meters() {
        let mut tat = 0;
        let now = 1_000_000_000;
        for i in 0..10 {
            let (next, st) = check(tat, now, 10, 1).unwrap();
            assert_eq!(st.remaining, 9 - i);
            tat = next;
        }
        assert_eq!(
            check(tat, now, 10, 1),
            Err(Refusal::Wait(Duration::from_secs(6)))
        );
        // Six seconds later one more fits.
        assert!(check(tat, now + 6_000_000, 10, 1).is_ok());
        assert_eq!(check(0, now, 10, 11), Err(Refusal::TooLarge));
    }

    proptest! {
        /// However calls arrive, the bucket admits at most a burst of `limit` plus
        /// `limit` per minute since: `limit + elapsed / T` calls, never more.
        #[test]
        fn never_more_than_burst_plus_rate(gaps in proptest::collection::vec(0i64..3_000_000, 1..400), limit in 1u64..50) {
            let mut tat = 0;
            let mut now = 0;
            let mut admitted: Vec<i64> = Vec::new();
            for g in gaps {
                now += g;
                if let Ok((next, _)) = check(tat, now, limit, 1) {
                    tat = next;
                    admitted.push(now);
                }
            }
            let t = interval_us(limit);
            for (i, start) in admitted.iter().enumerate() {
                for (j, end) in admitted.iter().enumerate().skip(i) {
                    let n = (j - i + 1) as i64;
                    prop_assert!(n <= limit as i64 + (end - start) / t + 1, "{n} calls in {} us", end - start);
                }
            }
        }
    }
}
