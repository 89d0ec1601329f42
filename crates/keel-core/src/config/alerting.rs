//! Alerting config: spend-spike detection (`[spikes]`), alert rules (`[[alerts]]`) and
//! where alerts go (`[alert_destinations.NAME]`).
//!
//! ```toml
//! [spikes]
//! scopes = ["feature", "tenant"]   # each feature and each tenant has its own detector
//! bucket = "1m"                    # spend is summed per bucket
//! half_life = "30m"                # of the EWMA baseline (mean and variance)
//! z = 4.0                          # a bucket this many deviations above the mean is a spike
//! min_usd = 0.01                   # ...and above this spend (ignore noise on tiny traffic)
//! warmup = 10                      # buckets of history before it judges
//! action = "alert"                 # alert | block | downgrade
//! hold = "15m"                     # block/downgrade lasts this long after the spike
//! alert_to = ["log"]
//!
//! [alert_destinations.ops]
//! kind = "webhook"                 # webhook (JSON, Slack-compatible) | log
//! url = "https://hooks.slack.com/services/..."
//!
//! [[alerts]]
//! name = "support-spend"
//! metric = "cost"          # cost | spend_rate | budget_use | error_rate | latency_p50 | latency_p95
//!                          # | latency_p99 | ttft_p95 | eval_pass_rate
//!                          # | online_pass_rate | online_score | feedback_negative_rate
//!                          # | online_judging_stalled (see `quality_alerts`)
//!                          # | model_changed | model_behaviour_changed | model_retiring
//!                          #   (see `model_alerts`)
//! scope = "feature=support"
//! window = "1h"
//! above = 5.0              # or below = ... (e.g. eval_pass_rate)
//! to = ["ops", "log"]
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigIssue;
use super::governance::{check_model_scope, duration, scope};
use super::online::OnlineEvalConfig;
use super::quality_alerts::{quality_rule, QualityRule, RawQualityKeys};
use crate::scope::{Scope, ScopeKind};

pub(crate) use super::destinations::{check_destinations, validate_destinations};
pub(crate) use super::spikes::validate_spikes;
pub use super::spikes::{RawSpikes, SpikeAction, SpikeSettings};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    pub kind: String,
    pub url: Option<String>,
    /// `pagerduty`: the environment variable holding the integration's routing key.
    pub routing_key_env: Option<String>,
    /// `pagerduty`: `critical`, `error` (default), `warning` or `info`.
    pub severity: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlert {
    pub name: String,
    pub metric: String,
    pub scope: Option<String>,
    pub window: Option<String>,
    pub above: Option<f64>,
    pub below: Option<f64>,
    pub budget: Option<String>,
    pub suite: Option<String>,
    pub min_requests: Option<u64>,
    pub to: Option<Vec<String>>,
    pub repeat: Option<String>,
    // Quality rules (`quality_alerts`).
    pub online_eval: Option<String>,
    pub score_metric: Option<String>,
    pub feedback_name: Option<String>,
    pub baseline_windows: Option<u32>,
    pub min_samples: Option<u64>,
    pub sustained: Option<u32>,
    pub confidence: Option<f64>,
    /// `judge` (default) or `human` (`score_source`).
    pub source: Option<String>,
    pub review_queue: Option<String>,
    /// Open an incident when the rule fires (attach to its open one when it fires again).
    pub open_incident: Option<bool>,
    /// The incident's kind (its playbook): `cost-runaway`, `model-regression`, ….
    #[serde(alias = "kind")]
    pub incident_kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Webhook {
        url: String,
    },
    Log,
    /// PagerDuty Events API v2: a firing triggers, a resolution resolves, by dedup key.
    PagerDuty {
        /// The events endpoint (default [`PAGERDUTY_EVENTS_URL`]).
        url: String,
        /// The variable holding the routing key (read when sending; never stored).
        routing_key_env: String,
        severity: String,
    },
}

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// What an alert rule measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertMetric {
    /// Dollars spent in the window.
    Cost,
    /// Dollars per hour over the window.
    SpendRate,
    /// Share of a budget used in its current window.
    BudgetUse,
    /// Share of calls that failed.
    ErrorRate,
    LatencyP50,
    LatencyP95,
    LatencyP99,
    TtftP95,
    /// Pass rate of a suite's latest eval run.
    EvalPassRate,
    /// Share of an online eval's judged calls that passed every assertion.
    OnlinePassRate,
    /// Mean value of one assertion metric of an online eval.
    OnlineScore,
    /// Share of users' feedback values that are negative (`value <= 0`).
    FeedbackNegativeRate,
    /// An online eval judged nothing in a window in which its scope had traffic.
    OnlineJudgingStalled,
    /// The model behind a name answered with a version not seen before
    /// (`model_alerts`).
    ModelChanged,
    /// A scheduled canary found behaviour significantly changed after a new version.
    ModelBehaviourChanged,
    /// A model in scope retires within 90, 30 or 7 days, or has retired.
    ModelRetiring,
}

impl AlertMetric {
    pub fn parse(s: &str) -> Option<AlertMetric> {
        Some(match s {
            "cost" => AlertMetric::Cost,
            "spend_rate" => AlertMetric::SpendRate,
            "budget_use" => AlertMetric::BudgetUse,
            "error_rate" => AlertMetric::ErrorRate,
            "latency_p50" => AlertMetric::LatencyP50,
            "latency_p95" => AlertMetric::LatencyP95,
            "latency_p99" => AlertMetric::LatencyP99,
            "ttft_p95" => AlertMetric::TtftP95,
            "eval_pass_rate" => AlertMetric::EvalPassRate,
            "online_pass_rate" => AlertMetric::OnlinePassRate,
            "online_score" => AlertMetric::OnlineScore,
            "feedback_negative_rate" => AlertMetric::FeedbackNegativeRate,
            "online_judging_stalled" => AlertMetric::OnlineJudgingStalled,
            "model_changed" => AlertMetric::ModelChanged,
            "model_behaviour_changed" => AlertMetric::ModelBehaviourChanged,
            "model_retiring" => AlertMetric::ModelRetiring,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertMetric::Cost => "cost",
            AlertMetric::SpendRate => "spend_rate",
            AlertMetric::BudgetUse => "budget_use",
            AlertMetric::ErrorRate => "error_rate",
            AlertMetric::LatencyP50 => "latency_p50",
            AlertMetric::LatencyP95 => "latency_p95",
            AlertMetric::LatencyP99 => "latency_p99",
            AlertMetric::TtftP95 => "ttft_p95",
            AlertMetric::EvalPassRate => "eval_pass_rate",
            AlertMetric::OnlinePassRate => "online_pass_rate",
            AlertMetric::OnlineScore => "online_score",
            AlertMetric::FeedbackNegativeRate => "feedback_negative_rate",
            AlertMetric::OnlineJudgingStalled => "online_judging_stalled",
            AlertMetric::ModelChanged => "model_changed",
            AlertMetric::ModelBehaviourChanged => "model_behaviour_changed",
            AlertMetric::ModelRetiring => "model_retiring",
        }
    }

    /// Whether this fires on an event about a model (`model_alerts`).
    pub fn is_model_event(self) -> bool {
        matches!(
            self,
            AlertMetric::ModelChanged
                | AlertMetric::ModelBehaviourChanged
                | AlertMetric::ModelRetiring
        )
    }

    /// Whether this is a quality metric, judged against a baseline with a significance
    /// test ([`QualityRule`]).
    pub fn is_quality(self) -> bool {
        matches!(
            self,
            AlertMetric::OnlinePassRate
                | AlertMetric::OnlineScore
                | AlertMetric::FeedbackNegativeRate
                | AlertMetric::OnlineJudgingStalled
        )
    }

    /// The unit a value of this metric is in, for messages.
    pub fn unit(self) -> &'static str {
        match self {
            AlertMetric::Cost => "USD",
            AlertMetric::SpendRate => "USD/h",
            AlertMetric::BudgetUse
            | AlertMetric::ErrorRate
            | AlertMetric::EvalPassRate
            | AlertMetric::OnlinePassRate
            | AlertMetric::FeedbackNegativeRate => "share",
            AlertMetric::OnlineScore => "score",
            AlertMetric::OnlineJudgingStalled => "calls",
            AlertMetric::ModelChanged | AlertMetric::ModelBehaviourChanged => "events",
            AlertMetric::ModelRetiring => "days",
            _ => "ms",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Above(f64),
    Below(f64),
    /// Quality rules: significantly worse than the previous N windows, pooled.
    Baseline(u32),
    /// `online_judging_stalled`: nothing judged while the scope had traffic.
    Stall,
    /// Model rules: an event happened (`model_alerts`).
    Event,
}

impl Threshold {
    /// Whether `value` breaches a fixed threshold. `Baseline` and `Stall` have none
    /// (their rules decide with a significance test): never.
    pub fn breached(self, value: f64) -> bool {
        match self {
            Threshold::Above(t) => value > t,
            Threshold::Below(t) => value < t,
            Threshold::Baseline(_) | Threshold::Stall => false,
            Threshold::Event => value > 0.0,
        }
    }

    /// How the threshold reads in a list (`> 5`, `< 0.8`, `vs previous 6 windows`).
    pub fn describe(self) -> String {
        match self {
            Threshold::Above(v) => format!("> {v}"),
            Threshold::Below(v) => format!("< {v}"),
            Threshold::Baseline(n) => format!("vs previous {n} windows"),
            Threshold::Stall => "judged nothing".into(),
            Threshold::Event => "on event".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub name: String,
    pub metric: AlertMetric,
    /// A fixed-value scope (`feature=support`) or `global`.
    pub scope: Scope,
    pub window: Duration,
    pub threshold: Threshold,
    pub budget: Option<String>,
    pub suite: Option<String>,
    /// error_rate and latency rules stay quiet below this many calls in the window.
    pub min_requests: u64,
    pub to: Vec<String>,
    /// Re-send while still firing, this often; `None`: once per firing.
    pub repeat: Option<Duration>,
    /// The settings of a quality metric ([`AlertMetric::is_quality`]); `None` otherwise.
    pub quality: Option<QualityRule>,
    /// `model_retiring`: the models in scope with a retirement date, and their lifecycle.
    pub lifecycle: Vec<(String, crate::lifecycle::Lifecycle)>,
    /// `open_incident = true`: the incident a firing opens (or attaches to).
    pub incident: Option<IncidentOnFire>,
}

/// What an alert rule's firing opens (`open_incident = true`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IncidentOnFire {
    /// The playbook kind, when set (`incident_kind`, or `kind`).
    pub kind: Option<String>,
}

/// The incident setting of a raw rule: `open_incident = true` with an optional kind; a
/// kind without `open_incident` is refused (it would do nothing).
pub(crate) fn incident_on_fire(
    path: &str,
    a: &RawAlert,
    issues: &mut Vec<ConfigIssue>,
) -> Option<IncidentOnFire> {
    match (a.open_incident.unwrap_or(false), &a.incident_kind) {
        (true, kind) => Some(IncidentOnFire { kind: kind.clone() }),
        (false, Some(_)) => {
            issue(
                issues,
                format!("{path}.incident_kind"),
                "an incident kind without `open_incident = true` does nothing".into(),
                "add open_incident = true, or remove the kind",
            );
            None
        }
        (false, None) => None,
    }
}

impl AlertRule {
    /// The scope as shown: a quality rule's (`function=F,variant=V`), or `scope`.
    pub fn scope_label(&self) -> String {
        match &self.quality {
            Some(q) => q.scope.to_string(),
            None => self.scope.to_string(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Alerting {
    pub spikes: Option<SpikeSettings>,
    pub destinations: BTreeMap<String, Destination>,
    pub rules: Vec<AlertRule>,
}

pub(crate) fn issue(issues: &mut Vec<ConfigIssue>, path: String, message: String, hint: &str) {
    issues.push(ConfigIssue {
        path,
        message,
        hint: (!hint.is_empty()).then(|| hint.to_string()),
    });
}

/// What quality rules are checked against.
#[derive(Clone, Copy)]
pub(crate) struct Known<'a> {
    pub online_evals: &'a [OnlineEvalConfig],
    pub functions: &'a BTreeMap<String, super::FunctionConfig>,
    pub review_queues: &'a [super::review::ReviewQueueConfig],
}

pub(crate) fn validate_alerts(
    raw: &[RawAlert],
    destinations: &BTreeMap<String, Destination>,
    budget_exists: &dyn Fn(&str) -> bool,
    callable: &dyn Fn(&str) -> bool,
    known: Known<'_>,
    issues: &mut Vec<ConfigIssue>,
) -> Vec<AlertRule> {
    let mut out: Vec<AlertRule> = Vec::new();
    for (i, a) in raw.iter().enumerate() {
        let path = format!("alerts[{i}]");
        if a.name.trim().is_empty() || out.iter().any(|r| r.name == a.name) {
            issue(
                issues,
                format!("{path}.name"),
                format!("alert name `{}` is empty or used twice", a.name),
                "give every rule its own name",
            );
        }
        let Some(metric) = AlertMetric::parse(&a.metric) else {
            issue(
                issues,
                format!("{path}.metric"),
                format!("unknown metric `{}`", a.metric),
                "use cost, spend_rate, budget_use, error_rate, latency_p50, latency_p95, latency_p99, ttft_p95, eval_pass_rate, online_pass_rate, online_score, feedback_negative_rate, online_judging_stalled, model_changed, model_behaviour_changed or model_retiring",
            );
            continue;
        };
        if metric.is_model_event() {
            let rule =
                super::model_alerts::model_rule(&path, a, metric, destinations, callable, issues);
            out.extend(rule);
            continue;
        }
        let keys = RawQualityKeys::of(a);
        if metric.is_quality() {
            if let Some(rule) = quality_rule(&path, a, metric, keys, destinations, known, issues) {
                out.push(rule);
            }
            continue;
        }
        for key in keys.set_keys() {
            issue(
                issues,
                format!("{path}.{key}"),
                format!("`{key}` applies to quality rules, not {}", metric.as_str()),
                "remove it, or use metric = \"online_pass_rate\", \"online_score\", \"feedback_negative_rate\" or \"online_judging_stalled\"",
            );
        }
        let Some(sc) = scope(
            issues,
            &format!("{path}.scope"),
            a.scope.as_deref().unwrap_or("global"),
        ) else {
            continue;
        };
        if sc.kind != ScopeKind::Global && sc.value.is_none() {
            issue(
                issues,
                format!("{path}.scope"),
                format!(
                    "an alert rule watches one scope; `{sc}` names every {}",
                    sc.kind.as_str()
                ),
                "name one value, e.g. \"feature=support\", or use \"global\"",
            );
        }
        check_model_scope(issues, &format!("{path}.scope"), &sc, callable);
        let threshold = match (a.above, a.below) {
            (Some(t), None) if t.is_finite() => Threshold::Above(t),
            (None, Some(t)) if t.is_finite() => Threshold::Below(t),
            _ => {
                issue(
                    issues,
                    path.clone(),
                    "set exactly one of `above` or `below`".into(),
                    "e.g. above = 5.0",
                );
                continue;
            }
        };
        match metric {
            AlertMetric::BudgetUse => match &a.budget {
                Some(b) if budget_exists(b) => {}
                Some(b) => issue(
                    issues,
                    format!("{path}.budget"),
                    format!("budget `{b}` is not configured"),
                    "name a [[budgets]] entry",
                ),
                None => issue(
                    issues,
                    format!("{path}.budget"),
                    "a budget_use rule names its budget".into(),
                    "e.g. budget = \"acme-monthly\"",
                ),
            },
            AlertMetric::EvalPassRate if a.suite.is_none() => issue(
                issues,
                format!("{path}.suite"),
                "an eval_pass_rate rule names its suite".into(),
                "e.g. suite = \"support\"",
            ),
            _ => {}
        }
        let to = a.to.clone().unwrap_or_else(|| vec!["log".into()]);
        check_destinations(issues, &format!("{path}.to"), &to, destinations);
        out.push(AlertRule {
            name: a.name.clone(),
            metric,
            scope: sc,
            window: duration(
                issues,
                &format!("{path}.window"),
                a.window.as_deref(),
                Duration::from_secs(3600),
            ),
            threshold,
            budget: a.budget.clone(),
            suite: a.suite.clone(),
            min_requests: a.min_requests.unwrap_or(10),
            to,
            repeat: repeat(issues, &path, a.repeat.as_deref()),
            quality: None,
            lifecycle: Vec::new(),
            incident: incident_on_fire(&path, a, issues),
        });
    }
    out
}

pub(crate) fn repeat(
    issues: &mut Vec<ConfigIssue>,
    path: &str,
    r: Option<&str>,
) -> Option<Duration> {
    r.map(|r| {
        duration(
            issues,
            &format!("{path}.repeat"),
            Some(r),
            Duration::from_secs(3600),
        )
    })
}
