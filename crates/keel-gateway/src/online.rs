//! Online evals, the gateway's part: which finished live calls are judged, and the
//! bounded queue that hands them to the judges, off the request path.
//!
//! When a live call's trace is closed (`pipeline::account::finish`), [`OnlineSampler::offer`]
//! asks each `[[online_evals]]` table whether it covers the call (its function or model,
//! its feature or tenant) and whether the call is in its sample. The sample is decided
//! at the call and is deterministic per request id: the first 8 bytes of
//! SHA-256(`"{eval}\0{request id}"`), read as a fraction of 2^64, below `sample_rate`.
//! The same call is always in or out of an eval's sample, whichever replica serves it,
//! and two evals sample independently.
//!
//! A sampled call is queued with `try_send`: the queue ([`QUEUE_CAPACITY`] calls, at most
//! [`QUEUE_MAX_BYTES`] of captured text) never makes a live call wait; a full queue drops
//! the call and counts it
//! (`keel_online_dropped_total{eval}`). Only successful calls whose text was kept are
//! judged: a call that failed has no answer, and one stored with `capture = "none"` has
//! no text (counted as `keel_online_skipped_total{eval,reason}`).
//!
//! The judges themselves (a worker pool, the judge model's calls, scores in the store)
//! live in `keel-online`, which `keel serve` plugs in through
//! [`Extensions::online`](crate::server::Extensions); without it nothing is sampled.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use keel_core::config::online::{OnlineCall, OnlineEvalConfig};
use keel_core::config::Config;
use keel_core::trace::{Origin, TraceRecord, TraceStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

/// Sampled calls waiting for a judge, across online evals. A full queue drops (counted).
pub const QUEUE_CAPACITY: usize = 1024;

/// Captured text (input and output) held by queued calls, at most: a slow or paused judge
/// with large requests must not pin memory. A call that would pass it is dropped (counted).
pub const QUEUE_MAX_BYTES: usize = 64 * 1024 * 1024;

/// The judges, provided by a crate above the gateway (`keel-online`) through
/// [`Extensions::online`](crate::server::Extensions).
pub trait Judges: Send + Sync {
    /// Start judging what arrives on `queue`, calling the judge models through `app`.
    fn start(
        &self,
        app: Arc<crate::state::AppState>,
        queue: mpsc::Receiver<SampledCall>,
    ) -> JudgesHandle;
}

/// Running judges: cancel `stop`, then wait for `tasks` (they finish the call in hand,
/// record what is left in the queue as skipped, and end).
pub struct JudgesHandle {
    pub stop: tokio_util::sync::CancellationToken,
    pub tasks: tokio_util::task::TaskTracker,
}

impl JudgesHandle {
    /// Stop the judges and wait for them, at most `within`.
    pub async fn stop(self, within: std::time::Duration) {
        self.stop.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(within, self.tasks.wait()).await;
    }
}

/// A live call picked by an online eval, waiting to be judged.
#[derive(Debug)]
pub struct SampledCall {
    /// Index into [`OnlineSampler::evals`].
    pub eval: usize,
    /// The call's trace as it was handed to the writer (text as captured).
    pub trace: Arc<TraceRecord>,
    /// When it was queued (for the judge lag).
    pub queued_at: std::time::Instant,
    /// Its captured text's bytes (counted against [`QUEUE_MAX_BYTES`]).
    pub bytes: usize,
}

/// Whether a call is in an online eval's sample (the same draw everywhere: keel-core).
pub use keel_core::sample::in_sample;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvalLabels {
    pub eval: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkipLabels {
    pub eval: String,
    pub reason: String,
}

/// The online evals' counters (shared with the judges in `keel-online`, which move
/// `judged`, `failed`, `queued` and `lag_seconds`).
#[derive(Clone, Default)]
pub struct OnlineMetrics {
    /// Calls picked by an eval's sample.
    pub sampled: Family<EvalLabels, Counter>,
    /// Sampled calls not queued because the queue was full.
    pub dropped: Family<EvalLabels, Counter>,
    /// Sampled calls not judged: `reason` = `no_text` (capture off), `budget` (the
    /// judge's daily spend cap reached), `shutdown` (still queued when Keel stopped).
    pub skipped: Family<SkipLabels, Counter>,
    /// Sampled calls waiting for a judge now.
    pub queued: Family<EvalLabels, Gauge>,
    /// Calls judged (scores stored).
    pub judged: Family<EvalLabels, Counter>,
    /// Calls that could not be judged (the judge failed after its retries).
    pub failed: Family<EvalLabels, Counter>,
    /// Seconds from a call's end to its scores, for the last call judged.
    pub lag_seconds: Family<EvalLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl OnlineMetrics {
    pub(crate) fn register(registry: &mut Registry) -> OnlineMetrics {
        let m = OnlineMetrics::default();
        registry.register(
            "online_sampled",
            "Live calls picked by an online eval's sample",
            m.sampled.clone(),
        );
        registry.register(
            "online_dropped",
            "Sampled calls dropped because the online-eval queue was full",
            m.dropped.clone(),
        );
        registry.register(
            "online_skipped",
            "Sampled calls not judged (reason: no_text, budget, shutdown)",
            m.skipped.clone(),
        );
        registry.register(
            "online_queued",
            "Sampled calls waiting for a judge",
            m.queued.clone(),
        );
        registry.register(
            "online_judged",
            "Calls judged by an online eval (scores stored)",
            m.judged.clone(),
        );
        registry.register(
            "online_failed",
            "Sampled calls an online eval could not judge (judge errors after retries)",
            m.failed.clone(),
        );
        registry.register(
            "online_judge_lag_seconds",
            "Seconds from a call's end to its stored scores, for the last call judged",
            m.lag_seconds.clone(),
        );
        m
    }

    /// The label set of `eval` (judges call this off the request path).
    pub fn labels(eval: &str) -> EvalLabels {
        EvalLabels {
            eval: eval.to_string(),
        }
    }

    pub fn skip(&self, eval: &str, reason: &str) {
        self.skipped
            .get_or_create(&SkipLabels {
                eval: eval.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }
}

/// Per eval: its config and its metric handles, created once so the request path only
/// bumps atomics.
struct EvalEntry {
    config: Arc<OnlineEvalConfig>,
    sampled: Counter,
    dropped: Counter,
    queued: Gauge,
}

/// Decides which live calls are judged and queues them.
pub struct OnlineSampler {
    evals: Vec<EvalEntry>,
    tx: OnceLock<mpsc::Sender<SampledCall>>,
    metrics: OnlineMetrics,
    /// Captured text held by queued calls, in bytes.
    queued_bytes: AtomicUsize,
}

impl OnlineSampler {
    pub fn new(config: &Config, metrics: &OnlineMetrics) -> OnlineSampler {
        let evals = config
            .online_evals
            .iter()
            .map(|c| {
                let l = OnlineMetrics::labels(&c.name);
                EvalEntry {
                    config: Arc::new(c.clone()),
                    sampled: metrics.sampled.get_or_create(&l).clone(),
                    dropped: metrics.dropped.get_or_create(&l).clone(),
                    queued: metrics.queued.get_or_create(&l).clone(),
                }
            })
            .collect();
        OnlineSampler {
            evals,
            tx: OnceLock::new(),
            metrics: metrics.clone(),
            queued_bytes: AtomicUsize::new(0),
        }
    }

    /// The online evals, in config order (a [`SampledCall::eval`] indexes this).
    pub fn evals(&self) -> Vec<Arc<OnlineEvalConfig>> {
        self.evals.iter().map(|e| e.config.clone()).collect()
    }

    pub fn metrics(&self) -> &OnlineMetrics {
        &self.metrics
    }

    /// Start sampling: the judges take the receiving end. `None` when there are no
    /// online evals, or when already attached.
    pub fn attach(&self, capacity: usize) -> Option<mpsc::Receiver<SampledCall>> {
        if self.evals.is_empty() {
            return None;
        }
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.tx.set(tx).ok()?;
        Some(rx)
    }

    /// Whether judges are attached (sampling is on).
    pub fn running(&self) -> bool {
        self.tx.get().is_some()
    }

    /// Per eval, this process's counts since it started (for `GET /status`).
    pub fn figures(&self) -> Vec<serde_json::Value> {
        self.evals
            .iter()
            .map(|e| {
                let l = OnlineMetrics::labels(&e.config.name);
                serde_json::json!({
                    "name": e.config.name,
                    "judging": self.running(),
                    "sampled": e.sampled.get(),
                    "queued": e.queued.get().max(0),
                    "dropped": e.dropped.get(),
                    "judged": self.metrics.judged.get_or_create(&l).get(),
                    "failed": self.metrics.failed.get_or_create(&l).get(),
                    "judge_lag_seconds": self.metrics.lag_seconds.get_or_create(&l).get(),
                })
            })
            .collect()
    }

    /// A judge took a call off the queue.
    pub fn dequeued(&self, call: &SampledCall) {
        if let Some(e) = self.evals.get(call.eval) {
            e.queued.dec();
        }
        self.queued_bytes.fetch_sub(call.bytes, Ordering::AcqRel);
    }

    /// Offer a finished call to every online eval (called with the trace as it goes to
    /// the writer). Never waits.
    pub fn offer(&self, trace: &TraceRecord) {
        let Some(tx) = self.tx.get() else {
            return;
        };
        if trace.origin != Origin::Live || trace.status != TraceStatus::Ok {
            return;
        }
        let call = OnlineCall {
            function: trace.function.as_deref(),
            model: trace.model_requested.as_deref(),
            tenant: trace.tenant.as_deref(),
            feature: trace.feature.as_deref(),
        };
        let mut shared: Option<Arc<TraceRecord>> = None;
        for (i, e) in self.evals.iter().enumerate() {
            if !e.config.covers(&call)
                || !in_sample(&e.config.name, &trace.id, e.config.sample_rate)
            {
                continue;
            }
            e.sampled.inc();
            if trace.output.is_none() {
                self.metrics.skip(&e.config.name, "no_text");
                continue;
            }
            let bytes = trace.input.as_ref().map_or(0, String::len)
                + trace.output.as_ref().map_or(0, String::len);
            let held = self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
            if held.saturating_add(bytes) > QUEUE_MAX_BYTES {
                self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
                e.dropped.inc();
                continue;
            }
            let t = shared
                .get_or_insert_with(|| Arc::new(trace.clone()))
                .clone();
            let item = SampledCall {
                eval: i,
                trace: t,
                queued_at: std::time::Instant::now(),
                bytes,
            };
            // Counted before the send: a judge may take the call off the queue (and
            // count it out) before `try_send` returns.
            e.queued.inc();
            if tx.try_send(item).is_err() {
                e.queued.dec();
                self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
                e.dropped.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_is_deterministic_per_request_and_independent_per_eval() {
        assert_eq!(
            in_sample("q", "req-1", 0.5),
            in_sample("q", "req-1", 0.5),
            "the same call is always in or out"
        );
        assert!(in_sample("q", "anything", 1.0));
        assert!(!in_sample("q", "anything", 0.0));
        // Over many ids the share is the rate, and two evals pick different calls.
        let n = 20_000;
        let a: Vec<bool> = (0..n)
            .map(|i| in_sample("a", &format!("r{i}"), 0.1))
            .collect();
        let b: Vec<bool> = (0..n)
            .map(|i| in_sample("b", &format!("r{i}"), 0.1))
            .collect();
        let share = a.iter().filter(|x| **x).count() as f64 / n as f64;
        // 0.1 ± 4.5 standard errors (sd = sqrt(0.1·0.9/20000) ≈ 0.0021).
        assert!((share - 0.1).abs() < 0.0095, "{share}");
        let both = a.iter().zip(&b).filter(|(x, y)| **x && **y).count() as f64 / n as f64;
        assert!(both < 0.02, "independent samples overlap about 1 %: {both}");
    }
}
