//! How many calls of a run are in flight: at most the run's concurrency, halved on every
//! rate limit (never below one) and regained one call at a time after
//! [`REGAIN_AFTER`] successes in a row; a rate limit's wait also pauses every worker
//! until it is over. The executor enters before each call and leaves with what happened.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Successes in a row that give back one call in flight.
pub const REGAIN_AFTER: usize = 20;

pub struct Throttle {
    limit: AtomicUsize,
    max: usize,
    in_flight: AtomicUsize,
    successes: AtomicUsize,
    paused_until: Mutex<Option<Instant>>,
}

impl Throttle {
    /// Up to `max` calls in flight (at least one).
    pub fn new(max: usize) -> Throttle {
        let max = max.max(1);
        Throttle {
            limit: AtomicUsize::new(max),
            max,
            in_flight: AtomicUsize::new(0),
            successes: AtomicUsize::new(0),
            paused_until: Mutex::new(None),
        }
    }

    /// Calls allowed in flight now.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::SeqCst)
    }

    /// Wait for a pause to end and a slot to free, then take the slot.
    pub async fn enter(&self) {
        loop {
            let wait = self
                .paused_until
                .lock()
                .ok()
                .and_then(|p| *p)
                .and_then(|t| t.checked_duration_since(Instant::now()));
            if let Some(w) = wait {
                tokio::time::sleep(w).await;
                continue;
            }
            let n = self.in_flight.load(Ordering::SeqCst);
            if n < self.limit.load(Ordering::SeqCst)
                && self
                    .in_flight
                    .compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Give the slot back: `rate_limited` is the wait a 429 asked for (halve the limit,
    /// pause everyone that long), `None` any other outcome (a success towards regaining).
    pub fn leave(&self, rate_limited: Option<Duration>) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        match rate_limited {
            Some(wait) => {
                let l = self.limit.load(Ordering::SeqCst);
                self.limit.store((l / 2).max(1), Ordering::SeqCst);
                self.successes.store(0, Ordering::SeqCst);
                if let Ok(mut p) = self.paused_until.lock() {
                    let until = Instant::now() + wait;
                    if p.is_none_or(|t| t < until) {
                        *p = Some(until);
                    }
                }
            }
            None => {
                if self.successes.fetch_add(1, Ordering::SeqCst) + 1 >= REGAIN_AFTER {
                    self.successes.store(0, Ordering::SeqCst);
                    let l = self.limit.load(Ordering::SeqCst);
                    self.limit.store((l + 1).min(self.max), Ordering::SeqCst);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    /// Take a slot if one is free right now (no pause, under the limit).
    fn try_enter(t: &Throttle) -> bool {
        t.enter().now_or_never().is_some()
    }

    fn fill(t: &Throttle) -> usize {
        let mut n = 0;
        while try_enter(t) {
            n += 1;
        }
        n
    }

    /// End a pause now, as the clock would.
    fn unpause(t: &Throttle) {
        if let Ok(mut p) = t.paused_until.lock() {
            *p = None;
        }
    }

    #[tokio::test]
    async fn slots_are_bounded_by_the_concurrency() {
        let t = Throttle::new(4);
        assert_eq!(fill(&t), 4);
        t.leave(None);
        assert!(try_enter(&t), "a freed slot is taken again");
        assert!(!try_enter(&t));
        assert_eq!(fill(&Throttle::new(0)), 1, "never zero calls in flight");
    }

    #[tokio::test]
    async fn a_rate_limit_halves_the_limit_down_to_one() {
        let t = Throttle::new(8);
        for expected in [4, 2, 1, 1] {
            assert!(try_enter(&t));
            t.leave(Some(Duration::ZERO));
            unpause(&t);
            assert_eq!(t.limit(), expected);
        }
        assert_eq!(fill(&t), 1, "one call in flight after three 429s");
    }

    #[tokio::test]
    async fn successes_in_a_row_regain_one_slot_at_a_time_up_to_the_max() {
        let t = Throttle::new(4);
        for _ in 0..2 {
            t.in_flight.fetch_add(1, Ordering::SeqCst);
            t.leave(Some(Duration::ZERO));
        }
        assert_eq!(t.limit(), 1);
        let succeed = |n: usize| {
            for _ in 0..n {
                t.in_flight.fetch_add(1, Ordering::SeqCst);
                t.leave(None);
            }
        };
        succeed(REGAIN_AFTER - 1);
        assert_eq!(t.limit(), 1, "not yet");
        succeed(1);
        assert_eq!(t.limit(), 2);
        // A rate limit resets the streak: 19 more, a 429, 19 more regain nothing.
        succeed(REGAIN_AFTER - 1);
        t.in_flight.fetch_add(1, Ordering::SeqCst);
        t.leave(Some(Duration::ZERO));
        assert_eq!(t.limit(), 1);
        succeed(REGAIN_AFTER - 1);
        assert_eq!(t.limit(), 1);
        succeed(1 + 10 * REGAIN_AFTER);
        assert_eq!(t.limit(), 4, "never above the concurrency");
        unpause(&t);
        assert_eq!(fill(&t), 4);
    }

    #[tokio::test]
    async fn a_rate_limit_pauses_every_worker_until_its_wait_is_over() {
        let t = Throttle::new(4);
        assert!(try_enter(&t));
        t.leave(Some(Duration::from_secs(3600)));
        assert_eq!(t.limit(), 2);
        assert!(!try_enter(&t), "paused though a slot is free");
        // A shorter wait does not cut a longer pause short.
        t.in_flight.fetch_add(1, Ordering::SeqCst);
        t.leave(Some(Duration::ZERO));
        assert!(!try_enter(&t), "still paused");
        unpause(&t);
        assert_eq!(fill(&t), 1, "the pause over: the halved limit applies");
    }
}
