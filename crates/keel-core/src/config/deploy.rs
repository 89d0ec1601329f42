//! Deployments: one model name served by several upstream deployments (keys, regions,
//! providers), balanced by weight or by latency.
//!
//! ```toml
//! [models.gpt-4o]
//! strategy = "least_latency"        # or "weighted" (the default)
//! [[models.gpt-4o.deployments]]
//! provider = "openai-eu"
//! upstream_model = "gpt-4o-2024-08-06"
//! weight = 2                        # share under "weighted" (default 1)
//! rpm = 500                         # optional: this deployment's own requests per minute
//! [[models.gpt-4o.deployments]]
//! provider = "azure-us"
//! upstream_model = "gpt-4o"
//! ```
//!
//! A model names either `provider` (+ `upstream_model`) — one deployment — or
//! `deployments`, not both. Price and timeouts belong to the model.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::error::ConfigIssue;
use super::raw::{RawModel, RawProvider};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    pub provider: String,
    pub upstream_model: Option<String>,
    pub weight: Option<u32>,
    pub rpm: Option<u32>,
}

/// One upstream deployment of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentConfig {
    pub provider: String,
    pub upstream_model: String,
    pub weight: u32,
    pub rpm: Option<u32>,
}

/// How a model's deployments share its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Random by weight.
    #[default]
    Weighted,
    /// Power of two choices over a moving average of each deployment's latency.
    LeastLatency,
}

fn push(issues: &mut Vec<ConfigIssue>, path: String, message: String, hint: String) {
    issues.push(ConfigIssue {
        path,
        message,
        hint: Some(hint),
    });
}

/// The model's deployments (at least one when valid) and its strategy.
pub(crate) fn validate_deployments(
    name: &str,
    m: &RawModel,
    providers: &BTreeMap<String, RawProvider>,
    issues: &mut Vec<ConfigIssue>,
) -> (Vec<DeploymentConfig>, Strategy) {
    let path = format!("models.{name}");
    let known = || {
        let k: Vec<&str> = providers.keys().map(String::as_str).collect();
        if k.is_empty() {
            "add a [providers.NAME] table".to_string()
        } else {
            format!("configured providers: {}", k.join(", "))
        }
    };
    let strategy = match m.strategy.as_deref() {
        None | Some("weighted") => Strategy::Weighted,
        Some("least_latency") => Strategy::LeastLatency,
        Some(other) => {
            push(
                issues,
                format!("{path}.strategy"),
                format!("unknown strategy `{other}`"),
                "use \"weighted\" or \"least_latency\"".into(),
            );
            Strategy::Weighted
        }
    };
    let raw: Vec<(String, RawDeployment)> = match (&m.provider, &m.deployments) {
        (Some(p), None) => vec![(
            format!("{path}.provider"),
            RawDeployment {
                provider: p.clone(),
                upstream_model: m.upstream_model.clone(),
                weight: None,
                rpm: None,
            },
        )],
        (None, Some(d)) if !d.is_empty() => d
            .iter()
            .enumerate()
            .map(|(i, d)| (format!("{path}.deployments[{i}].provider"), d.clone()))
            .collect(),
        (Some(_), Some(_)) => {
            push(
                issues,
                path,
                "both `provider` and `deployments` are set".into(),
                "name one provider, or list [[deployments]] (each with its provider)".into(),
            );
            return (Vec::new(), strategy);
        }
        _ => {
            push(
                issues,
                format!("{path}.provider"),
                "no provider: set `provider` or list [[deployments]]".into(),
                known(),
            );
            return (Vec::new(), strategy);
        }
    };
    let mut out = Vec::with_capacity(raw.len());
    for (ppath, d) in raw {
        if !providers.contains_key(&d.provider) {
            push(
                issues,
                ppath.clone(),
                format!("provider `{}` is not defined", d.provider),
                known(),
            );
        }
        let upstream_model = d.upstream_model.clone().unwrap_or_else(|| name.to_string());
        if upstream_model.trim().is_empty() {
            push(
                issues,
                ppath.replace(".provider", ".upstream_model"),
                "must not be empty".into(),
                "the model id the provider knows".into(),
            );
        }
        if d.weight == Some(0) {
            push(
                issues,
                ppath.replace(".provider", ".weight"),
                "must be at least 1".into(),
                "remove the deployment to stop sending it traffic".into(),
            );
        }
        if d.rpm == Some(0) {
            push(
                issues,
                ppath.replace(".provider", ".rpm"),
                "must be at least 1".into(),
                "omit rpm for no limit".into(),
            );
        }
        out.push(DeploymentConfig {
            provider: d.provider,
            upstream_model,
            weight: d.weight.unwrap_or(1).max(1),
            rpm: d.rpm,
        });
    }
    (out, strategy)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::Strategy;
    use crate::config::Config;

    fn load(models: &str) -> Result<Config, String> {
        let text =
            format!("[providers.p]\nkind = \"mock\"\n[providers.q]\nkind = \"mock\"\n{models}");
        Config::from_toml(&text, Path::new("keel.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn deployments_are_validated_and_the_first_is_the_primary() {
        let c = load(
            "[models.m]\nstrategy = \"least_latency\"\ninput_price_per_mtok = 1\noutput_price_per_mtok = 1\n\
             [[models.m.deployments]]\nprovider = \"p\"\nupstream_model = \"x\"\nweight = 2\nrpm = 10\n\
             [[models.m.deployments]]\nprovider = \"q\"\n",
        )
        .unwrap();
        let m = &c.models["m"];
        assert_eq!(m.strategy, Strategy::LeastLatency);
        assert_eq!((m.provider.as_str(), m.upstream_model.as_str()), ("p", "x"));
        assert_eq!(m.deployments[1].upstream_model, "m");
        assert_eq!(m.deployments[0].rpm, Some(10));
        assert!(
            m.routing.breaker.is_some(),
            "several deployments get a breaker"
        );

        for (models, needle) in [
            (
                "[models.m]\nprovider = \"p\"\n[[models.m.deployments]]\nprovider = \"q\"\n",
                "both `provider` and `deployments`",
            ),
            (
                "[models.m]\nupstream_model = \"x\"\n",
                "models.m.provider: no provider",
            ),
            (
                "[models.m]\n[[models.m.deployments]]\nprovider = \"nope\"\n",
                "models.m.deployments[0].provider: provider `nope` is not defined",
            ),
            (
                "[models.m]\n[[models.m.deployments]]\nprovider = \"p\"\nweight = 0\n",
                "models.m.deployments[0].weight",
            ),
            (
                "[models.m]\nprovider = \"p\"\nstrategy = \"fastest\"\n",
                "unknown strategy `fastest`",
            ),
        ] {
            let err = load(models).unwrap_err();
            assert!(err.contains(needle), "{err}\nshould contain: {needle}");
        }
    }
}
