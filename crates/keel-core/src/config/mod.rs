//! `keel.toml`: loading, validation and the runtime configuration.
//!
//! Loading is two steps, as the style guide asks: deserialise the raw file with every
//! table rejecting unknown keys (errors carry the key path and a "did you mean"), then
//! validate into `model::Config`, collecting every problem (every unknown key too:
//! `unknown`). `keel check` and
//! `keel serve` call the same `Config::load`.

pub mod alerting;
mod azure;
pub mod cache;
pub mod canary;
pub mod deploy;
pub mod destinations;
pub mod error;
pub mod function;
pub mod governance;
mod guardrail_checks;
pub mod guardrails;
pub mod injection_judge;
pub mod mock;
pub mod model;
pub mod model_alerts;
mod model_lifecycle;
pub mod online;
pub mod otel;
pub mod quality_alerts;
pub mod raw;
pub mod retention;
pub mod review;
pub mod routing;
pub mod score_source;
pub mod sections;
pub mod spikes;
mod unknown;
mod validate;

use std::path::Path;

pub use error::{ConfigError, ConfigIssue};
pub use function::{FunctionConfig, PromptRef, ShadowConfig, Sticky, VariantConfig};
pub use model::*;
pub use validate::{DEFAULT_LISTEN, DEFAULT_MAX_BODY_BYTES, DEFAULT_STORE};

use crate::prices::PriceTable;

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::single(
                path.to_path_buf(),
                "",
                format!("cannot read config: {e}"),
                Some("pass --config PATH, or run from a folder with a keel.toml (see examples/quickstart/keel.toml)".into()),
            )
        })?;
        Self::from_toml(&text, path)
    }

    /// Parse and validate config text; `path` is used in messages and to resolve
    /// relative paths (the store) against its folder.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file = path.to_path_buf();
        let de = toml::Deserializer::parse(text).map_err(|e| {
            ConfigError::single(
                file.clone(),
                "",
                format!("not valid TOML: {}", e.message().trim()),
                e.span().map(|s| format!("at {}", line_col(text, s.start))),
            )
        })?;
        let raw: raw::RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path_s = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.message().trim().to_string();
            let hint = error::did_you_mean(&message).or_else(|| {
                inner
                    .span()
                    .map(|s| format!("at {}", line_col(text, s.start)))
            });
            let mut err = ConfigError::single(
                file.clone(),
                if path_s == "." { "" } else { &path_s },
                message,
                hint,
            );
            // Serde stops at the first unknown key: collect every other one too.
            if err.issues[0].message.starts_with("unknown field `") {
                // Read as a value, tables may come in another order: use that reading
                // when it found the same key (its hints are the same "did you mean").
                let all = unknown::unknown_keys(text);
                if all.iter().any(|i| i.path == err.issues[0].path) {
                    err.issues = all;
                }
            }
            err
        })?;
        let prices = PriceTable::builtin()
            .map_err(|e| ConfigError::single(file.clone(), "", e.to_string(), None))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let prompts_dir = raw.prompts.as_deref().map(|p| dir.join(p));
        let evals_dir = dir.join(raw.evals.as_deref().unwrap_or("evals"));
        let v = validate::validate(raw, dir, &prices).map_err(|issues| ConfigError {
            file: file.clone(),
            issues,
        })?;
        Ok(Config {
            source: file,
            prompts_dir,
            evals_dir,
            gateway: v.gateway,
            registry: v.registry,
            cache: v.cache,
            providers: v.providers,
            models: v.models,
            functions: v.functions,
            governance: v.governance,
            alerting: v.alerting,
            guardrails: v.guardrails,
            online_evals: v.online_evals,
            review_queues: v.review_queues,
            canaries: v.canaries,
            retention: v.retention,
            otel: v.otel,
            warnings: v.warnings,
        })
    }
}

fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    format!("line {line}, column {col}")
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod lifecycle_tests;
