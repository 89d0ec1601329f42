//! Each online eval's judge spend per UTC day, against its cap
//! (`max_judge_spend_usd_per_day`).
//!
//! The judge's calls are traced (`origin = "judge"`, tagged `online:<eval>`), so the
//! store is the truth: at start the day's spend so far is read from it, then each
//! judgment's cost is added in memory. Judging pauses once the day's spend reaches the
//! cap (sampled calls are then counted as skipped, reason `budget`) and resumes at 00:00
//! UTC. The judgments in hand when the cap is reached finish (one per judging task, four
//! at most), so a day may end above the cap by at most that many judgments' cost. An
//! unpriced judge model counts nothing, so a cap on it is never reached.

use std::sync::atomic::{AtomicI64, Ordering};

use keel_core::money::Nanos;

const DAY_MS: i64 = 86_400_000;

/// One eval's spend today.
#[derive(Debug)]
pub struct JudgeSpend {
    day: AtomicI64,
    spent: AtomicI64,
}

impl JudgeSpend {
    /// Start the day `now_ms` falls in with `spent_today` nano-dollars already spent.
    pub fn new(now_ms: i64, spent_today: i64) -> JudgeSpend {
        JudgeSpend {
            day: AtomicI64::new(now_ms.div_euclid(DAY_MS)),
            spent: AtomicI64::new(spent_today),
        }
    }

    /// The start of `now_ms`'s UTC day, in Unix ms.
    pub fn day_start_ms(now_ms: i64) -> i64 {
        now_ms.div_euclid(DAY_MS) * DAY_MS
    }

    fn roll(&self, now_ms: i64) {
        let today = now_ms.div_euclid(DAY_MS);
        let day = self.day.load(Ordering::Acquire);
        if today > day
            && self
                .day
                .compare_exchange(day, today, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.spent.store(0, Ordering::Release);
        }
    }

    /// Spent today, in nano-dollars.
    pub fn spent(&self, now_ms: i64) -> i64 {
        self.roll(now_ms);
        self.spent.load(Ordering::Acquire)
    }

    /// Whether today's spend has reached `cap` (`None`: no cap).
    pub fn reached(&self, cap: Option<Nanos>, now_ms: i64) -> bool {
        cap.is_some_and(|c| self.spent(now_ms) >= c.0)
    }

    pub fn add(&self, cost: Option<Nanos>, now_ms: i64) {
        self.roll(now_ms);
        if let Some(c) = cost {
            self.spent.fetch_add(c.0, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_reached_and_the_next_utc_day_starts_from_zero() {
        let day0 = 20_000 * DAY_MS;
        let s = JudgeSpend::new(day0 + 5, 900);
        let cap = Some(Nanos(1_000));
        assert!(!s.reached(cap, day0 + 10));
        s.add(Some(Nanos(100)), day0 + 20);
        assert!(s.reached(cap, day0 + 30));
        assert!(!s.reached(None, day0 + 30), "no cap is never reached");
        s.add(None, day0 + 40);
        assert_eq!(
            s.spent(day0 + 40),
            1_000,
            "an unpriced judgment adds nothing"
        );
        assert!(!s.reached(cap, day0 + DAY_MS + 1), "a new day starts at 0");
        assert_eq!(JudgeSpend::day_start_ms(day0 + DAY_MS + 7), day0 + DAY_MS);
    }
}
