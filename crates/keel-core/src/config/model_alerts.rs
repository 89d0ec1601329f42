//! Alert rules on what happens to a model rather than to its traffic:
//!
//! ```toml
//! [[alerts]]
//! name = "model-changed"
//! metric = "model_changed"            # the model behind a name answered with a new version
//! scope = "model=gpt-4o-mini"         # or "global": every model
//! window = "1h"                       # fires for this long after the change (default 1h)
//!
//! [[alerts]]
//! name = "behaviour"
//! metric = "model_behaviour_changed"  # a canary found a significant change after a new version
//!
//! [[alerts]]
//! name = "retiring"
//! metric = "model_retiring"           # fires at 90, 30 and 7 days before retirement, and after
//! ```
//!
//! They fire on events, so they take no `above`/`below`: `model_changed` and
//! `model_behaviour_changed` read the audit log (`model.version_changed`,
//! `model.behaviour_changed`) over `window`; `model_retiring` reads the lifecycle of the
//! models in scope (filled in once models are validated).

use std::collections::BTreeMap;
use std::time::Duration;

use super::alerting::{
    check_destinations, issue, repeat, AlertMetric, AlertRule, Destination, RawAlert, Threshold,
};
use super::error::ConfigIssue;
use super::governance::{check_model_scope, duration, scope};
use super::model::ModelConfig;
use super::quality_alerts::RawQualityKeys;
use crate::scope::ScopeKind;

/// How long an event rule stays firing after its event, unless `window` says.
pub const DEFAULT_EVENT_WINDOW: Duration = Duration::from_secs(3600);

/// Validate a `model_changed`, `model_behaviour_changed` or `model_retiring` rule.
pub(super) fn model_rule(
    path: &str,
    a: &RawAlert,
    metric: AlertMetric,
    destinations: &BTreeMap<String, Destination>,
    callable: &dyn Fn(&str) -> bool,
    issues: &mut Vec<ConfigIssue>,
) -> Option<AlertRule> {
    let name = metric.as_str();
    for key in RawQualityKeys::of(a).set_keys() {
        issue(
            issues,
            format!("{path}.{key}"),
            format!("`{key}` applies to quality rules, not {name}"),
            "remove it",
        );
    }
    for (key, set) in [
        ("above", a.above.is_some()),
        ("below", a.below.is_some()),
        ("budget", a.budget.is_some()),
        ("suite", a.suite.is_some()),
        ("min_requests", a.min_requests.is_some()),
    ] {
        if set {
            issue(
                issues,
                format!("{path}.{key}"),
                format!("{name} fires on an event and takes no `{key}`"),
                "remove it",
            );
        }
    }
    if metric == AlertMetric::ModelRetiring && a.window.is_some() {
        issue(
            issues,
            format!("{path}.window"),
            "model_retiring fires at 90, 30 and 7 days before retirement and takes no `window`"
                .into(),
            "remove it",
        );
    }
    let sc = scope(
        issues,
        &format!("{path}.scope"),
        a.scope.as_deref().unwrap_or("global"),
    )?;
    if !matches!(sc.kind, ScopeKind::Global | ScopeKind::Model)
        || (sc.kind == ScopeKind::Model && sc.value.is_none())
    {
        issue(
            issues,
            format!("{path}.scope"),
            format!("{name} is scoped by model; `{sc}` is not one model"),
            "use \"model=NAME\" or \"global\"",
        );
        return None;
    }
    check_model_scope(issues, &format!("{path}.scope"), &sc, callable);
    let to = a.to.clone().unwrap_or_else(|| vec!["log".into()]);
    check_destinations(issues, &format!("{path}.to"), &to, destinations);
    Some(AlertRule {
        name: a.name.clone(),
        metric,
        scope: sc,
        window: duration(
            issues,
            &format!("{path}.window"),
            a.window.as_deref(),
            DEFAULT_EVENT_WINDOW,
        ),
        threshold: Threshold::Event,
        budget: None,
        suite: None,
        min_requests: 0,
        to,
        repeat: repeat(issues, path, a.repeat.as_deref()),
        quality: None,
        lifecycle: Vec::new(),
        incident: super::alerting::incident_on_fire(path, a, issues),
    })
}

/// Give each `model_retiring` rule the lifecycle of the models in its scope that have a
/// retirement date.
pub(super) fn attach_lifecycles(rules: &mut [AlertRule], models: &BTreeMap<String, ModelConfig>) {
    for rule in rules
        .iter_mut()
        .filter(|r| r.metric == AlertMetric::ModelRetiring)
    {
        rule.lifecycle = models
            .values()
            .filter(|m| rule.scope.value.as_deref().is_none_or(|v| v == m.name))
            .filter_map(|m| {
                m.lifecycle
                    .clone()
                    .filter(|l| l.retires.is_some())
                    .map(|l| (m.name.clone(), l))
            })
            .collect();
    }
}
