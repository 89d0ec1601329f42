//! `[[online_evals]]`: assertions run off the request path on a sampled share of live
//! calls, whose results become scores on the calls' traces.
//!
//! This module owns the table's shape and everything that can be checked without the
//! assertion engine: the name, what the eval covers (one function or one model, optionally
//! narrowed to a feature or tenant), the sample rate, the judge model and the judge's
//! daily spend cap. The assertions are kept as written (`toml::Value`s) and compiled by
//! `keel-evals` (`keel_evals::online`), the same engine `keel eval` uses, which `keel
//! check` and `keel serve` both run.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::error::ConfigIssue;
use crate::money::Nanos;
use crate::scope::{CallScope, Scope};

/// One `[[online_evals]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOnlineEval {
    pub name: String,
    /// The function whose calls are judged (or `model`).
    pub function: Option<String>,
    /// The configured model whose calls are judged (or `function`).
    pub model: Option<String>,
    /// Narrow to one feature or tenant: `"feature=support"`, `"tenant=acme"`.
    pub scope: Option<String>,
    /// Share of matching live calls judged, 0 < r <= 1.
    pub sample_rate: f64,
    /// The configured model that grades judge-backed assertions.
    pub judge: Option<String>,
    #[serde(default, rename = "assert")]
    pub asserts: Vec<toml::Value>,
    /// The judge's own spend per UTC day, in USD; judging pauses when it is reached.
    pub max_judge_spend_usd_per_day: Option<f64>,
}

/// What an online eval covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnlineTarget {
    /// Calls to this function (`model = "<function>"` in the request).
    Function(String),
    /// Calls served by this configured model (called directly or through a function).
    Model(String),
}

/// A validated online eval.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineEvalConfig {
    pub name: String,
    pub target: OnlineTarget,
    /// `feature=X` or `tenant=X`, when narrowed.
    pub scope: Option<Scope>,
    pub sample_rate: f64,
    pub judge: Option<String>,
    /// The assertions as written; `keel_evals::online` compiles them.
    pub asserts: Vec<toml::Value>,
    /// `None`: no cap.
    pub max_judge_spend_per_day: Option<Nanos>,
}

/// What the sampler needs to know of a finished call.
#[derive(Debug, Clone, Copy, Default)]
pub struct OnlineCall<'a> {
    /// The function the caller named, when it was one.
    pub function: Option<&'a str>,
    /// The configured model that served it (the upstream's name in `[models]`).
    pub model: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub feature: Option<&'a str>,
}

impl OnlineEvalConfig {
    /// Whether this eval covers `call` (before sampling).
    pub fn covers(&self, call: &OnlineCall<'_>) -> bool {
        let target = match &self.target {
            OnlineTarget::Function(f) => call.function == Some(f.as_str()),
            OnlineTarget::Model(m) => call.model == Some(m.as_str()),
        };
        target
            && self.scope.as_ref().is_none_or(|s| {
                s.applies(&CallScope {
                    tenant: call.tenant,
                    feature: call.feature,
                    ..CallScope::default()
                })
                .is_some()
            })
    }

    /// `function=F` / `model=M`, plus the scope: how the eval is shown.
    pub fn describe(&self) -> String {
        let target = match &self.target {
            OnlineTarget::Function(f) => format!("function={f}"),
            OnlineTarget::Model(m) => format!("model={m}"),
        };
        match &self.scope {
            Some(s) => format!("{target}, {s}"),
            None => target,
        }
    }
}

/// A name for an online eval or a review queue: letters, digits, `-`, `_` and `.`.
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Validate every `[[online_evals]]` table against the configured functions and models.
pub(crate) fn validate_online_evals(
    raw: &[RawOnlineEval],
    functions: &BTreeSet<String>,
    models: &BTreeMap<String, super::raw::RawModel>,
    issues: &mut Vec<ConfigIssue>,
) -> Vec<OnlineEvalConfig> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, r) in raw.iter().enumerate() {
        let path = format!("online_evals[{i}]");
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
                format!("`{}` is not a valid online eval name", r.name),
                "letters, digits, `-`, `_` and `.`, e.g. \"support-quality\"",
            );
        } else if !names.insert(name.to_string()) {
            issue(
                "name",
                format!("`{name}` is used by another online eval"),
                "give each [[online_evals]] table its own name",
            );
        }
        let target = match (&r.function, &r.model) {
            (Some(f), None) if functions.contains(f) => Some(OnlineTarget::Function(f.clone())),
            (Some(f), None) => {
                issue(
                    "function",
                    format!("no function `{f}` in [functions]"),
                    "name a configured function, or use `model = \"...\"`",
                );
                None
            }
            (None, Some(m)) if models.contains_key(m) => Some(OnlineTarget::Model(m.clone())),
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
                    "an online eval covers one function or one model: keep one",
                );
                None
            }
            (None, None) => {
                issue(
                    "function",
                    "neither `function` nor `model` is set".into(),
                    "say which calls to judge: function = \"support-answer\" or model = \"gpt-4o-mini\"",
                );
                None
            }
        };
        let scope = match r.scope.as_deref().map(Scope::feature_or_tenant) {
            None => None,
            Some(Some(s)) => Some(s),
            Some(None) => {
                issue(
                    "scope",
                    format!(
                        "`{}` is not a scope an online eval can take",
                        r.scope.as_deref().unwrap_or_default()
                    ),
                    "use \"feature=NAME\" or \"tenant=NAME\" (or leave it out)",
                );
                None
            }
        };
        if !(r.sample_rate > 0.0 && r.sample_rate <= 1.0) {
            issue(
                "sample_rate",
                format!("{} is not a share of calls", r.sample_rate),
                "a number with 0 < sample_rate <= 1, e.g. 0.05 for 5 % of calls",
            );
        }
        if let Some(j) = &r.judge {
            if !models.contains_key(j) {
                issue(
                    "judge",
                    format!("no model `{j}` in [models]"),
                    "the judge is a configured model, e.g. judge = \"mock-1\"",
                );
            }
        }
        if r.asserts.is_empty() {
            issue(
                "assert",
                "no assertions".into(),
                "list what to check, e.g. assert = [{ type = \"not-is-refusal\" }]",
            );
        }
        let cap = match r.max_judge_spend_usd_per_day {
            None => None,
            Some(usd) => match Nanos::from_dollars(usd) {
                Some(n) if usd > 0.0 => Some(n),
                _ => {
                    issue(
                        "max_judge_spend_usd_per_day",
                        format!("{usd} is not an amount of USD"),
                        "a number > 0, e.g. 5 (leave it out for no cap)",
                    );
                    None
                }
            },
        };
        if let Some(target) = target {
            out.push(OnlineEvalConfig {
                name: name.to_string(),
                target,
                scope,
                sample_rate: r.sample_rate,
                judge: r.judge.clone(),
                asserts: r.asserts.clone(),
                max_judge_spend_per_day: cap,
            });
        }
    }
    out
}
