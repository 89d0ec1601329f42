//! Scheduled canary evals (`[[canaries]]`): a locked suite that `keel serve` runs on a
//! schedule — and right after a `model.version_changed` for a model it runs on — against
//! pinned models, each run compared case by case with the last run on the previous model
//! version (`keel_gateway::canary`).
//!
//! ```toml
//! [[canaries]]
//! suite = "support"            # an existing locked suite (evals/support.toml)
//! every = "6h"                 # default 6h, at least 1m
//! models = ["gpt-4o-mini"]     # optional: run on these models instead of the suite's own
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigIssue;

/// How often a canary runs when `every` is not set.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(6 * 3600);
/// The shortest schedule accepted.
pub const MIN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCanary {
    pub suite: String,
    pub every: Option<String>,
    pub models: Option<Vec<String>>,
}

/// One validated canary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryConfig {
    /// The suite's name in the evals folder.
    pub suite: String,
    pub every: Duration,
    /// Configured models to run it on; empty: the suite's own target.
    pub models: Vec<String>,
}

impl CanaryConfig {
    /// The name a canary run is kept under: `suite@model`.
    pub fn key(&self, model: &str) -> String {
        format!("{}@{model}", self.suite)
    }
}

fn issue(issues: &mut Vec<ConfigIssue>, path: String, message: String, hint: &str) {
    issues.push(ConfigIssue {
        path,
        message,
        hint: Some(hint.to_string()),
    });
}

pub(crate) fn validate_canaries<T>(
    raw: &[RawCanary],
    models: &BTreeMap<String, T>,
    issues: &mut Vec<ConfigIssue>,
) -> Vec<CanaryConfig> {
    let mut out: Vec<CanaryConfig> = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let path = format!("canaries[{i}]");
        let name_ok = !c.suite.is_empty()
            && c.suite
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
        if !name_ok {
            issue(
                issues,
                format!("{path}.suite"),
                format!("`{}` is not a suite name", c.suite),
                "name a suite of the evals folder, e.g. suite = \"support\" for evals/support.toml",
            );
            continue;
        }
        let every = match c.every.as_deref().map(humantime::parse_duration) {
            None => DEFAULT_EVERY,
            Some(Ok(d)) if d >= MIN_EVERY => d,
            Some(Ok(_)) => {
                issue(
                    issues,
                    format!("{path}.every"),
                    "a canary runs at most once a minute".into(),
                    "e.g. every = \"6h\"",
                );
                continue;
            }
            Some(Err(e)) => {
                issue(
                    issues,
                    format!("{path}.every"),
                    format!(
                        "`{}` is not a duration: {e}",
                        c.every.as_deref().unwrap_or("")
                    ),
                    "e.g. every = \"6h\"",
                );
                continue;
            }
        };
        let mut ok = true;
        for m in c.models.iter().flatten() {
            if !models.contains_key(m) {
                ok = false;
                issue(
                    issues,
                    format!("{path}.models"),
                    format!("model `{m}` is not configured"),
                    "name [models.*] entries",
                );
            }
        }
        let canary = CanaryConfig {
            suite: c.suite.clone(),
            every,
            models: c.models.clone().unwrap_or_default(),
        };
        if out
            .iter()
            .any(|o| o.suite == canary.suite && o.models == canary.models)
        {
            issue(
                issues,
                path.clone(),
                format!("suite `{}` has this canary twice", c.suite),
                "keep one [[canaries]] per suite and model list",
            );
            continue;
        }
        if ok {
            out.push(canary);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    const BASE: &str = "[providers.p]\nkind = \"mock\"\n[models.m]\nprovider = \"p\"\ninput_price_per_mtok = 1\noutput_price_per_mtok = 1\n";

    fn load(extra: &str) -> Result<Config, String> {
        Config::from_toml(&format!("{BASE}{extra}"), Path::new("/tmp/keel.toml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn canaries_default_to_six_hours_and_refuse_mistakes_at_their_key() {
        let c = load("[[canaries]]\nsuite = \"support\"\n").unwrap();
        assert_eq!(c.canaries[0].every.as_secs(), 6 * 3600);
        assert!(c.canaries[0].models.is_empty());
        let c =
            load("[[canaries]]\nsuite = \"support\"\nevery = \"30m\"\nmodels = [\"m\"]\n").unwrap();
        assert_eq!(c.canaries[0].key("m"), "support@m");
        let e = load("[[canaries]]\nsuite = \"support\"\nevery = \"10s\"\n").unwrap_err();
        assert!(e.contains("canaries[0].every"), "{e}");
        let e = load("[[canaries]]\nsuite = \"support\"\nmodels = [\"nope\"]\n").unwrap_err();
        assert!(e.contains("model `nope` is not configured"), "{e}");
        let e = load("[[canaries]]\nsuite = \"../x\"\n").unwrap_err();
        assert!(e.contains("canaries[0].suite"), "{e}");
        let e = load("[[canaries]]\nsuite = \"s\"\n[[canaries]]\nsuite = \"s\"\n").unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = load("[[canaries]]\nsuite = \"s\"\nevrey = \"1h\"\n").unwrap_err();
        assert!(e.contains("evrey"), "{e}");
    }
}
