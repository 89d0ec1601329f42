//! Load balancing across a model's deployments: each call picks one deployment,
//! skipping those whose circuit breaker is open and those at their own `rpm` limit,
//! by weight (`weighted`) or by latency (`least_latency`: the better of two random
//! candidates by a moving average of their latency — the "power of two choices", which
//! spreads load without herding onto one deployment).
//!
//! A model with one deployment skips all of this.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_core::config::deploy::Strategy;
use keel_providers::Provider;

use crate::breaker::{Admission, Breaker};

/// One upstream deployment of a model, ready to call.
pub struct Deployment {
    pub provider_name: String,
    pub provider: Arc<Provider>,
    pub upstream_model: String,
    pub weight: u32,
    pub rpm: Option<u32>,
    pub breaker: Option<Breaker>,
    /// Moving average of successful calls' latency, in microseconds (0: none yet).
    latency_us: AtomicU64,
    /// Calls admitted in the current minute: (minute start, count).
    minute: Mutex<(Instant, u32)>,
}

impl Deployment {
    pub fn new(
        provider_name: String,
        provider: Arc<Provider>,
        upstream_model: String,
        weight: u32,
        rpm: Option<u32>,
        breaker: Option<Breaker>,
    ) -> Deployment {
        Deployment {
            provider_name,
            provider,
            upstream_model,
            weight,
            rpm,
            breaker,
            latency_us: AtomicU64::new(0),
            minute: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Moving average latency (`None` before the first success).
    pub fn latency(&self) -> Option<Duration> {
        match self.latency_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Fold a successful call's latency into the average (weight 0.2 for the new one).
    pub fn observe(&self, latency: Duration) {
        let new = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let old = self.latency_us.load(Ordering::Relaxed);
        let next = if old == 0 { new } else { (old * 4 + new) / 5 };
        self.latency_us.store(next.max(1), Ordering::Relaxed);
    }

    fn breaker_open(&self) -> bool {
        self.breaker
            .as_ref()
            .is_some_and(|b| b.state() == crate::breaker::CircuitState::Open && !b.cooled())
    }

    fn over_rpm(&self, now: Instant) -> bool {
        let Some(limit) = self.rpm else { return false };
        self.minute.lock().is_ok_and(|m| {
            now.saturating_duration_since(m.0) < Duration::from_secs(60) && m.1 >= limit
        })
    }

    /// Count a call against `rpm`; false when the minute is full.
    fn take_rpm(&self, now: Instant) -> bool {
        let Some(limit) = self.rpm else { return true };
        let Ok(mut m) = self.minute.lock() else {
            return true;
        };
        if now.saturating_duration_since(m.0) >= Duration::from_secs(60) {
            *m = (now, 0);
        }
        if m.1 >= limit {
            return false;
        }
        m.1 += 1;
        true
    }
}

/// Why no deployment could take a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoDeployment {
    /// Every deployment's breaker is open.
    CircuitOpen,
    /// Every deployment not in an open circuit is at its rpm limit.
    RateLimited,
}

/// Pick a deployment (an index into `deps`) for one call, never one in `exclude`
/// unless nothing else is left. Admits it with its breaker and counts it against its
/// rpm.
pub fn pick(
    deps: &[Deployment],
    strategy: Strategy,
    exclude: &[usize],
) -> Result<usize, NoDeployment> {
    if deps.len() == 1 {
        return admit(&deps[0], Instant::now()).map(|()| 0);
    }
    let now = Instant::now();
    let mut open = 0;
    let mut candidates: Vec<usize> = Vec::with_capacity(deps.len());
    for (i, d) in deps.iter().enumerate() {
        if d.breaker_open() {
            open += 1;
        } else if !d.over_rpm(now) {
            candidates.push(i);
        }
    }
    if candidates.len() > 1 {
        candidates.retain(|i| !exclude.contains(i));
        if candidates.is_empty() {
            // Everything left was tried already; allow a second try anywhere healthy.
            candidates = (0..deps.len())
                .filter(|i| !deps[*i].breaker_open() && !deps[*i].over_rpm(now))
                .collect();
        }
    }
    while !candidates.is_empty() {
        let at = choose(deps, strategy, &candidates);
        let i = candidates[at];
        match admit(&deps[i], now) {
            Ok(()) => return Ok(i),
            Err(_) => {
                candidates.remove(at);
            }
        }
    }
    Err(if open == deps.len() {
        NoDeployment::CircuitOpen
    } else {
        NoDeployment::RateLimited
    })
}

fn admit(d: &Deployment, now: Instant) -> Result<(), NoDeployment> {
    if let Some(b) = &d.breaker {
        if b.admit() == Admission::Refused {
            return Err(NoDeployment::CircuitOpen);
        }
    }
    if d.take_rpm(now) {
        Ok(())
    } else {
        Err(NoDeployment::RateLimited)
    }
}

/// Index into `candidates`.
fn choose(deps: &[Deployment], strategy: Strategy, candidates: &[usize]) -> usize {
    if candidates.len() == 1 {
        return 0;
    }
    match strategy {
        Strategy::Weighted => {
            let total: u64 = candidates.iter().map(|i| u64::from(deps[*i].weight)).sum();
            let mut point = fastrand::u64(0..total.max(1));
            for (at, i) in candidates.iter().enumerate() {
                let w = u64::from(deps[*i].weight);
                if point < w {
                    return at;
                }
                point -= w;
            }
            candidates.len() - 1
        }
        Strategy::LeastLatency => {
            let a = fastrand::usize(0..candidates.len());
            let mut b = fastrand::usize(0..candidates.len() - 1);
            if b >= a {
                b += 1;
            }
            // Untried deployments (no average yet) go first, so each gets measured.
            let key = |at: usize| deps[candidates[at]].latency().unwrap_or(Duration::ZERO);
            if key(b) < key(a) {
                b
            } else {
                a
            }
        }
    }
}
