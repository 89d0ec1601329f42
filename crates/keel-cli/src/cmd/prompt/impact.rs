//! `keel prompt impact` and the "Token impact" paragraph of `keel prompt diff`: what a
//! prompt change does to input tokens per call, and what that costs per month at the
//! prompt's recent traffic — so a 200-token addition shows up as dollars before it merges.
//!
//! Tokens come from `keel_registry::tokens` (both versions rendered with the same recorded
//! variables). Traffic is the window's traces of the prompt (any version), by function,
//! variant and model; each group is priced by its configured model (the model requested,
//! else the function variant's model), else the built-in table by upstream model, else it
//! is *unpriced* and left out of the total — never counted as $0.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use keel_core::config::Config;
use keel_core::money::Nanos;
use keel_core::prices::PriceTable;
use keel_registry::{Encoding, Prompt, RenderedPair, TokenDelta};
use keel_store::sql::Db;
use keel_store::PromptVersion;
use serde_json::{json, Value};

use crate::since::{format_ms, now_ms, parse_since};
use crate::ConfigArg;

mod report;
mod traffic;
pub use report::{paragraph, to_json};
use traffic::{recorded_variables, traffic, Group};

/// A month, for the projection.
pub const MONTH_DAYS: u32 = 30;
const DAY_MS: i64 = 86_400_000;

#[derive(clap::Args)]
pub struct ImpactArgs {
    #[command(flatten)]
    config: ConfigArg,
    name: String,
    /// The candidate: a version number (or a label). Default: the prompt as it is in the
    /// prompts folder (the working tree), pushed or not.
    #[arg(long)]
    version: Option<String>,
    /// The baseline: a label or version (default: the `production` label, else the
    /// latest other version).
    #[arg(long)]
    against: Option<String>,
    /// The traffic window the projection is based on.
    #[arg(long, default_value = "30d")]
    since: String,
    #[arg(long)]
    json: bool,
}

/// One group of traffic and what the change costs it per month.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRow {
    pub function: Option<String>,
    pub upstream_model: Option<String>,
    pub calls: u64,
    /// `calls` scaled to [`MONTH_DAYS`].
    pub monthly_calls: f64,
    pub encoding: Encoding,
    pub delta_tokens: f64,
    /// Input price per million tokens; `None` = unpriced.
    pub input_per_mtok: Option<Nanos>,
    pub price_source: String,
    pub monthly_change: Option<Nanos>,
}

/// A prompt change's token and cost impact.
#[derive(Debug, Clone)]
pub struct Impact {
    pub name: String,
    pub baseline: i64,
    pub candidate: i64,
    pub pair: RenderedPair,
    /// One per encoding the traffic (or, without traffic, the config) uses.
    pub tokens: Vec<TokenDelta>,
    pub since_ms: i64,
    pub until_ms: i64,
    /// Whole days from the first call in the window to its end (0 without traffic).
    pub observed_days: u32,
    pub rows: Vec<ModelRow>,
}

impl Impact {
    pub fn calls(&self) -> u64 {
        self.rows.iter().map(|r| r.calls).sum()
    }

    pub fn unpriced_calls(&self) -> u64 {
        self.rows
            .iter()
            .filter(|r| r.monthly_change.is_none())
            .map(|r| r.calls)
            .sum()
    }

    /// The priced rows' monthly change (`None` when no row is priced).
    pub fn total(&self) -> Option<Nanos> {
        let priced: Vec<Nanos> = self.rows.iter().filter_map(|r| r.monthly_change).collect();
        (!priced.is_empty()).then(|| priced.into_iter().sum())
    }
}

/// Monthly cost change of `delta_tokens` more input tokens per call over `monthly_calls`.
pub fn monthly_change(delta_tokens: f64, monthly_calls: f64, input_per_mtok: Nanos) -> Nanos {
    let nanos = delta_tokens * monthly_calls * input_per_mtok.0 as f64 / 1_000_000.0;
    Nanos(nanos.round() as i64)
}

/// `+$0.09`, `-$1.50`, `$0.00`.
pub fn signed_dollars(n: Nanos) -> String {
    let sign = match n.0.signum() {
        1 => "+",
        -1 => "-",
        _ => "",
    };
    format!("{sign}${}", Nanos(n.0.saturating_abs()).to_dollar_string())
}

fn signed(x: f64) -> String {
    format!("{x:+.1}")
}

/// Rows are keyed by function, upstream model, input price and its source.
type RowKey = (Option<String>, Option<String>, Option<Nanos>, String);

/// Measure `old` → `new` and project it onto the traffic of `name` in `[since_ms, until_ms)`.
pub fn compute(
    conn: Db<'_>,
    config: &Config,
    name: &str,
    (baseline, old): (i64, &Prompt),
    (candidate, new): (i64, &Prompt),
    since_ms: i64,
    until_ms: i64,
) -> Result<Impact> {
    let recorded = recorded_variables(conn, name)?;
    let pair = keel_registry::render_pair(old, new, &recorded)
        .map_err(|e| anyhow!("cannot render `{name}` for the token count: {e}"))?;
    let table = PriceTable::builtin().ok();
    let groups = traffic(conn, name, since_ms, until_ms)?;
    let first_ms = groups.iter().map(|g| g.first_ms).min();
    let window_days = days_ceil(until_ms - since_ms);
    let observed_days = first_ms.map_or(0, |f| days_ceil(until_ms - f).min(window_days));
    let scale = f64::from(MONTH_DAYS) / f64::from(observed_days.max(1));

    let mut deltas: BTreeMap<Encoding, TokenDelta> = BTreeMap::new();
    let mut merged: BTreeMap<RowKey, u64> = BTreeMap::new();
    for g in &groups {
        *merged.entry(price(config, table.as_ref(), g)).or_default() += g.calls;
    }
    let mut rows = Vec::new();
    for ((function, upstream_model, input_per_mtok, price_source), calls) in merged {
        let encoding = Encoding::for_model(upstream_model.as_deref().unwrap_or(""));
        let delta_tokens = deltas
            .entry(encoding)
            .or_insert_with(|| pair.measure(encoding))
            .delta();
        let monthly_calls = calls as f64 * scale;
        rows.push(ModelRow {
            monthly_change: input_per_mtok.map(|p| monthly_change(delta_tokens, monthly_calls, p)),
            function,
            upstream_model,
            calls,
            monthly_calls,
            encoding,
            delta_tokens,
            input_per_mtok,
            price_source,
        });
    }
    if deltas.is_empty() {
        // No traffic: count with what the config would send this prompt to.
        for e in configured_encodings(config, name) {
            deltas.insert(e, pair.measure(e));
        }
    }
    Ok(Impact {
        name: name.to_string(),
        baseline,
        candidate,
        pair,
        tokens: deltas.into_values().collect(),
        since_ms,
        until_ms,
        observed_days,
        rows,
    })
}

fn days_ceil(ms: i64) -> u32 {
    u32::try_from((ms.max(1) + DAY_MS - 1) / DAY_MS).unwrap_or(u32::MAX)
}

/// The configured model a group of calls went to: the model requested, else the model of
/// the function variant that served it.
fn configured_model<'a>(
    config: &'a Config,
    g: &Group,
) -> Option<&'a keel_core::config::ModelConfig> {
    if let Some(m) = g
        .model_requested
        .as_ref()
        .and_then(|m| config.models.get(m))
    {
        return Some(m);
    }
    let f = config.functions.get(g.function.as_ref()?)?;
    config.models.get(&f.variant(g.variant.as_ref()?)?.model)
}

/// Where a group of calls went (function, upstream model) and its input price and source.
fn price(config: &Config, table: Option<&PriceTable>, g: &Group) -> RowKey {
    let model = configured_model(config, g);
    let upstream = g
        .upstream_model
        .clone()
        .or_else(|| model.map(|m| m.upstream_model.clone()));
    let (price, source) = match model {
        Some(m) => (m.price, format!("models.{}", m.name)),
        None => (
            upstream.as_deref().and_then(|u| table?.lookup(u)),
            "built-in table".to_string(),
        ),
    };
    let price = price.map(|p| p.input_per_mtok);
    let source = if price.is_some() {
        source
    } else {
        "unpriced".into()
    };
    (g.function.clone(), upstream, price, source)
}

/// Encodings of the models the config's functions use for `prompt` (estimate if none).
fn configured_encodings(config: &Config, prompt: &str) -> Vec<Encoding> {
    let mut out: Vec<Encoding> = config
        .functions
        .values()
        .flat_map(|f| &f.variants)
        .filter(|v| v.prompt == prompt)
        .filter_map(|v| config.models.get(&v.model))
        .map(|m| Encoding::for_model(&m.upstream_model))
        .collect();
    out.sort();
    out.dedup();
    if out.is_empty() {
        out.push(Encoding::Estimate);
    }
    out
}

/// A version number (`3`, `v3`) or a label → the stored version, or a message that
/// names the fix.
pub(super) fn resolve(
    conn: Db<'_>,
    name: &str,
    which: &str,
) -> Result<std::result::Result<PromptVersion, String>> {
    if keel_store::latest_version(conn, name)?.is_none() {
        return Ok(Err(format!(
            "no prompt `{name}` in the store — `keel prompt list` shows what is; `keel prompt push` stores the prompts folder"
        )));
    }
    let version = match super::parse_version(which) {
        Some(v) => v,
        None => match keel_store::label_version(conn, name, which)? {
            Some(v) => v,
            None => return Ok(Err(format!(
                "prompt `{name}` has no label `{which}` — `keel prompt history {name}` shows its labels; `keel prompt label {name} VERSION {which}` sets it"
            ))),
        },
    };
    Ok(keel_store::get_version(conn, name, version)?.ok_or_else(|| {
        format!("prompt `{name}` has no version {version} — `keel prompt history {name}` lists its versions")
    }))
}

/// The `production` label, else the newest version other than `candidate`.
fn default_baseline(
    conn: Db<'_>,
    name: &str,
    candidate: i64,
) -> Result<std::result::Result<PromptVersion, String>> {
    if keel_store::label_version(conn, name, "production")?.is_some() {
        return resolve(conn, name, "production");
    }
    Ok(keel_store::versions(conn, name)?
        .into_iter()
        .find(|v| v.version != candidate)
        .ok_or_else(|| {
            format!("prompt `{name}` has only v{candidate} and no `production` label — nothing to compare against; push another version or pass --against VERSION")
        }))
}

/// The prompt as it is in the prompts folder (what a pull request changes), and the
/// version that content was pushed as (0 when it was not).
fn working_tree(
    config: &Config,
    conn: Db<'_>,
    name: &str,
) -> Result<std::result::Result<(i64, Prompt), String>> {
    let dir = super::prompts_dir(config)?;
    let set = match keel_registry::load_prompts(&dir) {
        Ok(set) => set,
        Err(issues) => {
            let lines: Vec<String> = issues.iter().map(ToString::to_string).collect();
            return Ok(Err(format!(
                "the prompts folder has errors (run `keel check`):\n{}",
                lines.join("\n")
            )));
        }
    };
    let Some(prompt) = set.prompts.get(name) else {
        let names: Vec<&str> = set.prompts.keys().map(String::as_str).collect();
        return Ok(Err(format!(
            "no prompt `{name}` in the prompts folder {} (it has: {}); pass --version N to measure a stored version",
            dir.display(),
            names.join(", ")
        )));
    };
    let version = keel_store::version_by_hash(conn, name, &prompt.content_hash())?.unwrap_or(0);
    Ok(Ok((version, prompt.clone())))
}

pub(super) fn content(v: &PromptVersion) -> Result<Prompt> {
    let value: Value = serde_json::from_str(&v.content_json)?;
    Prompt::from_json(&v.name, &value).map_err(|e| anyhow!("{e}"))
}

/// The impact of `a` → `b` at the last 30 days' traffic (the "Token impact" of a diff).
pub(super) fn for_diff(
    conn: Db<'_>,
    config: &Config,
    a: &PromptVersion,
    b: &PromptVersion,
) -> Result<Impact> {
    let until = now_ms();
    let since = until - i64::from(MONTH_DAYS) * DAY_MS;
    let (old, new) = (content(a)?, content(b)?);
    compute(
        conn,
        config,
        &a.name,
        (a.version, &old),
        (b.version, &new),
        since,
        until,
    )
}

pub fn run(a: ImpactArgs) -> Result<ExitCode> {
    let config = crate::cmd::load_config(&a.config)?;
    let conn = crate::cmd::open_store(&config)?.1;
    let since_ms = parse_since(&a.since)?;
    let refuse = |message: String| {
        if a.json {
            println!("{}", json!({"ok": false, "error": message}));
        } else {
            eprintln!("error: {message}");
        }
        Ok(ExitCode::from(1))
    };
    let (candidate, new) = match &a.version {
        Some(which) => match resolve(conn.db(), &a.name, which)? {
            Ok(v) => {
                let new = content(&v)?;
                (v.version, new)
            }
            Err(m) => return refuse(m),
        },
        None => match working_tree(&config, conn.db(), &a.name)? {
            Ok(found) => found,
            Err(m) => return refuse(m),
        },
    };
    if keel_store::latest_version(&conn, &a.name)?.is_none() && a.against.is_none() {
        return refuse(format!(
            "prompt `{}` has no version in the store to compare against — `keel prompt push` stores the baseline (or run this where the store has `production`)",
            a.name
        ));
    }
    let baseline = match &a.against {
        Some(which) => resolve(conn.db(), &a.name, which)?,
        None => default_baseline(conn.db(), &a.name, candidate)?,
    };
    let baseline = match baseline {
        Ok(v) => v,
        Err(m) => return refuse(m),
    };
    let old = content(&baseline)?;
    let impact = compute(
        conn.db(),
        &config,
        &a.name,
        (baseline.version, &old),
        (candidate, &new),
        since_ms,
        now_ms(),
    )?;
    if a.json {
        let mut v = report::to_json(&impact);
        if let Some(obj) = v.as_object_mut() {
            let source = if a.version.is_some() {
                "store"
            } else {
                "prompts_folder"
            };
            obj.insert("candidate_source".into(), json!(source));
        }
        println!("{v}");
    } else {
        print!("{}", report::full(&impact, &format_ms(since_ms)));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[path = "impact_tests.rs"]
mod tests;
