//! A draft as the playground handles it: the prompt file's text, checked the way `keel
//! check` checks a file, and made into a [`Deployment`] — the same thing a function
//! variant serves — so the draft and the live version are rendered and called exactly as
//! live traffic would be.
//!
//! The model and parameters come from the prompt's *reference variant*: the first
//! function variant (by function name, then config order) that serves the prompt. Its
//! parameters apply over the prompt's `[params]` (operators' choices win, as in serving);
//! without one, the prompt's own parameters on the chosen model.

use std::path::Path;
use std::sync::Arc;

use keel_core::config::{Config, FunctionConfig, PromptRef, Sticky, VariantConfig};
use keel_registry::{CompiledPrompt, Prompt};
use keel_store::PromptVersion;
use serde_json::Value;

use crate::registry::snapshot::{deployment, LoadedVersion};
use crate::registry::Deployment;

/// The function name on the playground's deployments (never configured, never served).
pub const FUNCTION: &str = "(playground)";

/// A draft that parsed and validated, with the warnings `keel check` would print.
#[derive(Debug, Clone)]
pub struct Checked {
    pub prompt: Prompt,
    pub warnings: Vec<String>,
}

/// The file name a draft's problems are reported against.
pub fn file_of(name: &str) -> String {
    format!("{name}.toml")
}

/// Check `source` as the file of prompt `name`; every problem, each naming the key
/// path (`messages[0].content: template syntax error on line 1: …`).
pub fn check_source(name: &str, source: &str) -> Result<Checked, Vec<String>> {
    let file = file_of(name);
    let strip = |s: String| {
        s.strip_prefix(&format!("{file}: "))
            .map_or_else(|| s.clone(), str::to_string)
    };
    keel_registry::check_prompt_text(name, Path::new(&file), source)
        .map(|(prompt, warnings)| Checked {
            prompt,
            warnings: warnings.iter().map(|w| strip(w.to_string())).collect(),
        })
        .map_err(|errors| errors.iter().map(|e| strip(e.to_string())).collect())
}

/// The prompt stored as `v`.
pub fn stored_prompt(v: &PromptVersion) -> Result<Prompt, String> {
    serde_json::from_str::<Value>(&v.content_json)
        .map_err(|e| e.to_string())
        .and_then(|json| Prompt::from_json(&v.name, &json).map_err(|e| e.to_string()))
        .map_err(|e| format!("prompt `{}` v{} cannot be read: {e}", v.name, v.version))
}

/// The editor's starting text for version `v`: its file in the prompts folder when the
/// file's content is that version's (comments and layout kept), else the stored content
/// written back as a file.
pub fn source_of(config: &Config, v: &PromptVersion) -> Result<String, String> {
    if let Some(dir) = &config.prompts_dir {
        let file = dir.join(file_of(&v.name));
        if let Ok(text) = std::fs::read_to_string(&file) {
            let same = keel_registry::parse_prompt(&v.name, &file, &text)
                .is_ok_and(|p| p.content_hash() == v.content_hash);
            if same {
                return Ok(text);
            }
        }
    }
    stored_prompt(v)?.to_toml()
}

/// The variant whose model and parameters the playground uses for `prompt`.
pub fn reference_variant<'a>(config: &'a Config, prompt: &str) -> Option<&'a VariantConfig> {
    config
        .functions
        .values()
        .flat_map(|f| f.variants.iter())
        .find(|v| v.prompt == prompt)
}

/// The model a new draft of `prompt` is tried on: its reference variant's, else the
/// first configured model.
pub fn default_model(config: &Config, prompt: &str) -> Option<String> {
    reference_variant(config, prompt)
        .map(|v| v.model.clone())
        .or_else(|| config.models.keys().next().cloned())
}

/// `prompt` (version `version`, 0 for a draft never pushed) as a deployment on `model`,
/// with the reference variant's parameters. `side` names it (`draft`, `live`).
pub fn deploy(
    config: &Config,
    prompt: Prompt,
    version: i64,
    model: &str,
    side: &str,
) -> Result<Deployment, String> {
    let name = prompt.name.clone();
    let params = reference_variant(config, &name)
        .map(|v| v.params.clone())
        .unwrap_or_default();
    let content_hash = prompt.content_hash();
    let compiled = CompiledPrompt::new(prompt).map_err(|e| e.to_string())?;
    let f = FunctionConfig {
        name: FUNCTION.into(),
        description: None,
        sticky: Sticky::None,
        variants: Vec::new(),
        shadow: None,
        timeout: None,
        first_token_timeout: None,
        cheapest: None,
        capture: None,
    };
    let v = VariantConfig {
        name: side.into(),
        prompt: name,
        prompt_ref: PromptRef::Label(side.into()),
        model: model.into(),
        weight: 0,
        params,
        fallbacks: None,
    };
    let loaded = Arc::new(LoadedVersion {
        compiled,
        content_hash,
    });
    deployment(config, &f, &v, version, loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_the_key_and_not_the_made_up_file() {
        let err = check_source("support/answer", "template = \"{{ question \"\n").unwrap_err();
        assert!(
            err[0].starts_with("template: template syntax error"),
            "{err:?}"
        );
        let err = check_source("p", "template = \"{{ who }}\"\n").unwrap_err();
        assert!(
            err[0].contains("variable `who` is used but not declared"),
            "{err:?}"
        );
        let ok = check_source(
            "p",
            "template = \"hi\"\n[variables.x]\ntype = \"string\"\nrequired = false\n",
        )
        .unwrap();
        assert!(ok.warnings[0].contains("`x` is declared but no template uses it"));
        let err = check_source("p", "templte = \"hi\"\n").unwrap_err();
        assert!(err[0].contains("did you mean `template`"), "{err:?}");
    }
}
