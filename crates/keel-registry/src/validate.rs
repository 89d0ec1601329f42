//! Checks that need more than the file's shape: every template compiles, every variable
//! a template uses is declared (error), every declared variable is used (warning), and
//! defaults are consistent with `required` and `type`.

use std::collections::BTreeSet;
use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};

use crate::load::PromptIssue;
use crate::prompt::{json_type_name, Prompt, PromptBody};

/// Template steps one render may take ([MiniJinja fuel]): enough for any prompt that
/// fits a model's context, and a bound on a template that loops without end (nested
/// `range`s), which fails with [`OUT_OF_FUEL`] instead of holding a thread.
pub const RENDER_FUEL: u64 = 5_000_000;
/// The fuel of a render on the gateway's async workers: ordinary prompts take a few
/// thousand steps; one that needs more is rendered again on a blocking thread with
/// [`RENDER_FUEL`] (`CompiledPrompt::render_quick`).
pub const QUICK_FUEL: u64 = 50_000;
/// What a render that ran out of fuel says.
pub const OUT_OF_FUEL: &str = "the template stopped after 5,000,000 steps (the render fuel limit): a loop renders too much for one call — bound its `range` or the data it iterates";

/// The environment every prompt is compiled and rendered in: strict undefined, so a
/// missing variable is an error rather than empty text; fuel-limited.
pub(crate) fn environment() -> Environment<'static> {
    environment_with_fuel(RENDER_FUEL)
}

pub(crate) fn environment_with_fuel(fuel: u64) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(fuel));
    env
}

/// A render error's message; running out of fuel says what to do about it.
pub(crate) fn render_message(e: &minijinja::Error) -> String {
    if e.kind() == minijinja::ErrorKind::OutOfFuel {
        return OUT_OF_FUEL.to_string();
    }
    e.detail()
        .map_or_else(|| e.kind().to_string(), str::to_string)
}

/// Each template of a prompt with its key path (`messages[1].content`, `template`).
pub(crate) fn templates(p: &Prompt) -> Vec<(String, &str)> {
    match &p.body {
        PromptBody::Chat(msgs) => msgs
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("messages[{i}].content"), m.content.as_str()))
            .collect(),
        PromptBody::Text(t) => vec![("template".to_string(), t.as_str())],
    }
}

/// `(errors, warnings)` for one parsed prompt.
pub(crate) fn validate(p: &Prompt, file: &Path) -> (Vec<PromptIssue>, Vec<PromptIssue>) {
    let issue = |path: String, message: String, hint: Option<String>| PromptIssue {
        file: file.to_path_buf(),
        path,
        message,
        hint,
    };
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let env = environment();
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    let mut used = BTreeSet::new();

    for (path, source) in templates(p) {
        match env.template_from_str(source) {
            Ok(t) => {
                let mut vars: Vec<String> = t
                    .undeclared_variables(false)
                    .into_iter()
                    .filter(|v| !globals.contains(v.as_str()))
                    .collect();
                vars.sort();
                for v in vars {
                    if !p.variables.contains_key(&v) {
                        errors.push(issue(
                            path.clone(),
                            format!("variable `{v}` is used but not declared"),
                            Some(format!(
                                "add [variables.{v}] with a type, e.g. type = \"string\""
                            )),
                        ));
                    }
                    used.insert(v);
                }
            }
            Err(e) => {
                let at = e
                    .line()
                    .map(|l| format!(" on line {l}"))
                    .unwrap_or_default();
                let detail = e
                    .detail()
                    .map_or_else(|| e.kind().to_string(), str::to_string);
                errors.push(issue(
                    path,
                    format!("template syntax error{at}: {detail}"),
                    None,
                ));
            }
        }
    }

    for (name, decl) in &p.variables {
        let path = format!("variables.{name}");
        if let Some(default) = &decl.default {
            if decl.required {
                errors.push(issue(
                    format!("{path}.default"),
                    format!("variable `{name}` is required, so a default would never be used"),
                    Some("set required = false, or remove default".into()),
                ));
            } else if !decl.ty.accepts(default) {
                errors.push(issue(
                    format!("{path}.default"),
                    format!(
                        "default of `{name}` must be {} {}, got {}",
                        article(decl.ty.as_str()),
                        decl.ty.as_str(),
                        json_type_name(default)
                    ),
                    None,
                ));
            }
        }
        if !used.contains(name) {
            warnings.push(issue(
                path,
                format!("variable `{name}` is declared but no template uses it"),
                Some("remove it, or use it in a template".into()),
            ));
        }
    }
    (errors, warnings)
}

pub(crate) fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}
