//! Spend-spike detection: per feature, tenant (or key, model, global), is spending now
//! far above its own recent normal?
//!
//! Spend is summed per `bucket` (a minute by default). An exponentially weighted mean and
//! variance of past buckets (`half_life`) is the normal; the running bucket is judged as
//! it fills, so a spike is caught within the bucket it starts in, not a bucket later:
//! it is a spike when the detector has `warmup` buckets of history, the bucket has spent
//! at least `min_usd`, and it is `z` standard deviations above the mean (the deviation
//! is floored at 10% of the mean, so a perfectly steady feature is not flagged for a
//! one-cent wobble). A flagged scope stays flagged for `hold`; what that means —
//! an alert, blocking its calls, or downgrading function calls to their cheapest
//! variant — is the `action`. A prompt change that adds tokens to every call raises
//! every bucket's spend, which is exactly this signal.
//!
//! Each process judges the traffic it serves; with replicas behind a balancer each sees
//! the same shape, so each detects the same spike. The state is in memory: a restart
//! relearns the normal over `warmup` buckets.

use std::sync::Mutex;

use dashmap::DashMap;
use keel_core::config::alerting::SpikeSettings;
use keel_core::money::Nanos;

/// One scope value's detector.
#[derive(Debug, Clone, Default)]
struct State {
    bucket_start_ms: Option<i64>,
    current: i64,
    mean: f64,
    var: f64,
    history: u32,
    flagged_until_ms: i64,
    /// The firing was reported (so it is reported once per spike).
    reported: bool,
}

/// A spike found by [`Detector::observe`], to report.
#[derive(Debug, Clone, PartialEq)]
pub struct Spike {
    /// e.g. `feature=support`.
    pub scope: String,
    pub bucket_spend: Nanos,
    pub mean: Nanos,
    pub z: f64,
    pub until_ms: i64,
}

/// Most scope values tracked at once (attribution headers are caller-chosen).
const MAX_TRACKED: usize = 10_000;

pub struct Detector {
    settings: SpikeSettings,
    bucket_ms: i64,
    states: DashMap<String, Mutex<State>>,
}

impl Detector {
    pub fn new(settings: SpikeSettings) -> Detector {
        let bucket_ms = i64::try_from(settings.bucket.as_millis())
            .unwrap_or(60_000)
            .max(1);
        Detector {
            settings,
            bucket_ms,
            states: DashMap::new(),
        }
    }

    pub fn settings(&self) -> &SpikeSettings {
        &self.settings
    }

    /// Fold the finished buckets of `s` up to `now_ms` into its baseline.
    fn roll(&self, s: &mut State, now_ms: i64) {
        let start = now_ms - now_ms.rem_euclid(self.bucket_ms);
        let Some(prev) = s.bucket_start_ms else {
            s.bucket_start_ms = Some(start);
            return;
        };
        let mut missed = ((start - prev) / self.bucket_ms).max(0);
        if missed == 0 {
            return;
        }
        let alpha = self.settings.alpha;
        let mut x = s.current as f64;
        // Long idle spells fold in as empty buckets, at most a few half-lives' worth.
        missed = missed.min(200);
        for _ in 0..missed {
            if s.history == 0 {
                s.mean = x;
            } else {
                let diff = x - s.mean;
                let incr = alpha * diff;
                s.mean += incr;
                s.var = (1.0 - alpha) * (s.var + diff * incr);
            }
            s.history = s.history.saturating_add(1);
            x = 0.0;
        }
        s.current = 0;
        s.bucket_start_ms = Some(start);
    }

    fn judge(&self, s: &State) -> Option<f64> {
        if s.history < self.settings.warmup || s.current < self.settings.min_cost.0 {
            return None;
        }
        let std = s.var.sqrt().max(s.mean.abs() * 0.1).max(1.0);
        let z = (s.current as f64 - s.mean) / std;
        (z >= self.settings.z).then_some(z)
    }

    /// Count `cost` for `scope` (e.g. `feature=support`) at `now_ms`; a spike when this
    /// spend starts one (reported once per spike).
    pub fn observe(&self, scope: &str, cost: Nanos, now_ms: i64) -> Option<Spike> {
        if !self.states.contains_key(scope) && self.states.len() >= MAX_TRACKED {
            return None;
        }
        let entry = self
            .states
            .entry(scope.to_string())
            .or_insert_with(|| Mutex::new(State::default()));
        let mut s = entry.lock().ok()?;
        self.roll(&mut s, now_ms);
        s.current = s.current.saturating_add(cost.0);
        if now_ms >= s.flagged_until_ms {
            s.reported = false;
        }
        let z = self.judge(&s)?;
        let hold = i64::try_from(self.settings.hold.as_millis()).unwrap_or(i64::MAX);
        s.flagged_until_ms = now_ms.saturating_add(hold);
        if s.reported {
            return None;
        }
        s.reported = true;
        Some(Spike {
            scope: scope.to_string(),
            bucket_spend: Nanos(s.current),
            mean: Nanos(s.mean.round() as i64),
            z,
            until_ms: s.flagged_until_ms,
        })
    }

    /// Is `scope` flagged at `now_ms`? (for block and downgrade)
    pub fn flagged(&self, scope: &str, now_ms: i64) -> Option<i64> {
        let entry = self.states.get(scope)?;
        let s = entry.lock().ok()?;
        (now_ms < s.flagged_until_ms).then_some(s.flagged_until_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::config::alerting::SpikeAction;
    use std::time::Duration;

    fn detector() -> Detector {
        Detector::new(SpikeSettings {
            scopes: vec![],
            bucket: Duration::from_secs(60),
            alpha: 1.0 - 0.5f64.powf(1.0 / 30.0),
            z: 4.0,
            min_cost: Nanos(10_000_000),
            warmup: 10,
            action: SpikeAction::Alert,
            hold: Duration::from_secs(900),
            alert_to: vec![],
        })
    }

    /// Traffic of `calls` calls a minute at `cost` each, minute after minute.
    fn run(d: &Detector, from_min: i64, minutes: i64, calls: i64, cost: i64) -> Vec<(i64, Spike)> {
        let mut out = Vec::new();
        for m in from_min..from_min + minutes {
            for c in 0..calls {
                let at = m * 60_000 + c * (60_000 / calls.max(1));
                // A little wobble so the baseline has a variance.
                let wobble = if (m + c) % 3 == 0 { cost / 10 } else { 0 };
                if let Some(s) = d.observe("feature=support", Nanos(cost + wobble), at) {
                    out.push((m, s));
                }
            }
        }
        out
    }

    #[test]
    fn a_prompt_change_that_adds_tokens_to_every_call_is_a_spike_within_minutes() {
        let d = detector();
        let start = 29_000_000; // some minute
                                // An hour of steady traffic: 20 calls a minute at $0.01.
        assert!(
            run(&d, start, 60, 20, 10_000_000).is_empty(),
            "steady traffic is not a spike"
        );
        // The new prompt version triples the tokens of every call.
        let spikes = run(&d, start + 60, 10, 20, 30_000_000);
        let (minute, spike) = spikes.first().expect("the change must be detected");
        assert!(
            *minute <= start + 61,
            "detected in minute {}",
            minute - start - 60
        );
        assert!(spike.z >= 4.0);
        assert_eq!(spikes.len(), 1, "one report per spike");
        assert!(d
            .flagged("feature=support", (start + 62) * 60_000)
            .is_some());
        assert!(d.flagged("feature=other", (start + 62) * 60_000).is_none());
    }

    #[test]
    fn small_spend_and_a_short_history_are_never_spikes() {
        let d = detector();
        // Below min_usd, however sudden.
        assert!(run(&d, 0, 30, 1, 1_000).is_empty());
        assert!(run(&d, 30, 5, 50, 100_000).is_empty());
        // Without warmup history, no judgement.
        let fresh = detector();
        assert!(run(&fresh, 1000, 3, 100, 50_000_000).is_empty());
    }
}
