//! Functions in `keel.toml`: the stable names apps call (`model = "support-answer"`)
//! behind which operators choose prompt, model and parameters.
//!
//! This module owns the whole config story of a function: its raw TOML shape (every table
//! rejects unknown keys), its runtime types, and the validation that turns one into the
//! other, collecting every problem as a `ConfigIssue` with a key path and a hint. Which
//! variant a request gets is decided in the gateway (`pipeline::variant`); whether a
//! variant's prompt exists in the prompts folder is checked by `keel check` with the
//! prompt registry, not here.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::ConfigIssue;
use super::raw::RawModel;

/// The label a variant follows when it names neither `prompt_label` nor `prompt_version`.
pub const DEFAULT_PROMPT_LABEL: &str = "production";

/// `[functions.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFunction {
    pub description: Option<String>,
    /// `"user"` (default), `"session"` or `"none"`.
    pub sticky: Option<String>,
    #[serde(default)]
    pub variants: Vec<RawVariant>,
    /// `{ variant = "candidate", sample = 0.1 }`: mirror a share of live traffic.
    pub shadow: Option<RawShadow>,
    /// The whole call's deadline, across retries and fallbacks.
    pub timeout: Option<String>,
    /// Time to the first streamed chunk, across retries and fallbacks.
    pub first_token_timeout: Option<String>,
    /// `{ suite = "support", min_pass_rate = 0.85 }`: send traffic to the cheapest
    /// variant whose latest eval run of `suite` meets the tier.
    pub cheapest: Option<RawCheapest>,
    /// What this function's traces keep: `"full"`, `"redacted"` or `"none"` (default:
    /// `[gateway] capture`).
    pub capture: Option<String>,
}

/// `[functions.NAME.cheapest]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheapest {
    pub suite: String,
    pub min_pass_rate: f64,
}

/// `[functions.NAME.shadow]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShadow {
    pub variant: String,
    pub sample: f64,
    /// Shadow calls of this function in flight at once (default 16).
    pub max_concurrent: Option<i64>,
}

/// `[[functions.NAME.variants]]` as written. Numbers are read wide so that a negative or
/// oversized value becomes a validation issue with a path, not a parse failure.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVariant {
    pub name: String,
    pub prompt: String,
    pub prompt_label: Option<String>,
    pub prompt_version: Option<i64>,
    pub model: String,
    pub weight: i64,
    pub params: Option<toml::Table>,
    /// This variant's own fallback chain (replaces its model's).
    pub fallbacks: Option<Vec<String>>,
}

/// A validated function.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionConfig {
    pub name: String,
    pub description: Option<String>,
    pub sticky: Sticky,
    /// In config order; the traffic split walks them in this order.
    pub variants: Vec<VariantConfig>,
    /// Mirror a sampled share of live traffic to a variant, off the response path.
    pub shadow: Option<ShadowConfig>,
    /// Deadline of the whole call (all attempts); `None`: the models' own timeouts only.
    pub timeout: Option<std::time::Duration>,
    /// Deadline of the first streamed chunk (all attempts).
    pub first_token_timeout: Option<std::time::Duration>,
    /// Route to the cheapest variant meeting a quality tier (instead of the split).
    pub cheapest: Option<QualityTier>,
    /// Overrides `[gateway] capture` for this function's traces.
    pub capture: Option<super::model::Capture>,
}

/// A quality tier: the latest eval run of `suite` on a variant's release must have a pass
/// rate of at least `min_pass_rate` for the variant to qualify.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityTier {
    pub suite: String,
    pub min_pass_rate: f64,
}

/// Shadow traffic: `sample` (0..=1) of the function's live calls are also sent, in the
/// background, to `variant`; its results are stored beside the live ones.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowConfig {
    pub variant: String,
    pub sample: f64,
    /// At most this many shadow calls in flight; a sampled call beyond it is skipped
    /// (and counted), so a slow shadow cannot pile up work beside live traffic.
    pub max_concurrent: NonZeroU32,
}

/// Shadow calls of one function in flight at once, unless `max_concurrent` says otherwise.
pub const DEFAULT_SHADOW_CONCURRENCY: u32 = 16;

impl FunctionConfig {
    /// Sum of the variants' weights (greater than zero once validated).
    pub fn total_weight(&self) -> u64 {
        self.variants.iter().map(|v| u64::from(v.weight)).sum()
    }

    pub fn variant(&self, name: &str) -> Option<&VariantConfig> {
        self.variants.iter().find(|v| v.name == name)
    }
}

/// Which attribution header keeps a caller on one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sticky {
    /// `x-keel-user` (the default).
    User,
    /// `x-keel-session`.
    Session,
    /// Nothing: every request is assigned afresh.
    None,
}

impl Sticky {
    pub fn as_str(self) -> &'static str {
        match self {
            Sticky::User => "user",
            Sticky::Session => "session",
            Sticky::None => "none",
        }
    }

    /// The request header whose value is the sticky key, if any.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Sticky::User => Some("x-keel-user"),
            Sticky::Session => Some("x-keel-session"),
            Sticky::None => None,
        }
    }
}

/// A validated variant: one prompt × model × parameters, with its share of traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantConfig {
    /// Unique within its function; safe in URLs and headers (`[A-Za-z0-9._-]+`).
    pub name: String,
    /// The prompt's name in the prompts folder.
    pub prompt: String,
    pub prompt_ref: PromptRef,
    /// A configured `[models.*]` name.
    pub model: String,
    /// Relative share of traffic; 0 = reachable only through `x-keel-variant`.
    pub weight: u32,
    /// Parameter overrides (temperature, max_tokens, …) as JSON.
    pub params: Map<String, Value>,
    /// The variant's own fallback chain; `None` uses its model's `fallbacks`.
    pub fallbacks: Option<Vec<String>>,
}

/// Which version of the prompt a variant uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptRef {
    /// Whatever version the label points at when the request is served.
    Label(String),
    /// A pinned version.
    Version(NonZeroU32),
}

fn is_variant_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_function_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
}

fn issue(issues: &mut Vec<ConfigIssue>, path: String, message: String, hint: Option<String>) {
    issues.push(ConfigIssue {
        path,
        message,
        hint,
    });
}

/// Validate every `[functions.*]` table against the configured models, pushing each
/// problem onto `issues`. Models are checked by name only (a model with its own problems
/// is reported there, not again here).
pub(crate) fn validate_functions(
    raw: &BTreeMap<String, RawFunction>,
    models: &BTreeMap<String, RawModel>,
    issues: &mut Vec<ConfigIssue>,
) -> BTreeMap<String, FunctionConfig> {
    let mut out = BTreeMap::new();
    for (name, f) in raw {
        let path = format!("functions.{name}");
        if !is_function_name(name) {
            issue(
                issues,
                path.clone(),
                format!("`{name}` is not a valid function name"),
                Some("use letters, digits, `.`, `_`, `/` and `-` only".into()),
            );
        }
        if models.contains_key(name) {
            issue(
                issues,
                path.clone(),
                format!(
                    "`{name}` is both a function and a model; requests could not tell them apart"
                ),
                Some(format!(
                    "rename one: the function [functions.{name}] or the model [models.{name}]"
                )),
            );
        }
        let mut deadline = |key: &str, v: &Option<String>| -> Option<std::time::Duration> {
            let v = v.as_deref()?;
            match humantime::parse_duration(v) {
                Ok(d) if !d.is_zero() => Some(d),
                _ => {
                    issue(
                        issues,
                        format!("{path}.{key}"),
                        format!("`{v}` is not a positive duration"),
                        Some("write e.g. \"500ms\", \"30s\" or \"2m\"".into()),
                    );
                    None
                }
            }
        };
        let timeout = deadline("timeout", &f.timeout);
        let first_token_timeout = deadline("first_token_timeout", &f.first_token_timeout);
        let cheapest = f.cheapest.as_ref().map(|c| {
            if !(0.0..=1.0).contains(&c.min_pass_rate) {
                issue(
                    issues,
                    format!("{path}.cheapest.min_pass_rate"),
                    format!("{} is not a pass rate", c.min_pass_rate),
                    Some("use a fraction in [0, 1], e.g. 0.85".into()),
                );
            }
            QualityTier {
                suite: c.suite.clone(),
                min_pass_rate: c.min_pass_rate,
            }
        });
        let capture = f.capture.as_deref().and_then(|c| {
            let parsed = super::model::Capture::parse(c);
            if parsed.is_none() {
                issue(
                    issues,
                    format!("{path}.capture"),
                    format!("unknown capture mode `{c}`"),
                    Some(super::model::Capture::HINT.into()),
                );
            }
            parsed
        });
        let sticky = match f.sticky.as_deref().unwrap_or("user") {
            "user" => Sticky::User,
            "session" => Sticky::Session,
            "none" => Sticky::None,
            other => {
                issue(
                    issues,
                    format!("{path}.sticky"),
                    format!("unknown sticky mode `{other}`"),
                    Some(
                        "use \"user\" (x-keel-user), \"session\" (x-keel-session) or \"none\""
                            .into(),
                    ),
                );
                Sticky::User
            }
        };

        let mut variants = Vec::with_capacity(f.variants.len());
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, v) in f.variants.iter().enumerate() {
            let vpath = format!("{path}.variants[{i}]");
            if let Some(variant) = validate_variant(v, &vpath, models, issues) {
                variants.push(variant);
            }
            if v.name.is_empty() {
                continue;
            }
            if let Some(first) = seen.get(v.name.as_str()) {
                issue(
                    issues,
                    format!("{vpath}.name"),
                    format!(
                        "variant `{}` is already defined at {path}.variants[{first}]",
                        v.name
                    ),
                    Some("give every variant of a function its own name".into()),
                );
            } else {
                seen.insert(&v.name, i);
            }
        }

        if f.variants.is_empty() {
            issue(
                issues,
                format!("{path}.variants"),
                "a function needs at least one variant".into(),
                Some(format!(
                    "add a [[functions.{name}.variants]] table with name, prompt, model and weight"
                )),
            );
        } else if f.variants.iter().all(|v| v.weight <= 0) {
            issue(
                issues,
                format!("{path}.variants"),
                "the total weight is 0, so no request could be assigned a variant".into(),
                Some("give at least one variant a weight above 0".into()),
            );
        }

        let shadow = match &f.shadow {
            None => None,
            Some(sh) => {
                if !variants.iter().any(|v| v.name == sh.variant) {
                    issue(
                        issues,
                        format!("{path}.shadow.variant"),
                        format!("`{}` is not a variant of this function", sh.variant),
                        Some(format!(
                            "its variants: {}",
                            variants
                                .iter()
                                .map(|v| v.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    );
                }
                if !(sh.sample > 0.0 && sh.sample <= 1.0) {
                    issue(
                        issues,
                        format!("{path}.shadow.sample"),
                        format!("{} is not a share of traffic", sh.sample),
                        Some("use a number in (0, 1], e.g. 0.1 for 10 %".into()),
                    );
                }
                let max_concurrent = match sh.max_concurrent {
                    None => NonZeroU32::new(DEFAULT_SHADOW_CONCURRENCY),
                    Some(n) => u32::try_from(n).ok().and_then(NonZeroU32::new),
                };
                if max_concurrent.is_none() {
                    issue(
                        issues,
                        format!("{path}.shadow.max_concurrent"),
                        format!(
                            "{} is not a number of concurrent calls",
                            sh.max_concurrent.unwrap_or_default()
                        ),
                        Some(format!(
                            "use a whole number from 1 (default {DEFAULT_SHADOW_CONCURRENCY})"
                        )),
                    );
                }
                max_concurrent.map(|max_concurrent| ShadowConfig {
                    variant: sh.variant.clone(),
                    sample: sh.sample,
                    max_concurrent,
                })
            }
        };
        out.insert(
            name.clone(),
            FunctionConfig {
                name: name.clone(),
                description: f.description.clone(),
                sticky,
                variants,
                shadow,
                timeout,
                first_token_timeout,
                cheapest,
                capture,
            },
        );
    }
    out
}

/// One variant; `None` when a field is unusable (its issue has been recorded).
fn validate_variant(
    v: &RawVariant,
    vpath: &str,
    models: &BTreeMap<String, RawModel>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<VariantConfig> {
    let before = issues.len();
    if v.name.is_empty() {
        issue(
            issues,
            format!("{vpath}.name"),
            "must not be empty".into(),
            Some("e.g. name = \"control\"".into()),
        );
    } else if !is_variant_name(&v.name) {
        issue(
            issues,
            format!("{vpath}.name"),
            format!("`{}` is not a valid variant name", v.name),
            Some("use letters, digits, `.`, `_` and `-` only (it is sent in the x-keel-variant header)".into()),
        );
    }
    if v.prompt.trim().is_empty() {
        issue(
            issues,
            format!("{vpath}.prompt"),
            "must not be empty".into(),
            Some("the name of a prompt in the prompts folder, e.g. \"support/answer\"".into()),
        );
    }
    if !models.contains_key(&v.model) {
        let known: Vec<&str> = models.keys().map(String::as_str).collect();
        let hint = if known.is_empty() {
            "add a [models.NAME] table".to_string()
        } else {
            format!("configured models: {}", known.join(", "))
        };
        issue(
            issues,
            format!("{vpath}.model"),
            format!("model `{}` is not defined", v.model),
            Some(hint),
        );
    }
    let weight = match u32::try_from(v.weight) {
        Ok(w) => w,
        Err(_) => {
            issue(
                issues,
                format!("{vpath}.weight"),
                format!("{} is not a weight", v.weight),
                Some(
                    "use an integer from 0 (override header only) up to 4294967295; weights are relative shares".into(),
                ),
            );
            0
        }
    };
    let prompt_ref = match (&v.prompt_label, v.prompt_version) {
        (Some(_), Some(_)) => {
            issue(
                issues,
                vpath.to_string(),
                "prompt_label and prompt_version are both set".into(),
                Some("keep one: prompt_label follows a label as it moves, prompt_version pins one version".into()),
            );
            None
        }
        (Some(label), None) if label.trim().is_empty() => {
            issue(
                issues,
                format!("{vpath}.prompt_label"),
                "must not be empty".into(),
                Some(format!("e.g. \"{DEFAULT_PROMPT_LABEL}\"")),
            );
            None
        }
        (Some(label), None) => Some(PromptRef::Label(label.clone())),
        (None, Some(version)) => match u32::try_from(version).ok().and_then(NonZeroU32::new) {
            Some(n) => Some(PromptRef::Version(n)),
            None => {
                issue(
                    issues,
                    format!("{vpath}.prompt_version"),
                    format!("{version} is not a prompt version"),
                    Some("versions are numbered from 1; see `keel prompt` for the versions that exist".into()),
                );
                None
            }
        },
        (None, None) => Some(PromptRef::Label(DEFAULT_PROMPT_LABEL.to_string())),
    };
    let params = match &v.params {
        None => Map::new(),
        Some(table) => {
            let mut map = Map::new();
            for (key, value) in table {
                let ppath = format!("{vpath}.params.{key}");
                if let Some(json) = toml_to_json(value, &ppath, issues) {
                    map.insert(key.clone(), json);
                }
            }
            map
        }
    };
    if let Some(chain) = &v.fallbacks {
        super::routing::check_chain(
            &format!("{vpath}.fallbacks"),
            Some(&v.model),
            chain,
            models,
            issues,
        );
    }
    if issues.len() != before {
        return None;
    }
    Some(VariantConfig {
        name: v.name.clone(),
        prompt: v.prompt.clone(),
        prompt_ref: prompt_ref?,
        model: v.model.clone(),
        weight,
        params,
        fallbacks: v.fallbacks.clone(),
    })
}

/// TOML → JSON for parameter overrides. Datetimes become their TOML text; a float that
/// JSON cannot hold (nan, inf) is an issue.
fn toml_to_json(value: &toml::Value, path: &str, issues: &mut Vec<ConfigIssue>) -> Option<Value> {
    Some(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(x) => match serde_json::Number::from_f64(*x) {
            Some(n) => Value::Number(n),
            None => {
                issue(
                    issues,
                    path.to_string(),
                    format!("{x} cannot be sent as JSON"),
                    Some("use a finite number".into()),
                );
                return None;
            }
        },
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(toml_to_json(item, &format!("{path}[{i}]"), issues)?);
            }
            Value::Array(out)
        }
        toml::Value::Table(t) => {
            let mut out = Map::new();
            for (k, item) in t {
                out.insert(
                    k.clone(),
                    toml_to_json(item, &format!("{path}.{k}"), issues)?,
                );
            }
            Value::Object(out)
        }
    })
}
