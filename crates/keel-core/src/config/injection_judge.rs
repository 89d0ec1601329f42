//! `check = "injection_judge"`: the injection heuristics first, and a judge model for the
//! inputs they are unsure of.
//!
//! The fast check decides alone at both ends: a score at or above `threshold` is an
//! injection (no model is asked), a score below `unsure_from` is not. Only the band in
//! between — where the heuristics see one jailbreak move but not the second that would
//! make them sure — costs a judge call, on the request path, bounded by `timeout`. What
//! happens when the judge cannot answer in time (or answers something that is not a
//! verdict) is the operator's choice: `on_error = "allow"` (default: the judge is a second
//! opinion, an outage of it must not take the feature down) or `"block"`.
//!
//! ```toml
//! [[guardrails.policies.P.checks]]
//! check = "injection_judge"
//! model = "gpt-4o-mini"    # a configured model; its calls are traced with origin "judge"
//! unsure_from = 0.3        # the fast score from which the judge is asked (default 0.3)
//! threshold = 0.5          # the fast score that blocks without asking (default 0.5)
//! timeout = "3s"           # the judge's deadline (default 3s)
//! on_error = "allow"       # allow | block, when the judge fails or times out
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use super::error::ConfigIssue;
use super::guardrails::{issue, RawCheck};

/// The fast score from which the judge is asked, unless configured.
pub const DEFAULT_UNSURE_FROM: f64 = 0.3;
/// The judge's deadline, unless configured.
pub const DEFAULT_JUDGE_TIMEOUT: Duration = Duration::from_secs(3);

/// What an input the judge could not rule on leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgeFailure {
    /// Let it through (recorded on the trace as `judge_error`).
    Allow,
    /// Treat it as an injection.
    Block,
}

impl JudgeFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            JudgeFailure::Allow => "allow",
            JudgeFailure::Block => "block",
        }
    }
}

/// A validated `injection_judge` check.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectionJudge {
    /// Fast score that blocks without a judge.
    pub threshold: f64,
    /// Fast score from which the judge is asked.
    pub unsure_from: f64,
    /// The configured model that judges.
    pub model: String,
    pub timeout: Duration,
    pub on_error: JudgeFailure,
}

impl InjectionJudge {
    /// Whether a fast score is in the band the judge rules on.
    pub fn is_unsure(&self, score: f64) -> bool {
        score >= self.unsure_from && score < self.threshold
    }
}

/// Validate the judge keys of `c` (at `path`) against the configured `models`.
pub(super) fn validate(
    c: &RawCheck,
    path: &str,
    threshold: f64,
    models: &BTreeSet<String>,
    issues: &mut Vec<ConfigIssue>,
) -> InjectionJudge {
    let model = match &c.model {
        Some(m) if models.contains(m) => m.clone(),
        Some(m) => {
            let names: Vec<_> = models.iter().map(String::as_str).collect();
            issue(
                issues,
                format!("{path}.model"),
                format!("`{m}` is not a configured model"),
                &format!("known: {}", names.join(", ")),
            );
            m.clone()
        }
        None => {
            issue(
                issues,
                format!("{path}.model"),
                "an injection_judge check needs the model that judges".into(),
                "add model = \"NAME\" (one of [models])",
            );
            String::new()
        }
    };
    let unsure_from = c.unsure_from.unwrap_or(DEFAULT_UNSURE_FROM);
    if !(0.0..threshold).contains(&unsure_from) || unsure_from == 0.0 {
        issue(
            issues,
            format!("{path}.unsure_from"),
            format!("{unsure_from} is not a score between 0 and the threshold ({threshold})"),
            "use a number above 0 and below threshold (e.g. 0.3): from there the judge is asked",
        );
    }
    let timeout = match c.timeout.as_deref().map(humantime::parse_duration) {
        None => DEFAULT_JUDGE_TIMEOUT,
        Some(Ok(d)) if !d.is_zero() => d,
        Some(Ok(_)) => {
            issue(
                issues,
                format!("{path}.timeout"),
                "must be greater than zero".into(),
                "e.g. \"3s\"",
            );
            DEFAULT_JUDGE_TIMEOUT
        }
        Some(Err(e)) => {
            issue(
                issues,
                format!("{path}.timeout"),
                format!(
                    "`{}` is not a duration: {e}",
                    c.timeout.as_deref().unwrap_or("")
                ),
                "write e.g. \"500ms\" or \"3s\"",
            );
            DEFAULT_JUDGE_TIMEOUT
        }
    };
    let on_error = match c.on_error.as_deref() {
        None | Some("allow") => JudgeFailure::Allow,
        Some("block") => JudgeFailure::Block,
        Some(other) => {
            issue(
                issues,
                format!("{path}.on_error"),
                format!("unknown on_error `{other}`"),
                "use \"allow\" (let the input through) or \"block\"",
            );
            JudgeFailure::Allow
        }
    };
    InjectionJudge {
        threshold,
        unsure_from,
        model,
        timeout,
        on_error,
    }
}

/// Report the judge keys present on a check of another kind.
pub(super) fn unused_keys(c: &RawCheck) -> Vec<(&'static str, bool)> {
    vec![
        ("model", c.model.is_some()),
        ("unsure_from", c.unsure_from.is_some()),
        ("timeout", c.timeout.is_some()),
        ("on_error", c.on_error.is_some()),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::guardrails::{CheckKind, GuardAction};
    use crate::config::{Config, ConfigError};

    const BASE: &str = r#"
[providers.m]
kind = "mock"
[models.judge]
provider = "m"
[guardrails.policies.p]
default = true
"#;

    fn load(checks: &str) -> Result<Config, ConfigError> {
        Config::from_toml(&format!("{BASE}{checks}"), Path::new("/etc/keel/keel.toml"))
    }

    fn paths(e: &ConfigError) -> Vec<String> {
        e.issues.iter().map(|i| i.path.clone()).collect()
    }

    #[test]
    fn defaults_and_every_key() {
        let c = load(
            "[[guardrails.policies.p.checks]]\ncheck = \"injection_judge\"\nmodel = \"judge\"\n",
        )
        .unwrap();
        let check = &c.guardrails[0].checks[0];
        assert_eq!(check.action, GuardAction::Block);
        let CheckKind::InjectionJudge(j) = &check.kind else {
            panic!("{check:?}")
        };
        assert_eq!((j.unsure_from, j.threshold), (0.3, 0.5));
        assert_eq!(j.timeout, Duration::from_secs(3));
        assert_eq!(j.on_error, super::JudgeFailure::Allow);
        assert!(j.is_unsure(0.3) && j.is_unsure(0.49));
        assert!(!j.is_unsure(0.29) && !j.is_unsure(0.5));

        let c = load(
            "[[guardrails.policies.p.checks]]\ncheck = \"injection_judge\"\nmodel = \"judge\"\n\
             unsure_from = 0.2\nthreshold = 0.6\ntimeout = \"800ms\"\non_error = \"block\"\naction = \"log\"\n",
        )
        .unwrap();
        let CheckKind::InjectionJudge(j) = &c.guardrails[0].checks[0].kind else {
            panic!()
        };
        assert_eq!((j.unsure_from, j.threshold), (0.2, 0.6));
        assert_eq!(j.timeout, Duration::from_millis(800));
        assert_eq!(j.on_error, super::JudgeFailure::Block);
    }

    #[test]
    fn bad_keys_name_the_path_and_the_fix() {
        let e =
            load("[[guardrails.policies.p.checks]]\ncheck = \"injection_judge\"\n").unwrap_err();
        assert!(
            paths(&e).contains(&"guardrails.policies.p.checks[0].model".into()),
            "{e}"
        );
        let e = load(
            "[[guardrails.policies.p.checks]]\ncheck = \"injection_judge\"\nmodel = \"nope\"\n\
             unsure_from = 0.5\ntimeout = \"soon\"\non_error = \"maybe\"\non = \"output\"\n",
        )
        .unwrap_err();
        let p = paths(&e);
        for key in ["model", "unsure_from", "timeout", "on_error", "on"] {
            assert!(
                p.contains(&format!("guardrails.policies.p.checks[0].{key}")),
                "{key}: {e}"
            );
        }
        assert!(e.to_string().contains("known: judge"), "{e}");
        // Judge keys on another check are refused.
        let e =
            load("[[guardrails.policies.p.checks]]\ncheck = \"injection\"\nmodel = \"judge\"\n")
                .unwrap_err();
        assert!(
            paths(&e).contains(&"guardrails.policies.p.checks[0].model".into()),
            "{e}"
        );
    }
}
