//! The model inventory: every configured model with where it is served, the versions its
//! provider answered with, its price and its lifecycle, and everything that uses it —
//! functions and variants, online evals, review queues, eval suites, guardrail policies and
//! the tools its prompts declare. One answer to "which prompts, models, providers, tools
//! and safety checks are live right now", built here once for `keel models` and the
//! dashboard's Models page so they cannot disagree.

use std::collections::BTreeMap;

use keel_core::config::online::OnlineTarget;
use keel_core::config::review::ReviewTarget;
use keel_core::config::{Config, ModelConfig, PriceSource};
use keel_core::lifecycle::{format_date, Lifecycle};
use keel_store::model_versions::ModelVersion;
use serde::Serialize;

/// The whole inventory.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// The day lifecycle figures are counted from (UTC).
    pub today: String,
    pub price_table_as_of: String,
    pub lifecycle_table_as_of: String,
    pub models: Vec<ModelEntry>,
    /// Suite files that could not be read (their models are not counted).
    pub suite_problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelEntry {
    pub name: String,
    pub provider: String,
    pub provider_kind: String,
    pub upstream_model: String,
    pub deployments: Vec<DeploymentEntry>,
    pub price: Option<PriceEntry>,
    pub lifecycle: Option<LifecycleEntry>,
    /// `function/variant` pairs served by it.
    pub functions: Vec<String>,
    pub online_evals: Vec<String>,
    pub review_queues: Vec<String>,
    pub suites: Vec<String>,
    /// Scheduled canaries (`[[canaries]]`) that run on it, as `suite every …`.
    pub canaries: Vec<String>,
    pub guardrails: Vec<String>,
    /// Tool names declared by the prompts of the variants it serves (prompts folder).
    pub tools: Vec<String>,
    /// Models it falls back to.
    pub fallbacks: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeploymentEntry {
    /// `provider/upstream_model`, as versions are kept.
    pub deployment: String,
    pub versions: Vec<VersionEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionEntry {
    pub version: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub calls: i64,
    pub first_trace_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PriceEntry {
    pub input_per_mtok_usd: f64,
    pub output_per_mtok_usd: f64,
    pub cached_input_per_mtok_usd: Option<f64>,
    /// `config` or `builtin`.
    pub source: String,
    /// The built-in table's date, when priced from it.
    pub as_of: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LifecycleEntry {
    pub deprecated: Option<String>,
    pub retires: Option<String>,
    pub days_left: Option<i64>,
    /// Retires within 90 days, or has retired.
    pub retiring: bool,
    pub successor: Option<String>,
    /// Where the dates came from.
    pub source: String,
    /// The command that tests the successor, when one is known.
    pub test_command: Option<String>,
    /// The same for one suite: `keel eval compare SUITE --model SUCCESSOR
    /// --baseline-model MODEL` (`SUITE` when no suite runs on the model).
    pub compare_command: Option<String>,
}

/// The lifecycle as `keel models`, `keel check --json` and the page show it.
pub fn lifecycle_entry(
    model: &str,
    l: &Lifecycle,
    suite: Option<&str>,
    today: time::Date,
) -> LifecycleEntry {
    LifecycleEntry {
        deprecated: l.deprecated.map(format_date),
        retires: l.retires.map(format_date),
        days_left: l.days_left(today),
        retiring: l.retiring(today),
        successor: l.successor.clone(),
        source: l.source.describe(),
        test_command: l
            .successor
            .as_ref()
            .map(|_| format!("keel models check-successor {model}")),
        compare_command: l.successor.as_ref().map(|s| {
            format!(
                "keel eval compare {} --model {s} --baseline-model {model}",
                suite.unwrap_or("SUITE")
            )
        }),
    }
}

/// Build the inventory. `versions` from `keel_store::model_versions::versions`;
/// `suites` are (suite, models it runs on) from the evals folder, with `suite_problems`.
pub fn build(
    config: &Config,
    versions: &[ModelVersion],
    suites: &[(String, Vec<String>)],
    suite_problems: Vec<String>,
    today: time::Date,
) -> Inventory {
    let prompt_tools = prompt_tools(config);
    let prices = keel_core::prices::PriceTable::builtin().ok();
    let models = config
        .models
        .values()
        .map(|m| entry(config, m, versions, suites, &prompt_tools, today))
        .collect();
    Inventory {
        today: format_date(today),
        price_table_as_of: prices.as_ref().map(|p| p.as_of.clone()).unwrap_or_default(),
        lifecycle_table_as_of: prices.map(|p| p.lifecycle_as_of).unwrap_or_default(),
        models,
        suite_problems,
    }
}

fn entry(
    config: &Config,
    m: &ModelConfig,
    versions: &[ModelVersion],
    suites: &[(String, Vec<String>)],
    prompt_tools: &BTreeMap<String, Vec<String>>,
    today: time::Date,
) -> ModelEntry {
    let deployments = m
        .deployments
        .iter()
        .map(|d| {
            let key = format!("{}/{}", d.provider, d.upstream_model);
            DeploymentEntry {
                versions: versions_of(versions, &key),
                deployment: key,
            }
        })
        .collect();
    let mut functions = Vec::new();
    let mut tools = Vec::new();
    let mut function_names = Vec::new();
    for f in config.functions.values() {
        for v in f.variants.iter().filter(|v| v.model == m.name) {
            functions.push(format!("{}/{}", f.name, v.name));
            if !function_names.contains(&f.name) {
                function_names.push(f.name.clone());
            }
            tools.extend(prompt_tools.get(&v.prompt).cloned().unwrap_or_default());
        }
    }
    tools.sort();
    tools.dedup();
    let uses = |target_fn: Option<&str>, target_model: Option<&str>| {
        target_model == Some(m.name.as_str())
            || target_fn.is_some_and(|f| function_names.iter().any(|n| n == f))
    };
    let online_evals = config
        .online_evals
        .iter()
        .filter(|o| match &o.target {
            OnlineTarget::Function(f) => uses(Some(f), None),
            OnlineTarget::Model(x) => uses(None, Some(x)),
        })
        .map(|o| o.name.clone())
        .collect();
    let review_queues = config
        .review_queues
        .iter()
        .filter(|q| match &q.target {
            ReviewTarget::Function(f) => uses(Some(f), None),
            ReviewTarget::Model(x) => uses(None, Some(x)),
            ReviewTarget::All => true,
        })
        .map(|q| q.name.clone())
        .collect();
    let guardrails = config
        .guardrails
        .iter()
        .filter(|p| {
            p.default
                || p.models.contains(&m.name)
                || function_names.iter().any(|f| p.functions.contains(f))
        })
        .map(|p| p.name.clone())
        .collect();
    ModelEntry {
        name: m.name.clone(),
        provider: m.provider.clone(),
        provider_kind: config
            .providers
            .get(&m.provider)
            .map(|p| p.kind.name().to_string())
            .unwrap_or_default(),
        upstream_model: m.upstream_model.clone(),
        deployments,
        price: m.price.map(|p| PriceEntry {
            input_per_mtok_usd: p.input_per_mtok.as_dollars(),
            output_per_mtok_usd: p.output_per_mtok.as_dollars(),
            cached_input_per_mtok_usd: p.cached_input_per_mtok.map(|c| c.as_dollars()),
            source: match &m.price_source {
                PriceSource::Config => "config",
                PriceSource::Builtin { .. } => "builtin",
                PriceSource::Unpriced => "unpriced",
            }
            .to_string(),
            as_of: match &m.price_source {
                PriceSource::Builtin { as_of } => Some(as_of.clone()),
                _ => None,
            },
        }),
        lifecycle: m.lifecycle.as_ref().map(|l| {
            let suite = suites
                .iter()
                .find(|(_, ms)| ms.contains(&m.name))
                .map(|(s, _)| s.as_str());
            lifecycle_entry(&m.name, l, suite, today)
        }),
        functions,
        online_evals,
        review_queues,
        suites: suites
            .iter()
            .filter(|(_, ms)| ms.contains(&m.name))
            .map(|(s, _)| s.clone())
            .collect(),
        canaries: config
            .canaries
            .iter()
            .filter(|c| {
                if c.models.is_empty() {
                    suites
                        .iter()
                        .any(|(s, ms)| *s == c.suite && ms.contains(&m.name))
                } else {
                    c.models.contains(&m.name)
                }
            })
            .map(|c| format!("{} every {}", c.suite, humantime::format_duration(c.every)))
            .collect(),
        guardrails,
        tools,
        fallbacks: m.routing.fallbacks.clone(),
    }
}

/// The versions a deployment answered with, whichever configured name called it (a
/// fallback is recorded under the model first asked), oldest first.
fn versions_of(versions: &[ModelVersion], deployment: &str) -> Vec<VersionEntry> {
    let mut out: Vec<VersionEntry> = Vec::new();
    for v in versions.iter().filter(|v| v.deployment == deployment) {
        match out.iter_mut().find(|e| e.version == v.version) {
            Some(e) => {
                if v.first_seen_ms < e.first_seen_ms {
                    e.first_seen_ms = v.first_seen_ms;
                    e.first_trace_id = v.first_trace_id.clone();
                }
                e.last_seen_ms = e.last_seen_ms.max(v.last_seen_ms);
                e.calls += v.calls;
            }
            None => out.push(VersionEntry {
                version: v.version.clone(),
                first_seen_ms: v.first_seen_ms,
                last_seen_ms: v.last_seen_ms,
                calls: v.calls,
                first_trace_id: v.first_trace_id.clone(),
            }),
        }
    }
    out.sort_by_key(|e| e.first_seen_ms);
    out
}

/// Tool names declared by each prompt of the prompts folder (none when it has none).
fn prompt_tools(config: &Config) -> BTreeMap<String, Vec<String>> {
    let Some(dir) = &config.prompts_dir else {
        return BTreeMap::new();
    };
    let check = keel_registry::check_prompts(dir);
    check
        .set
        .prompts
        .iter()
        .map(|(name, p)| {
            let tools = p
                .tools
                .iter()
                .flatten()
                .filter_map(|t| {
                    t.pointer("/function/name")
                        .or_else(|| t.get("name"))
                        .and_then(|n| n.as_str())
                        .map(str::to_string)
                })
                .collect();
            (name.clone(), tools)
        })
        .collect()
}
