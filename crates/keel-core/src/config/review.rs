//! `[[review_queues]]`: where people review a share of real calls.
//!
//! A queue names what it covers (a function or a model, optionally narrowed to a feature
//! or tenant), what enters it (a random sample, calls an online eval failed or scored
//! low, calls with negative feedback, calls a guardrail flagged — and always traces
//! added by hand), the labels a reviewer gives (the schema), how many reviewers each
//! item needs, a cap on items per day and how long a reviewer's claim on an item lasts.
//! Everything here is checked once, at load; the intake and the reviewer's page never
//! re-check it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigIssue;
use super::online::{valid_name, OnlineEvalConfig, OnlineTarget};
use crate::scope::Scope;

/// One `[[review_queues]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReviewQueue {
    pub name: String,
    /// Calls to this function (or `model`; neither: every live call in `scope`).
    pub function: Option<String>,
    pub model: Option<String>,
    /// Narrow to one feature or tenant: `"feature=support"`, `"tenant=acme"`.
    pub scope: Option<String>,
    /// Entry: this share of covered calls, at random.
    pub sample_rate: Option<f64>,
    /// Entry: calls this online eval judged and found failing.
    pub failed_eval: Option<String>,
    /// Entry: calls with an online score below a value, `"METRIC=VALUE"`.
    pub score_below: Option<String>,
    /// Entry: calls with negative user feedback (a thumbs-down, a value <= 0).
    #[serde(default)]
    pub negative_feedback: bool,
    /// Entry: calls a guardrail flagged but let through (action `log`).
    #[serde(default)]
    pub guardrail_flagged: bool,
    /// Reviewers each item needs (default 1; 2 measures agreement).
    pub reviewers: Option<u32>,
    /// Most items entering per UTC day (default 200); hand-added traces do not count.
    pub max_items_per_day: Option<u32>,
    /// How long an opened item stays claimed by its reviewer (default "15m").
    pub claim_ttl: Option<String>,
    /// Whether reviewers may write a corrected output (default true).
    pub corrections: Option<bool>,
    /// The label schema (default: `verdict` good/bad/unsure and a free-text `note`).
    #[serde(default)]
    pub labels: Vec<RawLabel>,
}

/// One label of a queue's schema as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLabel {
    pub name: String,
    /// `choice`, `number` or `text`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub choices: Vec<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Default: true for `choice` and `number`, false for `text`.
    pub required: Option<bool>,
}

/// What a label takes.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelKind {
    Choice(Vec<String>),
    Number { min: f64, max: f64 },
    Text,
}

/// One validated label.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSpec {
    pub name: String,
    pub kind: LabelKind,
    pub required: bool,
}

/// What a queue covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewTarget {
    Function(String),
    Model(String),
    /// Every live call (narrowed by the scope, if any).
    All,
}

/// How calls enter a queue on their own (traces can always be added by hand).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntryRules {
    pub sample_rate: Option<f64>,
    pub failed_eval: Option<String>,
    /// (metric, value): a score on `metric` below `value`.
    pub score_below: Option<(String, f64)>,
    pub negative_feedback: bool,
    pub guardrail_flagged: bool,
}

impl EntryRules {
    /// How calls enter, in words (`keel review list` and the Review page): the signals,
    /// strongest first, then the sample, then "by hand" (always possible).
    pub fn describe(&self) -> String {
        let mut out = Vec::new();
        if self.negative_feedback {
            out.push("negative feedback".to_string());
        }
        if let Some(ev) = &self.failed_eval {
            out.push(format!("failed {ev}"));
        }
        if let Some((m, v)) = &self.score_below {
            out.push(format!("{m} < {v}"));
        }
        if self.guardrail_flagged {
            out.push("guardrail flagged".into());
        }
        if let Some(r) = self.sample_rate {
            out.push(format!("{:.1} % sample", r * 100.0));
        }
        out.push("by hand".into());
        out.join(", ")
    }

    /// Whether anything enters on its own (else the queue is filled by hand).
    pub fn any(&self) -> bool {
        self.sample_rate.is_some()
            || self.failed_eval.is_some()
            || self.score_below.is_some()
            || self.negative_feedback
            || self.guardrail_flagged
    }
}

/// A validated review queue.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewQueueConfig {
    pub name: String,
    pub target: ReviewTarget,
    pub scope: Option<Scope>,
    pub entry: EntryRules,
    pub reviewers: u32,
    pub max_items_per_day: u32,
    pub claim_ttl: Duration,
    pub corrections: bool,
    pub labels: Vec<LabelSpec>,
}

impl ReviewQueueConfig {
    pub const DEFAULT_MAX_ITEMS_PER_DAY: u32 = 200;
    pub const DEFAULT_CLAIM_TTL: Duration = Duration::from_secs(15 * 60);

    /// The label called `verdict`, when the schema has one (agreement is measured on it).
    pub fn verdict(&self) -> Option<&LabelSpec> {
        self.labels.iter().find(|l| l.name == "verdict")
    }

    /// `function=F` / `model=M` / `all calls`, plus the scope: how the queue is shown.
    pub fn describe(&self) -> String {
        let target = match &self.target {
            ReviewTarget::Function(f) => format!("function={f}"),
            ReviewTarget::Model(m) => format!("model={m}"),
            ReviewTarget::All => "all calls".to_string(),
        };
        match &self.scope {
            Some(s) => format!("{target}, {s}"),
            None => target,
        }
    }
}

/// The schema a queue gets when it lists no labels.
pub fn default_labels() -> Vec<LabelSpec> {
    vec![
        LabelSpec {
            name: "verdict".into(),
            kind: LabelKind::Choice(vec!["good".into(), "bad".into(), "unsure".into()]),
            required: true,
        },
        LabelSpec {
            name: "note".into(),
            kind: LabelKind::Text,
            required: false,
        },
    ]
}

/// `"METRIC=VALUE"` as (metric, value); the CLI's `--score-below` reads the same.
pub fn parse_score_below(s: &str) -> Option<(String, f64)> {
    let (metric, value) = s.split_once('=')?;
    let metric = metric.trim();
    let value: f64 = value.trim().parse().ok()?;
    (!metric.is_empty() && value.is_finite()).then(|| (metric.to_string(), value))
}

/// Validate every `[[review_queues]]` table against the configured functions, models
/// and online evals.
pub(crate) fn validate_review_queues(
    raw: &[RawReviewQueue],
    functions: &BTreeSet<String>,
    models: &BTreeMap<String, super::raw::RawModel>,
    online_evals: &[OnlineEvalConfig],
    issues: &mut Vec<ConfigIssue>,
) -> Vec<ReviewQueueConfig> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, r) in raw.iter().enumerate() {
        let path = format!("review_queues[{i}]");
        let mut issue = |key: &str, message: String, hint: &str| {
            issues.push(ConfigIssue {
                path: format!("{path}.{key}"),
                message,
                hint: Some(hint.to_string()),
            });
        };
        let name = r.name.trim();
        if !valid_name(name) {
            issue(
                "name",
                format!("`{}` is not a valid review queue name", r.name),
                "letters, digits, `-`, `_` and `.`, e.g. \"support-review\"",
            );
        } else if !names.insert(name.to_string()) {
            issue(
                "name",
                format!("`{name}` is used by another review queue"),
                "give each [[review_queues]] table its own name",
            );
        }
        let target = match (&r.function, &r.model) {
            (Some(f), None) if functions.contains(f) => Some(ReviewTarget::Function(f.clone())),
            (Some(f), None) => {
                issue(
                    "function",
                    format!("no function `{f}` in [functions]"),
                    "name a configured function, or use `model = \"...\"`",
                );
                None
            }
            (None, Some(m)) if models.contains_key(m) => Some(ReviewTarget::Model(m.clone())),
            (None, Some(m)) => {
                issue(
                    "model",
                    format!("no model `{m}` in [models]"),
                    "name a configured model, or use `function = \"...\"`",
                );
                None
            }
            (Some(_), Some(_)) => {
                issue(
                    "function",
                    "both `function` and `model` are set".into(),
                    "a review queue covers one function or one model: keep one",
                );
                None
            }
            (None, None) => Some(ReviewTarget::All),
        };
        let scope = match r.scope.as_deref().map(Scope::feature_or_tenant) {
            None => None,
            Some(Some(s)) => Some(s),
            Some(None) => {
                issue(
                    "scope",
                    format!(
                        "`{}` is not a scope a review queue can take",
                        r.scope.as_deref().unwrap_or_default()
                    ),
                    "use \"feature=NAME\" or \"tenant=NAME\" (or leave it out)",
                );
                None
            }
        };
        if let Some(rate) = r.sample_rate {
            if !(rate > 0.0 && rate <= 1.0) {
                issue(
                    "sample_rate",
                    format!("{rate} is not a share of calls"),
                    "a number with 0 < sample_rate <= 1, e.g. 0.02 for 2 % of calls",
                );
            }
        }
        if let Some(e) = &r.failed_eval {
            if !online_evals.iter().any(|o| &o.name == e) {
                issue(
                    "failed_eval",
                    format!("no online eval `{e}` in [[online_evals]]"),
                    "name a configured online eval, e.g. failed_eval = \"support-quality\"",
                );
            } else if let (Some(ReviewTarget::Function(f)), Some(o)) =
                (&target, online_evals.iter().find(|o| &o.name == e))
            {
                if matches!(&o.target, OnlineTarget::Function(of) if of != f) {
                    issue(
                        "failed_eval",
                        format!("the online eval `{e}` judges another function than `{f}`"),
                        "use an online eval that covers this queue's calls",
                    );
                }
            }
        }
        let score_below = match r.score_below.as_deref() {
            None => None,
            Some(s) => match parse_score_below(s) {
                Some(p) => Some(p),
                None => {
                    issue(
                        "score_below",
                        format!("`{s}` is not METRIC=VALUE"),
                        "e.g. score_below = \"quality=0.5\" (a score on metric `quality` below 0.5)",
                    );
                    None
                }
            },
        };
        let reviewers = r.reviewers.unwrap_or(1);
        if !(1..=10).contains(&reviewers) {
            issue(
                "reviewers",
                format!("{reviewers} reviewers per item"),
                "1 to 10 (2 lets Keel measure agreement between reviewers)",
            );
        }
        let max_items_per_day = r
            .max_items_per_day
            .unwrap_or(ReviewQueueConfig::DEFAULT_MAX_ITEMS_PER_DAY);
        if max_items_per_day == 0 {
            issue(
                "max_items_per_day",
                "0 items per day".into(),
                "a number >= 1 (leave it out for the default, 200)",
            );
        }
        let claim_ttl = match r.claim_ttl.as_deref() {
            None => ReviewQueueConfig::DEFAULT_CLAIM_TTL,
            Some(v) => match humantime::parse_duration(v) {
                Ok(d) if d >= Duration::from_secs(1) => d,
                _ => {
                    issue(
                        "claim_ttl",
                        format!("`{v}` is not a duration of at least a second"),
                        "e.g. claim_ttl = \"15m\"",
                    );
                    ReviewQueueConfig::DEFAULT_CLAIM_TTL
                }
            },
        };
        let labels = if r.labels.is_empty() {
            default_labels()
        } else {
            validate_labels(&r.labels, &path, issues)
        };
        if let Some(target) = target {
            out.push(ReviewQueueConfig {
                name: name.to_string(),
                target,
                scope,
                entry: EntryRules {
                    sample_rate: r.sample_rate,
                    failed_eval: r.failed_eval.clone(),
                    score_below,
                    negative_feedback: r.negative_feedback,
                    guardrail_flagged: r.guardrail_flagged,
                },
                reviewers,
                max_items_per_day,
                claim_ttl,
                corrections: r.corrections.unwrap_or(true),
                labels,
            });
        }
    }
    out
}

fn validate_labels(raw: &[RawLabel], path: &str, issues: &mut Vec<ConfigIssue>) -> Vec<LabelSpec> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (j, l) in raw.iter().enumerate() {
        let mut issue = |key: &str, message: String, hint: &str| {
            issues.push(ConfigIssue {
                path: format!("{path}.labels[{j}].{key}"),
                message,
                hint: Some(hint.to_string()),
            });
        };
        if !valid_name(&l.name) || l.name == "correction" {
            issue(
                "name",
                format!("`{}` is not a valid label name", l.name),
                "letters, digits, `-`, `_` and `.` (`correction` is the corrected output's own field)",
            );
            continue;
        }
        if !seen.insert(l.name.clone()) {
            issue(
                "name",
                format!("`{}` is listed twice", l.name),
                "give each label its own name",
            );
            continue;
        }
        let kind = match l.kind.as_str() {
            "choice" => {
                let mut distinct = BTreeSet::new();
                if l.choices.is_empty()
                    || l.choices
                        .iter()
                        .any(|c| c.trim().is_empty() || !distinct.insert(c))
                {
                    issue(
                        "choices",
                        "a choice label needs distinct, non-empty choices".into(),
                        "e.g. choices = [\"good\", \"bad\", \"unsure\"]",
                    );
                    continue;
                }
                LabelKind::Choice(l.choices.clone())
            }
            "number" => match (l.min, l.max) {
                (Some(min), Some(max)) if min.is_finite() && max.is_finite() && min < max => {
                    LabelKind::Number { min, max }
                }
                _ => {
                    issue(
                        "min",
                        "a number label needs `min` < `max`".into(),
                        "e.g. min = 1, max = 5",
                    );
                    continue;
                }
            },
            "text" => LabelKind::Text,
            other => {
                issue(
                    "type",
                    format!("`{other}` is not a label type"),
                    "use \"choice\", \"number\" or \"text\"",
                );
                continue;
            }
        };
        let required = l.required.unwrap_or(!matches!(kind, LabelKind::Text));
        out.push(LabelSpec {
            name: l.name.clone(),
            kind,
            required,
        });
    }
    out
}

#[cfg(test)]
#[path = "review_tests.rs"]
mod tests;
