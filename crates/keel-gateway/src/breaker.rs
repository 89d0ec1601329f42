//! Circuit breakers, one per model route (an upstream deployment): stop sending traffic
//! to an upstream that keeps failing, try it again after a cool-down, and close when it
//! answers.
//!
//! - **Closed**: calls flow; outcomes are counted in a sliding window of 10 buckets.
//!   It opens after `consecutive_failures` failures in a row, or when at least
//!   `min_requests` calls in the window failed at `failure_rate` or more.
//! - **Open**: calls are refused at once (the route layer moves to the next fallback, or
//!   answers 503 `circuit_open`) until `cooldown` has passed.
//! - **Half-open**: one probe call is let through; success closes the breaker (and
//!   clears the window), failure opens it for another cool-down.
//!
//! What counts as a failure is decided by the caller (upstream health: 429, 5xx,
//! timeouts, unreachable, garbage — not a caller's bad request). State changes update
//! `keel_circuit_state{model}` (0 closed, 1 half-open, 2 open) and
//! `keel_circuit_opened_total{model}`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use keel_core::config::routing::BreakerSettings;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;

const BUCKETS: usize = 10;

/// The breaker's state, as shown by `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    HalfOpen,
    Open,
}

impl CircuitState {
    fn gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: CircuitState,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
    consecutive_failures: u32,
    /// (bucket number since `epoch`, calls, failures), a ring over the window.
    buckets: [(u64, u32, u32); BUCKETS],
}

pub struct Breaker {
    settings: BreakerSettings,
    epoch: Instant,
    inner: Mutex<Inner>,
    state_gauge: Gauge,
    opened: Counter,
}

/// Whether a call may go to this upstream now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// The half-open probe: its outcome decides the state.
    Probe,
    Refused,
}

impl Breaker {
    pub fn new(settings: BreakerSettings, state_gauge: Gauge, opened: Counter) -> Breaker {
        state_gauge.set(0);
        Breaker {
            settings,
            epoch: Instant::now(),
            inner: Mutex::new(Inner {
                state: CircuitState::Closed,
                opened_at: None,
                probe_in_flight: false,
                consecutive_failures: 0,
                buckets: [(u64::MAX, 0, 0); BUCKETS],
            }),
            state_gauge,
            opened,
        }
    }

    pub fn state(&self) -> CircuitState {
        self.inner.lock().map_or(CircuitState::Closed, |i| i.state)
    }

    fn set(&self, inner: &mut Inner, state: CircuitState, now: Instant) {
        if state == CircuitState::Open && inner.state != CircuitState::Open {
            self.opened.inc();
        }
        inner.state = state;
        match state {
            CircuitState::Open => inner.opened_at = Some(now),
            CircuitState::Closed => {
                inner.opened_at = None;
                inner.consecutive_failures = 0;
                inner.buckets = [(u64::MAX, 0, 0); BUCKETS];
            }
            CircuitState::HalfOpen => {}
        }
        self.state_gauge.set(state.gauge());
    }

    /// Whether an open breaker's cool-down has passed (its next admission is a probe).
    pub fn cooled(&self) -> bool {
        self.inner.lock().map_or(true, |i| {
            i.opened_at
                .is_none_or(|t| t.elapsed() >= self.settings.cooldown)
        })
    }

    /// Ask before calling.
    pub fn admit(&self) -> Admission {
        self.admit_at(Instant::now())
    }

    pub(crate) fn admit_at(&self, now: Instant) -> Admission {
        let Ok(mut inner) = self.inner.lock() else {
            return Admission::Allowed;
        };
        match inner.state {
            CircuitState::Closed => Admission::Allowed,
            CircuitState::Open => {
                let cooled = inner
                    .opened_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= self.settings.cooldown);
                if cooled {
                    self.set(&mut inner, CircuitState::HalfOpen, now);
                    inner.probe_in_flight = true;
                    Admission::Probe
                } else {
                    Admission::Refused
                }
            }
            CircuitState::HalfOpen => {
                if inner.probe_in_flight {
                    Admission::Refused
                } else {
                    inner.probe_in_flight = true;
                    Admission::Probe
                }
            }
        }
    }

    /// Report a call's outcome (`healthy = false` for an upstream failure).
    pub fn record(&self, healthy: bool) {
        self.record_at(healthy, Instant::now());
    }

    pub(crate) fn record_at(&self, healthy: bool, now: Instant) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.state == CircuitState::HalfOpen {
            inner.probe_in_flight = false;
            let next = if healthy {
                CircuitState::Closed
            } else {
                CircuitState::Open
            };
            self.set(&mut inner, next, now);
            return;
        }
        if inner.state == CircuitState::Open {
            return;
        }
        // Closed: count it in the bucket of `now`.
        let width = (self.settings.window / BUCKETS as u32).max(Duration::from_millis(1));
        let number =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos() / width.as_nanos())
                .unwrap_or(u64::MAX - 1);
        let bucket = &mut inner.buckets[(number % BUCKETS as u64) as usize];
        if bucket.0 != number {
            *bucket = (number, 0, 0);
        }
        bucket.1 += 1;
        if !healthy {
            bucket.2 += 1;
        }
        if healthy {
            inner.consecutive_failures = 0;
            return;
        }
        inner.consecutive_failures += 1;
        let (calls, failures) = inner
            .buckets
            .iter()
            .filter(|b| b.0 != u64::MAX && b.0 + BUCKETS as u64 > number)
            .fold((0u32, 0u32), |(c, f), b| (c + b.1, f + b.2));
        let by_run = inner.consecutive_failures >= self.settings.consecutive_failures;
        let by_rate = calls >= self.settings.min_requests
            && f64::from(failures) >= self.settings.failure_rate * f64::from(calls);
        if by_run || by_rate {
            self.set(&mut inner, CircuitState::Open, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(consecutive: u32, rate: f64, min: u32) -> Breaker {
        Breaker::new(
            BreakerSettings {
                consecutive_failures: consecutive,
                failure_rate: rate,
                min_requests: min,
                window: Duration::from_secs(10),
                cooldown: Duration::from_secs(5),
            },
            Gauge::default(),
            Counter::default(),
        )
    }

    #[test]
    fn opens_after_a_run_of_failures_probes_half_open_and_closes() {
        let b = breaker(3, 1.0, 1000);
        let t = Instant::now();
        for _ in 0..2 {
            assert_eq!(b.admit_at(t), Admission::Allowed);
            b.record_at(false, t);
        }
        b.record_at(true, t); // a success resets the run
        for _ in 0..3 {
            b.record_at(false, t);
        }
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.opened.get(), 1);
        assert_eq!(b.state_gauge.get(), 2);
        assert_eq!(b.admit_at(t + Duration::from_secs(1)), Admission::Refused);
        // After the cool-down: one probe, the rest refused while it runs.
        let later = t + Duration::from_secs(6);
        assert_eq!(b.admit_at(later), Admission::Probe);
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert_eq!(b.admit_at(later), Admission::Refused);
        // A failed probe opens it again; a later good probe closes it.
        b.record_at(false, later);
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.opened.get(), 2);
        let much_later = later + Duration::from_secs(6);
        assert_eq!(b.admit_at(much_later), Admission::Probe);
        b.record_at(true, much_later);
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.state_gauge.get(), 0);
        assert_eq!(b.admit_at(much_later), Admission::Allowed);
    }

    #[test]
    fn opens_on_a_failure_rate_once_enough_calls_were_seen() {
        let b = breaker(1000, 0.5, 10);
        let t = Instant::now();
        // 4 failures in 8 calls: 50 % but under min_requests.
        for i in 0..8 {
            b.record_at(i % 2 == 0, t);
        }
        assert_eq!(b.state(), CircuitState::Closed);
        b.record_at(true, t);
        b.record_at(false, t); // 5 of 10
        assert_eq!(b.state(), CircuitState::Open);
    }

    #[test]
    fn old_outcomes_leave_the_window() {
        let b = breaker(1000, 0.5, 4);
        let t = Instant::now();
        for _ in 0..3 {
            b.record_at(false, t);
        }
        // 20 s later the old failures no longer count: one failure in 4 calls.
        let later = t + Duration::from_secs(20);
        for ok in [true, true, true, false] {
            b.record_at(ok, later);
        }
        assert_eq!(b.state(), CircuitState::Closed);
    }
}
