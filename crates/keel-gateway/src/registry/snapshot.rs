//! One immutable picture of what every function variant serves: built off the request
//! path from the store's prompt versions and labels (and the functions' split
//! overrides), read by requests lock-free.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderValue;
use keel_core::chat::Tool;
use keel_core::config::{Config, FunctionConfig, PromptRef, VariantConfig};
use keel_core::release::Release;
use keel_registry::{CompiledPrompt, Prompt};
use keel_store::sql::Db;
use serde_json::{json, Map, Value};

use super::params::ParamPatch;

/// A stored prompt version, parsed and compiled once.
#[derive(Debug)]
pub struct LoadedVersion {
    pub compiled: CompiledPrompt,
    pub content_hash: String,
}

/// A variant resolved to what it serves right now.
#[derive(Debug)]
pub struct Deployment {
    pub function: String,
    pub variant: String,
    pub prompt_name: String,
    pub prompt_version: i64,
    pub prompt: Arc<LoadedVersion>,
    /// The configured model the variant calls.
    pub model: String,
    pub params: ParamPatch,
    /// The prompt's tools, sent before any the caller adds.
    pub tools: Option<Vec<Tool>>,
    /// From the prompt's output schema, when the caller sets no `response_format`.
    pub response_format: Option<Value>,
    pub release: Release,
    /// Response header values, made once.
    pub variant_header: HeaderValue,
    pub version_header: HeaderValue,
}

/// Either a deployment, or why the variant cannot serve (shown to the caller as 503).
pub type Slot = Result<Arc<Deployment>, Arc<str>>;

/// Every function's variants, resolved; in config order.
#[derive(Debug, Default)]
pub struct Snapshot {
    functions: HashMap<String, Vec<Slot>>,
    versions: HashMap<(String, i64), Arc<LoadedVersion>>,
    /// For functions with a quality tier: the cheapest qualifying variant, or why none.
    cheapest: HashMap<String, Result<usize, String>>,
    /// Split overrides (`keel function canary`) that fit the config.
    splits: super::splits::Splits,
    /// Stored overrides that do not fit the config, and why (logged by the refresher).
    split_problems: Vec<String>,
    /// Kill switches and budget freezes (`keel switch`, `keel budget freeze`).
    switches: super::switches::Switches,
}

/// Prompts taken from the prompts folder instead of the store, by name — what `keel
/// eval` tests before a change is pushed. Only a variant following the pseudo-label
/// [`FOLDER_LABEL`] serves the folder's content (eval builds such variants; no config
/// can name the label, it is not a valid label name), so a baseline following
/// `production` in the same run still serves the store's version. The folder content
/// gets the version number it was pushed as, or [`UNPUSHED_VERSION`] when it has not
/// been pushed yet (its release still names its content hash).
#[derive(Debug, Default, Clone)]
pub struct PromptOverrides {
    pub prompts: HashMap<String, Prompt>,
}

/// The pseudo-label of "the prompt as it is in the prompts folder".
pub const FOLDER_LABEL: &str = "(folder)";

/// The version number of a prompt taken from the folder that was never pushed.
pub const UNPUSHED_VERSION: i64 = 0;

impl Snapshot {
    /// A snapshot in which no variant can serve (before the first build).
    pub fn empty() -> Snapshot {
        Snapshot::default()
    }

    /// The slot of variant `index` of `function`.
    pub fn slot(&self, function: &str, index: usize) -> Option<&Slot> {
        self.functions.get(function).and_then(|v| v.get(index))
    }

    /// Every deployment that can serve.
    pub fn deployments(&self) -> impl Iterator<Item = &Arc<Deployment>> {
        self.functions
            .values()
            .flatten()
            .filter_map(|s| s.as_ref().ok())
    }

    /// Every variant that cannot serve, as `(function, variant index, reason)`.
    pub fn problems(&self) -> Vec<(String, usize, Arc<str>)> {
        let mut out = Vec::new();
        for (f, slots) in &self.functions {
            for (i, s) in slots.iter().enumerate() {
                if let Err(why) = s {
                    out.push((f.clone(), i, why.clone()));
                }
            }
        }
        out.sort();
        out
    }

    /// Resolve every variant of every configured function against the store, reusing
    /// the prompt versions `previous` already compiled (versions are immutable).
    pub fn build(conn: Db<'_>, config: &Config, previous: &Snapshot) -> rusqlite::Result<Snapshot> {
        Snapshot::build_with(conn, config, previous, &PromptOverrides::default())
    }

    /// [`Snapshot::build`], with some prompts taken from the folder.
    pub fn build_with(
        conn: Db<'_>,
        config: &Config,
        previous: &Snapshot,
        overrides: &PromptOverrides,
    ) -> rusqlite::Result<Snapshot> {
        let labels: HashMap<(String, String), i64> = keel_store::all_labels(conn)?
            .into_iter()
            .map(|l| ((l.name, l.label), l.version))
            .collect();
        let mut next = Snapshot::default();
        (next.splits, next.split_problems) = super::splits::load(conn, config)?;
        next.switches = super::switches::load(conn, config)?;
        for f in config.functions.values() {
            let mut slots = Vec::with_capacity(f.variants.len());
            for v in &f.variants {
                let ctx = Ctx {
                    conn,
                    config,
                    previous,
                    labels: &labels,
                    overrides,
                };
                let slot = match next.resolve(&ctx, f, v)? {
                    Ok(d) => Ok(Arc::new(d)),
                    Err(why) => Err(Arc::from(why)),
                };
                slots.push(slot);
            }
            if let Some(tier) = &f.cheapest {
                let pick = cheapest_variant(conn, config, f, tier, &slots)?;
                next.cheapest.insert(f.name.clone(), pick);
            }
            next.functions.insert(f.name.clone(), slots);
        }
        Ok(next)
    }

    /// The override weights of `function` (one per configured variant, in config
    /// order), when `keel function canary` moved its split.
    pub fn split(&self, function: &str) -> Option<&[u32]> {
        self.splits.get(function).map(|w| &w[..])
    }

    /// What is switched off or frozen now.
    pub fn switches(&self) -> &super::switches::Switches {
        &self.switches
    }

    /// Functions whose served split differs from `previous`'s, sorted.
    pub fn changed_splits(&self, previous: &Snapshot) -> Vec<String> {
        let mut out: Vec<String> = self
            .functions
            .keys()
            .filter(|f| self.split(f) != previous.split(f))
            .cloned()
            .collect();
        out.sort();
        out
    }

    /// Stored split overrides that cannot apply to the current config, and why.
    pub fn split_problems(&self) -> &[String] {
        &self.split_problems
    }

    /// The cheapest variant of `function` that meets its quality tier (`None` when the
    /// function has no tier; `Err` says why no variant qualifies).
    pub fn cheapest(&self, function: &str) -> Option<&Result<usize, String>> {
        self.cheapest.get(function)
    }

    /// One variant: `Ok(Err(reason))` when it cannot serve, `Err` only for store errors.
    fn resolve(
        &mut self,
        ctx: &Ctx<'_>,
        f: &FunctionConfig,
        v: &VariantConfig,
    ) -> rusqlite::Result<Result<Deployment, String>> {
        let Ctx {
            conn,
            config,
            previous,
            labels,
            overrides,
        } = *ctx;
        let name = &v.prompt;
        let context = format!("function `{}` variant `{}`", f.name, v.name);
        if let PromptRef::Label(label) = &v.prompt_ref {
            if label == FOLDER_LABEL {
                let Some(prompt) = overrides.prompts.get(name) else {
                    return Ok(Err(format!(
                        "{context}: prompt `{name}` is not in the prompts folder"
                    )));
                };
                let hash = prompt.content_hash();
                let version =
                    keel_store::version_by_hash(conn, name, &hash)?.unwrap_or(UNPUSHED_VERSION);
                let loaded = match CompiledPrompt::new(prompt.clone()) {
                    Ok(compiled) => Arc::new(LoadedVersion {
                        compiled,
                        content_hash: hash,
                    }),
                    Err(e) => {
                        return Ok(Err(format!(
                            "{context}: prompt `{name}` in the folder: {e}"
                        )))
                    }
                };
                return Ok(deployment(config, f, v, version, loaded)
                    .map_err(|why| format!("{context}: {why}")));
            }
        }
        let version = match &v.prompt_ref {
            PromptRef::Version(n) => i64::from(n.get()),
            PromptRef::Label(label) => match labels.get(&(name.clone(), label.clone())) {
                Some(n) => *n,
                None => {
                    return Ok(Err(format!(
                        "{context}: prompt `{name}` has no `{label}` label — run `keel prompt push`, then `keel prompt label {name} VERSION {label}`"
                    )))
                }
            },
        };
        let key = (name.clone(), version);
        let loaded = match self
            .versions
            .get(&key)
            .or_else(|| previous.versions.get(&key))
        {
            Some(l) => l.clone(),
            None => match load_version(conn, name, version)? {
                Ok(l) => Arc::new(l),
                Err(why) => return Ok(Err(format!("{context}: {why}"))),
            },
        };
        self.versions.insert(key, loaded.clone());
        Ok(deployment(config, f, v, version, loaded).map_err(|why| format!("{context}: {why}")))
    }
}

/// Among the variants that can serve and whose release's latest eval run of the tier's
/// suite passed at least `min_pass_rate` of its cases, the one on the cheapest model
/// (input + output price per million tokens; unpriced models never qualify, their cost
/// is unknown). Ties go to the earlier variant.
fn cheapest_variant(
    conn: Db<'_>,
    config: &Config,
    f: &FunctionConfig,
    tier: &keel_core::config::function::QualityTier,
    slots: &[Slot],
) -> rusqlite::Result<Result<usize, String>> {
    let mut best: Option<(usize, i128)> = None;
    let mut seen = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        let Ok(d) = slot else { continue };
        let rate = keel_store::evals::latest_candidate_result(conn, &d.release.id, &tier.suite)
            .map_err(|e| match e {
                keel_store::StoreError::Sqlite(e) => e,
                other => rusqlite::Error::ToSqlConversionFailure(Box::new(other)),
            })?;
        let Some((passed, cases)) = rate.filter(|(_, c)| *c > 0) else {
            seen.push(format!("{}: no eval run of `{}`", d.variant, tier.suite));
            continue;
        };
        let pass_rate = passed as f64 / cases as f64;
        if pass_rate < tier.min_pass_rate {
            seen.push(format!(
                "{}: pass rate {:.1}%",
                d.variant,
                pass_rate * 100.0
            ));
            continue;
        }
        let Some(price) = config.models.get(&d.model).and_then(|m| m.price) else {
            seen.push(format!("{}: model `{}` is unpriced", d.variant, d.model));
            continue;
        };
        let cost = i128::from(price.input_per_mtok.0) + i128::from(price.output_per_mtok.0);
        if best.is_none_or(|(_, c)| cost < c) {
            best = Some((i, cost));
        }
    }
    Ok(best.map(|(i, _)| i).ok_or_else(|| {
        format!(
            "no variant of `{}` meets the tier ({} ≥ {:.0}%): {}",
            f.name,
            tier.suite,
            tier.min_pass_rate * 100.0,
            seen.join("; ")
        )
    }))
}

/// What resolving a variant reads.
struct Ctx<'a> {
    conn: Db<'a>,
    config: &'a Config,
    previous: &'a Snapshot,
    labels: &'a HashMap<(String, String), i64>,
    overrides: &'a PromptOverrides,
}

fn load_version(
    conn: Db<'_>,
    name: &str,
    version: i64,
) -> rusqlite::Result<Result<LoadedVersion, String>> {
    let Some(stored) = keel_store::get_version(conn, name, version)? else {
        return Ok(Err(format!(
            "prompt `{name}` has no version {version} in the store — run `keel prompt push` (`keel prompt history {name}` lists its versions)"
        )));
    };
    let parsed = serde_json::from_str::<Value>(&stored.content_json)
        .map_err(|e| e.to_string())
        .and_then(|json| Prompt::from_json(name, &json).map_err(|e| e.to_string()))
        .and_then(|p| CompiledPrompt::new(p).map_err(|e| e.to_string()));
    Ok(parsed
        .map(|compiled| LoadedVersion {
            compiled,
            content_hash: stored.content_hash,
        })
        .map_err(|e| format!("prompt `{name}` v{version} cannot be served: {e}")))
}

pub(crate) fn deployment(
    config: &Config,
    f: &FunctionConfig,
    v: &VariantConfig,
    version: i64,
    loaded: Arc<LoadedVersion>,
) -> Result<Deployment, String> {
    let prompt = loaded.compiled.prompt();
    let Some(model) = config.models.get(&v.model) else {
        return Err(format!("model `{}` is not configured", v.model));
    };
    let mut params: Map<String, Value> = prompt.params.clone();
    for (k, val) in &v.params {
        params.insert(k.clone(), val.clone());
    }
    let patch = ParamPatch::new(&params)?;
    let tools = match &prompt.tools {
        None => None,
        Some(t) => Some(
            serde_json::from_value::<Vec<Tool>>(Value::Array(t.clone())).map_err(|e| {
                format!(
                    "prompt `{}` v{version}: [[tools]] are not OpenAI tool definitions ({e})",
                    v.prompt
                )
            })?,
        ),
    };
    let response_format = prompt.output_schema.as_ref().map(|schema| {
        json!({"type": "json_schema", "json_schema": {"name": schema_name(&v.prompt), "schema": schema}})
    });
    let release = Release::new(
        &f.name,
        &v.name,
        &v.prompt,
        version,
        &loaded.content_hash,
        &v.model,
        &model.provider,
        &model.upstream_model,
        params,
        prompt.tools.clone(),
    );
    let header = |s: &str| HeaderValue::from_str(s).map_err(|e| e.to_string());
    Ok(Deployment {
        function: f.name.clone(),
        variant: v.name.clone(),
        prompt_name: v.prompt.clone(),
        prompt_version: version,
        variant_header: header(&v.name)?,
        version_header: header(&version.to_string())?,
        prompt: loaded,
        model: v.model.clone(),
        params: patch,
        tools,
        response_format,
        release,
    })
}

/// OpenAI's `json_schema.name`: `[A-Za-z0-9_-]{1,64}`.
fn schema_name(prompt: &str) -> String {
    let s: String = prompt
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() {
        "output".into()
    } else {
        s
    }
}
