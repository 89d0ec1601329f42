//! A suite file (`evals/<suite>.toml`): what to test, on which locked dataset, with which
//! assertions, and the gate a change must pass.
//!
//! ```toml
//! description = "Support answers stay on topic"
//!
//! [target]                      # one of: a function variant, a prompt on a model, a model
//! function = "support-answer"
//! variant = "control"           # default for `--variant`
//!
//! [dataset]
//! path = "support.jsonl"        # relative to this file
//! hash = "sha256:…"             # the lock, written by `keel eval lock`
//!
//! [[assert]]                    # applied to every case (cases add their own)
//! type = "icontains"
//! value = "keel"
//!
//! [judge]
//! model = "mock-1"              # for llm-rubric, factuality, groundedness
//!
//! [run]
//! concurrency = 4
//! repeat = 1
//! max_retries = 4               # per case, on 429 / 5xx / timeouts
//!
//! [gate]
//! min_pass_rate = 0.8
//! ```
//!
//! Raw structs reject unknown keys; [`load_suite`] validates them into a [`Suite`] and
//! every problem names the file, the key and the fix.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::assert::{Assertion, AssertionSpec};
use crate::gate::GateRules;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    description: Option<String>,
    target: RawTarget,
    dataset: RawDataset,
    #[serde(default, rename = "assert")]
    assertions: Vec<AssertionSpec>,
    judge: Option<RawJudge>,
    #[serde(default)]
    run: RawRun,
    #[serde(default)]
    gate: GateRules,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    function: Option<String>,
    variant: Option<String>,
    prompt: Option<String>,
    prompt_label: Option<String>,
    prompt_version: Option<u32>,
    model: Option<String>,
    params: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    path: String,
    hash: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJudge {
    model: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    concurrency: Option<usize>,
    repeat: Option<u32>,
    max_retries: Option<u32>,
}

/// What a suite runs against.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A variant of a configured function (`--variant` picks another).
    Function {
        function: String,
        variant: Option<String>,
    },
    /// A prompt (from the prompts folder, or a stored label/version) on a model.
    Prompt {
        prompt: String,
        /// `None`: the prompt as it is in the prompts folder.
        label: Option<String>,
        version: Option<u32>,
        model: String,
        params: serde_json::Map<String, serde_json::Value>,
    },
    /// A configured model, with the case's `input` as the conversation.
    Model { model: String },
}

/// A validated suite.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The file name without `.toml`.
    pub name: String,
    pub file: PathBuf,
    pub description: Option<String>,
    pub target: Target,
    pub dataset_path: PathBuf,
    /// The locked hash (`sha256:…`), if the suite has been locked.
    pub dataset_hash: Option<String>,
    pub assertions: Vec<Assertion>,
    pub judge_model: Option<String>,
    pub concurrency: usize,
    pub repeat: u32,
    pub max_retries: u32,
    pub gate: GateRules,
}

/// Where a suite file is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {path}{sep}{message}{hint}", sep = if path.is_empty() { "" } else { ": " }, hint = hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
pub struct SuiteError {
    pub file: String,
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

/// Find a suite by name (`support`) in `evals_dir`, or by path (`evals/support.toml`).
pub fn suite_path(evals_dir: &Path, name_or_path: &str) -> PathBuf {
    let p = Path::new(name_or_path);
    if p.extension().is_some_and(|e| e == "toml") || p.components().count() > 1 {
        p.to_path_buf()
    } else {
        evals_dir.join(format!("{name_or_path}.toml"))
    }
}

/// Read and validate a suite file.
pub fn load_suite(file: &Path) -> Result<Suite, SuiteError> {
    let fname = file.display().to_string();
    let err = |path: &str, message: String, hint: Option<String>| SuiteError {
        file: fname.clone(),
        path: path.to_string(),
        message,
        hint,
    };
    let text = std::fs::read_to_string(file).map_err(|e| {
        err(
            "",
            format!("cannot read the suite: {e}"),
            Some("suites live in the evals folder as <name>.toml".into()),
        )
    })?;
    let de = toml::Deserializer::parse(&text)
        .map_err(|e| err("", format!("not valid TOML: {}", e.message().trim()), None))?;
    let raw: RawSuite = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        err(
            if path == "." { "" } else { &path },
            e.into_inner().message().trim().to_string(),
            None,
        )
    })?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let t = raw.target;
    let target = match (&t.function, &t.prompt, &t.model) {
        (Some(function), None, None) => {
            if t.prompt_label.is_some() || t.prompt_version.is_some() || t.params.is_some() {
                return Err(err(
                    "target",
                    "a function target takes only `function` and `variant`".into(),
                    Some("the variant decides prompt, model and params".into()),
                ));
            }
            Target::Function {
                function: function.clone(),
                variant: t.variant.clone(),
            }
        }
        (None, Some(prompt), Some(model)) => {
            if t.prompt_label.is_some() && t.prompt_version.is_some() {
                return Err(err(
                    "target",
                    "set `prompt_label` or `prompt_version`, not both".into(),
                    None,
                ));
            }
            let params = match &t.params {
                None => serde_json::Map::new(),
                Some(table) => match serde_json::to_value(table) {
                    Ok(serde_json::Value::Object(m)) => m,
                    _ => {
                        return Err(err("target.params", "must be a table".into(), None));
                    }
                },
            };
            Target::Prompt {
                prompt: prompt.clone(),
                label: t.prompt_label.clone(),
                version: t.prompt_version,
                model: model.clone(),
                params,
            }
        }
        (None, None, Some(model)) => Target::Model {
            model: model.clone(),
        },
        _ => {
            return Err(err(
                "target",
                "name what to test".into(),
                Some("`function` (+ `variant`), or `prompt` + `model`, or just `model`".into()),
            ))
        }
    };
    if t.variant.is_some() && !matches!(target, Target::Function { .. }) {
        return Err(err(
            "target.variant",
            "only a function target has variants".into(),
            None,
        ));
    }
    let mut assertions = Vec::with_capacity(raw.assertions.len());
    for (i, spec) in raw.assertions.iter().enumerate() {
        assertions.push(
            spec.validate()
                .map_err(|m| err(&format!("assert[{i}]"), m, None))?,
        );
    }
    raw.gate.validate().map_err(|m| err("gate", m, None))?;
    let concurrency = raw.run.concurrency.unwrap_or(4);
    if concurrency == 0 || concurrency > 256 {
        return Err(err(
            "run.concurrency",
            format!("{concurrency} is out of range"),
            Some("use 1 to 256".into()),
        ));
    }
    let repeat = raw.run.repeat.unwrap_or(1);
    if repeat == 0 || repeat > 100 {
        return Err(err(
            "run.repeat",
            format!("{repeat} is out of range"),
            Some("use 1 to 100".into()),
        ));
    }
    Ok(Suite {
        name,
        file: file.to_path_buf(),
        description: raw.description,
        target,
        dataset_path: dir.join(&raw.dataset.path),
        dataset_hash: raw.dataset.hash,
        assertions,
        judge_model: raw.judge.map(|j| j.model),
        concurrency,
        repeat,
        max_retries: raw.run.max_retries.unwrap_or(4),
        gate: raw.gate,
    })
}
