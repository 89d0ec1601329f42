//! Quality alert rules: the `[[alerts]]` keys of the metrics `online_pass_rate`,
//! `online_score`, `feedback_negative_rate` and `online_judging_stalled`, and their
//! validation into a [`QualityRule`].
//!
//! A quality rule compares the rate (or mean score) of its window with a baseline and
//! fires only when the difference is significant at `confidence` and the window holds at
//! least `min_samples` samples; see `keel_governance::alerts::quality` for the test.
//!
//! ```toml
//! [[alerts]]
//! name = "support-quality"
//! metric = "online_pass_rate"     # | online_score | feedback_negative_rate | online_judging_stalled
//! online_eval = "support-quality" # a [[online_evals]] name (not for feedback_negative_rate)
//! # source = "human"              # people's labels instead (with review_queue = "NAME"
//! #                               # instead of online_eval; see `score_source`)
//! # score_metric = "helpful"      # online_score: the assertion's metric
//! # feedback_name = "thumbs"      # feedback_negative_rate: one feedback name (default: all)
//! scope = "function=support-answer,variant=concise"  # optional narrowing
//! window = "1h"
//! baseline_windows = 6            # baseline: the previous 6 windows, pooled (default)
//! # below = 0.8                   # ...or a fixed floor (`above` for feedback_negative_rate)
//! min_samples = 30                # quiet below this many samples in the window
//! sustained = 2                   # fire only on the 2nd consecutive bad window
//! confidence = 0.95
//! to = ["ops"]
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::alerting::{
    check_destinations, repeat, AlertMetric, AlertRule, Destination, Known, RawAlert, Threshold,
};
use super::error::ConfigIssue;
use super::governance::duration;
use super::online::{OnlineEvalConfig, OnlineTarget};
use super::score_source::{queue_covers, validate_source, ScoreSource};
use super::PromptRef;
use crate::scope::{Scope, ScopeKind};

/// Default of `baseline_windows`.
pub const DEFAULT_BASELINE_WINDOWS: u32 = 6;
/// Default of `min_samples`.
pub const DEFAULT_MIN_SAMPLES: u64 = 30;
/// Default of `confidence`.
pub const DEFAULT_CONFIDENCE: f64 = 0.95;

/// The quality-rule keys of one `[[alerts]]` table as written.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawQualityKeys<'a> {
    pub online_eval: Option<&'a str>,
    pub score_metric: Option<&'a str>,
    pub feedback_name: Option<&'a str>,
    pub baseline_windows: Option<u32>,
    pub min_samples: Option<u64>,
    pub sustained: Option<u32>,
    pub confidence: Option<f64>,
    pub scope: Option<&'a str>,
    pub above: Option<f64>,
    pub below: Option<f64>,
    pub min_requests: Option<u64>,
    pub source: Option<&'a str>,
    pub review_queue: Option<&'a str>,
}

impl RawQualityKeys<'_> {
    pub fn of(a: &RawAlert) -> RawQualityKeys<'_> {
        RawQualityKeys {
            online_eval: a.online_eval.as_deref(),
            score_metric: a.score_metric.as_deref(),
            feedback_name: a.feedback_name.as_deref(),
            baseline_windows: a.baseline_windows,
            min_samples: a.min_samples,
            sustained: a.sustained,
            confidence: a.confidence,
            scope: a.scope.as_deref(),
            above: a.above,
            below: a.below,
            min_requests: a.min_requests,
            source: a.source.as_deref(),
            review_queue: a.review_queue.as_deref(),
        }
    }

    /// The quality-only keys that are set (to refuse them on other metrics).
    pub fn set_keys(&self) -> Vec<&'static str> {
        [
            ("online_eval", self.online_eval.is_some()),
            ("score_metric", self.score_metric.is_some()),
            ("feedback_name", self.feedback_name.is_some()),
            ("baseline_windows", self.baseline_windows.is_some()),
            ("min_samples", self.min_samples.is_some()),
            ("sustained", self.sustained.is_some()),
            ("confidence", self.confidence.is_some()),
            ("source", self.source.is_some()),
            ("review_queue", self.review_queue.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect()
    }
}

/// Which calls a quality rule reads: every field set must match the call's trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QualityScope {
    pub function: Option<String>,
    pub variant: Option<String>,
    pub tenant: Option<String>,
    pub feature: Option<String>,
    /// The model the call asked for (`model_requested`).
    pub model: Option<String>,
}

impl QualityScope {
    /// Parse `global` or comma-separated `kind=value` pairs, kinds `function`, `variant`,
    /// `tenant`, `feature` and `model`.
    pub fn parse(s: &str) -> Result<QualityScope, String> {
        let mut out = QualityScope::default();
        if s.trim() == "global" {
            return Ok(out);
        }
        for part in s.split(',') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!("`{}` is not `kind=value`", part.trim()));
            };
            let (k, v) = (k.trim(), v.trim());
            if v.is_empty() {
                return Err(format!("`{k}=` names no value"));
            }
            let slot = match k {
                "function" => &mut out.function,
                "variant" => &mut out.variant,
                "tenant" => &mut out.tenant,
                "feature" => &mut out.feature,
                "model" => &mut out.model,
                other => return Err(format!("`{other}` is not a scope kind of a quality alert")),
            };
            if slot.replace(v.to_string()).is_some() {
                return Err(format!("`{k}` is given twice"));
            }
        }
        Ok(out)
    }

    pub fn is_global(&self) -> bool {
        *self == QualityScope::default()
    }

    fn pairs(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("function", self.function.as_deref()),
            ("variant", self.variant.as_deref()),
            ("tenant", self.tenant.as_deref()),
            ("feature", self.feature.as_deref()),
            ("model", self.model.as_deref()),
        ]
    }

    /// The values named, for matching audit events against the scope.
    pub fn values(&self) -> Vec<&str> {
        self.pairs().into_iter().filter_map(|(_, v)| v).collect()
    }

    /// Merge `other` into `self`; `Err(kind)` when both name a different value.
    fn merge(&mut self, other: &QualityScope) -> Result<(), &'static str> {
        let mine = [
            &mut self.function,
            &mut self.variant,
            &mut self.tenant,
            &mut self.feature,
            &mut self.model,
        ];
        for ((kind, theirs), slot) in other.pairs().into_iter().zip(mine) {
            match (theirs, slot.as_deref()) {
                (Some(t), Some(m)) if t != m => return Err(kind),
                (Some(t), None) => *slot = Some(t.to_string()),
                _ => {}
            }
        }
        Ok(())
    }
}

impl fmt::Display for QualityScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .pairs()
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
            .collect();
        if parts.is_empty() {
            f.write_str("global")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

/// A validated quality rule's settings (the metric, window and threshold stay on
/// [`super::alerting::AlertRule`]).
#[derive(Debug, Clone, PartialEq)]
pub struct QualityRule {
    /// The online eval read (every metric but `feedback_negative_rate`, and rules on
    /// human scores).
    pub online_eval: Option<OnlineEvalConfig>,
    /// Whose scores are read: the judge's (default) or a review queue's reviewers'.
    pub source: ScoreSource,
    /// `online_score`: which assertion metric's mean.
    pub score_metric: Option<String>,
    /// `feedback_negative_rate`: one feedback name, or all.
    pub feedback_name: Option<String>,
    /// The calls read: the rule's `scope`, plus what its online eval covers.
    pub scope: QualityScope,
    /// The prompt labels (`name@label`) the scope's variants serve, whose moves change
    /// what it serves; `None` when the scope names no function (every label counts).
    pub labels: Option<Vec<String>>,
    /// Quiet below this many samples in the window.
    pub min_samples: u64,
    /// Fire only when this many consecutive windows are bad (1 = the current one).
    pub sustained: u32,
    /// 0.95: a window is bad when its rate is below the baseline at 95 % confidence.
    pub confidence: f64,
}

impl QualityRule {
    /// The `eval` its scores carry: the online eval's name, or the review queue's.
    pub fn scores_eval(&self) -> &str {
        match &self.source {
            ScoreSource::Human { queue } => queue,
            ScoreSource::Judge => self.online_eval.as_ref().map_or("", |e| e.name.as_str()),
        }
    }
}

/// Validate the quality keys of `alerts[i]` (`path`) for a quality `metric`.
pub(crate) fn validate_quality(
    path: &str,
    metric: &str,
    raw: RawQualityKeys<'_>,
    known: Known<'_>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<(QualityRule, Threshold)> {
    let online_evals = known.online_evals;
    let before = issues.len();
    let mut issue = |key: &str, message: String, hint: &str| {
        issues.push(ConfigIssue {
            path: if key.is_empty() {
                path.to_string()
            } else {
                format!("{path}.{key}")
            },
            message,
            hint: Some(hint.to_string()),
        });
    };
    let feedback = metric == "feedback_negative_rate";
    let stall = metric == "online_judging_stalled";
    let human = match validate_source(
        metric,
        raw.source,
        raw.review_queue,
        raw.online_eval.is_some(),
        raw.score_metric,
        known.review_queues,
        &mut issue,
    ) {
        Ok(h) => h,
        Err(()) => return None,
    };
    let eval = match (raw.online_eval, feedback) {
        (None, false) if human.is_some() => None,
        (Some(_), true) => {
            issue(
                "online_eval",
                "feedback_negative_rate reads users' feedback, not an online eval".into(),
                "remove online_eval; narrow with scope = \"function=...\" or feedback_name",
            );
            None
        }
        (None, true) => None,
        (None, false) => {
            issue(
                "online_eval",
                format!("a {metric} rule names its online eval"),
                "e.g. online_eval = \"support-quality\" (a [[online_evals]] name)",
            );
            None
        }
        (Some(name), false) => match online_evals.iter().find(|e| e.name == name) {
            Some(e) => Some(e.clone()),
            None => {
                let known: Vec<&str> = online_evals.iter().map(|e| e.name.as_str()).collect();
                issue(
                    "online_eval",
                    format!("online eval `{name}` is not configured"),
                    &if known.is_empty() {
                        "add an [[online_evals]] table with that name".to_string()
                    } else {
                        format!("name one of: {}", known.join(", "))
                    },
                );
                None
            }
        },
    };
    match (raw.score_metric, metric == "online_score") {
        (None, true) => issue(
            "score_metric",
            "an online_score rule names the assertion metric it watches".into(),
            "e.g. score_metric = \"helpful\" (the assertion's `metric`, or its type)",
        ),
        (Some(_), false) => issue(
            "score_metric",
            format!("score_metric applies to online_score rules, not {metric}"),
            "remove it, or use metric = \"online_score\"",
        ),
        _ => {}
    }
    if raw.feedback_name.is_some() && !feedback {
        issue(
            "feedback_name",
            format!("feedback_name applies to feedback_negative_rate rules, not {metric}"),
            "remove it",
        );
    }
    if raw.min_requests.is_some() {
        issue(
            "min_requests",
            format!("a {metric} rule counts samples, not requests"),
            "use min_samples = 30",
        );
    }
    let threshold = if stall {
        for (key, set) in [
            ("above", raw.above.is_some()),
            ("below", raw.below.is_some()),
            ("baseline_windows", raw.baseline_windows.is_some()),
            ("min_samples", raw.min_samples.is_some()),
            ("sustained", raw.sustained.is_some()),
        ] {
            if set {
                issue(
                    key,
                    format!("an online_judging_stalled rule takes no {key}"),
                    "it fires when the eval's scope had traffic in the window and nothing was judged; remove the key",
                );
            }
        }
        Threshold::Stall
    } else {
        let (wrong, right) = if feedback {
            ("below", "above")
        } else {
            ("above", "below")
        };
        let wrong_set = if feedback { raw.below } else { raw.above };
        let right_set = if feedback { raw.above } else { raw.below };
        if wrong_set.is_some() {
            issue(
                wrong,
                format!("a {metric} rule alerts on a move the wrong way with `{wrong}`"),
                &format!("use `{right}` for a fixed floor, or baseline_windows"),
            );
        }
        match (right_set, raw.baseline_windows) {
            (Some(_), Some(_)) => {
                issue(
                    right,
                    format!("both `{right}` and `baseline_windows` are set"),
                    "compare with a fixed floor or with the previous windows: keep one",
                );
                Threshold::Stall
            }
            (Some(t), None) if (0.0..=1.0).contains(&t) => {
                if feedback {
                    Threshold::Above(t)
                } else {
                    Threshold::Below(t)
                }
            }
            (Some(t), None) => {
                issue(
                    right,
                    format!("{t} is not a share"),
                    &format!("a number from 0 to 1, e.g. {right} = 0.8"),
                );
                Threshold::Stall
            }
            (None, n) => {
                let n = n.unwrap_or(DEFAULT_BASELINE_WINDOWS);
                if !(1..=168).contains(&n) {
                    issue(
                        "baseline_windows",
                        format!("{n} is not a number of windows"),
                        "from 1 to 168, e.g. baseline_windows = 6",
                    );
                }
                Threshold::Baseline(n)
            }
        }
    };
    let min_samples = raw.min_samples.unwrap_or(DEFAULT_MIN_SAMPLES);
    if min_samples == 0 {
        issue(
            "min_samples",
            "0 samples cannot tell a bad window from noise".into(),
            "e.g. min_samples = 30",
        );
    }
    let sustained = raw.sustained.unwrap_or(1);
    if !(1..=48).contains(&sustained) {
        issue(
            "sustained",
            format!("{sustained} is not a number of consecutive windows"),
            "from 1 to 48, e.g. sustained = 2",
        );
    }
    let confidence = raw.confidence.unwrap_or(DEFAULT_CONFIDENCE);
    if !(0.5..1.0).contains(&confidence) || confidence > 0.9999 {
        issue(
            "confidence",
            format!("{confidence} is not a confidence level"),
            "a number from 0.5 to 0.9999, e.g. confidence = 0.95",
        );
    }
    let mut scope = match QualityScope::parse(raw.scope.unwrap_or("global")) {
        Ok(s) => s,
        Err(e) => {
            issue(
                "scope",
                e,
                "e.g. scope = \"function=support-answer,variant=concise\" (kinds: function, variant, tenant, feature, model), or \"global\"",
            );
            QualityScope::default()
        }
    };
    if let Some(q) = human {
        if let Err(kind) = scope.merge(&queue_covers(q)) {
            issue(
                "scope",
                format!(
                    "its `{kind}=` is outside what review queue `{}` covers ({})",
                    q.name,
                    q.describe()
                ),
                "narrow within the queue's calls, e.g. scope = \"variant=concise\"",
            );
        }
    }
    if let Some(e) = &eval {
        let mut covers = QualityScope::default();
        match &e.target {
            OnlineTarget::Function(f) => covers.function = Some(f.clone()),
            OnlineTarget::Model(m) => covers.model = Some(m.clone()),
        }
        if let Some(s) = &e.scope {
            match s.kind {
                ScopeKind::Tenant => covers.tenant = s.value.clone(),
                ScopeKind::Feature => covers.feature = s.value.clone(),
                _ => {}
            }
        }
        if let Err(kind) = scope.merge(&covers) {
            issue(
                "scope",
                format!(
                    "its `{kind}=` is outside what online eval `{}` judges ({})",
                    e.name,
                    e.describe()
                ),
                "narrow within the eval's calls, e.g. scope = \"variant=concise\"",
            );
        }
    }
    if scope.variant.is_some() && scope.function.is_none() {
        issue(
            "scope",
            "`variant=` needs the function it belongs to".into(),
            "add function=NAME to the scope (or use an online eval of that function)",
        );
    }
    let mut labels = None;
    if let Some(f) = &scope.function {
        match known.functions.get(f) {
            None => issue(
                "scope",
                format!("no function `{f}` in [functions]"),
                "name a configured function",
            ),
            Some(fc) => {
                let variants: Vec<_> = fc
                    .variants
                    .iter()
                    .filter(|v| scope.variant.as_ref().is_none_or(|want| *want == v.name))
                    .collect();
                if variants.is_empty() {
                    let names: Vec<&str> = fc.variants.iter().map(|v| v.name.as_str()).collect();
                    issue(
                        "scope",
                        format!(
                            "function `{f}` has no variant `{}`",
                            scope.variant.as_deref().unwrap_or_default()
                        ),
                        &format!("name one of: {}", names.join(", ")),
                    );
                }
                labels = Some(
                    variants
                        .iter()
                        .filter_map(|v| match &v.prompt_ref {
                            PromptRef::Label(l) => Some(format!("{}@{l}", v.prompt)),
                            PromptRef::Version(_) => None,
                        })
                        .collect(),
                );
            }
        }
    }
    if issues.len() > before {
        return None;
    }
    Some((
        QualityRule {
            online_eval: eval,
            source: human.map_or(ScoreSource::Judge, |q| ScoreSource::Human {
                queue: q.name.clone(),
            }),
            score_metric: raw.score_metric.map(str::to_string),
            feedback_name: raw.feedback_name.map(str::to_string),
            scope,
            labels,
            min_samples,
            sustained,
            confidence,
        },
        threshold,
    ))
}

/// The rule of `alerts[i]` (`path`) with a quality `metric`, or `None` after its issues.
pub(crate) fn quality_rule(
    path: &str,
    a: &RawAlert,
    metric: AlertMetric,
    keys: RawQualityKeys<'_>,
    destinations: &BTreeMap<String, Destination>,
    known: Known<'_>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<AlertRule> {
    let (q, threshold) = validate_quality(path, metric.as_str(), keys, known, issues)?;
    let to = a.to.clone().unwrap_or_else(|| vec!["log".into()]);
    check_destinations(issues, &format!("{path}.to"), &to, destinations);
    Some(AlertRule {
        name: a.name.clone(),
        metric,
        scope: Scope::GLOBAL,
        window: duration(
            issues,
            &format!("{path}.window"),
            a.window.as_deref(),
            Duration::from_secs(3600),
        ),
        threshold,
        budget: None,
        suite: None,
        min_requests: 0,
        to,
        repeat: repeat(issues, path, a.repeat.as_deref()),
        lifecycle: Vec::new(),
        incident: super::alerting::incident_on_fire(path, a, issues),
        quality: Some(q),
    })
}

#[cfg(test)]
#[path = "quality_alerts_tests.rs"]
mod tests;
