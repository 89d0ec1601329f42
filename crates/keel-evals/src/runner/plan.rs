//! From a suite and the command line to what runs: the arms (candidate and, optionally,
//! baseline), each a function variant or a model, and the config they run under.
//!
//! A candidate built on a prompt renders it **from the prompts folder** (what a pull
//! request changes) unless the suite pins a label or version; a baseline such as
//! `--baseline production` renders the stored version that label points at. Both run as
//! synthetic, weight-0 variants of the function (or of a function made for the suite),
//! so they take exactly the live pipeline.

use std::collections::HashMap;
use std::num::NonZeroU32;

use keel_core::config::{Config, FunctionConfig, PromptRef, Sticky, VariantConfig};
use keel_gateway::registry::{PromptOverrides, FOLDER_LABEL};

use crate::suite::{Suite, Target};

/// What the command line adds to the suite.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--variant`: the function variant to test (default: the suite's).
    pub variant: Option<String>,
    /// `--baseline`: a variant name, a prompt label, or `vN`.
    pub baseline: Option<String>,
    /// `--model` / `--baseline-model` (`keel eval compare`): the same target on two models.
    pub model: Option<String>,
    pub baseline_model: Option<String>,
    /// Use the variant's own prompt label/version from the store, not the folder.
    pub from_store: bool,
}

/// How one arm is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArmCall {
    /// `model = function`, `x-keel-variant: variant`.
    Variant { function: String, variant: String },
    /// A plain model call.
    Model { model: String },
}

#[derive(Debug, Clone)]
pub struct Arm {
    /// `candidate` or `baseline`.
    pub role: &'static str,
    /// For people: `control (prompts folder)`, `production`, `gpt-4o`.
    pub label: String,
    pub call: ArmCall,
}

/// The prepared run: the config to run under, the folder prompts and the arms.
pub struct Plan {
    pub config: Config,
    pub overrides: PromptOverrides,
    pub candidate: Arm,
    pub baseline: Option<Arm>,
}

/// The function made for a `prompt` target.
pub fn suite_function(suite: &Suite) -> String {
    format!("eval:{}", suite.name)
}

fn parse_ref(s: &str) -> PromptRef {
    s.strip_prefix('v')
        .and_then(|n| n.parse::<u32>().ok())
        .and_then(NonZeroU32::new)
        .map_or_else(|| PromptRef::Label(s.to_string()), PromptRef::Version)
}

fn describe(r: &PromptRef) -> String {
    match r {
        PromptRef::Label(l) if l == FOLDER_LABEL => "prompts folder".into(),
        PromptRef::Label(l) => format!("label {l}"),
        PromptRef::Version(n) => format!("v{n}"),
    }
}

/// Build the plan; errors name what is missing and what exists.
pub fn plan(
    config: &Config,
    folder: &HashMap<String, keel_registry::Prompt>,
    suite: &Suite,
    opts: &RunOptions,
) -> Result<Plan, String> {
    let mut config = config.clone();
    let overrides = PromptOverrides {
        prompts: folder.clone(),
    };
    let has_model = |m: &str| -> Result<(), String> {
        if config.models.contains_key(m) {
            Ok(())
        } else {
            Err(format!(
                "no model `{m}` in the config; configured: {}",
                config.models.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        }
    };
    for m in [&opts.model, &opts.baseline_model].into_iter().flatten() {
        has_model(m)?;
    }
    // The base variant every arm is derived from, and the function it belongs to.
    let (function, base) = match &suite.target {
        Target::Model { model } => {
            let model = opts.model.clone().unwrap_or_else(|| model.clone());
            has_model(&model)?;
            if opts.baseline.is_some() {
                return Err("a model target has no prompt to baseline; use `keel eval compare --model NEW --baseline-model OLD`".into());
            }
            return Ok(Plan {
                candidate: Arm {
                    role: "candidate",
                    label: model.clone(),
                    call: ArmCall::Model { model },
                },
                baseline: opts.baseline_model.clone().map(|m| Arm {
                    role: "baseline",
                    label: m.clone(),
                    call: ArmCall::Model { model: m },
                }),
                config,
                overrides,
            });
        }
        Target::Function { function, variant } => {
            let Some(f) = config.functions.get(function) else {
                return Err(format!(
                    "no function `{function}` in the config; configured: {}",
                    config
                        .functions
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            let Some(name) = opts.variant.clone().or_else(|| variant.clone()) else {
                return Err(format!(
                    "name the variant to test: `variant = \"...\"` in [target] or `--variant`; `{function}` has: {}",
                    names(f)
                ));
            };
            let Some(v) = f.variant(&name) else {
                return Err(format!(
                    "function `{function}` has no variant `{name}`; its variants are: {}",
                    names(f)
                ));
            };
            (function.clone(), v.clone())
        }
        Target::Prompt {
            prompt,
            label,
            version,
            model,
            params,
        } => {
            has_model(model)?;
            let prompt_ref = match (label, version.and_then(NonZeroU32::new)) {
                (_, Some(n)) => PromptRef::Version(n),
                (Some(l), None) => PromptRef::Label(l.clone()),
                (None, None) => PromptRef::Label(FOLDER_LABEL.into()),
            };
            let name = suite_function(suite);
            let base = VariantConfig {
                name: "target".into(),
                prompt: prompt.clone(),
                prompt_ref,
                model: model.clone(),
                weight: 0,
                params: params.clone(),
                fallbacks: None,
            };
            config.functions.insert(
                name.clone(),
                FunctionConfig {
                    name: name.clone(),
                    description: suite.description.clone(),
                    sticky: Sticky::None,
                    variants: vec![],
                    shadow: None,
                    timeout: None,
                    first_token_timeout: None,
                    cheapest: None,
                    capture: None,
                },
            );
            (name, base)
        }
    };
    let f_prompt_in_folder = folder.contains_key(&base.prompt);
    let mut candidate = base.clone();
    let target_is_variant = matches!(suite.target, Target::Function { .. });
    if !(opts.from_store || matches!(candidate.prompt_ref, PromptRef::Version(_))) {
        if matches!(suite.target, Target::Function { .. }) && !f_prompt_in_folder {
            return Err(format!(
                "prompt `{}` of variant `{}` is not in the prompts folder; run from the project that holds it, or pass --from-store",
                base.prompt, base.name
            ));
        }
        if target_is_variant
            || matches!(&candidate.prompt_ref, PromptRef::Label(l) if l == FOLDER_LABEL)
        {
            candidate.prompt_ref = PromptRef::Label(FOLDER_LABEL.into());
        }
    }
    if let Some(m) = &opts.model {
        candidate.model.clone_from(m);
    }
    candidate.name = format!("{}@candidate", base.name);
    candidate.weight = 0;
    let cand_label = format!(
        "{} ({}, {})",
        base.name,
        describe(&candidate.prompt_ref),
        candidate.model
    );
    let baseline = match (&opts.baseline, &opts.baseline_model) {
        (None, None) => None,
        (b, m) => {
            let f = config.functions.get(&function);
            let mut v = match b.as_deref().and_then(|b| f.and_then(|f| f.variant(b))) {
                Some(other) if target_is_variant => other.clone(),
                _ => {
                    let mut v = base.clone();
                    if let Some(b) = b {
                        v.prompt_ref = parse_ref(b);
                    } else {
                        v.prompt_ref = candidate.prompt_ref.clone();
                    }
                    v
                }
            };
            if let Some(m) = m {
                v.model.clone_from(m);
            }
            let label = format!("{} ({}, {})", v.name, describe(&v.prompt_ref), v.model);
            v.name = format!("{}@baseline", base.name);
            v.weight = 0;
            Some((v, label))
        }
    };
    let Some(f) = config.functions.get_mut(&function) else {
        return Err(format!("no function `{function}`"));
    };
    f.variants.push(candidate.clone());
    let baseline_arm = baseline.map(|(v, label)| {
        let arm = Arm {
            role: "baseline",
            label,
            call: ArmCall::Variant {
                function: function.clone(),
                variant: v.name.clone(),
            },
        };
        f.variants.push(v);
        arm
    });
    // A suite function needs a variant with weight to be a valid split; eval always
    // names its variant, so weight never decides here.
    Ok(Plan {
        candidate: Arm {
            role: "candidate",
            label: cand_label,
            call: ArmCall::Variant {
                function,
                variant: candidate.name,
            },
        },
        baseline: baseline_arm,
        config,
        overrides,
    })
}

fn names(f: &FunctionConfig) -> String {
    f.variants
        .iter()
        .map(|v| v.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
