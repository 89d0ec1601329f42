//! Alert rules (`[[alerts]]`), evaluated off the request path: every
//! [`EVAL_INTERVAL`] the gateway measures each rule's metric over its window from the
//! store (budget use from the live ledger, eval pass rates from the latest run) and
//! sends a notice when a rule starts or stops breaching its threshold. The dispatcher
//! de-duplicates against the store, so a restarted gateway does not re-send what is
//! already firing. Quality rules (`online_pass_rate`, …) are measured by
//! [`super::quality`] with a significance test against their baseline, at most every
//! [`QUALITY_INTERVAL`].

use std::collections::HashMap;
use std::time::Duration;

use keel_core::config::alerting::{AlertMetric, AlertRule};
use keel_store::Store;

use super::{AlertNotice, AlertState};
use crate::governor::Governor;

/// How often a gateway evaluates its rules.
pub const EVAL_INTERVAL: Duration = Duration::from_secs(15);

/// How often a quality rule is measured (its windows are long and its queries larger).
pub const QUALITY_INTERVAL: Duration = Duration::from_secs(60);

/// One rule's measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// `None`: not enough data (too few calls, no eval run yet).
    pub value: Option<f64>,
    pub detail: String,
}

/// Measure `rule` at `now_ms`.
pub async fn measure(
    rule: &AlertRule,
    store: &std::sync::Arc<Store>,
    gov: Option<&Governor>,
    now_ms: i64,
) -> Result<Measured, String> {
    if rule.quality.is_some() {
        return Ok(super::quality::assess(rule, store, now_ms).await?.measured);
    }
    if rule.metric.is_model_event() {
        return Ok(super::model_events::assess(rule, store, now_ms).await?.0);
    }
    let since = now_ms - i64::try_from(rule.window.as_millis()).unwrap_or(i64::MAX);
    let window = humantime::format_duration(rule.window).to_string();
    match rule.metric {
        AlertMetric::BudgetUse => {
            let Some(g) = gov else {
                return Ok(Measured {
                    value: None,
                    detail: "no running gateway".into(),
                });
            };
            let budget = rule.budget.as_deref().unwrap_or_default();
            let value = rule.scope.value.as_deref().unwrap_or("");
            match g.budget_use(budget, value, now_ms).await? {
                Some(u) => Ok(Measured {
                    value: Some(u.share()),
                    detail: format!(
                        "budget `{budget}` has spent ${} of ${} this {}",
                        u.spent.to_dollar_string(),
                        u.limit.to_dollar_string(),
                        u.window
                    ),
                }),
                None => Ok(Measured {
                    value: None,
                    detail: format!("budget `{budget}` does not apply to {}", rule.scope),
                }),
            }
        }
        AlertMetric::EvalPassRate => {
            let store = store.clone();
            let suite = rule.suite.clone().unwrap_or_default();
            tokio::task::spawn_blocking(move || {
                let conn = store.conn().map_err(|e| e.to_string())?;
                let runs = keel_store::evals::list_eval_runs(&conn, Some(&suite), 10)
                    .map_err(|e| e.to_string())?;
                let run = runs
                    .into_iter()
                    .find(|r| r.finished_at_ms.is_some() && r.cases > 0);
                Ok(match run {
                    Some(r) => Measured {
                        value: Some(r.passed as f64 / r.cases as f64),
                        detail: format!(
                            "suite `{suite}` run {}: {} of {} cases passed",
                            r.run.id, r.passed, r.cases
                        ),
                    },
                    None => Measured {
                        value: None,
                        detail: format!("suite `{suite}` has no finished run"),
                    },
                })
            })
            .await
            .map_err(|e| e.to_string())?
        }
        metric => {
            let store = store.clone();
            let scope = rule.scope.clone();
            let min = rule.min_requests;
            let stats = tokio::task::spawn_blocking(move || {
                let conn = store.conn().map_err(|e| e.to_string())?;
                keel_store::report::scope_stats(&conn, &scope, since, now_ms)
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())??;
            let calls = stats.requests;
            let enough = calls >= min;
            let (value, what) = match metric {
                AlertMetric::Cost => (Some(stats.cost.nanos().as_dollars()), "spent (USD)"),
                AlertMetric::SpendRate => (
                    Some(stats.cost.nanos().as_dollars() / (rule.window.as_secs_f64() / 3600.0)),
                    "spend rate (USD/h)",
                ),
                AlertMetric::ErrorRate => (enough.then_some(stats.error_rate), "error rate"),
                AlertMetric::LatencyP50 => (
                    enough.then_some(stats.latency_ms.p50 as f64),
                    "p50 latency (ms)",
                ),
                AlertMetric::LatencyP95 => (
                    enough.then_some(stats.latency_ms.p95 as f64),
                    "p95 latency (ms)",
                ),
                AlertMetric::LatencyP99 => (
                    enough.then_some(stats.latency_ms.p99 as f64),
                    "p99 latency (ms)",
                ),
                AlertMetric::TtftP95 => (
                    stats.ttft_ms.filter(|_| enough).map(|p| p.p95 as f64),
                    "p95 time to first token (ms)",
                ),
                AlertMetric::BudgetUse
                | AlertMetric::EvalPassRate
                | AlertMetric::OnlinePassRate
                | AlertMetric::OnlineScore
                | AlertMetric::FeedbackNegativeRate
                | AlertMetric::OnlineJudgingStalled
                | AlertMetric::ModelChanged
                | AlertMetric::ModelBehaviourChanged
                | AlertMetric::ModelRetiring => (None, ""),
            };
            let detail = match value {
                Some(v) => format!("{what} {v:.4} over the last {window} ({calls} calls)"),
                None => {
                    format!("{calls} calls in the last {window}, fewer than min_requests = {min}")
                }
            };
            Ok(Measured { value, detail })
        }
    }
}

/// The notice for a rule in `state`.
pub fn notice(rule: &AlertRule, state: AlertState, m: &Measured, now_ms: i64) -> AlertNotice {
    use keel_core::config::alerting::Threshold;
    let metric = rule.metric.as_str();
    let resolved = state == AlertState::Resolved;
    let (message, threshold) = match rule.threshold {
        Threshold::Above(t) | Threshold::Below(t) => {
            let op = if matches!(rule.threshold, Threshold::Above(_)) {
                "above"
            } else {
                "below"
            };
            let head = match (resolved, rule.quality.is_some()) {
                (true, _) => format!("{metric} is back within {op} {t}"),
                (false, true) => format!("{metric} is significantly {op} {t}"),
                (false, false) => format!("{metric} is {op} {t}"),
            };
            (format!("{head}: {}", m.detail), Some(t))
        }
        Threshold::Baseline(_) => {
            let head = if resolved {
                "is back in line with its baseline"
            } else {
                "is significantly worse than its baseline"
            };
            (format!("{metric} {head}: {}", m.detail), None)
        }
        Threshold::Event => {
            let head = if resolved { "quiet again" } else { "fired" };
            (format!("{metric} {head}: {}", m.detail), None)
        }
        Threshold::Stall => {
            let head = if resolved {
                "judging resumed (or the scope had too little traffic to tell)"
            } else {
                "judged nothing while its scope had traffic"
            };
            (format!("{metric}: {head}: {}", m.detail), None)
        }
    };
    AlertNotice {
        source: "rule",
        name: rule.name.clone(),
        scope: rule.scope_label(),
        state,
        value: m.value,
        threshold,
        message,
        dedupe_key: match (rule.metric, m.value) {
            // Each stage (90, 30, 7 days, retired) is announced once.
            (AlertMetric::ModelRetiring, Some(days)) => format!(
                "rule|{}|{}d",
                rule.name,
                super::model_events::stage_of(days)
            ),
            _ => format!("rule|{}", rule.name),
        },
        to: rule.to.clone(),
        repeat: rule.repeat,
        at_ms: now_ms,
        incident: rule.incident.clone(),
    }
}

/// Rule states between evaluations (firing or not).
#[derive(Debug, Default)]
pub struct RuleEvaluator {
    firing: HashMap<String, bool>,
    /// When each quality rule was last measured.
    quality_at: HashMap<String, i64>,
}

impl RuleEvaluator {
    /// Measure every rule; the notices for rules that started or stopped breaching (and
    /// for rules still firing, so the dispatcher can repeat them when due).
    pub async fn evaluate(
        &mut self,
        rules: &[AlertRule],
        store: &std::sync::Arc<Store>,
        gov: Option<&Governor>,
        now_ms: i64,
    ) -> Vec<AlertNotice> {
        let mut out = Vec::new();
        for rule in rules {
            if rule.quality.is_some() {
                let every = i64::try_from(QUALITY_INTERVAL.as_millis()).unwrap_or(60_000);
                if self
                    .quality_at
                    .get(&rule.name)
                    .is_some_and(|at| now_ms - at < every && now_ms >= *at)
                {
                    continue;
                }
                self.quality_at.insert(rule.name.clone(), now_ms);
                let a = match super::quality::assess(rule, store, now_ms).await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(rule = %rule.name, error = %e, "cannot evaluate an alert rule");
                        continue;
                    }
                };
                let Some(breached) = a.firing else { continue };
                self.transition(rule, breached, &a.measured, now_ms, &mut out);
                continue;
            }
            if rule.metric.is_model_event() {
                match super::model_events::assess(rule, store, now_ms).await {
                    Ok((m, breached)) => self.transition(rule, breached, &m, now_ms, &mut out),
                    Err(e) => {
                        tracing::warn!(rule = %rule.name, error = %e, "cannot evaluate an alert rule")
                    }
                }
                continue;
            }
            let m = match measure(rule, store, gov, now_ms).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(rule = %rule.name, error = %e, "cannot evaluate an alert rule");
                    continue;
                }
            };
            let Some(v) = m.value else { continue };
            let breached = rule.threshold.breached(v);
            self.transition(rule, breached, &m, now_ms, &mut out);
        }
        out
    }

    fn transition(
        &mut self,
        rule: &AlertRule,
        breached: bool,
        m: &Measured,
        now_ms: i64,
        out: &mut Vec<AlertNotice>,
    ) {
        let was = self.firing.insert(rule.name.clone(), breached);
        match (was, breached) {
            (_, true) => out.push(notice(rule, AlertState::Firing, m, now_ms)),
            (Some(true), false) | (None, false) => {
                // Resolving a rule that is not firing is dropped by the dispatcher;
                // on the first round it clears an alert left firing by a restart.
                out.push(notice(rule, AlertState::Resolved, m, now_ms))
            }
            (Some(false), false) => {}
        }
    }
}
