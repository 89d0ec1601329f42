//! Prometheus metrics for `/metrics`.
//!
//! One registry per gateway (not a process-global recorder), so in-process tests can run
//! several gateways side by side. Trace-writer figures are read from the writer's
//! atomics at scrape time rather than pushed on every request.

use std::fmt::Write as _;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub model: String,
    pub api: &'static str,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub model: String,
    /// The trace's error class, as the error type names it (`GatewayError::class`):
    /// a fixed set in the code, never a client's text.
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub model: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

/// A scheduled canary run: its suite (from config), trigger and outcome (fixed sets).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CanaryLabels {
    pub suite: String,
    /// `schedule` or `model_changed`.
    pub trigger: String,
    /// `ok`, `changed` or `failed`.
    pub outcome: String,
}

/// A guardrail check's outcome; policy and check names come from the config (bounded).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GuardLabels {
    pub policy: String,
    pub check: String,
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    pub function: String,
}

/// Latency buckets in seconds: fine-grained below 100 ms (gateway overhead, mock
/// upstreams), coarse up to minutes (long generations).
const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub tokens: Family<TokenLabels, Counter>,
    pub cost_usd: Family<ModelLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    pub unpriced: Family<ModelLabels, Counter>,
    pub latency: Family<ModelLabels, Histogram, fn() -> Histogram>,
    pub ttft: Family<ModelLabels, Histogram, fn() -> Histogram>,
    pub in_flight: Gauge,
    trace_queue: Gauge,
    traces_written: Counter,
    traces_dropped: Counter,
    trace_flushes: Counter,
    trace_flush_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    circuit_state: Family<ModelLabels, Gauge>,
    circuit_opened: Family<ModelLabels, Counter>,
    cache_hits: Family<ModelLabels, Counter>,
    guardrail_actions: Family<GuardLabels, Counter>,
    cache_saved_usd: Family<ModelLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    limits_backend_errors: Counter,
    limits_fail_open: Counter,
    spend_spikes: Counter,
    shadow_skipped: Family<FunctionLabels, Counter>,
    /// Streams cut mid-way and continued on the chain (`resume_streams`).
    pub streams_resumed: Counter,
    pub otel: OtelMetrics,
    /// Online evals: sampled, queued, judged, failed, dropped, judge lag.
    pub online: crate::online::OnlineMetrics,
    /// `POST /v1/feedback` values stored, by name.
    pub feedback: FeedbackCounter,
    /// `keel_model_version_changes_total{model}`: versions new to a model's deployment
    /// (`crate::model_watch`; models come from the config, so the series are bounded).
    pub model_version_changes: Family<ModelLabels, Counter>,
    /// `keel_canary_runs_total{suite,trigger,outcome}` (`crate::canary`).
    pub canary_runs: Family<CanaryLabels, Counter>,
    /// Review items the intake entered, by queue and reason (counted by `keel serve`'s
    /// intake, `keel_review::intake`; queue names come from config, so series are few).
    pub review_entered: Family<ReviewLabels, Counter>,
    /// Intake passes that failed (logged, retried next pass).
    pub review_intake_errors: Counter,
    /// `keel_retention_removed_total{what}`: traces deleted, captures dropped and stored
    /// responses removed by `[retention]` (`crate::retention`).
    pub retention_removed: Family<RetentionLabels, Counter>,
    /// Retention runs that failed (logged, retried next run).
    pub retention_errors: Counter,
}

/// What retention removed: `traces`, `captures`, `responses` (a fixed set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetentionLabels {
    pub what: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    pub queue: String,
    pub reason: String,
}

/// Feedback names an app sent: at most this many become label values; the rest count
/// under `(other)`, so a client cannot create unbounded series.
pub const MAX_FEEDBACK_NAMES: usize = 100;
pub const OTHER_FEEDBACK_NAME: &str = "(other)";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeedbackLabels {
    pub name: String,
}

/// `keel_feedback_total{name}`: feedback values stored (new or replacing), by name.
#[derive(Default)]
pub struct FeedbackCounter {
    family: Family<FeedbackLabels, Counter>,
    names: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl FeedbackCounter {
    /// Count one value named `name` (`(other)` once `MAX_FEEDBACK_NAMES` are taken).
    /// Off the chat path: the short lock is only taken by the feedback endpoint.
    pub fn inc(&self, name: &str) {
        let label = match self.names.lock() {
            Ok(mut names) => {
                if names.contains(name) || names.len() < MAX_FEEDBACK_NAMES {
                    names.insert(name.to_string());
                    name
                } else {
                    OTHER_FEEDBACK_NAME
                }
            }
            Err(_) => OTHER_FEEDBACK_NAME,
        };
        self.family
            .get_or_create(&FeedbackLabels {
                name: label.to_string(),
            })
            .inc();
    }
}

/// OpenTelemetry export and ingest counters (cloned into the exporter task; they share
/// their storage with the registry).
#[derive(Clone, Default)]
pub struct OtelMetrics {
    pub spans_exported: Counter,
    pub spans_dropped: Counter,
    pub export_failures: Counter,
    pub spans_ingested: Counter,
}

/// The governor's figures, taken at scrape time.
pub struct GovFigures {
    pub backend_errors: u64,
    pub fail_open_admits: u64,
    pub spikes: u64,
}

/// One model's metric handles, created once at startup so the request path only bumps
/// atomics: no label hashing, no allocation. (Metric handles share their storage with
/// the registry's families.)
pub struct ModelMetrics {
    /// Indexed by [`api_index`] then [`status_index`].
    requests: [[Counter; 3]; 2],
    pub latency: Histogram,
    pub ttft: Histogram,
    /// input, output, cached, reasoning.
    pub tokens: [Counter; 4],
    /// Only for priced models: an unpriced model has no cost series at all, never $0.
    pub cost_usd: Option<Counter<f64, std::sync::atomic::AtomicU64>>,
    pub unpriced: Counter,
}

pub const APIS: [&str; 2] = ["openai", "anthropic"];
pub const STATUSES: [&str; 3] = ["ok", "error", "client_disconnected"];
pub const TOKEN_KINDS: [&str; 4] = ["input", "output", "cached", "reasoning"];

impl ModelMetrics {
    pub fn request(&self, api: usize, status: usize) -> &Counter {
        &self.requests[api.min(1)][status.min(2)]
    }
}

/// A snapshot of the trace writer's figures, taken at scrape time.
pub struct WriterFigures {
    pub queue_len: u64,
    pub written: u64,
    pub dropped: u64,
    pub flushes: u64,
    pub flush_seconds: f64,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("keel");
        let requests = Family::<RequestLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let tokens = Family::<TokenLabels, Counter>::default();
        let cost_usd = Family::<ModelLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        let unpriced = Family::<ModelLabels, Counter>::default();
        let latency = Family::<ModelLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let ttft = Family::<ModelLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let in_flight = Gauge::default();
        let trace_queue = Gauge::default();
        let traces_written = Counter::default();
        let traces_dropped = Counter::default();
        let trace_flushes = Counter::default();
        let trace_flush_seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "requests",
            "Requests answered, by model, API and outcome",
            requests.clone(),
        );
        registry.register(
            "errors",
            "Failed requests by model and error class",
            errors.clone(),
        );
        registry.register(
            "tokens",
            "Tokens by model and kind (input, output, cached, reasoning)",
            tokens.clone(),
        );
        registry.register(
            "cost_usd",
            "Spend in USD of priced calls, by model",
            cost_usd.clone(),
        );
        registry.register(
            "unpriced_requests",
            "Calls with usage but no known price (not counted as $0)",
            unpriced.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Total request latency by model",
            latency.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "Time to the first streamed token by model",
            ttft.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests being served now",
            in_flight.clone(),
        );
        registry.register(
            "trace_queue_length",
            "Traces waiting in the writer queue",
            trace_queue.clone(),
        );
        registry.register(
            "traces_written",
            "Traces written to the store",
            traces_written.clone(),
        );
        registry.register(
            "traces_dropped",
            "Traces dropped (queue full past the wait, or a failed write)",
            traces_dropped.clone(),
        );
        registry.register(
            "trace_flushes",
            "Batches written by the trace writer",
            trace_flushes.clone(),
        );
        registry.register(
            "trace_flush_seconds",
            "Time spent writing trace batches",
            trace_flush_seconds.clone(),
        );
        let circuit_state = Family::<ModelLabels, Gauge>::default();
        let circuit_opened = Family::<ModelLabels, Counter>::default();
        registry.register(
            "circuit_state",
            "Circuit breaker state by model: 0 closed, 1 half-open, 2 open",
            circuit_state.clone(),
        );
        registry.register(
            "circuit_opened",
            "Times a model's circuit breaker opened",
            circuit_opened.clone(),
        );
        let guardrail_actions = Family::<GuardLabels, Counter>::default();
        registry.register(
            "guardrail_actions",
            "Guardrail outcomes by policy, check and action (redact, block, log, strip, retry, allow, flag)",
            guardrail_actions.clone(),
        );
        let cache_hits = Family::<ModelLabels, Counter>::default();
        let cache_saved_usd =
            Family::<ModelLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "cache_hits",
            "Requests answered from the response cache, by model",
            cache_hits.clone(),
        );
        registry.register(
            "cache_saved_usd",
            "Spend avoided by cache hits (priced calls), by model",
            cache_saved_usd.clone(),
        );
        let limits_backend_errors = Counter::default();
        let limits_fail_open = Counter::default();
        let spend_spikes = Counter::default();
        registry.register(
            "limits_backend_errors",
            "Calls to the budget and rate-limit backend that failed (unreachable, timed out)",
            limits_backend_errors.clone(),
        );
        registry.register(
            "limits_fail_open",
            "Calls admitted without limits because the backend failed and on_backend_error = fail_open",
            limits_fail_open.clone(),
        );
        registry.register(
            "spend_spikes",
            "Spend spikes detected (per feature, tenant or other configured scope)",
            spend_spikes.clone(),
        );
        let shadow_skipped = Family::<FunctionLabels, Counter>::default();
        registry.register(
            "shadow_skipped",
            "Sampled shadow calls not sent because the function's shadows in flight were at max_concurrent",
            shadow_skipped.clone(),
        );
        let streams_resumed = Counter::default();
        registry.register(
            "streams_resumed",
            "Streams that failed after their first chunk and were continued on the fallback chain (resume_streams)",
            streams_resumed.clone(),
        );
        let otel = OtelMetrics::default();
        registry.register(
            "otel_spans_exported",
            "Spans delivered to the OpenTelemetry collector ([otel] endpoint)",
            otel.spans_exported.clone(),
        );
        registry.register(
            "otel_spans_dropped",
            "Spans not delivered: the export queue was full, or the collector could not be reached after a retry",
            otel.spans_dropped.clone(),
        );
        registry.register(
            "otel_export_failures",
            "Span batches the collector did not accept (after one retry)",
            otel.export_failures.clone(),
        );
        registry.register(
            "otel_spans_ingested",
            "Application spans received on POST /v1/traces and stored",
            otel.spans_ingested.clone(),
        );
        let online = crate::online::OnlineMetrics::register(&mut registry);
        let model_version_changes = Family::<ModelLabels, Counter>::default();
        registry.register(
            "model_version_changes",
            "Versions (system fingerprint, else the reported model) new to a model's deployment, by model",
            model_version_changes.clone(),
        );
        let canary_runs = Family::<CanaryLabels, Counter>::default();
        registry.register(
            "canary_runs",
            "Scheduled canary eval runs, by suite, trigger (schedule, model_changed) and outcome (ok, changed, failed)",
            canary_runs.clone(),
        );
        let retention_removed = Family::<RetentionLabels, Counter>::default();
        registry.register(
            "retention_removed",
            "Removed by [retention]: whole traces deleted (traces), captured text dropped (captures), stored responses removed (responses)",
            retention_removed.clone(),
        );
        let retention_errors = Counter::default();
        registry.register(
            "retention_errors",
            "Retention runs that failed (logged; retried at the next run)",
            retention_errors.clone(),
        );
        let review_entered = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "review_items_entered",
            "Review items the intake entered (off the request path), by queue and why they entered",
            review_entered.clone(),
        );
        let review_intake_errors = Counter::default();
        registry.register(
            "review_intake_errors",
            "Review intake passes that failed (logged; retried on the next pass)",
            review_intake_errors.clone(),
        );
        let feedback = FeedbackCounter::default();
        registry.register(
            "feedback",
            "Feedback values stored on POST /v1/feedback (new or replacing an earlier one), by name",
            feedback.family.clone(),
        );
        Metrics {
            otel,
            online,
            feedback,
            model_version_changes,
            canary_runs,
            review_entered,
            review_intake_errors,
            retention_removed,
            retention_errors,
            registry,
            requests,
            errors,
            tokens,
            cost_usd,
            unpriced,
            latency,
            ttft,
            in_flight,
            trace_queue,
            traces_written,
            traces_dropped,
            trace_flushes,
            trace_flush_seconds,
            circuit_state,
            circuit_opened,
            cache_hits,
            guardrail_actions,
            cache_saved_usd,
            limits_backend_errors,
            limits_fail_open,
            spend_spikes,
            shadow_skipped,
            streams_resumed,
        }
    }

    /// Count a shadow call of `function` skipped because its shadows were at capacity.
    /// (Only when the cap is reached, so the label lookup is off the common path.)
    pub fn shadow_skipped(&self, function: &str) {
        self.shadow_skipped
            .get_or_create(&FunctionLabels {
                function: function.to_string(),
            })
            .inc();
    }

    /// Count a cache hit of `model` and the spend it avoided. (Rare enough that the
    /// label lookup is fine: a hit skips a whole upstream call.)
    /// One guardrail outcome.
    pub fn guardrail_action(&self, policy: &str, check: &str, action: &str) {
        self.guardrail_actions
            .get_or_create(&GuardLabels {
                policy: policy.to_string(),
                check: check.to_string(),
                action: action.to_string(),
            })
            .inc();
    }

    pub fn cache_hit(&self, model: &str, saved: Option<keel_core::money::Nanos>) {
        let labels = ModelLabels {
            model: model.to_string(),
        };
        self.cache_hits.get_or_create(&labels).inc();
        if let Some(s) = saved {
            self.cache_saved_usd
                .get_or_create(&labels)
                .inc_by(s.as_dollars());
        }
    }

    /// The state gauge and opened counter of `model`'s circuit breaker.
    pub fn for_breaker(&self, model: &str) -> (Gauge, Counter) {
        let labels = ModelLabels {
            model: model.to_string(),
        };
        (
            self.circuit_state.get_or_create(&labels).clone(),
            self.circuit_opened.get_or_create(&labels).clone(),
        )
    }

    /// Handles for one model label (a configured model, `(unknown)` or `(none)`).
    pub fn for_model(&self, model: &str, priced: bool) -> ModelMetrics {
        let m = ModelLabels {
            model: model.to_string(),
        };
        let request = |api: &'static str, status: &'static str| {
            self.requests
                .get_or_create(&RequestLabels {
                    model: model.to_string(),
                    api,
                    status,
                })
                .clone()
        };
        let token = |kind: &'static str| {
            self.tokens
                .get_or_create(&TokenLabels {
                    model: model.to_string(),
                    kind,
                })
                .clone()
        };
        ModelMetrics {
            requests: APIS.map(|api| STATUSES.map(|status| request(api, status))),
            latency: self.latency.get_or_create(&m).clone(),
            ttft: self.ttft.get_or_create(&m).clone(),
            tokens: TOKEN_KINDS.map(token),
            cost_usd: priced.then(|| self.cost_usd.get_or_create(&m).clone()),
            unpriced: self.unpriced.get_or_create(&m).clone(),
        }
    }

    /// Render the text exposition format, with the writer's current figures.
    pub fn render(&self, writer: WriterFigures, gov: GovFigures) -> String {
        self.trace_queue.set(writer.queue_len as i64);
        // Counters only go up: add the difference since the last scrape.
        fn catch_up(c: &Counter, now: u64) {
            let seen = c.get();
            if now > seen {
                c.inc_by(now - seen);
            }
        }
        catch_up(&self.traces_written, writer.written);
        catch_up(&self.traces_dropped, writer.dropped);
        catch_up(&self.trace_flushes, writer.flushes);
        catch_up(&self.limits_backend_errors, gov.backend_errors);
        catch_up(&self.limits_fail_open, gov.fail_open_admits);
        catch_up(&self.spend_spikes, gov.spikes);
        let seen = self.trace_flush_seconds.get();
        if writer.flush_seconds > seen {
            self.trace_flush_seconds.inc_by(writer.flush_seconds - seen);
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            let _ = writeln!(out, "# metrics encoding failed");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
